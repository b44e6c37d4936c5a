"""Columnar storage of a block's files.

Ten million files as Python objects cost ~275 bytes each (performance.md); a
block therefore keeps its files packed in one immutable ``bytes`` value, about
30 bytes plus the compressed LFN suffix per file. The same value is the block's row in
the store's ``block_files`` table, so loading a block's files is one column
read with no decoding, and a forked child reading file names dirties no pages.

Layout, version 2 (little-endian; what ``pack`` writes)::

    u8   format version (2)
    u8   flags: 1 ids consecutive, 2 sizes u32, 4 checksums adler32 (binary), 8 names deflated
    u32  n, the number of files
    u16  length of the common prefix, then the prefix (UTF-8)
    sizes[n]            u32 with flag 2 (every size < 2**32), else i64
    ids                 i64 first id with flag 1 (ids first, first + 1, ...), else i64[n]
    u32  length of the names section, then the LFN suffixes joined by '\n' (UTF-8), raw
         deflate (zlib, no header) with flag 8 (written when it saves at least a fifth)
    checksums           u32[n] with flag 4 (every file's checksum is 'adler32:' and 8 lowercase
                        hex digits, decoded back to that exact text), else the checksums as
                        text joined by '\n' up to the end (empty when no file has one)

Version 1 (rows written before version 2; still read)::

    u8 1, u32 n, u16 prefix length, prefix, i64 sizes[n], i64 ids[n], u32 names length,
    names joined by '\n', checksums as text joined by '\n' up to the end

LFNs are validated names (no whitespace), so '\n' cannot occur inside one.

While a change set modifies a block, its files are unpacked into a dict
(:data:`FileEntries`) and packed again when the change set is finished.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Iterator, NamedTuple

from dynamo.dataformat.arena import Buffer
from dynamo.errors import ObjectError

VERSION = 2
IDS_RUN = 1
SIZES_U32 = 2
CHECKSUMS_ADLER32 = 4
NAMES_DEFLATED = 8
_KNOWN_FLAGS = IDS_RUN | SIZES_U32 | CHECKSUMS_ADLER32 | NAMES_DEFLATED
_HEAD1 = struct.Struct("<BIH")
_HEAD2 = struct.Struct("<BBIH")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_ADLER = "adler32:"
# names shorter than this are left as they are (deflate's own overhead would eat the gain)
_DEFLATE_MIN = 64


class FileEntry(NamedTuple):
    size: int
    checksum: str | None
    id: int


FileEntries = dict[str, FileEntry]


def _adler32_values(checksums: list[str | None]) -> bytes | None:
    """The checksums as u32 values when every one is canonical adler32 text, else None."""
    values = []
    for text in checksums:
        if text is None or len(text) != 16 or not text.startswith(_ADLER):
            return None
        try:
            value = int(text[8:], 16)
        except ValueError:
            return None
        if f"adler32:{value:08x}" != text:  # exactly what decoding gives back ('+', '_', upper case: no)
            return None
        values.append(value)
    return struct.pack(f"<{len(values)}I", *values)


def pack(entries: FileEntries, version: int = VERSION) -> bytes | None:
    """Pack ``{lfn: FileEntry}``; None for no files. ``version=1``: the former layout (tests)."""
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
    sizes = [e.size for e in values]
    ids = [e.id for e in values]
    checksums = [e.checksum for e in values]
    if version == 1:
        texts = [c or "" for c in checksums]
        return b"".join((
            _HEAD1.pack(1, n, len(prefix_bytes)), prefix_bytes,
            struct.pack(f"<{n}q", *sizes), struct.pack(f"<{n}q", *ids),
            _U32.pack(len(suffixes)), suffixes,
            "\n".join(texts).encode() if any(texts) else b"",
        ))
    flags = 0
    if min(sizes) >= 0 and max(sizes) <= 0xFFFFFFFF:
        flags |= SIZES_U32
        size_bytes = struct.pack(f"<{n}I", *sizes)
    else:
        size_bytes = struct.pack(f"<{n}q", *sizes)
    first = ids[0]
    if ids == list(range(first, first + n)):
        flags |= IDS_RUN
        id_bytes = _I64.pack(first)
    else:
        id_bytes = struct.pack(f"<{n}q", *ids)
    if len(suffixes) >= _DEFLATE_MIN:
        deflated = zlib.compress(suffixes, 6, -15)
        if 5 * len(deflated) <= 4 * len(suffixes):
            flags |= NAMES_DEFLATED
            suffixes = deflated
    binary = _adler32_values(checksums)
    if binary is not None:
        flags |= CHECKSUMS_ADLER32
        checksum_bytes = binary
    else:
        texts = [c or "" for c in checksums]
        checksum_bytes = "\n".join(texts).encode() if any(texts) else b""
    return b"".join((
        _HEAD2.pack(2, flags, n, len(prefix_bytes)), prefix_bytes, size_bytes, id_bytes,
        _U32.pack(len(suffixes)), suffixes, checksum_bytes,
    ))


class _Layout(NamedTuple):
    n: int
    flags: int
    prefix: str
    sizes_at: int
    ids_at: int
    names_at: int
    names_end: int


def _layout(blob: Buffer, at: int = 0) -> _Layout:
    version = blob[at]
    if version == 2:
        _, flags, n, plen = _HEAD2.unpack_from(blob, at)
        if flags & ~_KNOWN_FLAGS:
            raise ObjectError(f"file table: unknown flags {flags:#x}")
        at += _HEAD2.size
    elif version == 1:
        _, n, plen = _HEAD1.unpack_from(blob, at)
        flags = 0
        at += _HEAD1.size
    else:
        raise ObjectError(f"unknown file table format {version}")
    prefix = blob[at:at + plen].decode()
    sizes_at = at + plen
    ids_at = sizes_at + (4 if flags & SIZES_U32 else 8) * n
    names_len_at = ids_at + (8 if flags & IDS_RUN else 8 * n)
    (names_len,) = _U32.unpack_from(blob, names_len_at)
    names_at = names_len_at + 4
    return _Layout(n, flags, prefix, sizes_at, ids_at, names_at, names_at + names_len)


def _sizes(blob: Buffer, lay: _Layout) -> memoryview:
    return memoryview(blob)[lay.sizes_at:lay.ids_at].cast("I" if lay.flags & SIZES_U32 else "q")


def _ids(blob: Buffer, lay: _Layout) -> list[int]:
    if lay.flags & IDS_RUN:
        (first,) = _I64.unpack_from(blob, lay.ids_at)
        return list(range(first, first + lay.n))
    return memoryview(blob)[lay.ids_at:lay.ids_at + 8 * lay.n].cast("q").tolist()


def _suffixes(blob: Buffer, lay: _Layout) -> list[str]:
    raw = blob[lay.names_at:lay.names_end]
    if lay.flags & NAMES_DEFLATED:
        raw = zlib.decompress(raw, -15)
    return raw.decode().split("\n")


def _checksums(blob: Buffer, lay: _Layout, end: int | None) -> list[str | None]:
    n = lay.n
    if lay.flags & CHECKSUMS_ADLER32:
        values = memoryview(blob)[lay.names_end:lay.names_end + 4 * n].cast("I")
        return [f"adler32:{v:08x}" for v in values]
    tail = blob[lay.names_end:end]
    return [c or None for c in tail.decode().split("\n")] if tail else [None] * n


# Every reader takes ``(buf, at, end)``: the table is ``buf[at:end]`` (``end`` None: up to the end
# of ``buf``), so that a table inside a shared arena is read in place, never copied out whole.

def count(blob: Buffer | None, at: int = 0, end: int | None = None) -> int:
    if blob is None:
        return 0
    version = blob[at]
    if version == 2:
        return int(_U32.unpack_from(blob, at + 2)[0])
    if version == 1:
        return int(_U32.unpack_from(blob, at + 1)[0])
    raise ObjectError(f"unknown file table format {version}")


def total_size(blob: Buffer | None, at: int = 0, end: int | None = None) -> int:
    if blob is None:
        return 0
    return sum(_sizes(blob, _layout(blob, at)))


def names(blob: Buffer | None, at: int = 0, end: int | None = None) -> list[str]:
    if blob is None:
        return []
    lay = _layout(blob, at)
    prefix = lay.prefix
    return [prefix + s for s in _suffixes(blob, lay)]


def ids(blob: Buffer | None, at: int = 0, end: int | None = None) -> list[int]:
    if blob is None:
        return []
    return _ids(blob, _layout(blob, at))


def sizes(blob: Buffer | None, at: int = 0, end: int | None = None) -> list[int]:
    if blob is None:
        return []
    return _sizes(blob, _layout(blob, at)).tolist()


def iterate(blob: Buffer | None, at: int = 0, end: int | None = None) -> Iterator[tuple[str, FileEntry]]:
    """``(lfn, FileEntry)`` for every file, in stored order."""
    if blob is None:
        return
    lay = _layout(blob, at)
    prefix = lay.prefix
    for suffix, size, checksum, file_id in zip(_suffixes(blob, lay), _sizes(blob, lay), _checksums(blob, lay, end),
                                               _ids(blob, lay), strict=True):
        yield prefix + suffix, FileEntry(size, checksum, file_id)


def unpack(blob: Buffer | None, at: int = 0, end: int | None = None) -> FileEntries:
    return dict(iterate(blob, at, end))


def extract(blob: Buffer | None, at: int = 0, end: int | None = None) -> bytes | None:
    """The table as a ``bytes`` value of its own (for the store)."""
    if blob is None:
        return None
    if at == 0 and end is None and type(blob) is bytes:
        return blob
    return bytes(blob[at:end])


def rebased(blob: Buffer, id_shift: int, name_prefix: str = "") -> tuple[bytes, int]:
    """The same table with every file id raised by ``id_shift`` and ``name_prefix`` put before every
    name (its common prefix grows; nothing else is decoded), and the highest file id it holds now:
    a copy of a block in another id space (``bench.replicate``)."""
    lay = _layout(blob)
    prefix = (name_prefix + lay.prefix).encode()
    if len(prefix) > 0xFFFF:
        raise ObjectError("file name prefix longer than 65535 bytes")
    version = blob[0]
    head = _HEAD2.pack(2, lay.flags, lay.n, len(prefix)) if version == 2 else _HEAD1.pack(1, lay.n, len(prefix))
    ids_end = lay.names_at - 4
    if lay.flags & IDS_RUN:
        (first,) = _I64.unpack_from(blob, lay.ids_at)
        new_ids = _I64.pack(first + id_shift)
        highest = first + id_shift + lay.n - 1
    else:
        shifted = [i + id_shift for i in memoryview(blob)[lay.ids_at:ids_end].cast("q")]
        new_ids = struct.pack(f"<{lay.n}q", *shifted)
        highest = max(shifted)
    return b"".join((head, prefix, blob[lay.sizes_at:lay.ids_at], new_ids, blob[ids_end:])), highest
