"""Update handlers: ``inventory.update(obj)`` for each object type (see ``dynamo.core.inventory``)."""

from __future__ import annotations

from typing import Any

from dynamo.core.image import ImageState, _pop
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
from dynamo.dataformat.filetable import FileEntry
from dynamo.errors import MissingReference, ProtectedObject


class Updates(ImageState):
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
            dataset._arena = self.arena
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
        # the hottest handler with block replicas' (a change set of new files): lookups inlined
        lfn = obj.lfn
        ref = obj.block
        if isinstance(ref, str):
            dataset, _, name = ref.partition("#")  # validated by File()
            block = self._block(dataset, name)
        else:
            block = self._block_of(ref, f"file {lfn!r}")
        entries = self._writable_files(block)
        old = entries.get(lfn)
        size, checksum = obj.size, obj.checksum_text
        tracker = self._tracker
        if old is None:
            entry = FileEntry(size, checksum, self._new_id("file", obj.id))
            entries[lfn] = entry
            tracker.push((_pop, entries, lfn))
        elif old.size == size and old.checksum == checksum:
            return File._make(lfn, block, size, checksum, old.id)
        else:
            entry = FileEntry(size, checksum, old.id)
            entries[lfn] = entry
            tracker.push((entries.__setitem__, lfn, old))
        tracker.files_touched(block)
        return File._make(lfn, block, size, checksum, entry.id)

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
        ref = obj.block
        if isinstance(ref, str):
            dataset_name, _, block_name = ref.partition("#")  # validated by BlockReplica()
            block = self._block(dataset_name, block_name)
        else:
            block = self._block_of(ref, "block replica")
        site = self._site(obj.site_name)
        group = self._group(obj.group_name)
        lfns = obj.lfns
        files = None if lfns is None else self._replica_files(block, lfns)
        dataset: Any = block.dataset
        by_dataset = site._dataset_replicas
        dataset_replica = by_dataset.get(dataset.name) if by_dataset else None
        if dataset_replica is None:
            dataset_replica = self._create_dataset_replica(dataset, site, False, self.null_group)
        is_custodial, last_update = obj.is_custodial, obj.last_update
        tail = self._packed_files(block, files) if self._edits_packed(dataset_replica, block) else None
        if tail is not None:
            if self._put_packed(dataset_replica, block, group, is_custodial, last_update, files, tail):
                self._tracker.block_replicas_touched(dataset_replica)
            return BlockReplica._make(block, site, group, is_custodial, last_update, files)
        members = self._unpacked_replicas(dataset_replica)
        replica = members.get(block.name) if members else None
        if replica is None:
            replica = BlockReplica._make(block, site, group, is_custodial, last_update, files)
            self._child_put(dataset_replica, "_block_replicas", block.name, replica)
        elif (replica.group is group and replica.is_custodial == is_custodial
              and replica.last_update == last_update and replica.lfns == files):
            return replica
        else:
            # one undo entry for the four values
            self._tracker.push((_restore_replica, replica, replica.group, replica.is_custodial, replica.last_update,
                                replica.lfns))
            replica.group = group
            replica.is_custodial = is_custodial
            replica.last_update = last_update
            replica.lfns = files
        self._tracker.block_replicas_touched(dataset_replica)
        return replica


def _restore_replica(replica: BlockReplica, group: Group, is_custodial: bool, last_update: int,
                     lfns: tuple[str, ...] | None) -> None:
    replica.group = group
    replica.is_custodial = is_custodial
    replica.last_update = last_update
    replica.lfns = lfns
