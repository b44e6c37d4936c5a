"""The load as dynamod makes it: counts from the builder, an image frozen as built, and (SQLite) no
page cache left behind."""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path
from typing import Any

import pytest

from bench.workload import change_records, generate, scaled
from dynamo.core.changeset import apply_change_set
from dynamo.core.codec import UPDATE, encode
from dynamo.core.journal import ChangeMeta
from dynamo.dataformat import Block, BlockReplica
from dynamo.store import InventoryStore, open_store
from dynamo.store.sql import SQLStore
from dynamo.store.sqlite import SQLiteStore


def test_the_builder_counts_what_a_walk_counts(store: InventoryStore) -> None:
    image = generate(scaled(0.001), 21)
    store.import_image(image, ChangeMeta(title="import"))
    loaded = store.load()
    dataset = next(iter(loaded.datasets.values()))
    site = next(iter(loaded.sites.values()))
    # new datasets with files, new and deleted block replicas, a block without files, its replica
    records = change_records(loaded, 500, seed=22)
    records += [encode(UPDATE, Block("empty-block", dataset.name, 0, 0, True, 1)),
                encode(UPDATE, BlockReplica(f"{dataset.name}#empty-block", site.name, None, False, 1))]
    apply_change_set(loaded, store, records)
    assert isinstance(store, SQLStore)
    again = store.load()
    assert store.loaded_counts == again.counts()
    assert store.loaded_counts["files"] == sum(b.files_count() for d in again.datasets.values() for b in d.blocks)


def test_a_frozen_load_leaves_the_collector_nothing_to_walk(store: InventoryStore) -> None:
    store.import_image(generate(scaled(0.001), 23), ChangeMeta(title="import"))
    gc.collect()
    try:
        inventory = store.load(freeze=True)
        assert gc.isenabled()
        # frozen before the collector was back on: the young generation did not receive the image
        assert gc.get_count()[0] < 1000
        assert gc.get_freeze_count() > sum(len(d.blocks) for d in inventory.datasets.values())
        assert not any(isinstance(o, Block) for o in gc.get_objects())  # every generation but the frozen one
    finally:
        gc.unfreeze()  # this process's later collections may free it again


def test_an_unfrozen_load_leaves_the_collector_on_and_nothing_frozen(store: InventoryStore) -> None:
    store.import_image(generate(scaled(0.001), 24), ChangeMeta(title="import"))
    frozen = gc.get_freeze_count()
    inventory = store.load()
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    assert any(isinstance(o, Block) for o in gc.get_objects()) and inventory.datasets


def _sqlite_memory_used() -> int:
    import _sqlite3
    try:
        used: Any = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    except (OSError, AttributeError):
        pytest.skip("this Python's sqlite3 does not expose sqlite3_memory_used")
    used.restype = ctypes.c_int64
    return int(used())


def test_a_sqlite_load_leaves_no_page_cache_behind(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"
    with open_store(f"sqlite:///{path}") as store:
        store.import_image(generate(scaled(0.02), 25), ChangeMeta(title="import"))
    assert path.stat().st_size > 8 << 20  # more than the load's cache and the bound below
    with SQLiteStore(path) as store:
        before = _sqlite_memory_used()
        inventory = store.load()
        # the commit cache (256 MiB) would now hold the whole database file
        assert _sqlite_memory_used() - before < 4 << 20
        assert store.query_all("PRAGMA cache_size")[0][0] == -store.cache_kib  # back for commits
        apply_change_set(inventory, store, change_records(inventory, 200, seed=26))
        assert store.load().version == inventory.version == 2


def test_dynamod_loads_without_walking_or_collecting_the_image(tmp_path: Path, monkeypatch: Any,
                                                               caplog: Any) -> None:
    from dynamo.core.inventory import Inventory
    from dynamo.server.committer import Committer

    store = open_store(f"sqlite:///{tmp_path}/inventory.db")
    store.import_image(generate(scaled(0.001), 27), ChangeMeta(title="import"))
    assert isinstance(store, SQLStore)
    calls: list[str] = []
    collect, load = gc.collect, store.load
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or collect(*a))
    monkeypatch.setattr(store, "load", lambda **kw: calls.append(f"load {kw}") or load(**kw))
    monkeypatch.setattr(Inventory, "counts", lambda self: calls.append("walk") or {})
    committer = Committer(store, None, None)  # type: ignore[arg-type]  # load() needs no ledger, no change log
    try:
        with caplog.at_level("INFO", logger="dynamo.server"):
            committer.load()
        # what was there before is collected; the image is frozen as built, never collected, never walked
        assert calls == ["collect", "load {'freeze': True}"]
        assert not any(isinstance(o, Block) for o in gc.get_objects())
        counts = store.loaded_counts
        assert counts["files"] == 10000 and f"{counts['files']} files" in caplog.text
    finally:
        gc.unfreeze()
        store.close()
