"""Columnar storage of a block's files.

Ten million files as Python objects cost ~275 bytes each (performance.md); a
block therefore keeps its files packed in one immutable ``bytes`` value, about
16 bytes plus the LFN's suffix per file. The same value is the block's row in
the store's ``block_files`` table, so loading a block's files is one column
read with no decoding, and a forked child reading file names dirties no pages.

Layout (little-endian)::

    u8   format version (1)
    u32  n, the number of files
    u16  length of the common prefix, then the prefix (UTF-8)
    i64  sizes[n]
    i64  ids[n]
    u32  length of the names section, then the LFN suffixes joined by '\\n'
    ...  the checksums joined by '\\n' up to the end (empty when no file has one)

LFNs are validated names (no whitespace), so '\\n' cannot occur inside one.

While a change set modifies a block, its files are unpacked into a dict
(:data:`FileEntries`) and packed again when the change set is finished.
"""

from __future__ import annotations

import os
import struct
from typing import Iterator, NamedTuple

from dynamo.dataformat.arena import Buffer
from dynamo.errors import ObjectError

VERSION = 1
_HEAD = struct.Struct("<BIH")


class FileEntry(NamedTuple):
    size: int
    checksum: str | None
    id: int


FileEntries = dict[str, FileEntry]


def pack(entries: FileEntries) -> bytes | None:
    """Pack ``{lfn: FileEntry}``; None for no files."""
    n = len(entries)
    if n == 0:
        return None
    names = list(entries)
    prefix = os.path.commonprefix(names) if n > 1 else names[0].rpartition("/")[0]
    cut = len(prefix)
    prefix_bytes = prefix.encode()
    if len(prefix_bytes) > 0xFFFF:
        raise ObjectError("file name prefix longer than 65535 bytes")
    values = entries.values()
    suffixes = "\n".join(name[cut:] for name in names).encode()
    checksums = [e.checksum or "" for e in values]
    cks = "\n".join(checksums).encode() if any(checksums) else b""
    return b"".join((
        _HEAD.pack(VERSION, n, len(prefix_bytes)),
        prefix_bytes,
        struct.pack(f"<{n}q", *(e.size for e in values)),
        struct.pack(f"<{n}q", *(e.id for e in values)),
        struct.pack("<I", len(suffixes)),
        suffixes,
        cks,
    ))


class _Layout(NamedTuple):
    n: int
    prefix: str
    sizes_at: int
    ids_at: int
    names_at: int
    names_end: int


def _layout(blob: Buffer, at: int = 0) -> _Layout:
    version, n, plen = _HEAD.unpack_from(blob, at)
    if version != VERSION:
        raise ObjectError(f"unknown file table format {version}")
    at += _HEAD.size
    prefix = blob[at:at + plen].decode()
    sizes_at = at + plen
    ids_at = sizes_at + 8 * n
    names_len_at = ids_at + 8 * n
    (names_len,) = struct.unpack_from("<I", blob, names_len_at)
    names_at = names_len_at + 4
    return _Layout(n, prefix, sizes_at, ids_at, names_at, names_at + names_len)


# Every reader takes ``(buf, at, end)``: the table is ``buf[at:end]`` (``end`` None: up to the end
# of ``buf``), so that a table inside a shared arena is read in place, never copied out whole.

def count(blob: Buffer | None, at: int = 0, end: int | None = None) -> int:
    return 0 if blob is None else _HEAD.unpack_from(blob, at)[1]


def total_size(blob: Buffer | None, at: int = 0, end: int | None = None) -> int:
    if blob is None:
        return 0
    lay = _layout(blob, at)
    return sum(memoryview(blob)[lay.sizes_at:lay.ids_at].cast("q"))


def names(blob: Buffer | None, at: int = 0, end: int | None = None) -> list[str]:
    if blob is None:
        return []
    lay = _layout(blob, at)
    prefix = lay.prefix
    return [prefix + s for s in blob[lay.names_at:lay.names_end].decode().split("\n")]


def ids(blob: Buffer | None, at: int = 0, end: int | None = None) -> list[int]:
    if blob is None:
        return []
    lay = _layout(blob, at)
    return memoryview(blob)[lay.ids_at:lay.ids_at + 8 * lay.n].cast("q").tolist()


def sizes(blob: Buffer | None, at: int = 0, end: int | None = None) -> list[int]:
    if blob is None:
        return []
    lay = _layout(blob, at)
    return memoryview(blob)[lay.sizes_at:lay.ids_at].cast("q").tolist()


def iterate(blob: Buffer | None, at: int = 0, end: int | None = None) -> Iterator[tuple[str, FileEntry]]:
    """``(lfn, FileEntry)`` for every file, in stored order."""
    if blob is None:
        return
    lay = _layout(blob, at)
    n = lay.n
    view = memoryview(blob)
    file_sizes = view[lay.sizes_at:lay.ids_at].cast("q")
    file_ids = view[lay.ids_at:lay.ids_at + 8 * n].cast("q")
    prefix = lay.prefix
    suffixes = blob[lay.names_at:lay.names_end].decode().split("\n")
    tail = blob[lay.names_end:end]
    checksums: list[str | None] = [c or None for c in tail.decode().split("\n")] if tail else [None] * n
    for i in range(n):
        yield prefix + suffixes[i], FileEntry(file_sizes[i], checksums[i], file_ids[i])


def unpack(blob: Buffer | None, at: int = 0, end: int | None = None) -> FileEntries:
    return dict(iterate(blob, at, end))


def extract(blob: Buffer | None, at: int = 0, end: int | None = None) -> bytes | None:
    """The table as a ``bytes`` value of its own (for the store)."""
    if blob is None:
        return None
    if at == 0 and end is None and type(blob) is bytes:
        return blob
    return bytes(blob[at:end])
