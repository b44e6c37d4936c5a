"""DatasetReplica: the presence of (some of) a dataset's blocks at a site."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Set
from typing import TYPE_CHECKING, Any

from dynamo.dataformat import replicatable
from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import (
    MAX_GROUP_NAME,
    MAX_SITE_NAME,
    check_bool,
    check_dataset_name,
    check_link,
    check_name,
)
from dynamo.dataformat._views import ObjectSet
from dynamo.dataformat.arena import Buffer

if TYPE_CHECKING:
    from dynamo.dataformat.block import Block
    from dynamo.dataformat.blockreplica import BlockReplica
    from dynamo.dataformat.dataset import Dataset
    from dynamo.dataformat.group import Group
    from dynamo.dataformat.site import Site


def _replica_block_name(replica: BlockReplica) -> str:
    return replica.block_name


def group_name(group: Group | str | None) -> str | None:
    return group if group is None or isinstance(group, str) else group.name


class DatasetReplica(DataObject):
    """``DatasetReplica(dataset, site, growing, group)``; key is (dataset name, site name).

    ``growing``: new blocks of the dataset are expected to appear here too.
    ``group``: the owner (a Group inside an inventory, a name or None outside;
    None is the null group). ``block_replicas`` is a read-only view keyed by
    block name. A dataset replica disappears with its last block replica.

    Block replicas are kept packed (``_packed``: as loaded, an int, the index of their offset in
    the image's arena among the dataset's ``_replica_offsets`` (a small int, shared: no int of
    their own for a forked reader to write to); or bytes of their own; layout in
    ``dataformat.replicatable``) and become BlockReplica objects only when asked for:
    reading gives fresh objects that die with their reader. The inventory changes a block
    replica in the packed table itself (``replicatable.edit``: the new table is a bytes value of
    its own, the old one kept by the undo log); only rare changes (a file deleted from a block
    with incomplete replicas, a group deleted, a block without an id) unpack them into
    ``_block_replicas`` (block name -> BlockReplica), which a change set packs again when it is
    done (``_repack``). At most one of the two slots is set; neither when the replica holds no
    block replica.
    """

    __slots__ = ("_dataset", "_site", "growing", "group", "_block_replicas", "_packed")

    TYPE = "datasetreplica"
    ATTRS = ("growing",)

    def __init__(self, dataset: Dataset | str, site: Site | str, growing: bool = False,
                 group: Group | str | None = None):
        if isinstance(dataset, str):
            check_dataset_name(dataset, "datasetreplica dataset")
        else:
            check_link(dataset, "datasetreplica dataset", "dataset")
        if isinstance(site, str):
            check_name(site, "datasetreplica site", MAX_SITE_NAME)
        else:
            check_link(site, "datasetreplica site", "site")
        if isinstance(group, str):
            check_name(group, "datasetreplica group", MAX_GROUP_NAME)
        else:
            check_link(group, "datasetreplica group", "group", nullable=True)
        self._dataset = dataset
        self._site = site
        self.growing = check_bool(growing, "datasetreplica growing")
        self.group = group
        self._block_replicas: dict[str, BlockReplica] | None = None
        self._packed: int | bytes | None = None

    @classmethod
    def _make(cls, dataset: Dataset, site: Site, growing: bool, group: Group) -> DatasetReplica:
        obj = cls.__new__(cls)
        obj._dataset = dataset
        obj._site = site
        obj.growing = growing
        obj.group = group
        obj._block_replicas = None
        obj._packed = None
        return obj

    @property
    def dataset(self) -> Dataset | str:
        return self._dataset

    @property
    def site(self) -> Site | str:
        return self._site

    @property
    def dataset_name(self) -> str:
        d = self._dataset
        return d if isinstance(d, str) else d.name

    @property
    def site_name(self) -> str:
        s = self._site
        return s if isinstance(s, str) else s.name

    @property
    def group_name(self) -> str | None:
        return group_name(self.group)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.dataset_name, self.site_name)

    def _values(self) -> tuple[Any, ...]:
        return (self.growing, self.group_name)

    def __repr__(self) -> str:
        return f"DatasetReplica({self.dataset_name!r},{self.site_name!r},{self.growing},{self.group_name!r})"

    @property
    def block_replicas(self) -> ObjectSet[BlockReplica] | PackedReplicas:
        if self._packed is None:
            return ObjectSet(self._block_replicas, _replica_block_name)
        return PackedReplicas(self)

    def find_block_replica(self, block: Block | str) -> BlockReplica | None:
        dataset = self._dataset
        if self._packed is not None and not isinstance(block, str) and block._dataset is dataset \
                and not isinstance(dataset, str):
            live: Block | None = block  # a block of this very dataset: no lookup by name
        else:
            name = block if isinstance(block, str) else block.name
            if self._packed is None:
                return self._block_replicas.get(name) if self._block_replicas else None
            live = dataset._blocks.get(name) if not isinstance(dataset, str) and dataset._blocks else None
            if live is None:
                return None
        assert live is not None
        buf, at = self._span()
        lay = replicatable.layout(buf, at)
        index = replicatable.find(buf, lay, live._quiet_id())
        return None if index < 0 else self._make_replica(buf, lay, index, live)

    # --- packed block replicas ------------------------------------------------

    def _arena_span(self, index: int) -> tuple[Buffer, int, int]:
        """Where the loaded block replicas are: the dataset's ``_replica_offsets[index]``."""
        dataset: Any = self._dataset
        (offset,) = _I64.unpack_from(dataset._replica_offsets, 8 * index)
        return dataset._arena.span(offset)

    def _span(self) -> tuple[Buffer, int]:
        packed = self._packed
        if type(packed) is int:
            return self._arena_span(packed)[:2]
        assert isinstance(packed, bytes)
        return packed, 0

    def _table(self) -> tuple[Buffer, int]:
        """The packed table, also when it holds no block replica (``replicatable.EMPTY``)."""
        return (replicatable.EMPTY, 0) if self._packed is None else self._span()

    def _count(self) -> int:
        if self._packed is None:
            return len(self._block_replicas) if self._block_replicas else 0
        return replicatable.count(*self._span())

    def _make_replica(self, buf: Buffer, lay: replicatable.Layout, index: int, block: Block) -> BlockReplica:
        from dynamo.dataformat.blockreplica import BlockReplica

        flag = buf[lay.flags_at + index]
        (last_update,) = _I64.unpack_from(buf, lay.updates_at + 8 * index)
        (gid,) = _I32.unpack_from(buf, lay.groups_at + 4 * index)
        group = self._dataset._arena.group(gid)  # type: ignore[union-attr]
        lfns = None
        if flag & replicatable.FLAG_INCOMPLETE:
            names = block._names_by_id()
            lfns = tuple(sorted(names[f] for f in replicatable.file_ids_of(buf, lay, index) if f in names))
        return BlockReplica._make(block, self._site, group, bool(flag & replicatable.FLAG_CUSTODIAL),  # type: ignore[arg-type]
                                  last_update, lfns)

    def _columns(self) -> tuple[list[Block], tuple[int, ...], tuple[int, ...], bytes, list[list[int] | None],
                                list[int]]:
        """The packed block replicas as columns: blocks, last updates, group ids, flags, the
        file ids held (None: complete), and the blocks' sizes. A loaded block's id and size are
        read from its dataset's ``_file_offsets`` (``Block._quiet_id``): a forked reader then
        writes the reference counts of the blocks only, not of their ints."""
        dataset: Any = self._dataset
        buf, at = self._span()
        n, values, tail = replicatable.columns(buf, at)
        loaded = dataset._file_offsets
        column = memoryview(loaded).cast("q") if loaded else None
        found: dict[int, tuple[Block, int]] = {}
        for block in dataset._blocks.values() if dataset._blocks else ():
            files = block._files
            if type(files) is int:
                assert column is not None
                found[column[3 * files + 1]] = (block, column[3 * files + 2])
            else:
                found[block.id] = (block, block._size)
        members = [found[i] for i in values[:n]]
        blocks = [m[0] for m in members]
        sizes = [m[1] for m in members]
        flags: bytes = values[3 * n]
        held: list[list[int] | None] = [None] * n
        if b"\x02" in flags or b"\x03" in flags:
            view = memoryview(buf)
            for i in range(n):
                if flags[i] & replicatable.FLAG_INCOMPLETE:
                    (k,) = _U32.unpack_from(buf, tail)
                    held[i] = view[tail + 4:tail + 4 + 8 * k].cast("q").tolist()
                    tail += 4 + 8 * k
        return blocks, values[n:2 * n], values[2 * n:3 * n], flags, held, sizes

    def _unpacked(self) -> Iterator[BlockReplica]:
        """Fresh objects for the packed block replicas, in stored order."""
        from dynamo.dataformat.blockreplica import BlockReplica

        blocks, updates, group_ids, flags, held, _ = self._columns()
        site = self._site
        arena: Any = self._dataset._arena  # type: ignore[union-attr]
        groups = arena.group_map()
        new = BlockReplica.__new__
        for block, last_update, gid, flag, file_ids in zip(blocks, updates, group_ids, flags, held, strict=True):
            group = groups.get(gid)
            if group is None:
                group = arena.group(gid)
                groups = arena.group_map()
            r = new(BlockReplica)
            r._block = block
            r._site = site
            r.group = group
            r.is_custodial = flag & 1 == 1
            r.last_update = last_update
            if file_ids is None:
                r.lfns = None
            else:
                names = block._names_by_id()
                r.lfns = tuple(sorted(names[f] for f in file_ids if f in names))
            yield r

    def _materialize(self) -> dict[str, BlockReplica] | None:
        """Unpack the block replicas into ``_block_replicas`` (the inventory, before a change)."""
        if self._packed is not None:
            self._block_replicas = {r._live_block().name: r for r in self._unpacked()} or None
            self._packed = None
        return self._block_replicas

    def _repack(self) -> None:
        """Pack ``_block_replicas`` again (after a change set); kept unpacked outside an image."""
        members = self._block_replicas
        dataset = self._dataset
        if members is None or isinstance(dataset, str) or dataset._arena is None:
            return
        self._packed = replicatable.pack(members.values())
        self._block_replicas = None

    def _packed_row(self) -> bytes:
        """The packed block replicas as a bytes value of their own (the store's column)."""
        packed = self._packed
        if packed is None:
            return replicatable.pack(self._block_replicas.values() if self._block_replicas else ())
        if isinstance(packed, bytes):
            return packed
        buf, at, end = self._arena_span(packed)
        return bytes(buf[at:end])

    def is_complete(self) -> bool:
        """Every block replica here holds all files of its block."""
        if self._packed is not None:
            buf, at = self._span()
            lay = replicatable.layout(buf, at)
            return not any(f & replicatable.FLAG_INCOMPLETE for f in buf[lay.flags_at:lay.tail_at])
        return all(r.is_complete() for r in self.block_replicas)

    def is_full(self) -> bool:
        """Every block of the dataset has a complete replica here."""
        dataset = self._dataset
        if isinstance(dataset, str):
            raise TypeError("is_full() needs a replica inside an inventory")
        return self._count() == len(dataset.blocks) and self.is_complete()

    def size(self, physical: bool = True) -> int:
        """Bytes physically present (a method, as in the original); ``physical=False``: the
        full sizes of the blocks that have a replica here."""
        if self._packed is not None:
            blocks, _, _, _, held, block_sizes = self._columns()
            total = 0
            for block, file_ids, block_size in zip(blocks, held, block_sizes, strict=True):
                if file_ids is None or not physical:
                    total += block_size
                else:
                    sizes = dict(zip(block._file_ids(), block.file_sizes(), strict=True))
                    total += sum(sizes.get(f, 0) for f in file_ids)
            return total
        if physical:
            return sum(r.size for r in self.block_replicas)
        return sum(r._live_block().size for r in self.block_replicas)

    def _block_ids(self) -> list[int]:
        if self._packed is None:
            return [r._live_block().id for r in self._block_replicas.values()] if self._block_replicas else []
        buf, at = self._span()
        lay = replicatable.layout(buf, at)
        return memoryview(buf)[lay.ids_at:lay.updates_at].cast("q").tolist()

    def is_partial(self) -> bool:
        """Some blocks of the dataset have no replica here, and those that have are complete."""
        dataset = self._dataset
        if isinstance(dataset, str):
            raise TypeError("is_partial() needs a replica inside an inventory")
        return self._count() != len(dataset.blocks) and self.is_complete()

    def last_block_created(self) -> int:
        """The newest last_update of the block replicas here (0 without any), as in the original."""
        if self._packed is not None:
            return max(self._columns()[1], default=0)
        return max((r.last_update for r in self.block_replicas), default=0)

    def is_last_copy(self) -> bool:
        """No other site holds a replica of the dataset."""
        dataset = self._dataset
        if isinstance(dataset, str):
            raise TypeError("is_last_copy() needs a replica inside an inventory")
        return len(dataset.replicas) == 1


_I64 = struct.Struct("<q")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")


class PackedReplicas(Set["BlockReplica"]):
    """``dataset_replica.block_replicas`` while they are packed: the same read-only view as
    ObjectSet (iterable, sized, ``in`` by object or block name, ``get``), whose members are
    made when read."""

    __slots__ = ("_owner",)

    def __init__(self, owner: DatasetReplica):
        self._owner = owner

    def __iter__(self) -> Iterator[BlockReplica]:
        return self._owner._unpacked()

    def __len__(self) -> int:
        return self._owner._count()

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return self._owner.find_block_replica(item) is not None
        if item is None:
            return False
        try:
            name = _replica_block_name(item)  # type: ignore[arg-type]
        except AttributeError:
            return False
        found = self._owner.find_block_replica(name)
        return found is not None and found == item

    def get(self, name: Any) -> BlockReplica | None:
        return self._owner.find_block_replica(name) if isinstance(name, str) else None

    def __getitem__(self, name: Any) -> BlockReplica:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def __repr__(self) -> str:
        return "set([" + ", ".join(repr(v) for v in self) + "])"

    __hash__ = None  # type: ignore[assignment]
