"""Periodic work is keyed to the monotonic clock, and the full collection waits for an idle server
(but never longer than one period)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynamo.config import embedded_default
from dynamo.server import maintenance as M
from dynamo.server.workareas import WorkAreas
from tests.unit.server_fakes import FakeSystem


class CountingStore:
    """The store calls maintenance makes, counted."""

    def __init__(self) -> None:
        self.maintained = self.compacted = 0

    def maintain(self) -> None:
        self.maintained += 1

    def compact_journal(self, retention: Any) -> int:
        self.compacted += 1
        return 0


class NoOldApplications:
    def __init__(self) -> None:
        self.purges: list[float] = []

    def purge_applications(self, cutoff: float) -> list[Any]:
        self.purges.append(cutoff)
        return []


def test_timers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    collections: list[float] = []
    system = FakeSystem()
    monkeypatch.setattr(M.Maintenance, "collect", lambda self: collections.append(system.now))
    config = embedded_default(tmp_path)
    store, registry = CountingStore(), NoOldApplications()
    busy = [False]
    m = M.Maintenance(config, store, registry, WorkAreas(tmp_path / "work"),  # type: ignore[arg-type]
                      busy=lambda: busy[0], system=system)
    m.run()
    assert (store.maintained, store.compacted, len(registry.purges), collections) == (1, 1, 1, [])
    assert registry.purges[0] == pytest.approx(system.time() - config.applications.retain_days * 86400)
    system.now += config.store.compact_every - 1
    m.run()
    assert (store.maintained, store.compacted) == (2, 1)
    system.now += 1
    m.run()
    assert store.compacted == 2
    system.now = 1000.0 + M.CLEANUP_EVERY
    m.run()
    assert len(registry.purges) == 2
    start = 1000.0
    busy[0] = True
    system.now = start + M.MAINTENANCE_GC_EVERY
    m.run()
    assert collections == []                          # due, but applications are running
    busy[0] = False
    m.run()
    assert collections == [system.now]                # idle: collect now, next in a period
    busy[0] = True
    system.now += 2 * M.MAINTENANCE_GC_EVERY
    m.run()
    assert len(collections) == 2                      # a period overdue: busy or not


def test_store_upkeep_waits_for_the_commit_and_runs_at_most_once_a_second(tmp_path: Path) -> None:
    """The store's upkeep (SQLite's checkpoints, which sync the registry's rows) does not run while a change
    set is committed (its fsync would wait for the commit's writes, and the loop with it), nor more than
    once a second."""
    system = FakeSystem()
    store, committing = CountingStore(), [True]
    m = M.Maintenance(embedded_default(tmp_path), store, NoOldApplications(),  # type: ignore[arg-type]
                      WorkAreas(tmp_path / "work"), busy=lambda: False, system=system,
                      committing=lambda: committing[0])
    m.run()
    assert store.maintained == 0
    committing[0] = False
    m.run()
    m.run()
    assert store.maintained == 1
    system.now += M.STORE_EVERY
    m.run()
    assert store.maintained == 2
