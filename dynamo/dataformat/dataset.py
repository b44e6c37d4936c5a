"""Dataset: a named collection of blocks."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import (
    MAX_SOFTWARE_VERSION,
    EnumAttribute,
    check_bool,
    check_dataset_name,
    check_enum,
    check_int,
    check_text,
    enum_name,
    enum_val,
)
from dynamo.dataformat._views import ObjectSet

if TYPE_CHECKING:
    from dynamo.dataformat.arena import Arena
    from dynamo.dataformat.block import Block
    from dynamo.dataformat.datasetreplica import DatasetReplica
    from dynamo.dataformat.file import File
    from dynamo.dataformat.site import Site


class DatasetStatus(StrEnum):
    UNKNOWN = "unknown"
    DELETED = "deleted"
    DEPRECATED = "deprecated"
    INVALID = "invalid"
    PRODUCTION = "production"
    VALID = "valid"
    IGNORED = "ignored"


class DataType(StrEnum):
    UNKNOWN = "unknown"
    PRODUCTION = "production"
    TEST = "test"


def _block_name(block: Block) -> str:
    return block.name


def _replica_site_name(replica: DatasetReplica) -> str:
    return replica.site_name


class Dataset(DataObject):
    """``Dataset(name, status, data_type, software_version, last_update, is_open, id)``.

    ``blocks`` and ``replicas`` are read-only set views keyed by block name and
    by site name respectively.
    """

    __slots__ = ("_name", "id", "_status", "_data_type", "software_version", "last_update", "is_open",
                 "_blocks", "_replicas", "_attr", "_arena", "_replica_offsets", "_file_offsets")

    TYPE = "dataset"
    ATTRS = ("status", "data_type", "software_version", "last_update", "is_open")

    # assigning a value string stores the member (see EnumAttribute)
    status = EnumAttribute("_status", DatasetStatus, "dataset status")
    data_type = EnumAttribute("_data_type", DataType, "dataset data_type")

    # The original's constants (integers there; the members here, see Site)
    STAT_UNKNOWN, STAT_DELETED, STAT_DEPRECATED, STAT_INVALID, STAT_PRODUCTION, STAT_VALID, STAT_IGNORED = (
        DatasetStatus.UNKNOWN, DatasetStatus.DELETED, DatasetStatus.DEPRECATED, DatasetStatus.INVALID,
        DatasetStatus.PRODUCTION, DatasetStatus.VALID, DatasetStatus.IGNORED)
    TYPE_UNKNOWN, TYPE_PRODUCTION, TYPE_TEST = DataType.UNKNOWN, DataType.PRODUCTION, DataType.TEST

    @staticmethod
    def status_name(arg: Any) -> Any:
        return enum_name(DatasetStatus, arg)

    @staticmethod
    def status_val(arg: Any) -> Any:
        return enum_val(DatasetStatus, arg)

    @staticmethod
    def data_type_name(arg: Any) -> Any:
        return enum_name(DataType, arg)

    @staticmethod
    def data_type_val(arg: Any) -> Any:
        return enum_val(DataType, arg)

    @staticmethod
    def format_software_version(value: Any) -> Any:
        """The original's namespace hook; the generic namespace keeps the value as it is."""
        return value

    def __init__(self, name: str, status: DatasetStatus | str = DatasetStatus.UNKNOWN,
                 data_type: DataType | str = DataType.UNKNOWN, software_version: str | None = None,
                 last_update: int = 0, is_open: bool = True, id: int = 0):
        self._name = check_dataset_name(name, "dataset name")
        self._status = check_enum(DatasetStatus, status, "dataset status")
        self._data_type = check_enum(DataType, data_type, "dataset data_type")
        if software_version is not None:
            check_text(software_version, "dataset software_version", MAX_SOFTWARE_VERSION)
        self.software_version = software_version
        self.last_update = check_int(last_update, "dataset last_update")
        self.is_open = check_bool(is_open, "dataset is_open")
        self.id = check_int(id, "dataset id")
        self._blocks: dict[str, Block] | None = None
        self._replicas: dict[str, DatasetReplica] | None = None
        self._attr: dict[str, Any] | None = None
        # the image's arena, where its blocks' files and its replicas' block replicas are packed
        self._arena: Arena | None = None
        # where the loaded replicas' block replicas are in the arena (see DatasetReplica._packed)
        self._replica_offsets: bytes | None = None
        # the loaded blocks' file tables' offsets in the arena, ids and sizes (see Block._files)
        self._file_offsets: bytes | None = None

    @classmethod
    def _make(cls, name: str, status: DatasetStatus, data_type: DataType, software_version: str | None,
              last_update: int, is_open: bool, id: int) -> Dataset:
        obj = cls.__new__(cls)
        obj._name = name
        obj._status = status  # unchecked, like the rest of _make: the slot, not the checking attribute
        obj._data_type = data_type
        obj.software_version = software_version
        obj.last_update = last_update
        obj.is_open = is_open
        obj.id = id
        obj._blocks = None
        obj._replicas = None
        obj._attr = None
        obj._arena = None
        obj._replica_offsets = None
        obj._file_offsets = None
        return obj

    @property
    def name(self) -> str:
        return self._name

    @property
    def key(self) -> tuple[Any, ...]:
        return (self._name,)

    def __repr__(self) -> str:
        return (f"Dataset({self._name!r},'{self._status.value}','{self._data_type.value}',"
                f"{self.software_version!r},{self.last_update},{self.is_open},{self.id})")

    @property
    def attr(self) -> dict[str, Any]:
        """Free-form key-value pairs for the running application, as in the original: transient
        (never stored nor sent to the server), created empty on first use."""
        if self._attr is None:
            self._attr = {}
        return self._attr

    @property
    def blocks(self) -> ObjectSet[Block]:
        return ObjectSet(self._blocks, _block_name)

    @property
    def replicas(self) -> ObjectSet[DatasetReplica]:
        return ObjectSet(self._replicas, _replica_site_name)

    def find_block(self, name: str) -> Block | None:
        return self._blocks.get(name) if self._blocks else None

    def find_replica(self, site: Site | str) -> DatasetReplica | None:
        if not self._replicas:
            return None
        return self._replicas.get(site if isinstance(site, str) else site.name)

    @property
    def files(self) -> set[File]:
        """Every file of every block (the original's property; builds File objects)."""
        return {f for b in self._blocks.values() for f in b.files} if self._blocks else set()

    def find_file(self, lfn: str) -> File | None:
        for block in self._blocks.values() if self._blocks else ():
            found = block.find_file(lfn)
            if found is not None:
                return found
        return None

    @property
    def size(self) -> int:
        return sum(b.size for b in self._blocks.values()) if self._blocks else 0

    @property
    def num_files(self) -> int:
        return sum(b.num_files for b in self._blocks.values()) if self._blocks else 0

