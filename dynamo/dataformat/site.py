"""Site: a storage element holding replicas."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, Iterator

from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import (
    MAX_BACKEND,
    MAX_HOST,
    MAX_SITE_NAME,
    EnumAttribute,
    check_enum,
    check_int,
    check_name,
    check_text,
)

if TYPE_CHECKING:
    from dynamo.dataformat.block import Block
    from dynamo.dataformat.blockreplica import BlockReplica
    from dynamo.dataformat.datasetreplica import DatasetReplica
    from dynamo.dataformat.sitepartition import SitePartition


class StorageType(StrEnum):
    DISK = "disk"
    MSS = "mss"
    BUFFER = "buffer"
    UNKNOWN = "unknown"


class SiteStatus(StrEnum):
    READY = "ready"
    WAITROOM = "waitroom"
    MORGUE = "morgue"
    UNKNOWN = "unknown"


class Site(DataObject):
    """``Site(name, host, storage_type, backend, status, id)``.

    ``_dataset_replicas`` (dataset name -> DatasetReplica) and ``_partitions``
    (partition name -> SitePartition) are None until the first entry: there
    are few sites, but the rule is uniform across the model.
    """

    __slots__ = ("_name", "id", "host", "_storage_type", "backend", "_status",
                 "_dataset_replicas", "_partitions")

    TYPE = "site"
    ATTRS = ("host", "storage_type", "backend", "status")

    # assigning a value string stores the member (see EnumAttribute)
    storage_type = EnumAttribute("_storage_type", StorageType, "site storage_type")
    status = EnumAttribute("_status", SiteStatus, "site status")

    def __init__(self, name: str, host: str = "", storage_type: StorageType | str = StorageType.DISK,
                 backend: str = "", status: SiteStatus | str = SiteStatus.READY, id: int = 0):
        self._name = check_name(name, "site name", MAX_SITE_NAME)
        self.host = check_text(host, "site host", MAX_HOST)
        self._storage_type = check_enum(StorageType, storage_type, "site storage_type")
        self.backend = check_text(backend, "site backend", MAX_BACKEND)
        self._status = check_enum(SiteStatus, status, "site status")
        self.id = check_int(id, "site id")
        self._dataset_replicas: dict[str, DatasetReplica] | None = None
        self._partitions: dict[str, SitePartition] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def key(self) -> tuple[Any, ...]:
        return (self._name,)

    def __repr__(self) -> str:
        return (f"Site({self._name!r},{self.host!r},'{self._storage_type.value}',"
                f"{self.backend!r},'{self._status.value}',{self.id})")

    def to_pfn(self, lfn: str) -> str:
        """The physical file name: the LFN attached to the site's backend."""
        return self.backend + lfn

    # --- replicas ---------------------------------------------------------

    def dataset_replicas(self) -> Iterator[DatasetReplica]:
        return iter(self._dataset_replicas.values()) if self._dataset_replicas else iter(())

    def num_dataset_replicas(self) -> int:
        return len(self._dataset_replicas) if self._dataset_replicas else 0

    def find_dataset_replica(self, dataset: Any) -> DatasetReplica | None:
        """The replica of ``dataset`` (a Dataset or a dataset name) here, if any."""
        if not self._dataset_replicas:
            return None
        name = dataset if isinstance(dataset, str) else dataset.name
        return self._dataset_replicas.get(name)

    def find_block_replica(self, block: Block) -> BlockReplica | None:
        replica = self.find_dataset_replica(block.dataset_name)
        return None if replica is None else replica.find_block_replica(block)

    def block_replicas(self) -> Iterator[BlockReplica]:
        for replica in self.dataset_replicas():
            yield from replica.block_replicas

    # --- partitions -------------------------------------------------------

    @property
    def partitions(self) -> dict[str, SitePartition]:
        """Partition name -> SitePartition (a copy; change it through the inventory)."""
        return dict(self._partitions) if self._partitions else {}

    def find_partition(self, partition: Any) -> SitePartition | None:
        if not self._partitions:
            return None
        name = partition if isinstance(partition, str) else partition.name
        return self._partitions.get(name)
