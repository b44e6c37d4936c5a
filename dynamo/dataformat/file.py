"""File: one logical file of a block.

Inside the inventory, files live packed in their block (see ``filetable``);
``File`` objects are values handed out by ``Block.files`` / ``Block.find_file``
and accepted by ``inventory.update`` / ``inventory.delete``. Changing a File
object you were handed changes nothing until you pass it to ``update``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import MAX_LFN, check_int, check_link, check_name, split_block_full_name
from dynamo.errors import ObjectError

if TYPE_CHECKING:
    from dynamo.dataformat.block import Block

CHECKSUM_ALGORITHMS = ("adler32", "cksum", "md5")
_CHECKSUM_VALUE = {
    "adler32": re.compile(r"[0-9a-f]{8}"),
    "cksum": re.compile(r"[0-9]{1,10}"),
    "md5": re.compile(r"[0-9a-f]{32}"),
}


def format_checksums(values: dict[str, str]) -> str | None:
    """``{'adler32': '0a1b2c3d'}`` -> ``'adler32:0a1b2c3d'`` (validated, sorted)."""
    parts = []
    for algorithm in sorted(values):
        value = values[algorithm]
        pattern = _CHECKSUM_VALUE.get(algorithm)
        if pattern is None:
            raise ObjectError(f"checksum: unknown algorithm {algorithm!r} (known: {', '.join(CHECKSUM_ALGORITHMS)})")
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ObjectError(f"checksum {algorithm}: {value!r} is not a valid {algorithm} value")
        parts.append(f"{algorithm}:{value}")
    return ",".join(parts) or None


def parse_checksums(text: str | None) -> dict[str, str]:
    """The inverse of :func:`format_checksums`; validates the text."""
    if text is None:
        return {}
    if not isinstance(text, str) or not text:
        raise ObjectError(f"checksum: expected 'algorithm:value[,...]' or None, got {text!r}")
    values: dict[str, str] = {}
    for part in text.split(","):
        algorithm, sep, value = part.partition(":")
        if not sep:
            raise ObjectError(f"checksum: {part!r} is not 'algorithm:value'")
        if algorithm in values:
            raise ObjectError(f"checksum: {algorithm} given twice")
        values[algorithm] = value
    if format_checksums(values) != text:
        raise ObjectError(f"checksum: {text!r} is not in canonical form (sorted 'algorithm:value' pairs)")
    return values


def checksum_text(value: Any) -> str | None:
    """Any accepted checksum form -> the canonical text (validated)."""
    if value is None or value == ():
        return None
    if isinstance(value, str):
        parse_checksums(value)
        return value
    if isinstance(value, dict):
        return format_checksums(value)
    if isinstance(value, (tuple, list)):
        if len(value) != len(CHECKSUM_ALGORITHMS):
            raise ObjectError(f"checksum: expected {len(CHECKSUM_ALGORITHMS)} values "
                              f"({', '.join(CHECKSUM_ALGORITHMS)}), got {len(value)}")
        return format_checksums({a: v for a, v in zip(CHECKSUM_ALGORITHMS, value, strict=True) if v is not None})
    raise ObjectError(f"checksum: expected text, a tuple, a dict or None, got {type(value).__name__}")


class File(DataObject):
    """``File(lfn, block, size, checksum, id)``; ``block`` is a Block or ``'dataset#block'``."""

    __slots__ = ("_lfn", "_block", "size", "checksum_text", "id")

    TYPE = "file"
    ATTRS = ("size", "checksum_text")

    checksum_algorithms = CHECKSUM_ALGORITHMS
    """The order of the values in ``checksum`` (the original's class attribute)."""

    def __init__(self, lfn: str, block: Block | str | None = None, size: int = 0,
                 checksum: Any = None, id: int = 0):
        self._lfn = check_name(lfn, "file name", MAX_LFN)
        if isinstance(block, str):
            split_block_full_name(block)
        else:
            check_link(block, "file block", "block", nullable=True)
        self._block = block
        self.size = check_int(size, "file size")
        self.checksum_text: str | None = checksum_text(checksum)
        self.id = check_int(id, "file id")

    @classmethod
    def _make(cls, lfn: str, block: Block | str, size: int, checksum: str | None, id: int) -> File:
        obj = cls.__new__(cls)
        obj._lfn = lfn
        obj._block = block
        obj.size = size
        obj.checksum_text = checksum
        obj.id = id
        return obj

    @property
    def checksum(self) -> tuple[str | None, ...]:
        """The original's tuple: one value (or None) per algorithm of ``checksum_algorithms``.
        ``checksum_text`` holds the same as ``'adler32:0a1b2c3d'``; assigning a tuple, a dict
        ``{algorithm: value}``, that text or None sets both."""
        values = parse_checksums(self.checksum_text)
        return tuple(values.get(a) for a in CHECKSUM_ALGORITHMS)

    @checksum.setter
    def checksum(self, value: Any) -> None:
        self.checksum_text = checksum_text(value)

    @property
    def lfn(self) -> str:
        return self._lfn

    name = lfn

    @property
    def block(self) -> Block | str | None:
        return self._block

    @property
    def block_full_name(self) -> str | None:
        b = self._block
        return b if b is None or isinstance(b, str) else b.full_name()

    @property
    def key(self) -> tuple[Any, ...]:
        return (self._lfn,)

    def _values(self) -> tuple[Any, ...]:
        return (self.block_full_name, self.size, self.checksum_text)

    def __repr__(self) -> str:
        return f"File({self._lfn!r},{self.block_full_name!r},{self.size},{self.checksum_text!r},{self.id})"
