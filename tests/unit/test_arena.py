"""The loaded image's packed form: files and block replicas in arenas, objects made on demand,
unpacked for a change and packed again after it (also after a rollback)."""

from __future__ import annotations

import mmap
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from bench.workload import generate, scaled
from dynamo.core.changeset import apply_change_set
from dynamo.core.codec import DELETE, UPDATE, encode
from dynamo.core.export import fingerprint
from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta
from dynamo.dataformat import BlockReplica, DatasetReplica, File, Site, replicatable
from dynamo.dataformat import arena as arena_module
from dynamo.dataformat.arena import Arena, ArenaWriter
from dynamo.errors import ChangeSetError, StoreError
from dynamo.store import open_store
from dynamo.store.rows import (
    ImageBuilder,
    block_files_row,
    block_row,
    dataset_replica_row,
    dataset_row,
    group_row,
    pack_block_replicas,
    site_row,
)


@pytest.fixture
def image() -> Inventory:
    return generate(scaled(0.0002), 3)


def _replicas(inv: Inventory) -> list[DatasetReplica]:
    return [r for site in inv.sites.values() for r in site.dataset_replicas()]


def test_a_loaded_image_is_packed(image: Inventory) -> None:
    replicas = _replicas(image)
    assert replicas and all(type(r._packed) is int and r._block_replicas is None for r in replicas)
    blocks = [b for d in image.datasets.values() for b in d.blocks]
    assert blocks and all(type(b._files) is int for b in blocks)
    assert len(image.arena.chunks) >= 1


def test_packed_replicas_read_like_objects(image: Inventory) -> None:
    total = 0
    for replica in _replicas(image):
        members = list(replica.block_replicas)
        assert len(members) == len(replica.block_replicas) == len({m.block_name for m in members})
        total += len(members)
        for member in members:
            block = member.block
            assert not isinstance(block, str)
            assert replica.find_block_replica(block) == member
            assert member in replica.block_replicas and member.block_name in replica.block_replicas
            assert block.find_replica(replica.site_name) == member
            assert member in block.replicas
            if member.lfns is not None:
                assert set(member.lfns) <= set(block.file_names()) and member.file_ids is not None
        assert replica.size() == sum(m.size for m in members)
        assert replica.is_complete() == all(m.is_complete() for m in members)
        # the store's row is the packed value as loaded (file ids in stored order), unchanged by reading
        row = dataset_replica_row(replica)[4]
        assert replicatable.columns(row)[:2] == replicatable.columns(pack_block_replicas(members))[:2]
        assert type(replica._packed) is int
    assert total == image.counts()["blockreplicas"] > 0


def test_a_change_unpacks_and_packs_again(image: Inventory) -> None:
    replica = next(r for r in _replicas(image) if r.group_name is None)
    member = next(iter(replica.block_replicas))
    block = member.block
    assert not isinstance(block, str)
    changed = BlockReplica(block.full_name(), member.site_name, "group01", not member.is_custodial, 7, member.lfns)
    apply_change_set(image, None, [encode(UPDATE, changed)])
    assert isinstance(replica._packed, bytes) and replica._block_replicas is None
    found = replica.find_block_replica(block)
    assert found is not None and (found.group_name, found.is_custodial, found.last_update) == \
        ("group01", not member.is_custodial, 7)


def test_a_refused_change_set_leaves_the_image_as_it_was(image: Inventory) -> None:
    before = fingerprint(image)
    replica = _replicas(image)[0]
    member = next(iter(replica.block_replicas))
    block = member.block
    assert not isinstance(block, str)
    records = [encode(DELETE, member), encode(UPDATE, BlockReplica(block.full_name(), member.site_name, None, True, 9)),
               encode(DELETE, Site("T0_NOWHERE"))]
    with pytest.raises(ChangeSetError):
        apply_change_set(image, None, records)
    assert fingerprint(image) == before
    assert type(replica._packed) is int or isinstance(replica._packed, bytes)
    assert replica._block_replicas is None


def test_deleting_a_file_updates_the_incomplete_replicas_that_held_it(image: Inventory) -> None:
    member = next(m for r in _replicas(image) for m in r.block_replicas if m.lfns)
    block = member.block
    assert not isinstance(block, str) and member.lfns
    lfn = member.lfns[0]
    entry = block.find_file(lfn)
    assert entry is not None
    records = [encode(DELETE, File(lfn, block.full_name())),
               encode(UPDATE, type(block)(block.name, block.dataset_name, block.size - entry.size,
                                          block.num_files - 1, block.is_open, block.last_update))]
    apply_change_set(image, None, records)
    after = block.find_replica(member.site_name)
    assert after is not None and (after.lfns is None or lfn not in after.lfns)
    assert lfn not in block.file_names()


def _arena_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dynamo-arena"]


def test_the_writer_faults_chunks_in_ahead_and_leaves_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arena_module, "CHUNK_SIZE", 4 * mmap.PAGESIZE)
    arena = Arena({})
    writer = ArenaWriter(arena, prefault=True)
    values = [bytes([i % 251]) * (i * 97 % 3000) for i in range(200)] + [b"x" * (9 * mmap.PAGESIZE)]
    offsets = [writer.add(v) for v in values[:100]]
    writer.close()  # a table ends: the next value starts a chunk of its own
    offsets += [writer.add(v) for v in values[100:]]
    writer.release()
    assert not _arena_threads()
    assert len(arena.chunks) > 3 and arena.chunks[0] is not arena.chunks[1]
    for value, offset in zip(values, offsets, strict=True):
        buf, at, end = arena.span(offset)
        assert buf[at:end] == value
    # sealed chunks are cut to what was written (the large value has a chunk of its own)
    assert arena.nbytes() == sum(4 + len(v) for v in values)


def test_a_failed_load_leaves_no_arena_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store: Any = open_store(f"sqlite:///{tmp_path}/s.db")
    store.import_image(generate(scaled(0.0002), 5), ChangeMeta(title="import"))

    def fail(self: ImageBuilder, rows: Any) -> None:
        next(iter(rows))
        raise StoreError("a row that cannot be built")

    monkeypatch.setattr(ImageBuilder, "dataset_replicas", fail)
    with pytest.raises(StoreError, match="cannot be built"):
        store.load()
    assert not _arena_threads()
    store.close()


def _rows_of(image: Inventory) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    blocks = sorted((b for d in image.datasets.values() for b in d.blocks), key=lambda b: b.id)
    block_rows = [block_row(b) for b in blocks]
    file_rows = [row for row in map(block_files_row, blocks) if row is not None]
    return block_rows, file_rows


def _build(image: Inventory, blocks_first: bool, file_rows: list[tuple[Any, ...]],
           block_rows: list[tuple[Any, ...]]) -> Inventory:
    builder = ImageBuilder()
    builder.groups(group_row(g) for g in image.groups.values() if g.name is not None)
    builder.sites(site_row(s) for s in image.sites.values())
    builder.datasets(sorted((dataset_row(d) for d in image.datasets.values()), key=lambda r: r[0]))
    if blocks_first:
        builder.blocks(block_rows)
        builder.block_files(file_rows)
    else:
        builder.block_files(file_rows)
        builder.blocks(block_rows)
    return builder.finish(1, {})


def _files(image: Inventory) -> dict[tuple[str, str], list[str]]:
    return {(d.name, b.name): b.file_names() for d in image.datasets.values() for b in d.blocks}


@pytest.mark.parametrize("order", ["files first", "files first, shuffled", "blocks first"])
def test_blocks_get_their_files_whatever_the_order(order: str) -> None:
    image = generate(scaled(0.0003), 6)
    block_rows, file_rows = _rows_of(image)
    # a block without files, between blocks with files
    empty = block_rows[len(block_rows) // 2]
    file_rows = [r for r in file_rows if r[0] != empty[0]]
    if order == "files first, shuffled":
        random.Random(1).shuffle(file_rows)
    built = _build(image, order == "blocks first", file_rows, block_rows)
    expected = _files(image)
    expected[next((d.name, b.name) for d in image.datasets.values() for b in d.blocks if b.id == empty[0])] = []
    assert _files(built) == expected
    assert built.counts()["blocks"] == len(block_rows) and not _arena_threads()
    assert built.ids is not None and built.ids.allocate("block") == max(r[0] for r in block_rows) + 1


def test_a_file_table_without_its_block_is_skipped() -> None:
    image = generate(scaled(0.0002), 7)
    block_rows, file_rows = _rows_of(image)
    orphan = block_rows[3]
    built = _build(image, False, file_rows, [r for r in block_rows if r is not orphan])
    expected = _files(image)
    del expected[next((d.name, b.name) for d in image.datasets.values() for b in d.blocks if b.id == orphan[0])]
    assert _files(built) == expected


def test_blocks_out_of_id_order_after_their_files_are_refused() -> None:
    image = generate(scaled(0.0002), 8)
    block_rows, file_rows = _rows_of(image)
    block_rows[1], block_rows[2] = block_rows[2], block_rows[1]
    with pytest.raises(StoreError, match="not in id order"):
        _build(image, False, file_rows, block_rows)
