"""The ledger: every change of an application's state is an allowed transition, store or no store."""

from __future__ import annotations

import pytest

from dynamo.core.appstate import AppState
from dynamo.errors import TransitionError
from dynamo.server.ledger import Ledger
from tests.unit.server_fakes import FakeSystem, MemoryRegistry, record


def test_the_record_moves_on_when_the_store_is_down() -> None:
    registry = MemoryRegistry()
    registry.down = True
    ledger = Ledger(registry, FakeSystem())  # type: ignore[arg-type]
    rec = record(status=AppState.QUEUED)
    ledger.mark(rec, AppState.RUNNING, pid=42)
    assert rec.status is AppState.RUNNING and rec.pid == 42
    ledger.finish(rec, AppState.FAILED, 2, "exit code 2")
    assert (rec.status, rec.exit_code, rec.message, rec.ended) == (AppState.FAILED, 2, "exit code 2", 1.8e9 + 1000)


@pytest.mark.parametrize("down", [False, True])
def test_a_forbidden_transition_is_refused_even_when_the_store_is_down(down: bool) -> None:
    registry = MemoryRegistry()
    registry.down = down
    ledger = Ledger(registry, FakeSystem())  # type: ignore[arg-type]
    rec = record(status=AppState.DONE)
    with pytest.raises(TransitionError):
        ledger.finish(rec, AppState.KILLED, None, "too late")
    assert rec.status is AppState.DONE and rec.message == ""
    rec = record(status=AppState.QUEUED)
    with pytest.raises(TransitionError):
        ledger.mark(rec, AppState.APPLYING)
    assert rec.status is AppState.QUEUED


def test_finish_records_the_version_when_given() -> None:
    registry = MemoryRegistry()
    ledger = Ledger(registry, FakeSystem())  # type: ignore[arg-type]
    rec = record(status=AppState.APPLYING, write=True)
    ledger.finish(rec, AppState.DONE, 0, "3 change(s) applied", version=7)
    assert registry.updates[-1][1]["version"] == 7 and rec.version == 7


def test_a_held_change_is_checked_at_once_and_written_when_asked() -> None:
    registry = MemoryRegistry()
    ledger = Ledger(registry, FakeSystem())  # type: ignore[arg-type]
    rec = record(status=AppState.QUEUED)
    with pytest.raises(TransitionError):
        ledger.hold(rec, AppState.APPLYING)
    ledger.hold(rec, AppState.RUNNING, pid=42)
    assert ledger.holds(rec) and registry.updates == [] and rec.status is AppState.QUEUED
    ledger.write_held(rec)
    assert not ledger.holds(rec) and rec.status is AppState.RUNNING and rec.pid == 42
    assert registry.updates == [(rec.id, {"status": AppState.RUNNING, "pid": 42})]
    ledger.write_held(rec)  # nothing held any more: nothing written twice
    assert len(registry.updates) == 1


def test_a_later_change_writes_the_held_one_first() -> None:
    """The registry sees every state in order: queued -> running -> failed, never queued -> failed."""
    registry = MemoryRegistry()
    ledger = Ledger(registry, FakeSystem())  # type: ignore[arg-type]
    rec = record(status=AppState.QUEUED)
    ledger.hold(rec, AppState.RUNNING, pid=7)
    ledger.finish(rec, AppState.FAILED, 3, "exit code 3")
    assert [changes["status"] for _, changes in registry.updates] == [AppState.RUNNING, AppState.FAILED]
    assert rec.pid == 7 and rec.status is AppState.FAILED and not ledger.holds(rec)


def test_write_all_held_writes_every_record() -> None:
    registry = MemoryRegistry()
    ledger = Ledger(registry, FakeSystem())  # type: ignore[arg-type]
    recs = [record(app_id=i, status=AppState.QUEUED) for i in (1, 2)]
    for rec in recs:
        ledger.hold(rec, AppState.RUNNING)
    ledger.write_all_held()
    assert [rec.status for rec in recs] == [AppState.RUNNING, AppState.RUNNING] and len(registry.updates) == 2
