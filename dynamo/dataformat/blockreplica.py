"""BlockReplica: a copy of a block (complete or partial) at a site."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import (
    MAX_GROUP_NAME,
    MAX_LFN,
    MAX_SITE_NAME,
    check_bool,
    check_int,
    check_link,
    check_name,
    split_block_full_name,
)
from dynamo.dataformat.datasetreplica import group_name
from dynamo.errors import ObjectError

if TYPE_CHECKING:
    from dynamo.dataformat.block import Block
    from dynamo.dataformat.file import File
    from dynamo.dataformat.group import Group
    from dynamo.dataformat.site import Site


def normalize_files(files: Iterable[str] | None) -> tuple[str, ...] | None:
    """None (complete) or a sorted tuple of distinct, valid LFNs."""
    if files is None:
        return None
    if isinstance(files, str):
        raise ObjectError("blockreplica files: expected a list of file names, got a string")
    names = tuple(sorted(set(files)))
    for name in names:
        check_name(name, "blockreplica file", MAX_LFN)
    return names


class BlockReplica(DataObject):
    """``BlockReplica(block, site, group, is_custodial, last_update, files)``.

    Key is (dataset name, block name, site name). ``block`` is a Block inside an
    inventory, ``'dataset#block'`` outside; ``group`` likewise a Group or a name
    (None is the null group). ``lfns`` is None when the replica holds every
    file of the block (complete), else the sorted tuple of the LFNs it holds
    (the constructor's ``files`` argument).

    The original's form ``BlockReplica(block, site, group, is_custodial, size, last_update,
    file_ids)`` is accepted too (seven positional arguments, or six with an integer sixth, or the
    ``size=`` / ``file_ids=`` keywords): ``file_ids`` may hold file ids (resolved through the live
    block) or LFNs; ``size=0`` without ids is an empty replica; other sizes are recomputed from
    the files, never stored.
    """

    __slots__ = ("_block", "_site", "group", "is_custodial", "last_update", "lfns")

    TYPE = "blockreplica"
    ATTRS = ("is_custodial", "last_update", "lfns")

    def __init__(self, block: Block | str, site: Site | str, group: Group | str | None = None,
                 is_custodial: bool = False, last_update: Any = 0, files: Any = None, *original: Any,
                 size: int | None = None, file_ids: Iterable[int | str] | None = None):
        if original or (isinstance(files, int) and not isinstance(files, bool)):
            # the original's (..., is_custodial, size, last_update[, file_ids])
            if len(original) > 1:
                raise ObjectError("blockreplica: too many arguments")
            size, last_update, file_ids = last_update, files, (original[0] if original else None)
            files = None
        if isinstance(block, str):
            split_block_full_name(block)
        else:
            check_link(block, "blockreplica block", "block")
        if isinstance(site, str):
            check_name(site, "blockreplica site", MAX_SITE_NAME)
        else:
            check_link(site, "blockreplica site", "site")
        if isinstance(group, str):
            check_name(group, "blockreplica group", MAX_GROUP_NAME)
        else:
            check_link(group, "blockreplica group", "group", nullable=True)
        self._block = block
        self._site = site
        self.group = group
        self.is_custodial = check_bool(is_custodial, "blockreplica is_custodial")
        self.last_update = check_int(last_update, "blockreplica last_update")
        if file_ids is not None:
            files = _names_of_ids(block, file_ids)
        elif size == 0 and files is None:
            files = ()
        self.lfns = normalize_files(files)

    @classmethod
    def _make(cls, block: Block, site: Site, group: Group, is_custodial: bool, last_update: int,
              files: tuple[str, ...] | None) -> BlockReplica:
        obj = cls.__new__(cls)
        obj._block = block
        obj._site = site
        obj.group = group
        obj.is_custodial = is_custodial
        obj.last_update = last_update
        obj.lfns = files
        return obj

    @property
    def block(self) -> Block | str:
        return self._block

    @property
    def site(self) -> Site | str:
        return self._site

    @property
    def block_full_name(self) -> str:
        b = self._block
        return b if isinstance(b, str) else b.full_name()

    @property
    def block_name(self) -> str:
        b = self._block
        return split_block_full_name(b)[1] if isinstance(b, str) else b.name

    @property
    def dataset_name(self) -> str:
        b = self._block
        return split_block_full_name(b)[0] if isinstance(b, str) else b.dataset_name

    @property
    def site_name(self) -> str:
        s = self._site
        return s if isinstance(s, str) else s.name

    @property
    def group_name(self) -> str | None:
        return group_name(self.group)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.dataset_name, self.block_name, self.site_name)

    def _values(self) -> tuple[Any, ...]:
        return (self.group_name, self.is_custodial, self.last_update, self.lfns)

    def __repr__(self) -> str:
        return (f"BlockReplica({self.block_full_name!r},{self.site_name!r},{self.group_name!r},"
                f"{self.is_custodial},{self.last_update},{self.lfns!r})")

    def is_complete(self) -> bool:
        return self.lfns is None

    def _live_block(self) -> Block:
        if isinstance(self._block, str):
            raise TypeError("this needs a block replica inside an inventory")
        return self._block

    @property
    def num_files(self) -> int:
        return self._live_block().num_files if self.lfns is None else len(self.lfns)

    @property
    def size(self) -> int:
        """Bytes physically present."""
        block = self._live_block()
        if self.lfns is None:
            return block._quiet_size()
        entries = dict(block._iter_entries())
        return sum(entries[lfn].size for lfn in self.lfns if lfn in entries)

    # --- the original's file API --------------------------------------------

    @property
    def file_ids(self) -> tuple[int | str, ...] | None:
        """None when complete, else the ids of the files held (an LFN for a file that has no id
        yet, i.e. one added by this application), as in the original."""
        if self.lfns is None:
            return None
        ids = {lfn: e.id for lfn, e in self._live_block()._iter_entries()}
        return tuple(ids.get(lfn) or lfn for lfn in self.lfns)

    def files(self) -> set[File]:
        """The File objects this replica holds."""
        block = self._live_block()
        held = None if self.lfns is None else set(self.lfns)
        return {f for f in block.files if held is None or f.lfn in held}

    def _check_file(self, lfile: File, what: str) -> None:
        if lfile.block_full_name != self.block_full_name:
            raise ObjectError(f"cannot {what} file {lfile.lfn} (block {lfile.block_full_name}): "
                              f"not a file of {self.block_full_name}")

    def has_file(self, lfile: File) -> bool:
        if lfile.block_full_name != self.block_full_name:
            return False
        return self.lfns is None or lfile.lfn in self.lfns

    def add_file(self, lfile: File) -> None:
        """Record that the replica now holds ``lfile``; a complete replica stays complete, and
        one that comes to hold every file of its block becomes complete. Pass the replica to
        ``inventory.update`` to keep the change."""
        self._check_file(lfile, "add")
        if self.lfns is None or lfile.lfn in self.lfns:
            return
        held = set(self.lfns) | {lfile.lfn}
        known = set(self._live_block().file_names())
        self.lfns = None if known and known <= held else tuple(sorted(held))

    def delete_file(self, lfile: File, full_deletion: bool = False) -> bool:
        """Record that the replica no longer holds ``lfile``; False if it did not hold it.
        ``full_deletion``: the file is being deleted from the block too, so a complete replica
        stays complete."""
        self._check_file(lfile, "delete")
        if self.lfns is None:
            if full_deletion:
                return True
            self.lfns = tuple(sorted(n for n in self._live_block().file_names() if n != lfile.lfn))
            return True
        if lfile.lfn not in self.lfns:
            return False
        self.lfns = tuple(n for n in self.lfns if n != lfile.lfn)
        return True


def _names_of_ids(block: Block | str, file_ids: Iterable[int | str]) -> list[str]:
    """The original's file_ids (ids or LFNs) as LFNs; ids need a live block to resolve."""
    if isinstance(file_ids, str):
        raise ObjectError("blockreplica file_ids: expected a list of ids or LFNs, got a string")
    names: list[str] = []
    by_id: dict[int, str] | None = None
    for fid in file_ids:
        if isinstance(fid, str):
            names.append(fid)
            continue
        if isinstance(block, str):
            raise ObjectError(f"blockreplica file_ids: file id {fid!r} needs a block inside an inventory")
        if by_id is None:
            by_id = {e.id: lfn for lfn, e in block._iter_entries() if e.id}
        try:
            names.append(by_id[fid])
        except (KeyError, TypeError):
            raise ObjectError(f"blockreplica file_ids: no file with id {fid!r} in {block.full_name()}") from None
    return names
