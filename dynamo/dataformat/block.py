"""Block: a group of files of one dataset, the unit of replication."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from dynamo.dataformat import filetable
from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import (
    check_block_name,
    check_bool,
    check_dataset_name,
    check_int,
    check_link,
    split_block_full_name,
)
from dynamo.dataformat.arena import Buffer
from dynamo.dataformat.file import File
from dynamo.dataformat.filetable import FileEntries

if TYPE_CHECKING:
    from dynamo.dataformat.blockreplica import BlockReplica
    from dynamo.dataformat.dataset import Dataset
    from dynamo.dataformat.site import Site


class Block(DataObject):
    """``Block(name, dataset, size, num_files, is_open, last_update, id, internal_name)``.

    ``size`` (bytes) and ``num_files`` are attributes of their own; when the
    block has files in the inventory, a change set must leave them equal to
    the sum and count of those files. The trailing ``internal_name`` argument
    is accepted so that the original system's reprs evaluate; names are always
    stored as given.

    Files are kept packed: ``_files`` is an int as loaded, the block's index among its dataset's
    ``_file_offsets`` (the offset of its file table in the image's arena, ``dataset._arena``,
    see ``dataformat.arena``; its id; its size as loaded: a size change makes the table bytes of
    its own), or bytes of its own (packed
    after a change), or an unpacked dict while a change is in progress, or None. Replicas are
    not stored here: they are found through the dataset's replicas.
    """

    __slots__ = ("_name", "_dataset", "id", "_size", "_meta", "_files")

    TYPE = "block"
    ATTRS = ("size", "num_files", "is_open", "last_update")

    def __init__(self, name: str, dataset: Dataset | str, size: int = 0, num_files: int = 0,
                 is_open: bool = False, last_update: int = 0, id: int = 0, internal_name: bool = False):
        self._name = check_block_name(name, "block name")
        if isinstance(dataset, str):
            check_dataset_name(dataset, "block dataset")
        else:
            check_link(dataset, "block dataset", "dataset")
        self._dataset = dataset
        self._files: int | bytes | FileEntries | None = None
        self.size = check_int(size, "block size")
        self._meta = _meta(check_int(last_update, "block last_update"), check_int(num_files, "block num_files"),
                           check_bool(is_open, "block is_open"))
        self.id = check_int(id, "block id")
        check_bool(internal_name, "block internal_name")

    @classmethod
    def _make(cls, name: str, dataset: Dataset, size: int, num_files: int, is_open: bool,
              last_update: int, id: int) -> Block:
        obj = cls.__new__(cls)
        obj._name = name
        obj._dataset = dataset
        obj._size = size
        obj._meta = _meta(last_update, num_files, is_open)
        obj.id = id
        obj._files = None
        return obj

    @property
    def name(self) -> str:
        return self._name

    @property
    def dataset(self) -> Dataset | str:
        return self._dataset

    # last_update, num_files and is_open share one int (``_meta``, see ``_meta()``): a Block is
    # then 80 bytes rather than 96, which a forked reader that walks the blocks copies
    @property
    def last_update(self) -> int:
        return self._meta >> 65

    @last_update.setter
    def last_update(self, value: int) -> None:
        self._meta = _meta(check_int(value, "block last_update"), self.num_files, self.is_open)

    @property
    def num_files(self) -> int:
        return (self._meta >> 1) & _U64

    @num_files.setter
    def num_files(self, value: int) -> None:
        self._meta = _meta(self.last_update, check_int(value, "block num_files"), self.is_open)

    @property
    def is_open(self) -> bool:
        return self._meta & 1 == 1

    @is_open.setter
    def is_open(self, value: bool) -> None:
        self._meta = _meta(self.last_update, self.num_files, check_bool(value, "block is_open"))

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        if type(self._files) is int:  # the loaded size (see _quiet_size) no longer holds
            self._files = filetable.extract(*self._span())
        self._size = value

    # A loaded block (``_files`` an int) finds its id and size in its dataset's ``_file_offsets``
    # (see ``Block._span``): readers that take them from there write no reference count of the
    # block's own ints, whose pages a forked reader would otherwise copy (the blocks' replicas).
    def _quiet_id(self) -> int:
        files = self._files
        if type(files) is int:
            dataset: Any = self._dataset
            return int(_I64.unpack_from(dataset._file_offsets, 24 * files + 8)[0])
        return self.id

    def _quiet_size(self) -> int:
        files = self._files
        if type(files) is int:
            dataset: Any = self._dataset
            return int(_I64.unpack_from(dataset._file_offsets, 24 * files + 16)[0])
        return self._size

    @property
    def dataset_name(self) -> str:
        d = self._dataset
        return d if isinstance(d, str) else d.name

    def full_name(self) -> str:
        """``'dataset#block'`` (a method, as in the original)."""
        return f"{self.dataset_name}#{self._name}"

    def real_name(self) -> str:
        """The block name (the original could store it in a converted form; names here are kept as given)."""
        return self._name

    # The original's namespace hooks (identity in its generic namespace, as here)
    @staticmethod
    def to_internal_name(name: str) -> str:
        return name

    @staticmethod
    def to_real_name(name: str) -> str:
        return name

    @staticmethod
    def to_full_name(dataset_name: str, block_real_name: str) -> str:
        return f"{dataset_name}#{block_real_name}"

    @staticmethod
    def from_full_name(full_name: str) -> tuple[str, str]:
        """``'dataset#block'`` -> ``(dataset name, block name)``; ObjectError when malformed."""
        return split_block_full_name(full_name)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.dataset_name, self._name)

    def __repr__(self) -> str:
        return (f"Block({self._name!r},{self.dataset_name!r},{self.size},{self.num_files},"
                f"{self.is_open},{self.last_update},{self.id},False)")

    # --- replicas ---------------------------------------------------------

    @property
    def replicas(self) -> tuple[BlockReplica, ...]:
        dataset = self._dataset
        if isinstance(dataset, str) or not dataset._replicas:
            return ()
        found = []
        for dataset_replica in dataset._replicas.values():
            replica = dataset_replica.find_block_replica(self)
            if replica is not None:
                found.append(replica)
        return tuple(found)

    def find_replica(self, site: Site | str) -> BlockReplica | None:
        dataset = self._dataset
        if isinstance(dataset, str) or not dataset._replicas:
            return None
        dataset_replica = dataset._replicas.get(site if isinstance(site, str) else site.name)
        return None if dataset_replica is None else dataset_replica.find_block_replica(self)

    # --- files ------------------------------------------------------------

    def _span(self) -> tuple[Buffer | None, int, int | None]:
        """Where the packed file table is: ``(buffer, start, end)``; ``(None, 0, None)`` without files.
        Not for a block whose files are unpacked (a dict)."""
        files = self._files
        if type(files) is int:
            dataset: Any = self._dataset
            (offset,) = _I64.unpack_from(dataset._file_offsets, 24 * files)
            return dataset._arena.span(offset)
        assert files is None or isinstance(files, bytes)
        return files, 0, None

    def _entries(self) -> FileEntries:
        """The files as a mutable dict, unpacking them if needed (inventory use only)."""
        files = self._files
        if isinstance(files, dict):
            return files
        entries = filetable.unpack(*self._span())
        self._files = entries
        return entries

    def _pack(self) -> None:
        if isinstance(self._files, dict):
            self._files = filetable.pack(self._files)

    def _packed_files(self) -> bytes | None:
        """The packed file table as a bytes value of its own (the store's row)."""
        self._pack()
        return filetable.extract(*self._span())

    def _iter_entries(self) -> Any:
        files = self._files
        if isinstance(files, dict):
            return iter(files.items())
        return filetable.iterate(*self._span())

    @property
    def files(self) -> tuple[File, ...]:
        return tuple(File._make(lfn, self, e.size, e.checksum, e.id) for lfn, e in self._iter_entries())

    def file_names(self) -> list[str]:
        files = self._files
        if isinstance(files, dict):
            return list(files)
        return filetable.names(*self._span())

    def file_sizes(self) -> list[int]:
        """The sizes of the files, in the order of ``file_names()``."""
        files = self._files
        if isinstance(files, dict):
            return [e.size for e in files.values()]
        return filetable.sizes(*self._span())

    def _file_ids(self) -> list[int]:
        files = self._files
        if isinstance(files, dict):
            return [e.id for e in files.values()]
        return filetable.ids(*self._span())

    def _names_by_id(self) -> dict[int, str]:
        files = self._files
        if isinstance(files, dict):
            return {e.id: lfn for lfn, e in files.items()}
        span = self._span()
        return dict(zip(filetable.ids(*span), filetable.names(*span), strict=True))

    def find_file(self, lfn: str) -> File | None:
        files = self._files
        if isinstance(files, dict):
            entry = files.get(lfn)
            return None if entry is None else File._make(lfn, self, entry.size, entry.checksum, entry.id)
        for name, entry in filetable.iterate(*self._span()):
            if name == lfn:
                return File._make(lfn, self, entry.size, entry.checksum, entry.id)
        return None

    def has_files(self) -> bool:
        return bool(self._files) or type(self._files) is int

    def files_count(self) -> int:
        """How many files the inventory holds for this block (may differ from ``num_files``
        only while a change set is being applied, or when file details were never loaded)."""
        files = self._files
        return len(files) if isinstance(files, dict) else filetable.count(*self._span())

    def files_size(self) -> int:
        files = self._files
        if isinstance(files, dict):
            return sum(e.size for e in files.values())
        return filetable.total_size(*self._span())


_I64 = struct.Struct("<q")
_U64 = (1 << 64) - 1


def _meta(last_update: int, num_files: int, is_open: bool) -> int:
    """``Block._meta``: last_update, num_files (each below 2**63, as checked) and is_open in one int."""
    return (last_update << 65) | (num_files << 1) | is_open
