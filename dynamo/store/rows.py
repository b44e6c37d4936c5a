"""Rows: how image objects map to table rows and back, for every SQL store.

Table shapes (DDL in ``schema/``) follow performance.md: one row per object
costs ~3-4 us per row through PyMySQL, so the two populations that exist by
the million are packed:

* ``block_files``: one row per block holding the block's packed file table
  (``dataformat.filetable``), the same bytes the image keeps;
* ``dataset_replicas``: one row per dataset replica whose ``block_replicas``
  column packs that replica's block replicas (layout below).

Everything else is one row per object. Loading W10 thus reads ~2.7 M rows
(plus 1 M ``block_files`` rows, read by a scan of their own rather than a join)
instead of ~16 M.

The block-replica blob layout is in ``dataformat.replicatable``: the image keeps
the very same blob, so loading a dataset replica appends its column to the
image's arena (``dataformat.arena``) without parsing it; so are blocks' files.
"""

from __future__ import annotations

import collections
import itertools
import json
import operator
import struct
from array import array
from typing import Any, Callable, Iterable, Iterator, Sequence

from dynamo.core.ids import IdAllocator
from dynamo.core.inventory import Inventory
from dynamo.dataformat import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    DatasetStatus,
    DataType,
    Group,
    OwnershipLevel,
    Partition,
    Site,
    SitePartition,
    SiteStatus,
    StorageType,
    filetable,
    replicatable,
)
from dynamo.dataformat.arena import ArenaWriter
from dynamo.errors import StoreError
from dynamo.store.filesreader import ReadBlocks, ReadFiles, ReadReplicas

BR_VERSION = replicatable.VERSION
_BR_HEAD = replicatable.HEAD

COLUMNS: dict[str, tuple[str, ...]] = {
    "owner_groups": ("id", "name", "olevel"),
    "sites": ("id", "name", "host", "storage_type", "backend", "status"),
    "partitions": ("id", "name"),
    "site_partitions": ("site_id", "partition_id", "quota"),
    "site_options": ("site_id", "filename_mapping", "x509proxy"),
    "partition_options": ("partition_id", "cond", "parent_id"),
    "datasets": ("id", "name", "status", "data_type", "software_version", "last_update", "is_open"),
    "blocks": ("id", "dataset_id", "name", "size", "num_files", "is_open", "last_update"),
    "block_files": ("block_id", "files"),
    "dataset_replicas": ("dataset_id", "site_id", "growing", "group_id", "block_replicas"),
}
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "owner_groups": ("id",),
    "sites": ("id",),
    "partitions": ("id",),
    "site_partitions": ("site_id", "partition_id"),
    "site_options": ("site_id",),
    "partition_options": ("partition_id",),
    "datasets": ("id",),
    "blocks": ("id",),
    "block_files": ("block_id",),
    "dataset_replicas": ("dataset_id", "site_id"),
}
# transaction table name -> SQL table name
TABLE_OF = {
    "groups": "owner_groups", "sites": "sites", "partitions": "partitions",
    "site_partitions": "site_partitions", "datasets": "datasets", "blocks": "blocks",
    "block_files": "block_files", "dataset_replicas": "dataset_replicas",
    "site_options": "site_options", "partition_options": "partition_options",
}
# tables written from another transaction table's objects (one row per site / partition)
WRITTEN_WITH = {"site_options": "sites", "partition_options": "partitions"}
# parents before children, for inserts
WRITE_ORDER = ("groups", "sites", "site_options", "partitions", "partition_options", "site_partitions", "datasets",
               "blocks", "block_files",
               "dataset_replicas")

_SITE_STATUS = {m.value: m for m in SiteStatus}
_STORAGE_TYPE = {m.value: m for m in StorageType}
_DATASET_STATUS = {m.value: m for m in DatasetStatus}
_DATA_TYPE = {m.value: m for m in DataType}
_OLEVEL = {m.value: m for m in OwnershipLevel}


# ---------------------------------------------------------------------------
# objects -> rows
# ---------------------------------------------------------------------------

def group_row(g: Group) -> tuple[Any, ...]:
    return (g.id, g.name, g.olevel.value)


def site_row(s: Site) -> tuple[Any, ...]:
    return (s.id, s.name, s.host, s.storage_type.value, s.backend, s.status.value)


def partition_row(p: Partition) -> tuple[Any, ...]:
    return (p.id, p.name)


def site_options_row(s: Site) -> tuple[Any, ...]:
    return (s.id, json.dumps(s.filename_mapping_chains()), s.x509proxy)


def partition_options_row(p: Partition) -> tuple[Any, ...]:
    parent = p.parent
    return (p.id, p.condition, parent.id if isinstance(parent, Partition) else None)


def site_partition_row(sp: SitePartition) -> tuple[Any, ...]:
    site, partition = sp.site, sp.partition
    assert isinstance(site, Site) and isinstance(partition, Partition)
    return (site.id, partition.id, sp.own_quota)


def dataset_row(d: Dataset) -> tuple[Any, ...]:
    return (d.id, d.name, d.status.value, d.data_type.value, d.software_version, d.last_update, int(d.is_open))


def block_row(b: Block) -> tuple[Any, ...]:
    dataset = b.dataset
    assert isinstance(dataset, Dataset)
    return (b.id, dataset.id, b.name, b.size, b.num_files, int(b.is_open), b.last_update)


def block_files_row(b: Block) -> tuple[Any, ...] | None:
    """None when the block has no files (its row must be deleted)."""
    files = b._packed_files()
    return None if files is None else (b.id, files)


def pack_block_replicas(replicas: Iterable[BlockReplica]) -> bytes:
    return replicatable.pack(replicas)


def dataset_replica_row(r: DatasetReplica) -> tuple[Any, ...]:
    dataset, site, group = r.dataset, r.site, r.group
    assert isinstance(dataset, Dataset) and isinstance(site, Site) and isinstance(group, Group)
    return (dataset.id, site.id, int(r.growing), group.id or None, r._packed_row())


ROW_OF = {
    "groups": group_row, "sites": site_row, "partitions": partition_row,
    "site_options": site_options_row, "partition_options": partition_options_row,
    "site_partitions": site_partition_row, "datasets": dataset_row, "blocks": block_row,
    "block_files": block_files_row, "dataset_replicas": dataset_replica_row,
}


def image_rows(inventory: Inventory) -> dict[str, Iterable[tuple[Any, ...]]]:
    """Every row of an image, per transaction table name (generators)."""
    def blocks() -> Iterable[Block]:
        for dataset in inventory.datasets.values():
            if dataset._blocks:
                yield from dataset._blocks.values()

    def replicas() -> Iterable[DatasetReplica]:
        for site in inventory.sites.values():
            yield from site.dataset_replicas()

    def site_partitions() -> Iterable[SitePartition]:
        for site in inventory.sites.values():
            if site._partitions:
                yield from site._partitions.values()

    def files() -> Iterable[tuple[Any, ...]]:
        for block in blocks():
            row = block_files_row(block)
            if row is not None:
                yield row

    return {
        "groups": (group_row(g) for g in inventory.groups.values() if g.name is not None),
        "sites": (site_row(s) for s in inventory.sites.values()),
        "partitions": (partition_row(p) for p in inventory.partitions.values()),
        "site_options": (site_options_row(s) for s in inventory.sites.values()),
        "partition_options": (partition_options_row(p) for p in inventory.partitions.values()),
        "site_partitions": (site_partition_row(sp) for sp in site_partitions()),
        "datasets": (dataset_row(d) for d in inventory.datasets.values()),
        "blocks": (block_row(b) for b in blocks()),
        "block_files": files(),
        "dataset_replicas": (dataset_replica_row(r) for r in replicas()),
    }


# ---------------------------------------------------------------------------
# rows -> image
# ---------------------------------------------------------------------------

_NO_ID = 1 << 63  # greater than any block id


def _as_list(by_id: dict[int, Any]) -> list[Any]:
    """Index by id with a list: faster than a dict in the hot loop, and ids are dense."""
    size = max(by_id, default=0) + 1
    if size > 4 * len(by_id) + 1024:  # sparse ids: a list would waste memory
        return by_id  # type: ignore[return-value]
    table: list[Any] = [None] * size
    for key, value in by_id.items():
        table[key] = value
    return table


_FIRST = operator.itemgetter(0)
_NAME = operator.attrgetter("_name")
_U32 = struct.Struct("<I")


def _set_all(objects: list[Any], name: str, values: Iterable[Any]) -> None:
    """``setattr(o, name, v)`` for each object and value, in a C loop."""
    collections.deque(map(setattr, objects, itertools.repeat(name), values), 0)


def _slices(starts: list[int], ends: list[int], scale: int = 1) -> Iterator[slice]:
    """``slice(start, end)`` of each run (times ``scale``), made in a C loop."""
    if scale != 1:
        return map(slice, map(scale.__mul__, starts), map(scale.__mul__, ends))
    return map(slice, starts, ends)


def _fresh(objects: list[Any], name: str) -> bool:
    """Each object once in ``objects``, and its attribute ``name`` None: runs of them can be given their
    values at once (``_set_all``), nothing to add to."""
    return (len(set(map(id, objects))) == len(objects)
            and all(map(operator.is_, map(operator.attrgetter(name), objects), itertools.repeat(None))))


def _add_runs(owners: list[Any], name: str, keys: list[Any], values: list[Any], starts: list[int],
              ends: list[int]) -> None:
    """For each run ``[start, end)``: its keys and values into the dict attribute ``name`` of its owner
    (``owners[start]``), made for it when it has none yet."""
    for start, end in zip(starts, ends, strict=True):
        owner = owners[start]
        pairs = zip(keys[start:end], values[start:end], strict=True)
        current = getattr(owner, name)
        if current is None:
            setattr(owner, name, dict(pairs))
        else:
            current.update(pairs)


def _int64s(values: Sequence[int]) -> array[int]:
    """An int64 array of ``values`` (a memoryview of int64s: copied, no int made)."""
    column = array("q")
    if isinstance(values, memoryview):
        column.frombytes(values.cast("B"))
    else:
        column.extend(values)
    return column


class _OffsetRuns:
    """For each loaded block with files: the arena offset of its file table, its id and its size
    (``Dataset._file_offsets``, see ``Block._span``), gathered in one flat array a dataset at a
    time, then packed into each dataset's table, one after the other. A block keeps its index
    there (``Block._files``: a small int, shared by every block) rather than an int of its own,
    and readers take its id and size from there too: a forked reader then writes the reference
    counts of none of the block's ints (they cost ~130 bytes a block in pages copied)."""

    __slots__ = ("flat", "_runs", "_counts", "_current")

    def __init__(self) -> None:
        self.flat: array[int] = array("q")
        self._runs: list[tuple[Any, int, int]] = []  # (dataset, start, end) in flat
        self._counts: dict[int, int] = {}  # id(dataset) -> offsets gathered
        self._current: tuple[Any, int] | None = None

    def open_run(self, dataset: Any) -> int:
        """Start ``dataset``'s next blocks; the index of the first (then one more each, as each
        appends its offset, id and size to ``flat``). A dataset met again (its blocks in more
        than one run) goes on with its numbering."""
        self.close_run()
        count = self._counts.get(id(dataset))
        if count is None:
            count = len(dataset._file_offsets or b"") // 24
        self._current = (dataset, len(self.flat) // 3)
        return count

    def close_run(self) -> None:
        current = self._current
        if current is not None:
            dataset, start = current
            end = len(self.flat) // 3
            if end > start:
                self._runs.append((dataset, start, end))
                self._counts[id(dataset)] = self._counts.get(id(dataset), 0) + end - start
            self._current = None

    def seal(self) -> None:
        """Each dataset's ``_file_offsets``, its runs one after the other."""
        self.close_run()
        view = memoryview(self.flat)
        for dataset, start, end in self._runs:
            table = view[3 * start:3 * end].tobytes()
            dataset._file_offsets = dataset._file_offsets + table if dataset._file_offsets else table
        view.release()
        self.flat = array("q")
        self._runs = []
        self._counts = {}


class _Replicas:
    """The dataset replicas loaded, in row order (``ImageBuilder.dataset_replicas``): linked to their
    datasets at the end, a dataset at a time (``link``)."""

    __slots__ = ("dataset_ids", "site_names", "replicas", "offsets")

    def __init__(self) -> None:
        self.dataset_ids: array[int] = array("q")
        self.site_names: list[str] = []
        self.replicas: list[DatasetReplica] = []
        self.offsets: array[int] = array("q")  # arena offset of each one's table, -1: none

    def link(self, datasets_by_id: dict[int, Dataset]) -> None:
        """Each dataset's ``_replicas`` (site name -> replica, in row order), ``_replica_offsets`` (its
        replicas' tables, in row order) and each replica's ``_packed`` (its index there, None: no table)."""
        ids = self.dataset_ids
        n = len(ids)
        if not n:
            return
        order = sorted(range(n), key=ids.__getitem__)  # stable: a dataset's replicas stay in row order
        dataset_ids = array("q", map(ids.__getitem__, order))
        names = list(map(self.site_names.__getitem__, order))
        replicas = list(map(self.replicas.__getitem__, order))
        offsets = array("q", map(self.offsets.__getitem__, order))
        self.dataset_ids, self.site_names, self.replicas, self.offsets = array("q"), [], [], array("q")
        starts = [0, *itertools.compress(range(1, n), map(operator.ne, dataset_ids[1:], dataset_ids[:-1]))]
        ends = [*starts[1:], n]
        datasets = list(map(datasets_by_id.__getitem__, map(dataset_ids.__getitem__, starts)))
        if min(offsets) >= 0 and _fresh(datasets, "_replicas"):  # the load's case: C loops over the runs
            _set_all(datasets, "_replicas", map(dict, map(zip, map(names.__getitem__, _slices(starts, ends)),
                                                          map(replicas.__getitem__, _slices(starts, ends)))))
            table = offsets.tobytes()
            _set_all(datasets, "_replica_offsets", map(table.__getitem__, _slices(starts, ends, 8)))
            _set_all(replicas, "_packed", itertools.chain.from_iterable(map(range, map(operator.sub, ends, starts))))
            return
        indexes: list[Iterable[int | None]] = []
        for start, end in zip(starts, ends, strict=True):
            dataset = datasets_by_id[dataset_ids[start]]
            members = dict(zip(names[start:end], replicas[start:end], strict=True))
            if dataset._replicas is None:
                dataset._replicas = members
            else:
                dataset._replicas.update(members)
            run = offsets[start:end]
            if -1 not in run:
                indexes.append(range(end - start))
            else:
                count = itertools.count()
                indexes.append([None if offset < 0 else next(count) for offset in run])
                run = array("q", [offset for offset in run if offset >= 0])
            if run:
                dataset._replica_offsets = run.tobytes()
        _set_all(replicas, "_packed", itertools.chain.from_iterable(indexes))


class ImageBuilder:
    """Builds an Inventory from rows streamed in ``WRITE_ORDER`` (except that the store
    reads each block's packed files, ``block_files``, before ``blocks``; either order works).

    This is the start-up hot path: objects are made through the unchecked
    ``_make`` factories and linked directly (values were validated when they
    were written). Call with the garbage collector disabled. Packed values
    (files, block replicas) are appended to the image's arena as they come.
    """

    def __init__(self) -> None:
        self.inventory = Inventory()
        self.arena = self.inventory.arena
        self._writer = ArenaWriter(self.arena)
        self.groups_by_id: dict[int, Group] = {0: self.inventory.null_group}
        self.sites_by_id: dict[int, Site] = {}
        self.partitions_by_id: dict[int, Partition] = {}
        self.datasets_by_id: dict[int, Dataset] = {}
        # blocks by id: only when blocks come before their files (files first, the store's order,
        # needs no such dict: 1 M entries at W10, built only to be thrown away)
        self.blocks_by_id: dict[int, Block] = {}
        self.max_block_id = 0
        # files read before their blocks: block ids (ascending, as both tables are read in primary
        # key order) and offsets, joined with the blocks as they come (see blocks())
        # (int64 arrays: no int object each, which would stay among the image's objects: RSS +0.2 GB at W10)
        self._pending_ids: array[int] = array("q")
        self._pending_offsets: array[int] = array("q")
        self._pending_sorted = True
        self._files_read = False
        # the blocks of blocks_columns until files_read: (blocks, ids, sizes, starts of the runs of one
        # dataset's blocks, the runs' datasets)
        self._read_blocks: tuple[list[Block], array[int], array[int], list[int], list[Dataset]] | None = None
        # the arena offsets of each dataset's blocks' file tables (``Dataset._file_offsets``)
        self._file_offsets = _OffsetRuns()
        self.max_ids = {"site": 0, "group": 0, "partition": 0, "dataset": 0, "block": 0, "file": 0}
        # counted while building, so that nobody walks the image for them (Inventory.counts() does)
        self.num_blocks = self.num_files = self.num_dataset_replicas = self.num_block_replicas = 0
        # the dataset replicas loaded, linked to their datasets by finish() (they may come in two parts:
        # dataset_replicas, then replicas_read)
        self._replicas = _Replicas()
        self._groups_by_id: dict[int | None, Group] | None = None  # with None: the null group (_replica_objects)

    def groups(self, rows: Iterable[tuple[Any, ...]]) -> None:
        groups = self.inventory.groups
        for gid, name, olevel in rows:
            g = Group(name, _OLEVEL[olevel], gid)
            groups[name] = g
            self.groups_by_id[gid] = g

    def sites(self, rows: Iterable[tuple[Any, ...]]) -> None:
        sites = self.inventory.sites
        for sid, name, host, storage_type, backend, status in rows:
            s = Site(name, host, _STORAGE_TYPE[storage_type], backend, _SITE_STATUS[status], sid)
            sites[name] = s
            self.sites_by_id[sid] = s

    def partitions(self, rows: Iterable[tuple[Any, ...]]) -> None:
        partitions = self.inventory.partitions
        for pid, name in rows:
            p = Partition(name, pid)
            partitions[name] = p
            self.partitions_by_id[pid] = p

    def site_options(self, rows: Iterable[tuple[Any, ...]]) -> None:
        for site_id, mapping, x509proxy in rows:
            site = self.sites_by_id[site_id]
            site.filename_mapping = json.loads(mapping)
            site.x509proxy = x509proxy

    def partition_options(self, rows: Iterable[tuple[Any, ...]]) -> None:
        by_id = self.partitions_by_id
        for partition_id, cond, parent_id in rows:
            partition = by_id[partition_id]
            partition.condition = cond
            if parent_id is not None:
                parent = by_id[parent_id]
                partition._parent = parent
                parent._subpartitions = (*(parent._subpartitions or ()), partition)

    def site_partitions(self, rows: Iterable[tuple[Any, ...]]) -> None:
        for site_id, partition_id, quota in rows:
            site = self.sites_by_id[site_id]
            partition = self.partitions_by_id[partition_id]
            if site._partitions is None:
                site._partitions = {}
            site._partitions[partition.name] = SitePartition(site, partition, quota)

    def datasets(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Datasets (``Dataset._make``), a batch of rows at a time in columns: the objects made and
        their attributes set in C loops (``map``), not a Python loop per row."""
        datasets = self.inventory.datasets
        by_id = self.datasets_by_id
        arena = self.arena
        rows = iter(rows)
        while batch := list(itertools.islice(rows, 4096)):
            k = len(batch)
            ids, names, statuses, data_types, software_versions, last_updates, opens = zip(*batch, strict=True)
            made = list(map(Dataset.__new__, itertools.repeat(Dataset, k)))
            _set_all(made, "_name", names)
            _set_all(made, "_status", map(_DATASET_STATUS.__getitem__, statuses))
            _set_all(made, "_data_type", map(_DATA_TYPE.__getitem__, data_types))
            _set_all(made, "software_version", software_versions)
            _set_all(made, "last_update", last_updates)
            _set_all(made, "is_open", map(bool, opens))
            _set_all(made, "id", ids)
            for name in ("_blocks", "_replicas", "_attr", "_replica_offsets", "_file_offsets"):
                _set_all(made, name, itertools.repeat(None, k))
            _set_all(made, "_arena", itertools.repeat(arena, k))
            datasets.update(zip(names, made, strict=True))
            by_id.update(zip(ids, made, strict=True))

    def blocks(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Blocks, each with its files when they were read before (``block_files``): a merge of the
        two scans, both in block id order (the store's queries say ORDER BY); a dict of the block
        ids when the files were not."""
        datasets_by_id = self.datasets_by_id
        by_id = None if self._files_read else self.blocks_by_id
        ids, offsets = self._pending_ids, self._pending_offsets
        self._pending_ids, self._pending_offsets = array("q"), array("q")
        n = len(ids)
        files_of = None if self._pending_sorted else dict(zip(ids, offsets, strict=True)).get
        i = 0
        next_id = ids[0] if n and files_of is None else _NO_ID  # the next file table's block
        new = Block.__new__
        file_offsets = self._file_offsets
        append = file_offsets.flat.append
        index = 0  # the next block's index among its dataset's loaded blocks with files
        current_id = -1
        current: dict[str, Block] = {}
        dataset: Any = None
        last_id = -1
        max_id = self.max_block_id
        num_blocks = 0
        for bid, dataset_id, name, size, num_files, is_open, last_update in rows:
            if dataset_id != current_id:
                dataset = datasets_by_id[dataset_id]
                index = file_offsets.open_run(dataset)
                if dataset._blocks is None:
                    dataset._blocks = {}
                current = dataset._blocks
                current_id = dataset_id
            b = new(Block)
            b._name = name
            b._dataset = dataset
            b.id = bid
            b._size = size
            b._meta = (last_update << 65) | (num_files << 1) | (1 if is_open else 0)  # see block._meta
            offset: int | None
            if bid == next_id:
                offset = offsets[i]
                i += 1
                next_id = ids[i] if i < n else _NO_ID
            elif files_of is not None:
                offset = files_of(bid)
            else:
                while next_id < bid:  # file tables of no block (the schema's foreign key forbids them)
                    i += 1
                    next_id = ids[i] if i < n else _NO_ID
                if bid == next_id:
                    offset = offsets[i]
                    i += 1
                    next_id = ids[i] if i < n else _NO_ID
                else:
                    offset = None
            if offset is not None:
                b._files = index
                index += 1
                append(offset)
                append(bid)
                append(size)
            else:
                b._files = None
            current[name] = b
            if by_id is not None:
                by_id[bid] = b
            if bid <= last_id:
                if n and files_of is None:
                    raise StoreError(f"blocks: block {bid} after block {last_id}: the rows are not in id order")
            else:
                max_id = max(max_id, bid)
            last_id = bid
            num_blocks += 1
        self.num_blocks += num_blocks
        self.max_block_id = max_id
        file_offsets.seal()

    def blocks_with_files(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Blocks with their packed files (None: none) in one row each, in id order (MariaDB's join)."""
        self._blocks_joined(rows, self._writer.add, filetable.count)
        self._writer.close()

    def blocks_columns(self, read: ReadBlocks) -> None:
        """The blocks a second reader read (``store.filesreader``), after the loader's own (MariaDB:
        ``blocks_with_files`` of the lower ids), built from its columns while it still reads their
        files; ``files_read`` links them to their files afterwards.

        Built in C loops (``map``) over all blocks, and a Python loop per run of one dataset's blocks
        (the dict of its blocks), not per block."""
        ids, names, starts = read.ids, read.names, read.starts
        n = len(ids)
        ends = [*starts[1:], n] if n else []
        datasets = list(map(self.datasets_by_id.__getitem__, read.run_datasets))
        blocks = list(map(Block.__new__, itertools.repeat(Block, n)))
        _set_all(blocks, "_name", names)
        # each block's dataset: its run's, repeated (no lookup by id per block)
        _set_all(blocks, "_dataset", itertools.chain.from_iterable(map(itertools.repeat, datasets,
                                                                       map(operator.sub, ends, starts))))
        _set_all(blocks, "id", ids)
        _set_all(blocks, "_size", read.sizes)
        # Block._meta: (last_update << 65) | (num_files << 1) | is_open (dataformat.block)
        _set_all(blocks, "_meta", map(operator.or_, map(operator.lshift, read.updates, itertools.repeat(65)),
                                      read.lows))
        if _fresh(datasets, "_blocks"):  # each dataset's blocks in one run, and none before: C loops over the runs
            _set_all(datasets, "_blocks", map(dict, map(zip, map(names.__getitem__, _slices(starts, ends)),
                                                        map(blocks.__getitem__, _slices(starts, ends)))))
        else:
            _add_runs(list(map(operator.attrgetter("_dataset"), blocks)), "_blocks", names, blocks, starts, ends)
        self._read_blocks = (blocks, _int64s(ids), _int64s(read.sizes), starts, datasets)
        self._files_read = True
        if n:
            self.max_block_id = max(self.max_block_id, ids[n - 1])  # ascending (the reader checked)
        self.num_blocks += n

    def files_read(self, read: ReadFiles) -> None:
        """The files of the blocks of ``blocks_columns``: the reader's chunks join the arena, each
        block its file table (``_files``, its dataset's ``_file_offsets``); the first blocks' tables
        were read here when ``block_files`` came before (SQLite: up to a block id)."""
        self._writer.close()
        chunks = self.arena.chunks
        base = len(chunks) << 32
        chunks.extend(read.chunks)
        assert self._read_blocks is not None, "files_read before blocks_columns"
        blocks, ids, sizes, starts, datasets = self._read_blocks
        self._read_blocks = None
        offsets: Sequence[int] = read.offsets
        if self._pending_ids:  # the first blocks' files were read here (SQLite: block_files up to a block id)
            offsets, base = self._joined_offsets(ids, offsets, base), 0
        self.num_files += read.num_files
        n = len(ids)
        if not n:
            return
        every = min(offsets) >= 0
        # each dataset's _file_offsets: (arena offset, id, size) of its blocks with files, one after the other
        # (made in place: each temporary copy of 24 bytes a block is ~24 MB of fresh pages at W10)
        flat = array("q", [0]) * (3 * n)
        flat[0::3] = array("q", map(base.__add__, offsets)) if base else _int64s(offsets)
        flat[1::3] = ids
        flat[2::3] = sizes
        ends = [*starts[1:], n]
        if every and _fresh(datasets, "_file_offsets"):  # the load's case: C loops over the runs
            view = memoryview(flat).cast("B")
            _set_all(datasets, "_file_offsets", map(bytes, map(view.__getitem__, _slices(starts, ends, 24))))
            _set_all(blocks, "_files", itertools.chain.from_iterable(map(range, map(operator.sub, ends, starts))))
            view.release()
            return
        if not every:  # blocks without files (-1) have no entry (rare: the slow path)
            keep = [offset >= 0 for offset in offsets]
            flat = array("q", itertools.chain.from_iterable(
                itertools.compress(zip(flat[0::3], flat[1::3], flat[2::3], strict=True), keep)))
        table = flat.tobytes()
        del flat
        indexes: list[Iterable[int | None]] = []
        at = 0  # entries of table taken
        for dataset, start, end in zip(datasets, starts, ends, strict=True):
            have = dataset._file_offsets
            first = len(have) // 24 if have else 0
            if every:
                count = end - start
                indexes.append(range(first, first + count))
            else:
                numbering = itertools.count(first)
                run = [None if offsets[i] < 0 else next(numbering) for i in range(start, end)]
                count = sum(1 for index in run if index is not None)
                indexes.append(run)
            if count:
                mine = table[24 * at:24 * (at + count)]
                dataset._file_offsets = have + mine if have else mine
                at += count
        _set_all(blocks, "_files", itertools.chain.from_iterable(indexes))

    def _joined_offsets(self, ids: Sequence[int], theirs: Sequence[int], base: int) -> array[int]:
        """Arena offsets of the blocks' file tables (-1: none): the ones read here (``block_files``,
        pending), else the reader's (-1 where it read none, ``base`` added to the others)."""
        mine_ids, mine = self._pending_ids, self._pending_offsets
        self._pending_ids, self._pending_offsets = array("q"), array("q")
        k = len(mine_ids)
        rest = theirs[k:]
        if (self._pending_sorted and _int64s(ids[:k]) == array("q", mine_ids) and max(theirs[:k], default=-1) < 0
                and min(rest, default=0) >= 0):  # the first k blocks are those read here, all with files
            joined = array("q", mine)
            joined.extend(map(base.__add__, rest))
            return joined
        found = dict(zip(mine_ids, mine, strict=True))
        return array("q", [found.get(bid, -1) if offset < 0 else base + offset
                           for bid, offset in zip(ids, theirs, strict=True)])

    def _blocks_joined(self, rows: Iterable[tuple[Any, ...]], place: Callable[[Any], int],
                       count_files: Callable[[Any], int] | None) -> None:
        """Blocks each with its files: ``place(files)`` gives the files' arena offset (files None or
        -1: none), ``count_files`` their number (None: counted elsewhere)."""
        datasets_by_id = self.datasets_by_id
        new = Block.__new__
        file_offsets = self._file_offsets
        append = file_offsets.flat.append
        index = 0
        current_id = -1
        current: dict[str, Block] = {}
        dataset: Any = None
        max_id = self.max_block_id
        num_blocks = num_files = 0
        for bid, dataset_id, name, size, num, is_open, last_update, files in rows:
            if dataset_id != current_id:
                dataset = datasets_by_id[dataset_id]
                index = file_offsets.open_run(dataset)
                if dataset._blocks is None:
                    dataset._blocks = {}
                current = dataset._blocks
                current_id = dataset_id
            b = new(Block)
            b._name = name
            b._dataset = dataset
            b.id = bid
            b._size = size
            b._meta = (last_update << 65) | (num << 1) | (1 if is_open else 0)  # see block._meta
            if files is None or files == -1:
                b._files = None
            else:
                if count_files is not None:
                    num_files += count_files(files)
                b._files = index
                index += 1
                append(place(files))
                append(bid)
                append(size)
            current[name] = b
            max_id = max(max_id, bid)
            num_blocks += 1
        file_offsets.seal()
        self._files_read = True
        self.max_block_id = max_id
        self.num_blocks += num_blocks
        self.num_files += num_files

    def block_files(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Each block's packed file table, appended to the arena as it comes; before or after
        the blocks. Before (the store's order) is better for readers: the offsets (ints) are
        then made in long runs, and a reader's reference counts on them dirty ~32 bytes a
        block, rather than the pages of every block's other ints, among which they would
        otherwise fill the holes the blocks' rows left."""
        by_id = self.blocks_by_id
        ids, offsets = self._pending_ids, self._pending_offsets
        file_offsets = self._file_offsets
        if not by_id:  # the store's order: files first, joined with the blocks later
            start = len(ids)
            num_files_loaded = self._writer.add_keyed(rows, ids, offsets, filetable.count)
            in_order = self._pending_sorted and all(map(operator.lt, ids[max(0, start - 1):],
                                                        itertools.islice(ids, max(1, start), None)))
        else:  # the blocks came first
            dataset: Any = None
            flat = file_offsets.flat
            index = 0
            add = self._writer.add
            count_files = filetable.count
            num_files_loaded = 0
            in_order = False
            for bid, files in rows:
                num_files_loaded += count_files(files)
                block = by_id.get(bid)
                if block is None:
                    ids.append(bid)
                    offsets.append(add(files))
                else:
                    if block._dataset is not dataset:
                        dataset = block._dataset
                        index = file_offsets.open_run(dataset)
                    block._files = index
                    index += 1
                    flat.extend((add(files), block.id, block._size))
        self._pending_sorted = in_order
        self._files_read = True
        self._writer.close()
        self.num_files += num_files_loaded
        file_offsets.seal()

    def dataset_replicas(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """~0.5 M dataset replicas at W10 holding ~5 M block replicas, kept packed as stored.

        Taken a batch of rows at a time, in columns: the objects are made and their attributes set
        in C loops (``map``), the packed tables copied into the arena a batch at once
        (``ArenaWriter.add_many``), each site's dict filled a run of its rows at once (the rows
        come in site order). ``finish`` then puts the replicas in dataset order (a stable sort: a
        dataset's stay in row order) and makes each dataset's dict, its table offsets and its
        replicas' indexes there a dataset at a time: no Python loop per row. (SQLite with a second
        reader: these are the rows up to a rowid, ``replicas_read`` the others.)"""
        rows = iter(rows)
        while batch := list(itertools.islice(rows, 4096)):
            k = len(batch)
            dataset_ids, site_ids, growing, group_ids, blobs = zip(*batch, strict=True)
            versions = bytes(map(_FIRST, blobs))
            if versions.count(BR_VERSION) != k:
                bad = next(i for i, v in enumerate(versions) if v != BR_VERSION)
                raise StoreError(f"dataset replica {self.datasets_by_id[dataset_ids[bad]]._name}@"
                                 f"{self.sites_by_id[site_ids[bad]]._name}: unknown format {versions[bad]}")
            counts = list(map(_FIRST, map(_U32.unpack_from, blobs, itertools.repeat(1))))
            if all(counts):
                placed: Iterable[int] = self._writer.add_many(list(blobs))
            else:  # replicas holding no block replica have no table (-1 here)
                held = iter(self._writer.add_many(list(itertools.compress(blobs, counts))))
                placed = [next(held) if n else -1 for n in counts]
            self._replica_objects(dataset_ids, site_ids, growing, group_ids, placed)
            self.num_block_replicas += sum(counts)
        self._writer.close()

    def replicas_read(self, read: ReadReplicas) -> None:
        """The dataset replicas a second reader read (SQLite: those after a rowid, after the ones
        ``dataset_replicas`` took): its chunks join the arena, the objects are made from its columns."""
        self._writer.close()
        chunks = self.arena.chunks
        base = len(chunks) << 32
        chunks.extend(read.chunks)
        offsets: Iterable[int] = read.offsets
        if len(read.offsets) and min(read.offsets) < 0:  # replicas holding no block replica (rare)
            offsets = [offset if offset < 0 else base + offset for offset in read.offsets]
        else:
            offsets = map(base.__add__, read.offsets)
        self._replica_objects(read.dataset_ids, read.site_ids, read.growing, read.group_ids, offsets)
        self.num_block_replicas += read.block_replicas

    def link_replicas(self) -> None:
        """Link the dataset replicas loaded so far to their datasets (``finish`` links any after them)."""
        self._replicas.link(self.datasets_by_id)

    def _replica_objects(self, dataset_ids: Sequence[int], site_ids: Sequence[int], growing: Iterable[int],
                         group_ids: Iterable[int | None], placed: Iterable[int]) -> None:
        """DatasetReplica objects of rows in columns (their packed tables at the arena offsets ``placed``, -1:
        none), made and their attributes set in C loops, each site's dict filled a run of its rows at once."""
        k = len(dataset_ids)
        if not k:
            return
        groups = self._groups_by_id
        if groups is None:
            groups = self._groups_by_id = dict(self.groups_by_id)  # type: ignore[arg-type]
            groups[None] = groups[0]
        owners = list(map(self.datasets_by_id.__getitem__, dataset_ids))
        sites = list(map(self.sites_by_id.__getitem__, site_ids))
        replicas = list(map(DatasetReplica.__new__, itertools.repeat(DatasetReplica, k)))  # _make, in C loops
        _set_all(replicas, "_dataset", owners)
        _set_all(replicas, "_site", sites)
        _set_all(replicas, "growing", map(bool, growing))
        _set_all(replicas, "group", map(groups.__getitem__, group_ids))
        _set_all(replicas, "_block_replicas", itertools.repeat(None, k))
        taken = self._replicas
        taken.dataset_ids.extend(dataset_ids)
        taken.site_names.extend(map(_NAME, sites))
        taken.replicas.extend(replicas)
        taken.offsets.extend(placed)
        # each site's dict, a run of its rows at once
        names = list(map(_NAME, owners))
        starts = [0, *itertools.compress(range(1, k), map(operator.ne, site_ids[1:], site_ids[:-1]))]
        _add_runs(sites, "_dataset_replicas", names, replicas, starts, [*starts[1:], k])
        self.num_dataset_replicas += k

    def counts(self) -> dict[str, int]:
        """What ``Inventory.counts()`` says of the image built, without walking it."""
        return {
            "sites": len(self.sites_by_id), "groups": len(self.groups_by_id) - 1,
            "partitions": len(self.partitions_by_id), "datasets": len(self.datasets_by_id),
            "blocks": self.num_blocks, "files": self.num_files,
            "datasetreplicas": self.num_dataset_replicas, "blockreplicas": self.num_block_replicas,
        }

    def release(self) -> None:
        """Close the arena writer's memory file (the loader's process forks afterwards: no child should
        hold it); ``finish`` does, and a load that failed half-way must."""
        self._writer.release()

    def finish(self, version: int, next_ids: dict[str, int]) -> Inventory:
        inv = self.inventory
        self._writer.release()
        for kind, objects in (("site", self.sites_by_id), ("group", self.groups_by_id),
                              ("partition", self.partitions_by_id), ("dataset", self.datasets_by_id)):
            self.max_ids[kind] = max(objects, default=0)
        self.max_ids["block"] = max(self.max_block_id, max(self.blocks_by_id, default=0))
        self._replicas.link(self.datasets_by_id)
        # counters never move backwards, and never below what the image holds
        merged = {k: max(next_ids.get(k, 1), self.max_ids[k] + 1) for k in self.max_ids}
        inv.ids = IdAllocator(merged)
        inv.version = version
        self.blocks_by_id = {}
        return inv
