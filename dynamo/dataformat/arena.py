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
import tempfile
import weakref
from typing import TYPE_CHECKING, Callable, Iterable, MutableSequence

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
    with tempfile.TemporaryFile() as tmp:  # unlinked: gone with the last descriptor and mapping
        return os.dup(tmp.fileno())


def _page(at: int) -> int:
    return -(-at // _PAGE) * _PAGE


class ArenaWriter:
    """Appends packed values to an arena (the loader's side); ``close`` seals the current chunk (the
    next value starts a new one), ``release`` ends the writer.

    The values go into a memory file of the writer's own, a chunk at a time from a page of it: each
    value preceded by its length, gathered in a buffer and written (``pwrite``) when it is full, when
    a value as large goes straight in. ``close`` maps the chunk written, read-only (``MAP_PRIVATE``,
    ``PROT_READ``), and appends it to the arena; the memory file is closed by ``release`` (or once the
    writer is gone): the mappings keep its pages. Values are written as they come, so that the driver's
    value is freed at once and its memory reused for the next row: keeping the rows' values until a
    join left the heap fragmented (RSS 2x the live data at W1)."""

    __slots__ = ("arena", "_fd", "_start", "_pos", "_out", "_buffer", "_fill", "_closer", "__weakref__")

    def __init__(self, arena: Arena):
        self.arena = arena
        self._fd = -1  # the memory file, made with the first value
        self._start = 0  # the current chunk's place in the file (a page)
        self._pos = 0  # its bytes so far (0: no current chunk)
        self._out = 0  # where the buffer goes in the file
        self._buffer = bytearray(_BUFFER)
        self._fill = 0
        self._closer: weakref.finalize | None = None

    def _file(self) -> int:
        if self._fd < 0:
            self._fd = _memory_file()
            self._closer = weakref.finalize(self, os.close, self._fd)
        return self._fd

    def _flush(self) -> None:
        if self._fill:
            _write(self._fd, memoryview(self._buffer)[:self._fill], self._out)
            self._out += self._fill
            self._fill = 0

    def _room(self, n: int) -> int:
        """Make room for ``n`` more bytes in the current chunk (a new one when they do not fit, unless
        it is empty: a value larger than a chunk has one of its own); the chunk's index in the arena."""
        if self._pos and self._pos + n > CHUNK_SIZE:
            self.close()
        if not self._pos:
            self._file()
        return len(self.arena.chunks)

    def add(self, blob: bytes) -> int:
        """Append ``blob``; its offset."""
        n = len(blob)
        index = self._room(n + 4)
        at = self._pos + 4
        if self._fill + n + 4 > _BUFFER:
            self._flush()
        if n + 4 > _BUFFER:
            _write(self._fd, _U32.pack(n) + blob, self._out)
            self._out += n + 4
        else:
            fill = self._fill
            _U32.pack_into(self._buffer, fill, n)
            self._buffer[fill + 4:fill + 4 + n] = blob
            self._fill = fill + 4 + n
        self._pos = at + n
        return (index << 32) | at

    def add_many(self, blobs: list[bytes]) -> Iterable[int]:
        """``add`` for each of ``blobs``; their offsets. Their lengths and values joined and written at once
        (a batch that does not fit in the current chunk starts the next one), and the offsets accumulated,
        in C loops; one at a time when they are more than a chunk."""
        lengths = list(map(len, blobs))
        total = sum(lengths) + 4 * len(lengths)
        if not blobs or total > CHUNK_SIZE:
            return [self.add(blob) for blob in blobs]
        index = self._room(total)
        joined = b"".join(itertools.chain.from_iterable(zip(map(_U32.pack, lengths), blobs, strict=True)))
        if self._fill + total > _BUFFER:
            self._flush()
        if total > _BUFFER:
            _write(self._fd, joined, self._out)
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
        a value that fits in the buffer and the current chunk is put there inline.)"""
        add_key, add_offset = keys.append, offsets.append
        pack_into = _U32.pack_into
        buffer = self._buffer
        index = len(self.arena.chunks) << 32
        total = 0
        for key, blob in rows:
            total += measure(blob)
            n = len(blob) + 4
            pos, fill = self._pos, self._fill
            if pos and pos + n <= CHUNK_SIZE and fill + n <= _BUFFER:
                pack_into(buffer, fill, n - 4)
                buffer[fill + 4:fill + n] = blob
                self._fill, self._pos = fill + n, pos + n
                add_offset(index | (pos + 4))
            else:  # a new chunk, a full buffer or a large value
                add_offset(self.add(blob))
                index = len(self.arena.chunks) << 32
            add_key(key)
        return total

    def close(self) -> None:
        """Seal the current chunk: written out and mapped, read-only, as the arena's next chunk; nothing
        writes into it afterwards."""
        if not self._pos:
            return
        self._flush()
        chunk = mmap.mmap(self._fd, self._pos, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ, offset=self._start)
        try:
            chunk.madvise(_MADV_POPULATE_READ)  # mapped now: counted in RSS as the values are, no fault later
        except (OSError, ValueError):
            pass  # an older kernel: the pages are mapped as they are read
        self.arena.chunks.append(chunk)
        self._start = self._out = self._start + _page(self._pos)
        self._pos = 0

    def release(self) -> None:
        """Seal the current chunk and close the memory file (the chunks' mappings keep its pages)."""
        self.close()
        if self._closer is not None:
            self._closer()
            self._closer = None
        self._fd = -1


def _write(fd: int, data: bytes | memoryview, at: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, at)
        view, at = view[written:], at + written
