"""The inventory: update/clone semantics, cascades, recording."""

from __future__ import annotations

import pytest

from dynamo.core.codec import decode
from dynamo.core.inventory import Inventory
from dynamo.dataformat import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    File,
    Group,
    Partition,
    Site,
    SitePartition,
)
from dynamo.errors import MissingReference, ObjectError, ProtectedObject
from tests.unit.recording import PipeCapture


def build() -> Inventory:
    """Two sites, a group, one dataset with two blocks of two files, replicas at both sites."""
    inv = Inventory()
    inv.update(Site("S1", "h1"))
    inv.update(Site("S2", "h2"))
    inv.update(Group("G"))
    inv.update(Partition("P"))
    inv.update(SitePartition("S1", "P", 100))
    inv.update(Dataset("D", "valid"))
    for b in ("b1", "b2"):
        inv.update(Block(b, "D", 30, 2))
        inv.update(File(f"/D/{b}/1", f"D#{b}", 10))
        inv.update(File(f"/D/{b}/2", f"D#{b}", 20))
        for s in ("S1", "S2"):
            inv.update(BlockReplica(f"D#{b}", s, "G", False, 5))
    return inv


def test_update_adds_a_clone() -> None:
    inv = Inventory()
    site = Site("S", "h")
    live = inv.update(site)
    assert live == site and live is not site
    site.host = "changed"
    assert inv.sites["S"].host == "h"


def test_update_copies_values_onto_the_existing_object() -> None:
    inv = build()
    live = inv.sites["S1"]
    returned = inv.update(Site("S1", "new-host", "mss"))
    assert returned is live and live.host == "new-host" and live.storage_type == "mss"
    assert live.num_dataset_replicas() == 1  # links untouched


def test_null_group_is_always_there_and_protected() -> None:
    inv = Inventory()
    assert inv.groups[None].name is None and inv.null_group.id == 0
    with pytest.raises(ProtectedObject):
        inv.update(Group(None))
    with pytest.raises(ProtectedObject):
        inv.delete(Group(None))


def test_navigation_both_ways() -> None:
    inv = build()
    dataset = inv.datasets["D"]
    assert {b.name for b in dataset.blocks} == {"b1", "b2"}
    assert "b1" in dataset.blocks and dataset.blocks["b1"] in dataset.blocks
    replica = inv.sites["S1"].find_dataset_replica("D")
    assert replica is dataset.find_replica("S1")
    block = dataset.find_block("b1")
    assert {r.site_name for r in block.replicas} == {"S1", "S2"}
    assert inv.sites["S2"].find_block_replica(block).block is block
    assert replica.size() == 60 and replica.is_full()
    assert {f.lfn for f in block.files} == {"/D/b1/1", "/D/b1/2"}
    assert inv.counts() == {"sites": 2, "groups": 1, "partitions": 1, "datasets": 1, "blocks": 2, "files": 4,
                            "datasetreplicas": 2, "blockreplicas": 4}


def test_references_must_resolve() -> None:
    inv = build()
    with pytest.raises(MissingReference, match="dataset 'X' does not exist"):
        inv.update(Block("b", "X"))
    with pytest.raises(MissingReference, match="site 'S9' does not exist"):
        inv.update(BlockReplica("D#b1", "S9"))
    with pytest.raises(MissingReference, match="group 'NoSuch' does not exist"):
        inv.update(DatasetReplica("D", "S1", False, "NoSuch"))
    with pytest.raises(MissingReference, match="block D#zz does not exist"):
        inv.update(File("/x", "D#zz", 1))
    with pytest.raises(MissingReference, match="is not in block"):
        inv.update(BlockReplica("D#b1", "S1", files=["/not/there"]))
    with pytest.raises(ObjectError, match="names no block"):
        inv.update(File("/x"))


def test_delete_by_identifier_only() -> None:
    inv = build()
    removed = inv.delete(Site("S2", "whatever-host"))
    assert removed.name == "S2" and "S2" not in inv.sites
    with pytest.raises(MissingReference):
        inv.delete(Site("S2"))


def test_deleting_a_site_removes_its_replicas() -> None:
    inv = build()
    inv.delete(Site("S1"))
    dataset = inv.datasets["D"]
    assert dataset.find_replica("S1") is None
    assert all(r.site_name == "S2" for b in dataset.blocks for r in b.replicas)


def test_deleting_a_dataset_removes_blocks_files_and_replicas() -> None:
    inv = build()
    inv.delete(Dataset("D"))
    assert "D" not in inv.datasets
    assert inv.sites["S1"].find_dataset_replica("D") is None
    assert inv.counts()["blockreplicas"] == 0


def test_deleting_a_block_keeps_nonempty_dataset_replicas() -> None:
    inv = build()
    inv.delete(Block("b1", "D"))
    replica = inv.sites["S1"].find_dataset_replica("D")
    assert replica is not None and [r.block_name for r in replica.block_replicas] == ["b2"]


def test_empty_dataset_replica_goes_with_its_last_block_replica() -> None:
    inv = build()
    inv.delete(BlockReplica("D#b1", "S1"))
    assert inv.sites["S1"].find_dataset_replica("D") is not None
    inv.delete(BlockReplica("D#b2", "S1"))
    assert inv.sites["S1"].find_dataset_replica("D") is None
    assert inv.datasets["D"].find_replica("S1") is None


def test_deleting_a_group_hands_its_replicas_to_the_null_group() -> None:
    inv = build()
    inv.update(DatasetReplica("D", "S1", True, "G"))
    inv.delete(Group("G"))
    replica = inv.sites["S1"].find_dataset_replica("D")
    assert replica.group is inv.null_group
    assert all(r.group is inv.null_group for r in replica.block_replicas)


def test_deleting_a_partition_removes_its_quotas() -> None:
    inv = build()
    assert inv.sites["S1"].find_partition("P").quota == 100
    inv.delete(Partition("P"))
    assert inv.sites["S1"].partitions == {}


def test_incomplete_replicas_and_file_deletion() -> None:
    inv = build()
    replica = inv.update(BlockReplica("D#b1", "S1", "G", False, 6, ["/D/b1/1"]))
    assert not replica.is_complete() and replica.size == 10 and replica.num_files == 1
    # listing every file makes it complete
    assert inv.update(BlockReplica("D#b1", "S1", "G", False, 6, ["/D/b1/2", "/D/b1/1"])).lfns is None
    inv.update(BlockReplica("D#b1", "S1", "G", False, 6, ["/D/b1/1"]))
    inv.delete(File("/D/b1/2", "D#b1"))
    assert replica.lfns is None  # it now holds every remaining file


def test_deleting_a_listed_file_shrinks_incomplete_replicas() -> None:
    inv = build()
    inv.update(File("/D/b1/3", "D#b1", 5))
    replica = inv.update(BlockReplica("D#b1", "S1", "G", False, 6, ["/D/b1/1", "/D/b1/3"]))
    inv.delete(File("/D/b1/3", "D#b1"))
    assert replica.lfns == ("/D/b1/1",)


def test_block_replica_creates_its_dataset_replica() -> None:
    inv = build()
    inv.update(Site("S3"))
    inv.update(BlockReplica("D#b1", "S3", "G"))
    replica = inv.sites["S3"].find_dataset_replica("D")
    assert replica is not None and replica.group is inv.null_group and not replica.growing


def test_recorder_keeps_call_order_and_full_state() -> None:
    inv = build()
    capture = PipeCapture()
    inv.recorder = capture.recorder
    inv.update(Site("S3", "h3"))
    live = inv.sites["S1"]
    live.host = "edited-in-place"
    inv.update(live)  # recorded even though nothing needs copying
    inv.delete(Block("b2", "D"))
    ops = [(op, obj) for op, obj in map(decode, capture.records())]
    assert [(op, type(o).__name__, o.key) for op, o in ops] == [
        ("update", "Site", ("S3",)), ("update", "Site", ("S1",)), ("delete", "Block", ("D", "b2"))]
    assert ops[1][1].host == "edited-in-place"


def test_read_only_inventory_records_nothing() -> None:
    inv = build()
    assert inv.recorder is None
    inv.update(Site("S3"))
    assert "S3" in inv.sites
