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

Chunks are private anonymous mappings (``mmap``), shared copy-on-write with
forks like the rest of the heap, and never written once sealed. Writing a
fresh page costs a page fault, and at W10 the loader writes ~1 GB of packed
values: a helper thread faults the next chunk in (``madvise`` with
``MADV_POPULATE_WRITE``, in the kernel, without the GIL) while the loader
fills the current one, so that the faults are taken on another core
(docs/performance.md).

Chunks ask for transparent huge pages (``MADV_HUGEPAGE``; Linux's default
``madvise`` mode grants them only to mappings that ask). A fork copies the page
tables of its parent's private memory, and a child's exit tears its copy down:
the zygote forks a spare for every call, so at W10 each call paid for ~75k
page-table entries of packed data that no one ever writes. With 2 MiB pages it
is one entry per 2 MiB. Sealed chunks are only read, so no fork ever splits
them; where the system has no huge pages, the chunks have 4 KiB pages as before.
"""

from __future__ import annotations

import itertools
import mmap
import struct
import threading
from typing import TYPE_CHECKING, Callable, Iterable, MutableSequence

if TYPE_CHECKING:
    from dynamo.dataformat.group import Group

# what packed values are read from: an arena chunk, or a value of its own
Buffer = bytes | bytearray | mmap.mmap
_U32 = struct.Struct("<I")
CHUNK_SIZE = 64 << 20
# Linux >= 5.14 (not a constant of Python 3.11's mmap module)
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
_POS_MASK = 0xFFFFFFFF
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", 14)


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


def _new_chunk(size: int) -> mmap.mmap:
    chunk = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        chunk.madvise(_MADV_HUGEPAGE)
    except (OSError, ValueError):
        pass  # no transparent huge pages here: 4 KiB pages, as before
    return chunk


_POPULATE_STEP = 4 << 20


def _populate(chunk: mmap.mmap, stop: threading.Event) -> None:
    """Fault the pages of ``chunk`` in, writable, a few MiB at a time until ``stop`` (the GIL is
    released meanwhile)."""
    size = len(chunk)
    try:
        for start in range(0, size, _POPULATE_STEP):
            if stop.is_set():
                return
            chunk.madvise(_MADV_POPULATE_WRITE, start, min(_POPULATE_STEP, size - start))
    except (OSError, ValueError):
        pass  # an older kernel: the writer faults the pages itself, as it would have


class ArenaWriter:
    """Appends packed values to an arena (the loader's side); ``close`` seals the current chunk (the
    next value starts a new one), ``release`` ends the writer.

    Values are copied into a chunk as they come, so that the driver's value is freed at once and
    its memory reused for the next row: keeping the rows' values until a join left the heap
    fragmented (RSS 2x the live data at W1). With ``prefault`` (the loader), the chunk after the
    current one is faulted in by a helper thread meanwhile (see the module's doc)."""

    __slots__ = ("arena", "_chunk", "_pos", "_size", "_next", "_thread", "_prefault", "_stop")

    def __init__(self, arena: Arena, prefault: bool = False):
        self.arena = arena
        self._chunk: mmap.mmap | None = None
        self._pos = 0
        self._size = 0
        self._next: mmap.mmap | None = None  # a chunk being faulted in by _thread
        self._thread: threading.Thread | None = None
        self._prefault = prefault
        self._stop = threading.Event()
        if prefault:
            self._prepare()

    def _prepare(self) -> None:
        if self._thread is not None:
            self._thread.join()  # done already (see _take)
        chunk = self._next = _new_chunk(CHUNK_SIZE)
        self._thread = threading.Thread(target=_populate, args=(chunk, self._stop), name="dynamo-arena",
                                        daemon=True)
        self._thread.start()

    def _take(self, need: int) -> mmap.mmap:
        """A new current chunk of at least ``need`` bytes: the prepared one when it is large enough.
        The writer does not wait for the helper: on a busy machine it may be behind, and a page
        the helper has not faulted in yet is faulted in by the writer's own write (both are safe
        at once). Only one helper runs: while it is behind, no chunk is prepared ahead."""
        self.close()
        chunk, self._next = self._next, None
        if need > CHUNK_SIZE:
            self._next, chunk = chunk, _new_chunk(need)  # the prepared chunk waits for the next value
        elif chunk is None:
            chunk = _new_chunk(CHUNK_SIZE)
        if self._prefault and self._next is None and not (self._thread is not None and self._thread.is_alive()):
            self._prepare()
        self._chunk, self._pos, self._size = chunk, 0, len(chunk)
        return chunk

    def add(self, blob: bytes) -> int:
        """Append ``blob``; its offset."""
        n = len(blob)
        chunk = self._chunk
        pos = self._pos
        if chunk is None or pos + n + 4 > self._size:
            chunk = self._take(n + 4)
            pos = 0
        _U32.pack_into(chunk, pos, n)
        at = pos + 4
        self._pos = end = at + n
        chunk[at:end] = blob
        return (len(self.arena.chunks) << 32) | at

    def add_many(self, blobs: list[bytes]) -> Iterable[int]:
        """``add`` for each of ``blobs``; their offsets. When they fit in the current chunk, copied in
        at once (their lengths and values joined) and the offsets accumulated, in C loops."""
        lengths = list(map(len, blobs))
        total = sum(lengths) + 4 * len(lengths)
        chunk, pos = self._chunk, self._pos
        if chunk is None or pos + total > self._size:
            return [self.add(blob) for blob in blobs]
        chunk[pos:pos + total] = b"".join(itertools.chain.from_iterable(zip(map(_U32.pack, lengths), blobs,
                                                                            strict=True)))
        self._pos = pos + total
        # value i starts 4 bytes after the end of value i - 1 (each is preceded by its length)
        starts = itertools.accumulate(map((4).__add__, lengths), initial=pos)
        return map(((len(self.arena.chunks) << 32) + 4).__add__, itertools.islice(starts, len(lengths)))

    def add_keyed(self, rows: Iterable[tuple[int, bytes]], keys: MutableSequence[int], offsets: MutableSequence[int],
                  measure: Callable[[bytes], int]) -> int:
        """``add`` for each ``(key, value)`` of ``rows``, appending the keys to ``keys`` and the
        offsets to ``offsets``; the sum of ``measure(value)``. (The loader's loop over a million
        file tables at W10: ``add``'s call and attribute lookups, done once here, cost 0.3 s there.)"""
        add_key, add_offset = keys.append, offsets.append
        pack_into = _U32.pack_into
        chunk, pos, size = self._chunk, self._pos, self._size
        index = len(self.arena.chunks) << 32
        total = 0
        try:
            for key, blob in rows:
                total += measure(blob)
                n = len(blob)
                if chunk is None or pos + n + 4 > size:
                    self._pos = pos
                    chunk = self._take(n + 4)
                    pos, size, index = 0, self._size, len(self.arena.chunks) << 32
                pack_into(chunk, pos, n)
                at = pos + 4
                pos = at + n
                chunk[at:pos] = blob
                add_key(key)
                add_offset(index | at)
        finally:
            self._pos = pos
        return total

    def close(self) -> None:
        """Seal the current chunk: cut to what was written (its pages past that go back to the
        system); nothing writes into it afterwards."""
        chunk = self._chunk
        if chunk is not None:
            chunk.resize(max(self._pos, 1))  # an mmap cannot be empty
            self.arena.chunks.append(chunk)
            self._chunk = None
            self._pos = self._size = 0

    def release(self) -> None:
        """Seal the current chunk and drop the prepared one (waiting for its helper thread: the
        loader's process forks afterwards)."""
        self.close()
        self._prefault = False
        self._stop.set()  # the helper stops within a step: what it faults in now would be thrown away
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._next is not None:
            self._next.close()
            self._next = None
