"""The state of the RAM image and the primitive mutations every handler uses.

Each primitive reports its inverse to the tracker (see ``dynamo.core.transaction``), so that a
change set that fails half-way can be rolled back; lookups raise ``MissingReference`` with the
object named. ``Inventory`` (``dynamo.core.inventory``) adds the public API on top; the update and
delete handlers live in ``dynamo.core.updates`` and ``dynamo.core.deletes``.
"""

from __future__ import annotations

from typing import Any, Protocol

from dynamo.core.ids import IdAllocator
from dynamo.core.transaction import NO_TRACKING, Tracker
from dynamo.dataformat import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    Group,
    Partition,
    Site,
    replicatable,
)
from dynamo.dataformat._base import DataObject
from dynamo.dataformat.arena import Arena
from dynamo.dataformat.filetable import FileEntries
from dynamo.dataformat.group import null_group
from dynamo.errors import MissingReference, ObjectError

_MISSING: Any = object()


class Recorder(Protocol):
    def record(self, op: str, obj: DataObject) -> None: ...


def _pop(d: dict[Any, Any], key: Any) -> None:
    del d[key]


def _restore_packed(replica: DatasetReplica, packed: int | bytes | None) -> None:
    replica._packed = packed
    replica._block_replicas = None



class ImageState:
    def __init__(self) -> None:
        self.sites: dict[str, Site] = {}
        self.groups: dict[str | None, Group] = {None: null_group()}
        self.partitions: dict[str, Partition] = {}
        self.datasets: dict[str, Dataset] = {}
        # The store version (journal sequence number) this image reflects.
        self.version = 0
        # Server only: draws ids for new objects. Children have none (new ids stay 0).
        self.ids: IdAllocator | None = None
        # Replaying a journal: keep the ids the records carry.
        self.trust_ids = False
        self.recorder: Recorder | None = None
        self._tracker: Tracker = NO_TRACKING
        # where the loaded image's packed files and block replicas live (see dataformat.arena)
        self.arena = Arena(self.groups)

    @property
    def null_group(self) -> Group:
        return self.groups[None]


    # =====================================================================
    # lookups that raise clear errors
    # =====================================================================

    def _site(self, name: str) -> Site:
        site = self.sites.get(name)
        if site is None:
            raise MissingReference(f"site {name!r} does not exist")
        return site

    def _group(self, name: str | None) -> Group:
        group = self.groups.get(name)
        if group is None:
            raise MissingReference(f"group {name!r} does not exist")
        return group

    def _partition(self, name: str) -> Partition:
        partition = self.partitions.get(name)
        if partition is None:
            raise MissingReference(f"partition {name!r} does not exist")
        return partition

    def _dataset(self, name: str) -> Dataset:
        dataset = self.datasets.get(name)
        if dataset is None:
            raise MissingReference(f"dataset {name!r} does not exist")
        return dataset

    def _block(self, dataset: str, name: str) -> Block:
        owner = self.datasets.get(dataset)
        if owner is None:
            raise MissingReference(f"dataset {dataset!r} does not exist")
        blocks = owner._blocks
        block = blocks.get(name) if blocks else None
        if block is None:
            raise MissingReference(f"block {dataset}#{name} does not exist")
        return block

    def _block_of(self, ref: Block | str | None, what: str) -> Block:
        """The live block a File or BlockReplica refers to (a Block, or 'dataset#block')."""
        if isinstance(ref, str):
            dataset, _, name = ref.partition("#")  # validated by the object's constructor
            return self._block(dataset, name)
        if ref is None:
            raise ObjectError(f"{what} names no block")
        return self._block(ref.dataset_name, ref.name)

    # =====================================================================
    # primitive mutations, each reporting its inverse to the tracker
    # =====================================================================

    def _put(self, d: dict[Any, Any], key: Any, value: Any) -> None:
        old = d.get(key, _MISSING)
        d[key] = value
        if old is _MISSING:
            self._tracker.push((_pop, d, key))
        else:
            self._tracker.push((d.__setitem__, key, old))

    def _drop(self, d: dict[Any, Any], key: Any) -> Any:
        value = d.pop(key)
        self._tracker.push((d.__setitem__, key, value))
        return value

    def _child_put(self, owner: Any, attr: str, key: Any, value: Any) -> None:
        """Insert into a lazily allocated dict slot (None while empty)."""
        d = getattr(owner, attr)
        if d is None:
            d = {}
            setattr(owner, attr, d)
            self._tracker.push((setattr, owner, attr, None))
        self._put(d, key, value)

    def _child_drop(self, owner: Any, attr: str, key: Any) -> None:
        d = getattr(owner, attr)
        self._drop(d, key)
        if not d:
            setattr(owner, attr, None)
            self._tracker.push((setattr, owner, attr, d))

    def _set(self, obj: Any, attr: str, value: Any) -> None:
        self._tracker.push((setattr, obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    def _copy(self, live: DataObject, src: DataObject) -> bool:
        """Copy attribute values; True if anything changed."""
        if live is src or live.snapshot() == src.snapshot():
            return False
        self._tracker.push((live.restore, live.snapshot()))
        live.copy_from(src)
        return True

    def _unpacked_replicas(self, replica: DatasetReplica) -> dict[str, BlockReplica] | None:
        """The dataset replica's block replicas as live objects, before changing any of them
        (unpacking keeps their values, so the undo log need not know; the change set packs
        them again when it is done)."""
        if replica._packed is not None:
            replica._materialize()
            self._tracker.unpacked(replica)
        return replica._block_replicas

    # --- block replicas changed where they are packed ------------------------------
    # A change set's block replica records change the packed table of their dataset replica in place
    # (``replicatable.edit``: one row replaced, removed or appended) instead of unpacking all its
    # block replicas into objects and packing them again at the end. The undo entry restores the
    # table as it was (an int into the arena, or a bytes value; both immutable).

    @staticmethod
    def _edits_packed(replica: DatasetReplica, block: Block) -> bool:
        """Whether ``block``'s replica in ``replica`` is changed in the packed table: in an inventory
        (the dataset has an arena), not unpacked into objects by this change set, and the block has
        an id (the table's key; an application's new blocks have none)."""
        dataset: Any = replica._dataset
        return replica._block_replicas is None and dataset._arena is not None and block._quiet_id() != 0

    def _set_packed(self, replica: DatasetReplica, packed: bytes | None) -> None:
        self._tracker.push((_restore_packed, replica, replica._packed))
        replica._packed = packed

    @staticmethod
    def _packed_files(block: Block, files: tuple[str, ...] | None) -> bytes | None:
        """The table's tail for a replica holding ``files`` (b"" when complete); None when one of
        them has no id yet (an application's new file: the table keeps ids, and 0 tells none apart)."""
        if files is None:
            return b""
        ids = {lfn: e.id for lfn, e in block._iter_entries()}
        held = [ids[lfn] for lfn in files]
        return None if 0 in held else replicatable.segment(held)

    def _put_packed(self, replica: DatasetReplica, block: Block, group: Group, is_custodial: bool,
                    last_update: int, files: tuple[str, ...] | None, tail: bytes) -> bool:
        """Set ``block``'s replica in ``replica``'s packed table (added if it has none), holding
        ``files`` (``tail``: ``_packed_files``); False if the values are those held already."""
        new = replicatable.Row(block._quiet_id(), last_update, group.id,
                               replicatable.flags_of(is_custodial, files is not None))
        buf, at = replica._table()
        lay = replicatable.layout(buf, at)
        index = replicatable.find(buf, lay, new.block_id)
        if index < 0:
            index = lay.n
        elif replicatable.row(buf, lay, index) == new:
            start, stop = replicatable.segment_bounds(buf, lay, index)
            if buf[start:stop] == tail:
                return False
        self._set_packed(replica, replicatable.edit(buf, at, index, new, tail))
        return True

    def _drop_packed(self, replica: DatasetReplica, block: Block) -> None:
        """Remove ``block``'s replica from ``replica``'s packed table (None once empty)."""
        buf, at = replica._table()
        lay = replicatable.layout(buf, at)
        index = replicatable.find(buf, lay, block._quiet_id())
        if index < 0:
            raise MissingReference(f"block {block.full_name()} has no replica at site {replica.site_name!r}")
        self._set_packed(replica, replicatable.edit(buf, at, index, None) if lay.n > 1 else None)

    def _live_block_replica(self, replica: BlockReplica) -> BlockReplica:
        """The unpacked live object for ``replica`` (one read from a packed dataset replica)."""
        site = replica.site
        block = replica.block
        assert isinstance(site, Site) and isinstance(block, Block)
        dataset_replica = site.find_dataset_replica(block.dataset_name)
        assert dataset_replica is not None
        members = self._unpacked_replicas(dataset_replica)
        assert members is not None
        return members[block.name]

    def _writable_files(self, block: Block) -> FileEntries:
        files = block._files
        if isinstance(files, dict):
            return files
        self._tracker.push((setattr, block, "_files", files))
        return block._entries()

    def _new_id(self, kind: str, given: int) -> int:
        ids = self.ids
        if ids is None:
            return 0
        if self.trust_ids and given:
            ids.observe(kind, given)
            return given
        return ids.allocate(kind)

    def _relink_partition(self, partition: Partition, parent: Partition | None) -> None:
        """Move ``partition`` under ``parent``, keeping both parents' ``subpartitions``."""
        ancestor = parent
        while ancestor is not None:
            if ancestor is partition:
                raise ObjectError(f"partition {partition.name!r}: parent {parent.name!r} would make a cycle")  # type: ignore[union-attr]
            ancestor = ancestor.parent  # type: ignore[assignment]
        old = partition.parent
        if isinstance(old, Partition):
            self._set(old, "_subpartitions", tuple(p for p in old.subpartitions or () if p is not partition) or None)
        if parent is not None:
            self._set(parent, "_subpartitions", (*(parent.subpartitions or ()), partition))
        self._set(partition, "_parent", parent)
