"""The scheduler: readers up to the limit in order, one writer at a time, injects in the writers' line."""

from __future__ import annotations

from typing import Any

from dynamo.core.appstate import AppState
from dynamo.server.children import Child, Children
from dynamo.server.ledger import Ledger
from dynamo.server.scheduler import InjectJob, Pending, Scheduler
from tests.unit.server_fakes import FakeConn, FakeSystem, MemoryRegistry, child, record


class Harness:
    def __init__(self, max_running: int = 2):
        self.system = FakeSystem()
        self.children = Children(kill_grace=10.0, system=self.system)
        self.started: list[int] = []
        self.injected: list[str] = []
        self.registry = MemoryRegistry()
        self.scheduler = Scheduler(Ledger(self.registry, self.system), self.children, max_running,  # type: ignore[arg-type]
                                   self.launch, self.inject)

    def launch(self, pending: Pending) -> Child:
        c = child(self.system, pid=pending.record.id, write=pending.record.write)
        c.record = pending.record
        self.children.add(c)
        self.started.append(pending.record.id)
        return c

    def inject(self, job: InjectJob) -> None:
        self.injected.append(job.document)
        self.started.append(-len(self.injected))

    def submit(self, app_id: int, write: bool = False, conn: Any = None) -> Pending:
        pending = Pending(record(app_id, write=write, status=AppState.QUEUED), {}, conn)
        self.scheduler.enqueue(pending)
        return pending

    def turn(self) -> None:
        self.scheduler.start_next_write()
        self.scheduler.start_readers()

    def end(self, app_id: int) -> None:
        c = self.children.by_app(app_id)
        assert c is not None
        self.children.remove(c)
        self.scheduler.release(c)


def test_readers_start_in_order_up_to_the_limit() -> None:
    h = Harness(max_running=2)
    for app_id in (1, 2, 3, 4):
        h.submit(app_id)
    h.turn()
    assert h.started == [1, 2]
    h.end(2)
    h.turn()
    assert h.started == [1, 2, 3]
    h.end(1)
    h.end(3)
    h.turn()
    assert h.started == [1, 2, 3, 4]


def test_one_writer_at_a_time_in_the_order_they_came() -> None:
    h = Harness()
    for app_id in (1, 2, 3):
        h.submit(app_id, write=True)
    h.turn()
    h.turn()
    assert h.started == [1] and h.scheduler.writer is not None
    h.end(1)
    h.turn()
    assert h.started == [1, 2]
    h.end(2)
    h.turn()
    assert h.started == [1, 2, 3]


def test_the_writer_does_not_count_against_the_readers_limit() -> None:
    h = Harness(max_running=1)
    h.submit(1, write=True)
    h.submit(2)
    h.submit(3)
    h.turn()
    assert h.started == [1, 2]
    assert h.scheduler.running_readers() == 1


def test_injects_wait_in_the_writers_line() -> None:
    h = Harness()
    h.submit(1, write=True)
    h.turn()
    conn = FakeConn()
    h.scheduler.enqueue_inject(InjectJob(conn, None, False, "doc"))  # type: ignore[arg-type]
    assert conn.sent == [{"type": "queued", "reason": "waiting for the current writer"}]
    h.submit(2, write=True)
    h.turn()
    assert h.injected == []
    h.end(1)
    h.turn()
    assert h.injected == ["doc"] and h.started == [1, -1, 2]   # the inject ran to its end, then writer 2


def test_a_synchronous_writer_is_told_it_waits() -> None:
    h = Harness()
    h.submit(1, write=True)
    h.turn()
    conn = FakeConn()
    h.submit(2, write=True, conn=conn)
    assert conn.sent == [{"type": "queued", "id": 2, "reason": "waiting for the current writer"}]


def test_a_client_that_left_cancels_its_queued_application() -> None:
    h = Harness()
    conn = FakeConn()
    pending = h.submit(1, conn=conn)
    conn.closed = True
    h.turn()
    assert h.started == []
    assert pending.record.status is AppState.KILLED and pending.record.message == "the client left before it started"


def test_cancel_takes_the_first_match_out_of_the_queue() -> None:
    h = Harness(max_running=0)
    conn = FakeConn()
    h.submit(1)
    second = h.submit(2, conn=conn)
    assert h.scheduler.cancel(lambda p: p.record.id == 2, "killed while queued")
    assert not h.scheduler.cancel(lambda p: p.record.id == 2, "killed while queued")
    assert second.record.status is AppState.KILLED
    assert conn.sent[-1]["type"] == "exit" and conn.sent[-1]["status"] == "killed" and conn.close_when_flushed
    assert [p.record.id for p in h.scheduler.readers] == [1]


def test_nothing_starts_once_closed_and_settle_kills_the_queue() -> None:
    h = Harness()
    reader = h.submit(1)
    writer = h.submit(2, write=True)
    conn = FakeConn()
    h.scheduler.enqueue_inject(InjectJob(conn, None, False, "doc"))  # type: ignore[arg-type]
    h.scheduler.closed = True
    h.turn()
    assert h.started == []
    h.scheduler.settle()
    assert reader.record.status is AppState.KILLED and writer.record.status is AppState.KILLED
    assert conn.sent[-1]["type"] == "error"
    assert not h.scheduler.readers and not h.scheduler.writes


def test_a_writer_that_did_not_start_frees_the_slot() -> None:
    h = Harness()
    h.launch = lambda pending: None  # type: ignore[assignment,return-value]
    h.scheduler.launch = h.launch
    h.submit(1, write=True)
    h.submit(2, write=True)
    h.turn()
    assert h.scheduler.writer is None and not h.scheduler.writes   # both tried, neither holds the slot


def test_no_writer_starts_while_a_change_set_is_committed_or_applied() -> None:
    h = Harness(max_running=4)
    committing = [True]
    h.scheduler.committing = lambda: committing[0]
    h.submit(1, write=True)
    h.submit(2)
    h.turn()
    assert h.started == [2]  # readers run meanwhile; the writer waits for the change set before it
    committing[0] = False
    h.turn()
    assert h.started == [2, 1]


def test_nothing_is_forked_while_the_image_is_half_changed_without_a_zygote() -> None:
    h = Harness(max_running=4)
    allowed = [False]
    h.scheduler.forks_allowed = lambda: allowed[0]
    h.submit(1)
    h.submit(2, write=True)
    h.turn()
    assert h.started == []
    allowed[0] = True
    h.turn()
    assert h.started == [2, 1]


def test_a_reader_waits_in_its_queue_for_a_child_forked_elsewhere_and_those_behind_it_too() -> None:
    h = Harness(max_running=4)
    waiting = {1}
    h.scheduler.reader_waits = lambda pending: pending.record.id in waiting
    for app_id in (1, 2):
        h.submit(app_id)
    h.turn()
    assert h.started == []  # in order: 2 does not overtake 1
    waiting.clear()  # the spare arrived
    h.turn()
    assert h.started == [1, 2]


def test_a_waiting_reader_whose_client_left_is_not_waited_for() -> None:
    h = Harness(max_running=4)
    h.scheduler.reader_waits = lambda pending: True
    gone = FakeConn()
    gone.closed = True
    pending = h.submit(1, conn=gone)
    h.turn()
    assert h.started == [] and not h.scheduler.readers
    assert pending.record.status is AppState.KILLED
