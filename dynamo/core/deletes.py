"""Delete handlers, with their cascades: ``inventory.delete(obj)`` (see ``dynamo.core.inventory``)."""

from __future__ import annotations

from dynamo.core.image import ImageState
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
from dynamo.errors import MissingReference, ProtectedObject


class Deletes(ImageState):
    # =====================================================================
    # delete handlers
    # =====================================================================

    def _delete_site(self, obj: Site) -> Site:
        site = self._site(obj.name)
        for replica in list(site.dataset_replicas()):
            dataset = replica.dataset
            assert isinstance(dataset, Dataset)
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
                if any(block_replica.group is group for block_replica in replica.block_replicas):
                    for block_replica in (self._unpacked_replicas(replica) or {}).values():
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
        # the incomplete replicas, unpacked while their file ids still resolve to names
        incomplete = [self._live_block_replica(r) for r in block.replicas if r.lfns is not None]
        self._drop(entries, obj.lfn)
        for replica in incomplete:
            assert replica.lfns is not None
            remaining = tuple(f for f in replica.lfns if f != obj.lfn)
            # holding every file that is left means the replica is now complete
            files = None if entries and len(remaining) == len(entries) else remaining
            if files != replica.lfns:
                self._set(replica, "lfns", files)
                self._tracker.block_replicas_touched(self._dataset_replica_of(replica))
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
        if self._edits_packed(dataset_replica, block):
            self._drop_packed(dataset_replica, block)
        else:
            self._unpacked_replicas(dataset_replica)
            self._child_drop(dataset_replica, "_block_replicas", block.name)
        if dataset_replica._block_replicas is None and dataset_replica._packed is None:
            self._remove_dataset_replica(dataset_replica)
        else:
            self._tracker.block_replicas_touched(dataset_replica)
