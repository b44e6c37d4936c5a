"""Arenas: the packed data of a loaded image, in a few large buffers.

A forked reader writes the reference count of every object it reads, which
dirties the page that object lives on. With one ``bytes`` value per block
(files) and one object per block replica, a reader that walked the inventory
copied most of the image into itself. Instead, the loader appends every
block's packed file table (``dataformat.filetable``) and every dataset
replica's packed block replicas (``dataformat.replicatable``) to a handful of
large chunks; a Block or DatasetReplica keeps an integer offset, and readers
slice the chunk in place.

Offsets are ``chunk index << 32 | position``; each packed value is preceded by
its length (u32), so ``span(offset)`` gives ``(chunk, start, end)``. The arena
is reached through ``Dataset._arena`` (one shared object) and dies with the
image. Values changed later by a change set leave the arena: they become
``bytes`` of their own (see ``Block._pack``, ``DatasetReplica._repack``).

Chunks are read-only private mappings of a memory file (``memfd_create``; elsewhere an unlinked
temporary file) that the loader writes with ``pwrite``, as the load's second reader does
(``store.filesreader``): nobody can write into a sealed chunk. Writing into a fresh page of an
anonymous mapping costs a page fault and the kernel's zeroing of the page before the copy; a
write into a memory file fills its new pages with the values themselves. At W10 the loader used
to fault ~190 MB of anonymous chunks in (a helper thread ahead of it, with huge pages), a third
of it never filled: 0.2-0.7 s of CPU on a machine whose fresh pages are dear (docs/performance.md,
"seventh round"). A fork copies no page-table entry of a file mapping (it maps the file's pages
again when they are read), and a child's exit tears none down: the zygote forks a spare for
every call.
"""

from __future__ import annotations

import itertools
import mmap
import os
import struct
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, MutableSequence, Sequence

if TYPE_CHECKING:
    from dynamo.dataformat.group import Group

# what packed values are read from: an arena chunk, or a value of its own
Buffer = bytes | bytearray | mmap.mmap
_U32 = struct.Struct("<I")
# A chunk costs nothing before it is written (the memory file grows as values come), and each mapping
# holds a descriptor of its file (Python 3.11's mmap keeps a duplicate): few large chunks, one or two
# a load at W10. Positions in a chunk are 32-bit (offsets: chunk index << 32 | position).
CHUNK_SIZE = 1 << 30
# Linux >= 5.14 (not a constant of Python 3.11's mmap module)
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
_POS_MASK = 0xFFFFFFFF


class Arena:
    """The chunks of one image, and its groups (block replicas are packed with group ids)."""

    __slots__ = ("chunks", "groups", "_group_ids")

    def __init__(self, groups: dict[str | None, Group]):
        self.chunks: list[mmap.mmap] = []
        # the inventory's live name -> Group dict: groups made after the load are found too
        self.groups = groups
        self._group_ids: dict[int, Group] | None = None

    def span(self, offset: int) -> tuple[mmap.mmap, int, int]:
        chunk = self.chunks[offset >> 32]
        at = offset & _POS_MASK
        return chunk, at, at + _U32.unpack_from(chunk, at - 4)[0]

    def group_map(self) -> dict[int, Group]:
        """Group id -> Group as last built (``group`` builds it again for an id it lacks)."""
        if self._group_ids is None:
            self.group(0)  # builds the map
        assert self._group_ids is not None
        return self._group_ids

    def group(self, gid: int) -> Group:
        """The group with database id ``gid`` (0: the null group)."""
        cache = self._group_ids
        found = cache.get(gid) if cache is not None else None
        if found is None:
            cache = {g.id: g for g in self.groups.values() if g.name is not None}
            cache[0] = self.groups[None]
            self._group_ids = cache
            found = cache[gid]
        return found

    def nbytes(self) -> int:
        return sum(len(c) for c in self.chunks)


_BUFFER = 1 << 20  # bytes gathered before each write into the memory file
_PAGE = mmap.PAGESIZE


def _memory_file() -> int:
    """A new memory file (an unlinked temporary file where the system has none), closed on exec."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("dynamo-arena", os.MFD_CLOEXEC)
    import tempfile
    with tempfile.TemporaryFile() as tmp:  # unlinked: gone with the last descriptor and mapping
        return os.dup(tmp.fileno())


def page_end(at: int) -> int:
    """The start of the first page at or after ``at``."""
    return -(-at // _PAGE) * _PAGE


class FileChunks:
    """Values appended to a file in arena chunks: each value preceded by its length (u32), a chunk
    starting on a page of the file and holding up to ``size`` bytes (``CHUNK_SIZE``), or one larger
    value. The values are gathered in a buffer and written (``pwrite``) when it is full, a value as
    large straight in: the kernel fills the file's new pages with them, with no page fault and no
    zeroing before the copy. A sealed chunk becomes ``make(fd, start, length)``, appended to ``sealed``;
    nothing else may be appended to ``sealed`` while a chunk is open, so the open chunk's index is
    ``len(sealed)`` and each value's offset ``index << 32 | position`` (the arena's, ``Arena.span``).
    The loader's arena (``ArenaWriter``: its chunks mapped) and the load's second reader
    (``store.filesreader``: their places reported) write their values through this."""

    __slots__ = ("fd", "sealed", "make", "size", "_start", "_pos", "_out", "_buffer", "_fill")

    def __init__(self, fd: int, sealed: list[Any], make: Callable[[int, int, int], Any], start: int = 0,
                 size: int | None = None):
        self.fd, self.sealed, self.make = fd, sealed, make
        self.size = CHUNK_SIZE if size is None else size
        self._start = self._out = start  # the open chunk's place in the file (a page), where the buffer goes
        self._pos = 0  # the open chunk's bytes so far (0: none open)
        self._buffer = bytearray(_BUFFER)
        self._fill = 0

    def _flush(self) -> None:
        if self._fill:
            write_all(self.fd, memoryview(self._buffer)[:self._fill], self._out)
            self._out += self._fill
            self._fill = 0

    def _room(self, n: int) -> int:
        """Room for ``n`` more bytes in the open chunk (the next one when they do not fit, unless it is
        empty: a value larger than a chunk has one of its own); the chunk's index."""
        if self._pos and self._pos + n > self.size:
            self.seal()
        return len(self.sealed)

    def add(self, blob: bytes) -> int:
        """Append ``blob``; its offset."""
        n = len(blob)
        index = self._room(n + 4)
        at = self._pos + 4
        if self._fill + n + 4 > len(self._buffer):
            self._flush()
        if n + 4 > len(self._buffer):
            write_all(self.fd, _U32.pack(n) + blob, self._out)
            self._out += n + 4
        else:
            fill = self._fill
            _U32.pack_into(self._buffer, fill, n)
            self._buffer[fill + 4:fill + 4 + n] = blob
            self._fill = fill + 4 + n
        self._pos = at + n
        return (index << 32) | at

    def add_many(self, blobs: Sequence[bytes]) -> Iterable[int]:
        """``add`` for each of ``blobs``; their offsets. Their lengths and values joined and written at once
        (a batch that does not fit in the open chunk starts the next one), and the offsets accumulated,
        in C loops (one ``pwritev`` of a buffer per length and value took ~0.06 s more at W10: the kernel's
        work per buffer); one at a time when they are more than a chunk."""
        lengths = list(map(len, blobs))
        total = sum(lengths) + 4 * len(lengths)
        if not blobs or total > self.size:
            return [self.add(blob) for blob in blobs]
        index = self._room(total)
        joined = b"".join(itertools.chain.from_iterable(zip(map(_U32.pack, lengths), blobs, strict=True)))
        if self._fill + total > len(self._buffer):
            self._flush()
        if total > len(self._buffer):
            write_all(self.fd, joined, self._out)
            self._out += total
        else:
            self._buffer[self._fill:self._fill + total] = joined
            self._fill += total
        pos, self._pos = self._pos, self._pos + total
        # value i starts 4 bytes after the end of value i - 1 (each is preceded by its length)
        starts = itertools.accumulate(map((4).__add__, lengths), initial=pos)
        return map(((index << 32) + 4).__add__, itertools.islice(starts, len(lengths)))

    def add_keyed(self, rows: Iterable[tuple[int, bytes]], keys: MutableSequence[int], offsets: MutableSequence[int],
                  measure: Callable[[bytes], int]) -> int:
        """``add`` for each ``(key, value)`` of ``rows``, appending the keys to ``keys`` and the
        offsets to ``offsets``; the sum of ``measure(value)``. (The loader's loop over a million
        file tables at W10: ``add``'s call and attribute lookups, done once here, cost 0.3 s there:
        a value that fits in the buffer and the open chunk is put there inline.)"""
        add_key, add_offset = keys.append, offsets.append
        pack_into = _U32.pack_into
        buffer, room, size = self._buffer, len(self._buffer), self.size
        index = len(self.sealed) << 32
        total = 0
        for key, blob in rows:
            total += measure(blob)
            n = len(blob) + 4
            pos, fill = self._pos, self._fill
            if pos and pos + n <= size and fill + n <= room:
                pack_into(buffer, fill, n - 4)
                buffer[fill + 4:fill + n] = blob
                self._fill, self._pos = fill + n, pos + n
                add_offset(index | (pos + 4))
            else:  # a new chunk, a full buffer or a large value
                add_offset(self.add(blob))
                index = len(self.sealed) << 32
            add_key(key)
        return total

    def seal(self) -> None:
        """Seal the open chunk, if any: written out, made (``make``) and appended to ``sealed``; the next
        value starts a chunk on the next page."""
        if not self._pos:
            return
        self._flush()
        self.sealed.append(self.make(self.fd, self._start, self._pos))
        self._start = self._out = self._start + page_end(self._pos)
        self._pos = 0

    def end(self) -> int:
        """The first page after the chunks written so far (where more chunks may start)."""
        return self._start + page_end(self._pos)


def map_chunk(fd: int, start: int, length: int) -> mmap.mmap:
    """``length`` bytes of the file ``fd`` from ``start`` (a page), mapped read-only and private (nobody can
    write them; forks share them) and faulted in (counted in RSS as the values are, no fault later)."""
    chunk = mmap.mmap(fd, length, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ, offset=start)
    try:
        chunk.madvise(_MADV_POPULATE_READ)
    except (OSError, ValueError):
        pass  # an older kernel: the pages are mapped as they are read
    return chunk


class ArenaWriter:
    """Appends packed values to an arena (the loader's side); ``close`` seals the current chunk (the
    next value starts a new one), ``release`` ends the writer.

    The values go into a memory file of the writer's own (``FileChunks``); a sealed chunk is mapped
    read-only (``map_chunk``) and appended to the arena. The memory file is closed by ``release`` (or
    once the writer is gone): the mappings keep its pages. Values are written as they come, so that the
    driver's value is freed at once and its memory reused for the next row: keeping the rows' values
    until a join left the heap fragmented (RSS 2x the live data at W1)."""

    __slots__ = ("arena", "_chunks", "_closer", "__weakref__")

    def __init__(self, arena: Arena):
        self.arena = arena
        self._chunks: FileChunks | None = None  # made with the first value
        self._closer: weakref.finalize | None = None

    def _file(self) -> FileChunks:
        chunks = self._chunks
        if chunks is None:
            fd = _memory_file()
            self._closer = weakref.finalize(self, os.close, fd)
            chunks = self._chunks = FileChunks(fd, self.arena.chunks, map_chunk)
        return chunks

    def add(self, blob: bytes) -> int:
        """Append ``blob``; its offset."""
        return self._file().add(blob)

    def add_many(self, blobs: list[bytes]) -> Iterable[int]:
        """``add`` for each of ``blobs``; their offsets (``FileChunks.add_many``)."""
        return self._file().add_many(blobs)

    def add_keyed(self, rows: Iterable[tuple[int, bytes]], keys: MutableSequence[int], offsets: MutableSequence[int],
                  measure: Callable[[bytes], int]) -> int:
        """``FileChunks.add_keyed``."""
        return self._file().add_keyed(rows, keys, offsets, measure)

    def close(self) -> None:
        """Seal the current chunk (mapped, read-only, as the arena's next chunk); nothing writes into it
        afterwards, and other chunks may be appended to the arena."""
        if self._chunks is not None:
            self._chunks.seal()

    def release(self) -> None:
        """Seal the current chunk and close the memory file (the chunks' mappings keep its pages)."""
        self.close()
        self._chunks = None
        if self._closer is not None:
            self._closer()
            self._closer = None


def write_all(fd: int, data: bytes | memoryview, at: int) -> None:
    """All of ``data`` into the file ``fd`` at ``at`` (``pwrite`` until it is written)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, at)
        view, at = view[written:], at + written
