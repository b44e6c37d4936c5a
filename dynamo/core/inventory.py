"""The inventory: Dynamo's RAM image.

``inventory.sites``, ``.groups``, ``.partitions`` and ``.datasets`` are dicts
keyed by name (``groups[None]`` is the null group). Everything else hangs from
them: blocks from datasets, files packed in blocks, dataset replicas from both
their dataset and their site, block replicas from both their block and their
dataset replica.

``update(obj)`` adds a clone of ``obj`` or copies its attribute values onto
the existing object with the same identifier; ``delete(obj)`` removes the
object with ``obj``'s identifier, with cascades:

* a site takes its replicas and quotas with it; a partition its quotas;
* a dataset takes its blocks, files and replicas; a block its files and block
  replicas; a dataset replica its block replicas;
* a deleted file leaves the incomplete replicas that listed it;
* a dataset replica goes away with its last block replica;
* a deleted group's replicas pass to the null group.

Every mutation is reported to ``self._tracker`` (see ``transaction``) so that
the server can roll a failed change set back and the store knows what to
write. With a ``recorder`` set (write-enabled applications), every update and
delete is also recorded, in call order, as the full state of the live object
(or, for a delete, its identifier).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from dynamo.core.ids import IdAllocator
from dynamo.core.original_api import OriginalInventoryAPI
from dynamo.core.transaction import NO_TRACKING, Tracker
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
from dynamo.dataformat._base import DataObject
from dynamo.dataformat.filetable import FileEntries, FileEntry
from dynamo.dataformat.group import null_group
from dynamo.errors import MissingReference, ObjectError, ProtectedObject

_MISSING: Any = object()


class Recorder(Protocol):
    def record(self, op: str, obj: DataObject) -> None: ...


def _pop(d: dict[Any, Any], key: Any) -> None:
    del d[key]


def _alive_sitepartition(inv: Inventory, sp: SitePartition) -> bool:
    site = sp.site
    return (isinstance(site, Site) and inv.sites.get(site.name) is site
            and site._partitions is not None and site._partitions.get(sp.partition_name) is sp
            and inv.partitions.get(sp.partition_name) is sp.partition)


class Inventory(OriginalInventoryAPI):
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

    @property
    def null_group(self) -> Group:
        return self.groups[None]

    def __repr__(self) -> str:
        return (f"<Inventory version={self.version} sites={len(self.sites)} groups={len(self.groups)} "
                f"partitions={len(self.partitions)} datasets={len(self.datasets)}>")

    # =====================================================================
    # public API
    # =====================================================================

    def update(self, obj: DataObject) -> Any:
        """Add a clone of ``obj``, or copy its values onto the existing object; returns the live object."""
        handler = _UPDATE.get(type(obj))
        if handler is None:
            raise ObjectError(f"cannot update a {type(obj).__name__}: not an inventory object")
        live = handler(self, obj)
        if self.recorder is not None:
            self.recorder.record("update", live)
        return live

    def delete(self, obj: DataObject) -> Any:
        """Delete the object with ``obj``'s identifier (with cascades); returns the removed object."""
        handler = _DELETE.get(type(obj))
        if handler is None:
            raise ObjectError(f"cannot delete a {type(obj).__name__}: not an inventory object")
        removed = handler(self, obj)
        if self.recorder is not None:
            self.recorder.record("delete", removed)
        return removed

    def find_block(self, dataset: str, block: str) -> Block | None:
        ds = self.datasets.get(dataset)
        return None if ds is None else ds.find_block(block)

    def counts(self) -> dict[str, int]:
        """Object counts per type (walks the whole image)."""
        blocks = files = block_replicas = dataset_replicas = 0
        for dataset in self.datasets.values():
            for block in dataset.blocks:
                blocks += 1
                files += block.files_count()
            for replica in dataset.replicas:
                dataset_replicas += 1
                block_replicas += len(replica.block_replicas)
        return {
            "sites": len(self.sites), "groups": len(self.groups) - 1, "partitions": len(self.partitions),
            "datasets": len(self.datasets), "blocks": blocks, "files": files,
            "datasetreplicas": dataset_replicas, "blockreplicas": block_replicas,
        }

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

    def _add_block_replica_link(self, block: Block, replica: BlockReplica) -> None:
        old = block._replicas
        block._replicas = [*old, replica] if old else [replica]
        self._tracker.push((setattr, block, "_replicas", old))

    def _remove_block_replica_link(self, block: Block, replica: BlockReplica) -> None:
        old = block._replicas or []
        block._replicas = [r for r in old if r is not replica] or None
        self._tracker.push((setattr, block, "_replicas", old))

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

    # =====================================================================
    # update handlers
    # =====================================================================

    def _update_site(self, obj: Site) -> Site:
        site = self.sites.get(obj.name)
        if site is None:
            site = Site(obj.name, obj.host, obj.storage_type, obj.backend, obj.status,
                        self._new_id("site", obj.id), obj.x509proxy, filename_mapping=obj.filename_mapping)
            self._put(self.sites, site.name, site)
        elif not self._copy(site, obj):
            return site
        self._tracker.touched("sites", site)
        return site

    def _update_group(self, obj: Group) -> Group:
        if obj.name is None:
            raise ProtectedObject("the null group cannot be changed")
        group = self.groups.get(obj.name)
        if group is None:
            group = Group(obj.name, obj.olevel, self._new_id("group", obj.id))
            self._put(self.groups, group.name, group)
        elif not self._copy(group, obj):
            return group
        self._tracker.touched("groups", group)
        return group

    def _update_partition(self, obj: Partition) -> Partition:
        partition = self.partitions.get(obj.name)
        parent = None if obj.parent_name is None else self._partition(obj.parent_name)
        if partition is None:
            partition = Partition(obj.name, self._new_id("partition", obj.id), condition=obj.condition)
            self._put(self.partitions, partition.name, partition)
        elif partition is obj or (partition.condition, partition.parent_name) == (obj.condition, obj.parent_name):
            return partition
        else:
            self._set(partition, "condition", obj.condition)
        if partition.parent is not parent:
            self._relink_partition(partition, parent)
        self._tracker.touched("partitions", partition)
        return partition

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

    def _update_sitepartition(self, obj: SitePartition) -> SitePartition:
        site = self._site(obj.site_name)
        partition = self._partition(obj.partition_name)
        sp = site.find_partition(partition.name)
        if sp is None:
            sp = SitePartition(site, partition, obj.own_quota)
            self._child_put(site, "_partitions", partition.name, sp)
        elif not self._copy(sp, obj):
            return sp
        self._tracker.touched("site_partitions", sp)
        return sp

    def _update_dataset(self, obj: Dataset) -> Dataset:
        dataset = self.datasets.get(obj.name)
        if dataset is None:
            dataset = Dataset._make(obj.name, obj.status, obj.data_type, obj.software_version,
                                    obj.last_update, obj.is_open, self._new_id("dataset", obj.id))
            self._put(self.datasets, dataset.name, dataset)
        elif not self._copy(dataset, obj):
            return dataset
        self._tracker.touched("datasets", dataset)
        return dataset

    def _update_block(self, obj: Block) -> Block:
        dataset = self._dataset(obj.dataset_name)
        block = dataset.find_block(obj.name)
        if block is None:
            block = Block._make(obj.name, dataset, obj.size, obj.num_files, obj.is_open, obj.last_update,
                                self._new_id("block", obj.id))
            self._child_put(dataset, "_blocks", block.name, block)
            self._tracker.block_counts_touched(block)
        else:
            counts = (block.size, block.num_files)
            if not self._copy(block, obj):
                return block
            if counts != (block.size, block.num_files):
                self._tracker.block_counts_touched(block)
        self._tracker.touched("blocks", block)
        return block

    def _update_file(self, obj: File) -> File:
        block = self._block_of(obj.block, f"file {obj.lfn!r}")
        entries = self._writable_files(block)
        old = entries.get(obj.lfn)
        if old is None:
            entry = FileEntry(obj.size, obj.checksum_text, self._new_id("file", obj.id))
            entries[obj.lfn] = entry
            self._tracker.push((_pop, entries, obj.lfn))
        elif (old.size, old.checksum) != (obj.size, obj.checksum_text):
            entry = FileEntry(obj.size, obj.checksum_text, old.id)
            entries[obj.lfn] = entry
            self._tracker.push((entries.__setitem__, obj.lfn, old))
        else:
            return File._make(obj.lfn, block, old.size, old.checksum, old.id)
        self._tracker.files_touched(block)
        return File._make(obj.lfn, block, entry.size, entry.checksum, entry.id)

    def _update_datasetreplica(self, obj: DatasetReplica) -> DatasetReplica:
        dataset = self._dataset(obj.dataset_name)
        site = self._site(obj.site_name)
        group = self._group(obj.group_name)
        replica = site.find_dataset_replica(dataset.name)
        if replica is None:
            return self._create_dataset_replica(dataset, site, obj.growing, group)
        if replica.growing == obj.growing and replica.group is group:
            return replica
        self._set(replica, "growing", obj.growing)
        self._set(replica, "group", group)
        self._tracker.touched("dataset_replicas", replica)
        return replica

    def _create_dataset_replica(self, dataset: Dataset, site: Site, growing: bool, group: Group) -> DatasetReplica:
        replica = DatasetReplica._make(dataset, site, growing, group)
        self._child_put(dataset, "_replicas", site.name, replica)
        self._child_put(site, "_dataset_replicas", dataset.name, replica)
        self._tracker.touched("dataset_replicas", replica)
        return replica

    def _replica_files(self, block: Block, files: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """Check an incomplete replica's file list against the block; None when it lists them all."""
        if files is None:
            return None
        known = set(block.file_names())
        for lfn in files:
            if lfn not in known:
                raise MissingReference(f"file {lfn!r} is not in block {block.full_name()}")
        if known and len(files) == len(known):
            return None
        return files

    def _update_blockreplica(self, obj: BlockReplica) -> BlockReplica:
        block = self._block_of(obj.block, "block replica")
        site = self._site(obj.site_name)
        group = self._group(obj.group_name)
        files = None if obj.lfns is None else self._replica_files(block, obj.lfns)
        dataset: Any = block.dataset
        dataset_replica = site._dataset_replicas.get(dataset.name) if site._dataset_replicas else None
        if dataset_replica is None:
            dataset_replica = self._create_dataset_replica(dataset, site, False, self.null_group)
        replica = dataset_replica.find_block_replica(block.name)
        if replica is None:
            replica = BlockReplica._make(block, site, group, obj.is_custodial, obj.last_update, files)
            self._child_put(dataset_replica, "_block_replicas", block.name, replica)
            self._add_block_replica_link(block, replica)
        elif (replica.group is group and replica.is_custodial == obj.is_custodial
              and replica.last_update == obj.last_update and replica.lfns == files):
            return replica
        else:
            self._set(replica, "group", group)
            self._set(replica, "is_custodial", obj.is_custodial)
            self._set(replica, "last_update", obj.last_update)
            self._set(replica, "lfns", files)
        self._tracker.touched("dataset_replicas", dataset_replica)
        return replica

    # =====================================================================
    # delete handlers
    # =====================================================================

    def _delete_site(self, obj: Site) -> Site:
        site = self._site(obj.name)
        for replica in list(site.dataset_replicas()):
            dataset = replica.dataset
            assert isinstance(dataset, Dataset)
            for block_replica in replica.block_replicas:
                block = block_replica.block
                assert isinstance(block, Block)
                self._remove_block_replica_link(block, block_replica)
            self._child_drop(dataset, "_replicas", site.name)
        self._drop(self.sites, site.name)
        self._tracker.deleted("sites", (site.id,))
        return site

    def _delete_group(self, obj: Group) -> Group:
        if obj.name is None:
            raise ProtectedObject("the null group cannot be deleted")
        group = self._group(obj.name)
        null = self.null_group
        for site in self.sites.values():
            for replica in site.dataset_replicas():
                changed = False
                if replica.group is group:
                    self._set(replica, "group", null)
                    changed = True
                for block_replica in replica.block_replicas:
                    if block_replica.group is group:
                        self._set(block_replica, "group", null)
                        changed = True
                if changed:
                    self._tracker.touched("dataset_replicas", replica)
        self._drop(self.groups, group.name)
        self._tracker.deleted("groups", (group.id,))
        return group

    def _delete_partition(self, obj: Partition) -> Partition:
        partition = self._partition(obj.name)
        if partition.subpartitions:
            names = ", ".join(p.name for p in partition.subpartitions)
            raise ProtectedObject(f"partition {partition.name!r} has subpartitions ({names}); delete them first")
        if isinstance(partition.parent, Partition):
            self._relink_partition(partition, None)
        for site in self.sites.values():
            if site.find_partition(partition.name) is not None:
                self._child_drop(site, "_partitions", partition.name)
        self._drop(self.partitions, partition.name)
        self._tracker.deleted("partitions", (partition.id,))
        return partition

    def _delete_sitepartition(self, obj: SitePartition) -> SitePartition:
        site = self._site(obj.site_name)
        partition = self._partition(obj.partition_name)
        sp = site.find_partition(partition.name)
        if sp is None:
            raise MissingReference(f"no quota for partition {partition.name!r} at site {site.name!r}")
        self._child_drop(site, "_partitions", partition.name)
        self._tracker.deleted("site_partitions", (site.id, partition.id))
        return sp

    def _delete_dataset(self, obj: Dataset) -> Dataset:
        dataset = self._dataset(obj.name)
        for replica in list(dataset.replicas):
            site = replica.site
            assert isinstance(site, Site)
            self._child_drop(site, "_dataset_replicas", dataset.name)
        self._drop(self.datasets, dataset.name)
        self._tracker.deleted("datasets", (dataset.id,))
        return dataset

    def _delete_block(self, obj: Block) -> Block:
        block = self._block(obj.dataset_name, obj.name)
        for replica in block.replicas:
            self._unlink_block_replica(replica)
        dataset = block.dataset
        self._child_drop(dataset, "_blocks", block.name)
        self._tracker.deleted("blocks", (block.id,))
        return block

    def _delete_file(self, obj: File) -> File:
        block = self._block_of(obj.block, f"file {obj.lfn!r}")
        entries = self._writable_files(block)
        entry = entries.get(obj.lfn)
        if entry is None:
            raise MissingReference(f"file {obj.lfn!r} is not in block {block.full_name()}")
        self._drop(entries, obj.lfn)
        for replica in block.replicas:
            if replica.lfns is None:
                continue
            remaining = tuple(f for f in replica.lfns if f != obj.lfn)
            # holding every file that is left means the replica is now complete
            files = None if entries and len(remaining) == len(entries) else remaining
            if files != replica.lfns:
                self._set(replica, "lfns", files)
                self._tracker.touched("dataset_replicas", self._dataset_replica_of(replica))
        self._tracker.files_touched(block)
        return File._make(obj.lfn, block, entry.size, entry.checksum, entry.id)

    def _delete_datasetreplica(self, obj: DatasetReplica) -> DatasetReplica:
        site = self._site(obj.site_name)
        replica = site.find_dataset_replica(obj.dataset_name)
        if replica is None:
            raise MissingReference(f"dataset {obj.dataset_name!r} has no replica at site {site.name!r}")
        self._remove_dataset_replica(replica)
        return replica

    def _remove_dataset_replica(self, replica: DatasetReplica) -> None:
        dataset = replica.dataset
        site = replica.site
        assert isinstance(dataset, Dataset) and isinstance(site, Site)
        for block_replica in replica.block_replicas:
            block = block_replica.block
            assert isinstance(block, Block)
            self._remove_block_replica_link(block, block_replica)
        self._child_drop(site, "_dataset_replicas", dataset.name)
        self._child_drop(dataset, "_replicas", site.name)
        self._tracker.deleted("dataset_replicas", (dataset.id, site.id))

    def _delete_blockreplica(self, obj: BlockReplica) -> BlockReplica:
        block = self._block_of(obj.block, "block replica")
        replica = block.find_replica(obj.site_name)
        if replica is None:
            raise MissingReference(f"block {block.full_name()} has no replica at site {obj.site_name!r}")
        self._unlink_block_replica(replica)
        return replica

    def _dataset_replica_of(self, replica: BlockReplica) -> DatasetReplica:
        site = replica.site
        assert isinstance(site, Site)
        dataset_replica = site.find_dataset_replica(replica.dataset_name)
        assert dataset_replica is not None
        return dataset_replica

    def _unlink_block_replica(self, replica: BlockReplica) -> None:
        """Remove a block replica; its dataset replica goes too if it was the last one."""
        dataset_replica = self._dataset_replica_of(replica)
        block = replica.block
        assert isinstance(block, Block)
        self._remove_block_replica_link(block, replica)
        self._child_drop(dataset_replica, "_block_replicas", block.name)
        if dataset_replica._block_replicas is None:
            self._remove_dataset_replica(dataset_replica)
        else:
            self._tracker.touched("dataset_replicas", dataset_replica)

    # =====================================================================
    # store support
    # =====================================================================

    def is_alive(self, table: str, obj: Any) -> bool:
        """Whether ``obj`` is (still) part of this image; the store writes only live objects."""
        if table == "sites":
            return self.sites.get(obj.name) is obj
        if table == "groups":
            return self.groups.get(obj.name) is obj
        if table == "partitions":
            return self.partitions.get(obj.name) is obj
        if table == "datasets":
            return self.datasets.get(obj.name) is obj
        if table in ("blocks", "block_files"):
            owner: Any = obj.dataset
            return owner.find_block(obj.name) is obj and self.datasets.get(owner.name) is owner
        if table == "dataset_replicas":
            dataset: Any = obj.dataset
            site: Any = obj.site
            return (site.find_dataset_replica(dataset.name) is obj and self.datasets.get(dataset.name) is dataset
                    and self.sites.get(site.name) is site)
        if table == "site_partitions":
            return _alive_sitepartition(self, obj)
        raise ValueError(f"unknown table {table!r}")


_UPDATE: dict[type, Callable[[Inventory, Any], Any]] = {
    Site: Inventory._update_site,
    Group: Inventory._update_group,
    Partition: Inventory._update_partition,
    SitePartition: Inventory._update_sitepartition,
    Dataset: Inventory._update_dataset,
    Block: Inventory._update_block,
    File: Inventory._update_file,
    DatasetReplica: Inventory._update_datasetreplica,
    BlockReplica: Inventory._update_blockreplica,
}

_DELETE: dict[type, Callable[[Inventory, Any], Any]] = {
    Site: Inventory._delete_site,
    Group: Inventory._delete_group,
    Partition: Inventory._delete_partition,
    SitePartition: Inventory._delete_sitepartition,
    Dataset: Inventory._delete_dataset,
    Block: Inventory._delete_block,
    File: Inventory._delete_file,
    DatasetReplica: Inventory._delete_datasetreplica,
    BlockReplica: Inventory._delete_blockreplica,
}
