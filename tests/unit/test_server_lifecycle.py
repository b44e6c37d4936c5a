"""The lifecycle writes an application's "running" row after its first output went to its client."""

from __future__ import annotations

from typing import Any

from dynamo.core.appstate import AppState
from dynamo.server.children import Children
from dynamo.server.ledger import Ledger
from dynamo.server.lifecycle import ROW_DELAY, Lifecycle
from tests.unit.server_fakes import FakeConn, FakeSystem, MemoryRegistry, child


class Conn(FakeConn):
    """A connection with output waiting (``out``) until the loop writes it to the client."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()


def setup(connected: bool) -> tuple[FakeSystem, MemoryRegistry, Ledger, Lifecycle, Any]:
    system = FakeSystem()
    registry = MemoryRegistry()
    ledger = Ledger(registry, system)  # type: ignore[arg-type]
    children = Children(10.0, system)
    lifecycle = Lifecycle(None, None, None, ledger, children, None, system)  # type: ignore[arg-type]
    kid = child(system)
    kid.record.status = AppState.QUEUED
    if connected:
        kid.connection = Conn()
    children.add(kid)
    ledger.hold(kid.record, AppState.RUNNING, pid=kid.pid)
    return system, registry, ledger, lifecycle, kid


def test_the_row_waits_for_the_first_output_to_reach_the_client() -> None:
    system, registry, ledger, lifecycle, kid = setup(connected=True)
    assert lifecycle.row_due_in(system.now) == ROW_DELAY and lifecycle.rows_held()
    lifecycle.write_held_rows(system.now)
    assert registry.updates == []  # nothing heard yet
    kid.heard = True
    kid.connection.out += b"first line"  # read from its pipe, not yet written to the client
    lifecycle.write_held_rows(system.now)
    assert registry.updates == []
    kid.connection.out.clear()  # the next turn wrote it to the client
    lifecycle.write_held_rows(system.now)
    assert registry.updates == [(kid.record.id, {"status": AppState.RUNNING, "pid": kid.pid})]
    assert not ledger.holds(kid.record) and lifecycle.row_due_in(system.now) == 1.0 and not lifecycle.rows_held()


def test_a_silent_application_gets_its_row_after_the_delay() -> None:
    system, registry, ledger, lifecycle, kid = setup(connected=True)
    system.now += ROW_DELAY / 2
    assert abs(lifecycle.row_due_in(system.now) - ROW_DELAY / 2) < 1e-9
    lifecycle.write_held_rows(system.now)
    assert registry.updates == []
    system.now += ROW_DELAY / 2
    assert lifecycle.row_due_in(system.now) == 0.0
    lifecycle.write_held_rows(system.now)
    assert kid.record.status is AppState.RUNNING and len(registry.updates) == 1


def test_without_a_client_the_row_is_written_once_output_came() -> None:
    system, registry, _, lifecycle, kid = setup(connected=False)
    kid.heard = True
    lifecycle.write_held_rows(system.now)
    assert kid.record.status is AppState.RUNNING and len(registry.updates) == 1
