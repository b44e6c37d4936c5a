"""One conformance suite for every store: each test runs against SQLite and against real MariaDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import dynamo.core.journal as journal_module
from bench.workload import change_records, generate, scaled
from dynamo.core.changeset import apply_change_set
from dynamo.core.codec import DELETE, UPDATE, encode
from dynamo.core.documents import parse_inject
from dynamo.core.export import fingerprint
from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta
from dynamo.dataformat import Block, Dataset, File, Group, Site
from dynamo.errors import ChangeSetError, JournalPruned, SchemaError, StoreConflict, StoreError
from dynamo.store import InventoryStore, JournalRetention, open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DS = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"


def test_seed_transcript(store: InventoryStore, store_url: str) -> None:
    inv = store.load()
    assert inv.version == 0 and inv.sites == {} and list(inv.groups) == [None]
    for name in ("mydynamo-storage-sites.json", "mydynamo-initial-data.json"):
        apply_change_set(inv, store, parse_inject((EXAMPLES / name).read_text(), inv).records,
                         ChangeMeta(user="admin", title="inject"))
    with open_store(store_url) as other:
        fresh = other.load()
    assert repr(fresh.sites) == (
        "{'T2_US_XYZ': Site('T2_US_XYZ','t2-storage.xyz.edu','disk','gsiftp://t2-storage.xyz.edu:2811/cms',"
        "'ready',1), 'T3_US_XYZ': Site('T3_US_XYZ','t3-storage.xyz.edu','disk',"
        "'srm://t3-storage.xyz.edu:8443/srm/v2/server?SFN=/mnt/hadoop/cms','ready',2)}")
    assert repr(fresh.datasets) == (
        f"{{'{DS}': Dataset('{DS}','production','unknown','pandaf/010',1528406008,True,1)}}")
    assert repr(fresh.datasets[DS].blocks) == (
        f"set([Block('48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848','{DS}',165438,2,True,1528406008,1,False)])")
    assert fresh.version == 2
    assert fingerprint(fresh) == fingerprint(inv)


def test_import_load_commit_load(store: InventoryStore) -> None:
    image = generate(scaled(0.001), 11)
    store.import_image(image, ChangeMeta(title="import"))
    loaded = store.load()
    assert fingerprint(loaded) == fingerprint(image)
    assert loaded.ids.next_ids == image.ids.next_ids  # type: ignore[union-attr]
    records = change_records(loaded, 2000, seed=12)
    records += [encode(DELETE, Dataset(next(iter(loaded.datasets)))), encode(DELETE, Site(next(iter(loaded.sites)))),
                encode(DELETE, Group("group03")), encode(UPDATE, Site("T9_NEW")), encode(DELETE, Site("T9_NEW")),
                encode(UPDATE, Site("T9_NEW", "again"))]
    apply_change_set(loaded, store, records)
    again = store.load()
    assert fingerprint(again) == fingerprint(loaded)
    assert again.version == loaded.version == 2


def test_ids_survive_reload_and_are_never_reused(store: InventoryStore) -> None:
    inv = store.load()
    apply_change_set(inv, store, [encode(UPDATE, Site(n)) for n in ("A", "B")])
    apply_change_set(inv, store, [encode(DELETE, Site("B"))])
    inv = store.load()
    apply_change_set(inv, store, [encode(UPDATE, Site("C"))])
    assert {s.name: s.id for s in store.load().sites.values()} == {"A": 1, "C": 3}


def test_journal_records_meta_and_replays(store: InventoryStore) -> None:
    inv = store.load()
    apply_change_set(inv, store, parse_inject((EXAMPLES / "mydynamo-storage-sites.json").read_text(), inv).records,
                     ChangeMeta(user="alice", dn="/CN=alice", title="sites", checksum="ab" * 32, run_id=42))
    apply_change_set(inv, store, [encode(DELETE, Site("T3_US_XYZ"))], ChangeMeta(user="bob"))
    entries = store.journal_entries()
    assert [(e.seq, e.user, e.num_records) for e in entries] == [(1, "alice", 2), (2, "bob", 1)]
    assert (entries[0].dn, entries[0].title, entries[0].checksum, entries[0].run_id) == \
        ("/CN=alice", "sites", "ab" * 32, 42)
    assert store.journal_entries(since=1) == entries[1:]
    replay = Inventory()
    replay.trust_ids = True
    replay.ids = store.load().ids
    for entry in entries:
        apply_change_set(replay, None, list(store.journal_records(entry.seq)))
    assert fingerprint(replay) == fingerprint(store.load())
    assert store.version() == 2


def test_big_change_sets_are_journaled_in_chunks(store: InventoryStore, monkeypatch: Any) -> None:
    monkeypatch.setattr(journal_module, "CHUNK_RECORDS", 3000)
    monkeypatch.setattr(journal_module, "CHUNK_BYTES", 16 * 1024)  # forces further splitting too
    inv = store.load()
    records = [encode(UPDATE, Dataset("/Big/Load/RAW")), encode(UPDATE, Block("b", "/Big/Load/RAW", 20000, 20000))]
    records += [encode(UPDATE, File(f"/store/big/load/{i:06d}.root", "/Big/Load/RAW#b", 1)) for i in range(20000)]
    apply_change_set(inv, store, records)
    assert store.journal_entries()[0].num_records == 20002
    chunks = store._execute("SELECT COUNT(*) FROM journal_chunks")[0][0]  # type: ignore[attr-defined]
    assert chunks > 20000 // 3000
    back = list(store.journal_records(1))
    assert len(back) == 20002 and back[-1][2]["name"] == "/store/big/load/019999.root"
    assert store.load().find_block("/Big/Load/RAW", "b").files_count() == 20000


def test_compaction_keeps_headers_and_recent_records(store: InventoryStore) -> None:
    inv = store.load()
    for i in range(5):
        apply_change_set(inv, store, [encode(UPDATE, Site(f"S{i}"))])
    entries = store.journal_entries()
    now = entries[-1].time
    assert store.compact_journal(JournalRetention(keep_days=1, keep_entries=0), now=now) == 0  # all too recent
    assert store.compact_journal(JournalRetention(keep_days=0, keep_entries=2), now=now + 1) == 3
    assert [e.pruned for e in store.journal_entries()] == [True, True, True, False, False]
    with pytest.raises(JournalPruned):
        list(store.journal_records(1))
    assert len(list(store.journal_records(5))) == 1
    assert store.compact_journal(JournalRetention(keep_days=0, keep_entries=2), now=now + 1) == 0


def test_a_second_writer_is_refused(store: InventoryStore, store_url: str) -> None:
    inv = store.load()
    with open_store(store_url) as other_store:
        other = other_store.load()
        apply_change_set(inv, store, [encode(UPDATE, Site("A"))])
        before = fingerprint(other)
        with pytest.raises(StoreConflict, match="another writer committed"):
            apply_change_set(other, other_store, [encode(UPDATE, Site("B"))])
        assert fingerprint(other) == before and other.version == 0
    assert set(store.load().sites) == {"A"}


def test_failure_mid_transaction_leaves_store_and_image_unchanged(store: InventoryStore, monkeypatch: Any) -> None:
    store.import_image(generate(scaled(0.001), 13), ChangeMeta())
    inv = store.load()
    image_before = fingerprint(inv)
    records = change_records(inv, 500, seed=14)

    def fail_after_rows(*args: Any) -> None:
        raise StoreError("injected failure after the data rows were written")

    monkeypatch.setattr(store, "_write_journal", fail_after_rows)
    with pytest.raises(StoreError, match="injected failure"):
        apply_change_set(inv, store, records)
    assert fingerprint(inv) == image_before and inv.version == 1
    assert fingerprint(store.load()) == image_before and store.version() == 1
    monkeypatch.undo()
    apply_change_set(inv, store, records)  # the same change set goes through afterwards
    assert fingerprint(store.load()) == fingerprint(inv)


def test_a_refused_change_set_writes_nothing(store: InventoryStore) -> None:
    inv = store.load()
    with pytest.raises(ChangeSetError):
        apply_change_set(inv, store, [encode(UPDATE, Site("A")), encode(UPDATE, Block("b", "nope"))])
    assert store.version() == 0 and store.journal_entries() == [] and store.load().sites == {}


def test_import_needs_an_empty_store(store: InventoryStore) -> None:
    inv = store.load()
    apply_change_set(inv, store, [encode(UPDATE, Site("A"))])
    with pytest.raises(StoreConflict):
        store.import_image(generate(scaled(0.001), 1), ChangeMeta())


def test_schema_is_created_once_and_checked(store: InventoryStore, store_url: str) -> None:
    store.create_schema()  # idempotent
    store._execute("UPDATE store_meta SET value = 99 WHERE name = 'schema_version'")  # type: ignore[attr-defined]
    with pytest.raises(SchemaError, match="schema version is 99"):
        open_store(store_url)
