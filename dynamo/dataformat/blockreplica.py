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
    (None is the null group). ``files`` is None when the replica holds every
    file of the block (complete), else the sorted tuple of the LFNs it holds.
    """

    __slots__ = ("_block", "_site", "group", "is_custodial", "last_update", "files")

    TYPE = "blockreplica"
    ATTRS = ("is_custodial", "last_update", "files")

    def __init__(self, block: Block | str, site: Site | str, group: Group | str | None = None,
                 is_custodial: bool = False, last_update: int = 0, files: Iterable[str] | None = None):
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
        self.files = normalize_files(files)

    @classmethod
    def _make(cls, block: Block, site: Site, group: Group, is_custodial: bool, last_update: int,
              files: tuple[str, ...] | None) -> BlockReplica:
        obj = cls.__new__(cls)
        obj._block = block
        obj._site = site
        obj.group = group
        obj.is_custodial = is_custodial
        obj.last_update = last_update
        obj.files = files
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
        return b if isinstance(b, str) else b.full_name

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
        return (self.group_name, self.is_custodial, self.last_update, self.files)

    def __repr__(self) -> str:
        return (f"BlockReplica({self.block_full_name!r},{self.site_name!r},{self.group_name!r},"
                f"{self.is_custodial},{self.last_update},{self.files!r})")

    def is_complete(self) -> bool:
        return self.files is None

    def _live_block(self) -> Block:
        if isinstance(self._block, str):
            raise TypeError("size and num_files need a replica inside an inventory")
        return self._block

    @property
    def num_files(self) -> int:
        return self._live_block().num_files if self.files is None else len(self.files)

    @property
    def size(self) -> int:
        """Bytes physically present."""
        block = self._live_block()
        if self.files is None:
            return block.size
        entries = dict(block._iter_entries())
        return sum(entries[lfn].size for lfn in self.files if lfn in entries)
