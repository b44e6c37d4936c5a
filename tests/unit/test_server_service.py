"""What the request handlers ask of dynamod (``AppService``), on a real SQLite registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynamo.server.children import Children
from dynamo.server.ledger import Ledger
from dynamo.server.scheduler import Scheduler
from dynamo.server.service import AppService
from dynamo.store import open_store
from dynamo.store.registry import Registry
from dynamo.store.sqlite import SQLiteStore
from tests.unit.server_fakes import FakeConn


@pytest.mark.parametrize(("write", "is_async", "synced"), [(False, False, False), (True, False, True),
                                                             (False, True, True), (True, True, True)])
def test_only_a_waiting_readers_queued_row_skips_the_fsync(tmp_path: Path, write: bool, is_async: bool,
                                                           synced: bool) -> None:
    """A read-only application whose client waits: its queued row is committed unsynced (its running row,
    synced, follows at its first output); a writer's, and an asynchronous submission's, wait for the disk."""
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    assert isinstance(store, SQLiteStore)
    try:
        registry = Registry(store)
        registry.add_user("u")
        children = Children(kill_grace=1.0)
        scheduler = Scheduler(Ledger(registry), children, 4, lambda p: None, lambda j: None)
        service = AppService(registry, scheduler, children, "host")
        conn: Any = FakeConn()
        conn.user = registry.user_by_name("u")
        seen: list[str] = []
        store._connection().set_trace_callback(seen.append)
        service.submit(conn, {"title": "t", "write": write, "name": "s.py", "args": [], "async": is_async,
                              "script": "print(1)\n"}, "0" * 64)
        store._connection().set_trace_callback(None)
        assert ("PRAGMA synchronous = NORMAL" in seen) is not synced, seen
        queued = scheduler.writes if write else scheduler.readers
        assert [p.record.title for p in queued] == ["t"]
        assert registry.application(queued[0].record.id) is not None
    finally:
        store.close()
