"""The loaded image's packed form: files and block replicas in arenas, objects made on demand,
unpacked for a change and packed again after it (also after a rollback)."""

from __future__ import annotations

import gc
import mmap
import os
import random
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


# --- loaded blocks' ids and sizes beside their file tables (read by packed replicas) -------------

def _assert_tables_true(inv: Inventory) -> None:
    """What readers take from the datasets' tables is what the blocks say, and every replica's
    sizes agree with its objects'."""
    for dataset in inv.datasets.values():
        for block in dataset.blocks:
            assert (block._quiet_id(), block._quiet_size()) == (block.id, block.size), block.full_name()
    for replica in _replicas(inv):
        members = list(replica.block_replicas)
        assert replica.size() == sum(m.size for m in members)
        assert replica.size(physical=False) == sum(m.block.size for m in members)  # type: ignore[union-attr]
        for member in members:
            assert replica.find_block_replica(member.block) == member


def test_the_loader_puts_ids_and_sizes_beside_the_file_tables(image: Inventory) -> None:
    blocks = [b for d in image.datasets.values() for b in d.blocks]
    assert blocks and all(type(b._files) is int for b in blocks)
    _assert_tables_true(image)


def test_block_tables_follow_changes_and_rollbacks(image: Inventory) -> None:
    replica = next(r for r in _replicas(image) if len(r.block_replicas) > 1)
    dataset = image.datasets[replica.dataset_name]
    block = next(iter(replica.block_replicas)).block
    assert not isinstance(block, str)
    # a size change by a change set (a block without files: the counts are its own)
    bare = type(block)("bare", dataset.name, 5, 0, True, 1)
    bare_replica = BlockReplica(f"{dataset.name}#bare", replica.site_name, None, False, 1)
    apply_change_set(image, None, [encode(UPDATE, bare), encode(UPDATE, bare_replica)])
    _assert_tables_true(image)
    apply_change_set(image, None, [encode(UPDATE, type(block)("bare", dataset.name, 7_000, 0, False, 2))])
    _assert_tables_true(image)
    assert replica.size() == sum(m.size for m in replica.block_replicas)
    # refused: the size change and the new block are rolled back, the tables with them
    before = replica.size(physical=False)
    with pytest.raises(ChangeSetError):
        apply_change_set(image, None, [encode(UPDATE, type(block)("bare", dataset.name, 9_000, 0, False, 3)),
                                       encode(UPDATE, type(block)("other", dataset.name, 1, 0, False, 3)),
                                       encode(DELETE, Site("T0_NOWHERE"))])
    _assert_tables_true(image)
    assert replica.size(physical=False) == before
    # a loaded block's size and a file changed, refused, rolled back; then its size in place
    loaded = next(b for b in dataset.blocks if type(b._files) is int)
    names = loaded.file_names()
    first = loaded.find_file(names[0])
    assert first is not None
    with pytest.raises(ChangeSetError):
        apply_change_set(image, None, [
            encode(UPDATE, File(names[0], loaded.full_name(), 1, None)),
            encode(UPDATE, type(block)(loaded.name, dataset.name, loaded.size - first.size + 1, loaded.num_files,
                                       loaded.is_open, loaded.last_update)),
            encode(DELETE, Site("T0_NOWHERE"))])
    _assert_tables_true(image)
    loaded.size += 1
    assert not isinstance(loaded._files, int) and loaded.file_names() == names
    _assert_tables_true(image)
    # an application's edit in place, then the block deleted
    live = dataset.find_block("bare")
    assert live is not None
    live.size = 123
    _assert_tables_true(image)
    apply_change_set(image, None, [encode(DELETE, live)])
    _assert_tables_true(image)


@pytest.mark.parametrize("files_first", [True, False])
def test_blocks_find_their_files_whatever_the_order_of_the_rows(files_first: bool) -> None:
    """A loaded block keeps the index of its file table's offset among its dataset's; the
    indexes hold with the files before or after the blocks and with a dataset's blocks in
    two runs (blocks added to it later have higher ids)."""
    from dynamo.dataformat import filetable
    from dynamo.dataformat.filetable import FileEntry
    from dynamo.store.rows import ImageBuilder

    builder = ImageBuilder()
    builder.datasets([(1, "/A/B/C", "valid", "production", None, 1, 0),
                      (2, "/D/E/F", "valid", "production", None, 1, 0)])
    owner = {1: 1, 2: 2, 3: 1, 4: 1, 5: 2}
    tables = {bid: filetable.pack({f"/store/{bid}/f{i}.root": FileEntry(bid * 10 + i, None, bid * 100 + i)
                                   for i in range(bid)}) for bid in owner if bid != 4}  # block 4: no files
    block_rows = [(bid, did, f"b{bid}", sum(bid * 10 + i for i in range(bid)) if bid != 4 else 0,
                   bid if bid != 4 else 0, 0, 1) for bid, did in owner.items()]
    if files_first:
        builder.block_files(tables.items())
        builder.blocks(block_rows)
    else:
        builder.blocks(block_rows)
        builder.block_files(tables.items())
    inv = builder.finish(0, {})
    for bid, did in owner.items():
        block = inv.datasets["/A/B/C" if did == 1 else "/D/E/F"].blocks[f"b{bid}"]
        if bid == 4:
            assert block._files is None and block.files == ()
            continue
        assert type(block._files) is int
        assert block.file_names() == [f"/store/{bid}/f{i}.root" for i in range(bid)]
        assert block._file_ids() == [bid * 100 + i for i in range(bid)]
    _assert_tables_true(inv)


def test_a_blocks_counts_and_time_share_one_int() -> None:
    import sys

    from dynamo.dataformat import Block
    from dynamo.errors import ObjectError

    top = 2**63 - 1
    block = Block("b", "/A/B/C", 5, top, True, top, 7)
    assert (block.num_files, block.is_open, block.last_update, block.size, block.id) == (top, True, top, 5, 7)
    block.is_open = False
    assert (block.num_files, block.is_open, block.last_update) == (top, False, top)
    block.num_files = 0
    block.last_update = 3
    assert (block.num_files, block.is_open, block.last_update) == (0, False, 3)
    assert block == Block("b", "/A/B/C", 5, 0, False, 3) and repr(block) == "Block('b','/A/B/C',5,0,False,3,7,False)"
    for attr, bad in (("num_files", -1), ("last_update", 2**63), ("is_open", 1), ("last_update", 1.5)):
        with pytest.raises(ObjectError, match=attr):
            setattr(block, attr, bad)
    assert (block.num_files, block.is_open, block.last_update) == (0, False, 3)
    assert sys.getsizeof(block) <= 80  # six slots and the collector's header


def _arena_files() -> list[str]:
    """This process's open descriptors on an arena's memory file."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "dynamo-arena" in target:
            found.append(target)
    return found


def _mapped_files() -> list[str]:
    return [line.split(None, 5)[5] for line in Path("/proc/self/maps").read_text().splitlines()
            if len(line.split(None, 5)) == 6]


def test_the_writer_lays_values_out_in_chunks_and_leaves_no_file_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arena_module, "CHUNK_SIZE", 4 * mmap.PAGESIZE)
    monkeypatch.setattr(arena_module, "_BUFFER", 3 * mmap.PAGESIZE)  # values past the buffer: flushed, or written
    gc.collect()
    before = len(_arena_files())  # those of other images alive in this process
    arena = Arena({})
    writer = ArenaWriter(arena)
    values = [bytes([i % 251]) * (i * 97 % 3000) for i in range(200)] + [b"x" * (9 * mmap.PAGESIZE)]
    offsets = [writer.add(v) for v in values[:100]]
    writer.close()  # a table ends: the next value starts a chunk of its own
    offsets += [writer.add(v) for v in values[100:150]]
    offsets += list(writer.add_many(values[150:180]))  # a batch that fits starts the next chunk when needed
    keys: list[int] = []
    keyed: list[int] = []
    assert writer.add_keyed(enumerate(values[180:]), keys, keyed, len) == sum(map(len, values[180:]))
    offsets += keyed
    assert keys == list(range(len(values) - 180))
    writer.release()
    assert len(_arena_files()) - before == len(arena.chunks)  # each mapping's own descriptor, and no other
    assert len(arena.chunks) > 3 and arena.chunks[0] is not arena.chunks[1]
    for value, offset in zip(values, offsets, strict=True):
        buf, at, end = arena.span(offset)
        assert buf[at:end] == value
    # sealed chunks hold what was written, and no more (the large value has a chunk of its own)
    assert arena.nbytes() == sum(4 + len(v) for v in values)
    assert max(map(len, arena.chunks)) == 4 + 9 * mmap.PAGESIZE


def test_chunks_are_read_only_mappings_of_a_memory_file() -> None:
    """Sealed chunks cannot be written, by anyone; they are file mappings (a fork copies none of their
    page-table entries, and maps the pages again when it reads them)."""
    arena = Arena({})
    writer = ArenaWriter(arena)
    offset = writer.add(b"v" * 100)
    writer.release()
    chunk = arena.chunks[0]
    with pytest.raises(TypeError):
        chunk[0:1] = b"x"
    assert any("dynamo-arena" in name for name in _mapped_files())
    buf, at, end = arena.span(offset)
    assert buf[at:end] == b"v" * 100
    del buf
    arena.chunks.clear()
    chunk.close()


def test_a_writer_dropped_unreleased_closes_its_file() -> None:
    gc.collect()
    before = len(_arena_files())
    writer = ArenaWriter(Arena({}))
    writer.add(b"v")
    assert len(_arena_files()) == before + 1
    del writer
    assert len(_arena_files()) == before


def test_a_failed_load_leaves_no_arena_file_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store: Any = open_store(f"sqlite:///{tmp_path}/s.db")
    store.import_image(generate(scaled(0.0002), 5), ChangeMeta(title="import"))

    def fail(self: ImageBuilder, rows: Any) -> None:
        next(iter(rows))
        raise StoreError("a row that cannot be built")

    monkeypatch.setattr(ImageBuilder, "dataset_replicas", fail)
    gc.collect()
    before = len(_arena_files())
    with pytest.raises(StoreError, match="cannot be built"):
        store.load()
    gc.collect()  # the failed load's chunks (its file tables), once nothing holds them
    assert len(_arena_files()) == before
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
    assert built.counts()["blocks"] == len(block_rows)
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


# --- block replicas changed in their packed tables (replicatable.edit) --------------------------

def _tables(inv: Inventory) -> dict[tuple[str, str], Any]:
    return {(r.dataset_name, r.site_name): r._packed for r in _replicas(inv)}


def test_a_change_set_edits_the_packed_tables_as_unpacking_would(image: Inventory) -> None:
    """A mixed change set (bench.workload.MIX) on a loaded image changes block replicas in their packed
    tables, with no BlockReplica object kept; the image is the one the unpacking route makes, and every
    table is what packing its block replicas anew gives."""
    from bench.workload import change_records
    records = change_records(image, 400, 11)
    assert {r[1] for r in records} >= {"blockreplica", "block", "dataset", "file"}
    assert any(r[0] == DELETE for r in records)
    other = generate(scaled(0.0002), 3)
    for replica in _replicas(other):  # the route of unpacking every touched dataset replica
        replica._materialize()
    apply_change_set(image, None, records)
    apply_change_set(other, None, records)
    assert fingerprint(image) == fingerprint(other)
    edited = 0
    for replica in _replicas(image):
        assert replica._block_replicas is None and replica._packed is not None
        edited += isinstance(replica._packed, bytes)
        _assert_packs_as_its_objects(replica)
    assert edited > 50


def _assert_packs_as_its_objects(replica: DatasetReplica) -> None:
    """The table holds what packing its block replicas anew gives (a loaded table keeps an incomplete
    replica's file ids in stored order, packing sorts them by name: compared as sets)."""
    row, fresh = replica._packed_row(), pack_block_replicas(list(replica.block_replicas))
    assert replicatable.columns(row)[:2] == replicatable.columns(fresh)[:2]
    lay, again = replicatable.layout(row), replicatable.layout(fresh)
    for index in range(lay.n):
        if row[lay.flags_at + index] & replicatable.FLAG_INCOMPLETE:
            assert sorted(replicatable.file_ids_of(row, lay, index)) == \
                sorted(replicatable.file_ids_of(fresh, again, index))


def test_a_refused_change_set_restores_the_very_tables(image: Inventory) -> None:
    from bench.workload import change_records
    before, tables = fingerprint(image), _tables(image)
    records = change_records(image, 400, 12) + [encode(DELETE, Site("T0_NOWHERE"))]
    with pytest.raises(ChangeSetError):
        apply_change_set(image, None, records)
    assert fingerprint(image) == before
    after = _tables(image)
    assert after.keys() == tables.keys() and all(after[k] is tables[k] for k in tables)
    assert all(r._block_replicas is None for r in _replicas(image))


def test_the_last_block_replica_takes_its_dataset_replica_along(image: Inventory) -> None:
    replica = next(r for r in _replicas(image) if len(r.block_replicas) > 1)
    site = image.sites[replica.site_name]
    members = list(replica.block_replicas)
    deletes = [encode(DELETE, m) for m in members]
    before = fingerprint(image)
    with pytest.raises(ChangeSetError):
        apply_change_set(image, None, deletes + [encode(DELETE, Site("T0_NOWHERE"))])
    assert fingerprint(image) == before and site.find_dataset_replica(replica.dataset_name) is replica
    apply_change_set(image, None, deletes[:-1])
    assert len(replica.block_replicas) == 1 and isinstance(replica._packed, bytes)
    apply_change_set(image, None, deletes[-1:])
    assert site.find_dataset_replica(replica.dataset_name) is None and replica._packed is None
    # a new one, from its first block replica (its table starts empty)
    first = members[0]
    apply_change_set(image, None, [encode(UPDATE, BlockReplica(first.block_full_name, site.name, "group01", True, 3,
                                                               first.lfns))])
    made = site.find_dataset_replica(replica.dataset_name)
    assert made is not None and made is not replica and isinstance(made._packed, bytes)
    assert list(made.block_replicas) == [BlockReplica(first.block_full_name, site.name, "group01", True, 3, first.lfns)]


def test_packed_edits_and_an_unpacking_in_one_change_set(image: Inventory) -> None:
    """A file deleted from a block with an incomplete replica unpacks that dataset replica (the file's
    name must still resolve); edits to its packed table before that stay, and all is undone together."""
    replica = next(r for r in _replicas(image) if any(m.lfns for m in r.block_replicas)
                   and len(r.block_replicas) > 1)
    member = next(m for m in replica.block_replicas if m.lfns)
    other = next(m for m in replica.block_replicas if m.block_name != member.block_name)
    block = member.block
    assert not isinstance(block, str) and member.lfns
    lfn = member.lfns[0]
    entry = block.find_file(lfn)
    assert entry is not None
    records = [encode(UPDATE, BlockReplica(other.block_full_name, other.site_name, "group02", True, 77, other.lfns)),
               encode(DELETE, File(lfn, block.full_name())),
               encode(UPDATE, type(block)(block.name, block.dataset_name, block.size - entry.size,
                                          block.num_files - 1, block.is_open, block.last_update))]
    before, table = fingerprint(image), replica._packed
    with pytest.raises(ChangeSetError):
        apply_change_set(image, None, records + [encode(DELETE, Site("T0_NOWHERE"))])
    assert fingerprint(image) == before and replica._packed is table and replica._block_replicas is None
    apply_change_set(image, None, records)
    assert isinstance(replica._packed, bytes) and replica._block_replicas is None
    changed = replica.find_block_replica(other.block_name)
    assert changed is not None
    assert (changed.group_name, changed.is_custodial, changed.last_update) == ("group02", True, 77)
    after = replica.find_block_replica(block)
    assert after is not None and (after.lfns is None or lfn not in after.lfns)
    _assert_packs_as_its_objects(replica)


def test_an_applications_new_files_in_a_replica_read_back_whole(image: Inventory) -> None:
    """An application's copy has no id allocator: files it adds have id 0, which a packed table cannot
    tell apart; a replica listing them stays an object, and reads back the files it was given."""
    replica = next(r for r in _replicas(image) if len(r.block_replicas) > 1)
    member = next(iter(replica.block_replicas))
    block = member.block
    assert not isinstance(block, str)
    image.ids = None
    new = [f"{block.dataset_name}/app/{n}.root" for n in range(3)]
    for lfn in new:
        image.update(File(lfn, block.full_name(), 1))
    files = tuple(sorted([*new, block.file_names()[0]]))
    returned = image.update(BlockReplica(block.full_name(), replica.site_name, None, False, 5, files))
    assert returned.lfns == files
    found = block.find_replica(replica.site_name)
    assert found is not None and found.lfns == files and found.file_ids is not None
    assert sorted(f.lfn for f in found.files()) == sorted(files)
