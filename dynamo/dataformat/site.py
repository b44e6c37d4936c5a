"""Site: a storage element holding replicas."""

from __future__ import annotations

import re
from collections.abc import Mapping
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
    enum_name,
    enum_val,
)
from dynamo.errors import ObjectError

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


MAX_PROTOCOL = 32


class FileNameMapping:
    """LFN -> PFN rules of one protocol, as in the original: a list of chains, each a list of
    ``(lfn pattern, pfn replacement)``; ``{n}`` in a replacement is the n-th group the pattern
    captured. ``map`` tries the chains in order and returns the result of the first chain whose
    every step matches (each step rewriting the previous step's result), else None.
    """

    __slots__ = ("_chains", "_re_chains")

    def __init__(self, chains: Any):
        if isinstance(chains, FileNameMapping):
            chains = chains.chains()
        if not isinstance(chains, (list, tuple)):
            raise ObjectError(f"filename_mapping: expected a list of chains, got {type(chains).__name__}")
        self._chains: list[list[tuple[str, str]]] = []
        self._re_chains: list[list[tuple[re.Pattern[str], str]]] = []
        for chain in chains:
            steps = []
            for step in chain:
                if not (isinstance(step, (list, tuple)) and len(step) == 2 and all(isinstance(x, str) for x in step)):
                    raise ObjectError(f"filename_mapping: {step!r} is not a pair (lfn pattern, pfn replacement)")
                steps.append((step[0], step[1]))
            try:
                self._re_chains.append([(re.compile(lfn), pfn) for lfn, pfn in steps])
            except re.error as exc:
                raise ObjectError(f"filename_mapping: bad pattern in {steps!r} ({exc})") from exc
            self._chains.append(steps)

    def chains(self) -> list[list[tuple[str, str]]]:
        return [list(chain) for chain in self._chains]

    def map(self, lfn: str) -> str | None:
        for chain in self._re_chains:
            source: str | None = lfn
            for pattern, replacement in chain:
                assert source is not None
                matches = pattern.match(source)
                if matches is None:
                    source = None
                    break
                try:
                    source = replacement.format(*matches.groups())
                except (IndexError, KeyError, ValueError):
                    source = None
                    break
            if source is not None:
                return source
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileNameMapping) and other._chains == self._chains

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._chains)


class Site(DataObject):
    """``Site(name, host, storage_type, backend, status, id)``.

    ``_dataset_replicas`` (dataset name -> DatasetReplica) and ``_partitions``
    (partition name -> SitePartition) are None until the first entry: there
    are few sites, but the rule is uniform across the model.
    """

    __slots__ = ("_name", "id", "host", "_storage_type", "backend", "_status",
                 "_dataset_replicas", "_partitions", "_filename_mapping", "_x509proxy")

    TYPE = "site"
    ATTRS = ("host", "storage_type", "backend", "status", "filename_mapping", "x509proxy")

    # assigning a value string stores the member (see EnumAttribute)
    storage_type = EnumAttribute("_storage_type", StorageType, "site storage_type")
    status = EnumAttribute("_status", SiteStatus, "site status")

    # The original's constants (integers there; the members here, which compare equal to the
    # value strings and print the same through status_name / storage_type_name).
    TYPE_DISK, TYPE_MSS, TYPE_BUFFER, TYPE_UNKNOWN = StorageType.DISK, StorageType.MSS, StorageType.BUFFER, \
        StorageType.UNKNOWN
    STAT_READY, STAT_WAITROOM, STAT_MORGUE, STAT_UNKNOWN = SiteStatus.READY, SiteStatus.WAITROOM, \
        SiteStatus.MORGUE, SiteStatus.UNKNOWN

    @staticmethod
    def storage_type_name(arg: Any) -> Any:
        return enum_name(StorageType, arg)

    @staticmethod
    def storage_type_val(arg: Any) -> Any:
        return enum_val(StorageType, arg)

    @staticmethod
    def status_name(arg: Any) -> Any:
        return enum_name(SiteStatus, arg)

    @staticmethod
    def status_val(arg: Any) -> Any:
        return enum_val(SiteStatus, arg)

    def __init__(self, name: str, host: str = "", storage_type: StorageType | str = StorageType.DISK,
                 backend: str = "", status: SiteStatus | str = SiteStatus.UNKNOWN, id: Any = 0,
                 x509proxy: str | None = None, sid: int = 0, *,
                 filename_mapping: dict[str, Any] | None = None):
        if isinstance(id, dict):  # the original's (..., status, filename_mapping, x509proxy, sid)
            filename_mapping, id = id, sid
        self._name = check_name(name, "site name", MAX_SITE_NAME)
        self.host = check_text(host, "site host", MAX_HOST)
        self._storage_type = check_enum(StorageType, storage_type, "site storage_type")
        self.backend = check_text(backend, "site backend", MAX_BACKEND)
        self._status = check_enum(SiteStatus, status, "site status")
        self.id = check_int(id, "site id")
        self._dataset_replicas: dict[str, DatasetReplica] | None = None
        self._partitions: dict[str, SitePartition] | None = None
        self._filename_mapping: dict[str, FileNameMapping] = {}
        self.filename_mapping = filename_mapping or {}
        self._x509proxy: str | None = None
        self.x509proxy = x509proxy

    @property
    def filename_mapping(self) -> dict[str, FileNameMapping]:
        """Protocol -> FileNameMapping (the LFN -> PFN rules for that protocol)."""
        return self._filename_mapping

    @filename_mapping.setter
    def filename_mapping(self, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise ObjectError(f"site filename_mapping: expected {{protocol: chains}}, got {type(value).__name__}")
        mapping = {}
        for protocol, chains in value.items():
            check_name(protocol, "site filename_mapping protocol", MAX_PROTOCOL)
            mapping[protocol] = chains if isinstance(chains, FileNameMapping) else FileNameMapping(chains)
        self._filename_mapping = mapping

    @property
    def x509proxy(self) -> str | None:
        """Path of the X.509 proxy used to reach the site's storage, or None."""
        return self._x509proxy

    @x509proxy.setter
    def x509proxy(self, value: str | None) -> None:
        self._x509proxy = None if value is None else check_text(value, "site x509proxy", MAX_BACKEND)

    def filename_mapping_chains(self) -> dict[str, list[list[tuple[str, str]]]]:
        """The rules as plain data (for the codec and the store)."""
        return {protocol: m.chains() for protocol, m in self._filename_mapping.items()}

    def _values(self) -> tuple[Any, ...]:
        return (self.host, self.storage_type, self.backend, self.status, self.filename_mapping_chains(),
                self._x509proxy)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key(self) -> tuple[Any, ...]:
        return (self._name,)

    def __repr__(self) -> str:
        return (f"Site({self._name!r},{self.host!r},'{self._storage_type.value}',"
                f"{self.backend!r},'{self._status.value}',{self.id})")

    def to_pfn(self, lfn: str, protocol: str | None = None) -> str | None:
        """The physical file name of ``lfn`` for ``protocol``, through the site's rules for it
        (None when it has rules but none for this protocol, or they do not match, as in the
        original). A site with no rules at all, or a call without a protocol, gives the LFN
        attached to the site's backend (the "Adding Content" rule)."""
        if protocol is None or not self._filename_mapping:
            return self.backend + lfn
        mapping = self._filename_mapping.get(protocol)
        return None if mapping is None else mapping.map(lfn)

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
    def partitions(self) -> SitePartitions:
        """The site's quotas, keyed by Partition object or by partition name (read-only; change
        them through the inventory). See :class:`SitePartitions`."""
        return SitePartitions(self)

    def find_partition(self, partition: Any) -> SitePartition | None:
        if not self._partitions:
            return None
        name = partition if isinstance(partition, str) else partition.name
        return self._partitions.get(name)


# the original's nested class name, Site.FileNameMapping (set here: inside the class body the name
# would shadow the type in the annotations)
setattr(Site, "FileNameMapping", FileNameMapping)  # noqa: B010


class SitePartitions(Mapping[Any, "SitePartition"]):
    """``site.partitions``: keyed by Partition (the original's way) or by name.

    Iterating gives the Partition objects of the quotas set at this site (or the names, for a
    site outside an inventory). Looking up a Partition object with no quota here gives a
    detached ``SitePartition(site, partition, 0)``: the original created one with quota 0 for
    every partition at every site, and 0 means "no space" in both. Pass it (or a changed clone)
    to ``inventory.update`` to store it.
    """

    __slots__ = ("_site",)

    def __init__(self, site: Site):
        self._site = site

    def _items(self) -> dict[str, SitePartition]:
        return self._site._partitions or {}

    def __getitem__(self, key: Any) -> SitePartition:
        name = key if isinstance(key, str) else getattr(key, "name", None)
        found = self._items().get(name) if isinstance(name, str) else None
        if found is not None:
            return found
        if isinstance(key, DataObject) and key.TYPE == "partition":
            from dynamo.dataformat.sitepartition import SitePartition
            return SitePartition(self._site, key, 0)  # type: ignore[arg-type]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        name = key if isinstance(key, str) else getattr(key, "name", None)
        return isinstance(name, str) and name in self._items()

    def __iter__(self) -> Iterator[Any]:
        return (sp.partition for sp in list(self._items().values()))

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        return repr({sp.partition_name: sp for sp in self._items().values()})
