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

from typing import Any, Callable

from dynamo.core.deletes import Deletes
from dynamo.core.original_api import OriginalInventoryAPI
from dynamo.core.updates import Updates
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
from dynamo.errors import ObjectError


def _alive_sitepartition(inv: Inventory, sp: SitePartition) -> bool:
    site = sp.site
    return (isinstance(site, Site) and inv.sites.get(site.name) is site
            and site._partitions is not None and site._partitions.get(sp.partition_name) is sp
            and inv.partitions.get(sp.partition_name) is sp.partition)


class Inventory(Updates, Deletes, OriginalInventoryAPI):
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
