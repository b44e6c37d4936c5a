"""The ledger: every change of an application's state is an allowed transition, store or no store."""

from __future__ import annotations

import pytest

from dynamo.apps.states import AppState, TransitionError
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
