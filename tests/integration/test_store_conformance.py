"""One conformance suite for every store: each test runs against SQLite and against real MariaDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import dynamo.core.journal as journal_module
from bench.workload import change_records, generate, scaled
from dynamo.core.changeset import Prepared, apply_change_set
from dynamo.core.codec import DELETE, UPDATE, encode
from dynamo.core.documents import parse_inject
from dynamo.core.export import fingerprint
from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta
from dynamo.dataformat import Block, BlockReplica, Dataset, DatasetReplica, File, Group, Partition, Site, SitePartition
from dynamo.errors import ChangeSetError, JournalPruned, SchemaError, StoreConflict, StoreError
from dynamo.store import InventoryStore, JournalRetention, open_store
from dynamo.store.sql import SQLStore

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


def test_an_empty_change_set_changes_nothing(store: InventoryStore) -> None:
    """A write application that changed nothing: no journal row, no new version, and the caller is told."""
    inv = store.load()
    assert apply_change_set(inv, store, [encode(UPDATE, Site("A"))], ChangeMeta(user="alice")) is True
    image_before, entries_before = fingerprint(inv), store.journal_entries()
    prepared = Prepared()
    prepared.extend([])
    for empty in ([], iter([]), prepared):
        assert apply_change_set(inv, store, empty, ChangeMeta(user="bob", title="no-op")) is False
        assert inv.version == store.version() == 1
        assert store.journal_entries() == entries_before
        assert fingerprint(inv) == image_before
    assert apply_change_set(inv, store, [encode(UPDATE, Site("B"))]) is True  # the image still matches the store
    assert inv.version == store.version() == 2


def test_big_change_sets_are_journaled_in_chunks(store: InventoryStore, monkeypatch: Any) -> None:
    monkeypatch.setattr(journal_module, "CHUNK_RECORDS", 3000)
    monkeypatch.setattr(journal_module, "CHUNK_BYTES", 16 * 1024)  # forces further splitting too
    inv = store.load()
    records = [encode(UPDATE, Dataset("/Big/Load/RAW")), encode(UPDATE, Block("b", "/Big/Load/RAW", 20000, 20000))]
    records += [encode(UPDATE, File(f"/store/big/load/{i:06d}.root", "/Big/Load/RAW#b", 1)) for i in range(20000)]
    apply_change_set(inv, store, records)
    assert store.journal_entries()[0].num_records == 20002
    assert isinstance(store, SQLStore)
    chunks = store.query_all("SELECT COUNT(*) FROM journal_chunks")[0][0]
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
    assert isinstance(store, SQLStore)
    store.execute("UPDATE store_meta SET value = 99 WHERE name = 'schema_version'")
    with pytest.raises(SchemaError, match="schema version is 99"):
        open_store(store_url)


def test_an_inventory_without_id_allocator_cannot_commit(store: InventoryStore) -> None:
    inv = Inventory()  # not from store.load(): no ids, so every new row would be id 0
    with pytest.raises(ChangeSetError, match="no id allocator"):
        apply_change_set(inv, store, [encode(UPDATE, Site("A"))])
    assert inv.sites == {} and store.version() == 0 and store.load().sites == {}


# --- cascades, as the store sees them ---------------------------------------------------------

def _cascade_image(store: InventoryStore) -> Inventory:
    """Two sites with quotas in two partitions; dataset D: block b1 (3 files) complete at S1 and
    partly (2 files) at S2, block b2 (2 files) at S1 only. D's replica at S2 holds only b1."""
    inv = store.load()
    objects: list[Any] = [Site("S1"), Site("S2"), Group("G"), Partition("P1"), Partition("P2")]
    objects += [SitePartition(s, p, 10) for s in ("S1", "S2") for p in ("P1", "P2")]
    objects += [Dataset("D"), Block("b1", "D", 6, 3), Block("b2", "D", 30, 2)]
    objects += [File(f"/D/b1/{i}", "D#b1", i) for i in (1, 2, 3)]
    objects += [File(f"/D/b2/{i}", "D#b2", 10 * i) for i in (1, 2)]
    objects += [BlockReplica("D#b1", "S1", "G", True, 1), BlockReplica("D#b2", "S1", None, False, 2),
                BlockReplica("D#b1", "S2", "G", False, 3, ["/D/b1/1", "/D/b1/2"])]
    apply_change_set(inv, store, [encode(UPDATE, o) for o in objects])
    return inv


def _check_block_deleted(fresh: Inventory) -> None:
    dataset = fresh.datasets["D"]
    assert [b.name for b in dataset.blocks] == ["b2"]
    assert fresh.sites["S2"].find_dataset_replica("D") is None  # it held only b1
    replica = fresh.sites["S1"].find_dataset_replica("D")
    assert replica is not None and [r.block_name for r in replica.block_replicas] == ["b2"]
    assert fresh.counts()["files"] == 2


def _check_file_deleted(fresh: Inventory) -> None:
    block = fresh.find_block("D", "b1")
    assert block is not None and block.file_names() == ["/D/b1/2", "/D/b1/3"]
    assert (block.num_files, block.size) == (2, 5)
    partial = block.find_replica("S2")
    assert partial is not None and partial.lfns == ("/D/b1/2",)  # it no longer lists the deleted file
    assert fresh.find_block("D", "b2").files_count() == 2  # type: ignore[union-attr]


def _check_partition_deleted(fresh: Inventory) -> None:
    assert list(fresh.partitions) == ["P2"]
    assert {s.name: sorted(p.name for p in s.partitions) for s in fresh.sites.values()} == {"S1": ["P2"], "S2": ["P2"]}


def _check_sitepartition_deleted(fresh: Inventory) -> None:
    assert sorted(fresh.partitions) == ["P1", "P2"]
    assert {s.name: sorted(p.name for p in s.partitions) for s in fresh.sites.values()} == \
        {"S1": ["P1", "P2"], "S2": ["P2"]}


def _check_last_block_replica_deleted(fresh: Inventory) -> None:
    assert fresh.sites["S2"].find_dataset_replica("D") is None
    assert [r.site_name for r in fresh.datasets["D"].replicas] == ["S1"]
    assert fresh.find_block("D", "b1").find_replica("S2") is None  # type: ignore[union-attr]


CASCADES: dict[str, tuple[list[Any], Any]] = {
    "block": ([encode(DELETE, Block("b1", "D"))], _check_block_deleted),
    "file": ([encode(DELETE, File("/D/b1/1", "D#b1")), encode(UPDATE, Block("b1", "D", 5, 2))],
             _check_file_deleted),
    "partition": ([encode(DELETE, Partition("P1"))], _check_partition_deleted),
    "sitepartition": ([encode(DELETE, SitePartition("S2", "P1"))], _check_sitepartition_deleted),
    "last block replica": ([encode(DELETE, BlockReplica("D#b1", "S2"))], _check_last_block_replica_deleted),
}


@pytest.mark.parametrize("case", list(CASCADES))
def test_delete_cascades_reach_the_store(store: InventoryStore, store_url: str, case: str) -> None:
    inv = _cascade_image(store)
    records, check = CASCADES[case]
    apply_change_set(inv, store, records, ChangeMeta(title=f"delete {case}"))
    check(inv)
    with open_store(store_url) as other:
        fresh = other.load()  # a fresh inventory, from the rows alone
    check(fresh)
    assert fingerprint(fresh) == fingerprint(inv)
    assert fresh.version == inv.version == 2


def test_original_site_and_partition_settings_persist(store: InventoryStore, store_url: str) -> None:
    """filename_mapping, x509proxy, partition conditions and the partition tree survive a reload,
    a change and a delete (site_options / partition_options rows)."""
    inv = store.load()
    mapping = {"gfal2": [[["/store/(.*)", "gsiftp://se.example.org/cms/store/{0}"]]]}
    records = [encode(UPDATE, o) for o in (
        Site("S1", filename_mapping=mapping, x509proxy="/tmp/x509up_u500"), Site("S2"),
        Partition("All"), Partition("Physics", condition='blockreplica.owner in [AnalysisOps, Higgs]', parent="All"),
        Partition("Ops", condition="blockreplica.owner == DataOps", parent="All"))]
    apply_change_set(inv, store, records)
    with open_store(store_url) as other:
        fresh = other.load()
    s1 = fresh.sites["S1"]
    assert s1.x509proxy == "/tmp/x509up_u500" and fresh.sites["S2"].filename_mapping == {}
    assert s1.to_pfn("/store/a/b.root", "gfal2") == "gsiftp://se.example.org/cms/store/a/b.root"
    assert [p.name for p in fresh.partitions["All"].subpartitions or ()] == ["Physics", "Ops"]
    assert fresh.partitions["Ops"].parent is fresh.partitions["All"]
    assert fresh.partitions["Physics"].condition == "blockreplica.owner in [AnalysisOps, Higgs]"
    assert fingerprint(fresh) == fingerprint(inv)
    changes = [encode(UPDATE, Site("S1", x509proxy=None)), encode(UPDATE, Partition("Ops", condition=None)),
               encode(DELETE, Partition("Physics")), encode(DELETE, Site("S2"))]
    apply_change_set(inv, store, changes)
    with open_store(store_url) as other:
        fresh = other.load()
    assert fresh.sites["S1"].x509proxy is None and fresh.sites["S1"].filename_mapping == {}
    # an update carries the whole state: Ops given without a parent leaves All, which has no subpartition left
    assert fresh.partitions["All"].subpartitions is None and "Physics" not in fresh.partitions
    assert fresh.partitions["Ops"].condition is None and fresh.partitions["Ops"].parent_name is None
    assert fingerprint(fresh) == fingerprint(inv)


def test_dataset_replica_rows_follow_block_replica_and_own_changes(store: InventoryStore, store_url: str) -> None:
    """A dataset replica whose block replicas alone changed has only its packed column rewritten;
    one whose own values changed too (in the same change set) is rewritten whole: both reload."""
    inv = _cascade_image(store)
    # block replicas only: a group, a file list, a new replica at a site that has the dataset
    apply_change_set(inv, store, [encode(UPDATE, BlockReplica("D#b1", "S1", None, False, 7)),
                                  encode(UPDATE, BlockReplica("D#b1", "S2", "G", False, 8, ["/D/b1/3"])),
                                  encode(UPDATE, BlockReplica("D#b2", "S2", "G", True, 9))])
    assert fingerprint(open_store(store_url).load()) == fingerprint(inv)
    # the replica's own group and a block replica in one change set, then a file deleted
    # (which changes an incomplete replica's file list)
    apply_change_set(inv, store, [encode(UPDATE, BlockReplica("D#b2", "S1", "G", True, 10)),
                                  encode(UPDATE, DatasetReplica("D", "S1", True, "G"))])
    apply_change_set(inv, store, [encode(DELETE, File("/D/b1/3", "D#b1")),
                                  encode(UPDATE, Block("b1", "D", 3, 2))])
    fresh = open_store(store_url).load()
    assert fingerprint(fresh) == fingerprint(inv)
    replica = fresh.sites["S1"].find_dataset_replica("D")
    assert replica is not None and replica.growing and replica.group_name == "G"


def test_file_tables_of_the_former_format_load_and_are_rewritten(store: InventoryStore, store_url: str) -> None:
    """Stores written before version 2 of the file table hold version-1 rows: they load as they
    are, and a block that a change set touches is written back in version 2."""
    from dynamo.dataformat import filetable

    image = generate(scaled(0.0005), 31)
    store.import_image(image, ChangeMeta(title="import"))
    assert isinstance(store, SQLStore)
    rows = store.query_all("SELECT block_id, files FROM block_files")
    assert rows and all(bytes(files)[0] == 2 for _, files in rows)
    for block_id, files in rows:
        store.execute("UPDATE block_files SET files = %s WHERE block_id = %s",
                      (filetable.pack(filetable.unpack(bytes(files)), version=1), block_id))
    old = open_store(store_url).load()
    assert fingerprint(old) == fingerprint(image)
    dataset = next(iter(old.datasets.values()))
    block = next(iter(dataset.blocks))
    assert block.files == image.datasets[dataset.name].blocks[block.name].files
    lfn = f"/store/new/{block.name}.root"
    apply_change_set(old, store, [encode(UPDATE, File(lfn, block.full_name(), 5, "adler32:0000abcd")),
                                  encode(UPDATE, Block(block.name, dataset.name, block.size + 5,
                                                       block.num_files + 1, block.is_open, block.last_update))])
    rows = store.query_all("SELECT block_id, files FROM block_files")
    versions = {block_id: bytes(files)[0] for block_id, files in rows}
    assert versions.pop(block.id) == 2 and set(versions.values()) == {1}
    fresh = open_store(store_url).load()
    assert fingerprint(fresh) == fingerprint(old)
    found = fresh.datasets[dataset.name].blocks[block.name].find_file(lfn)
    assert found is not None and found.checksum_text == "adler32:0000abcd" and found.size == 5
