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
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dynamo.dataformat.group import Group

# what packed values are read from: an arena chunk, or a value of its own
Buffer = bytes | bytearray
_U32 = struct.Struct("<I")
CHUNK_SIZE = 64 << 20
_POS_MASK = 0xFFFFFFFF


class Arena:
    """The chunks of one image, and its groups (block replicas are packed with group ids)."""

    __slots__ = ("chunks", "groups", "_group_ids")

    def __init__(self, groups: dict[str | None, Group]):
        self.chunks: list[bytearray] = []
        # the inventory's live name -> Group dict: groups made after the load are found too
        self.groups = groups
        self._group_ids: dict[int, Group] | None = None

    def span(self, offset: int) -> tuple[bytearray, int, int]:
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


class ArenaWriter:
    """Appends packed values to an arena (the loader's side); call ``close`` at the end.

    Values are copied into a preallocated chunk as they come, so that the driver's value is
    freed at once and its memory reused for the next row: keeping the rows' values until a
    join left the heap fragmented (RSS 2x the live data at W1)."""

    __slots__ = ("arena", "_chunk", "_pos")

    def __init__(self, arena: Arena):
        self.arena = arena
        self._chunk: bytearray | None = None
        self._pos = 0

    def add(self, blob: bytes) -> int:
        """Append ``blob``; its offset."""
        n = len(blob)
        chunk = self._chunk
        pos = self._pos
        if chunk is None or pos + n + 4 > len(chunk):
            self.close()
            chunk = self._chunk = bytearray(max(CHUNK_SIZE, n + 4))
            pos = 0
        _U32.pack_into(chunk, pos, n)
        at = pos + 4
        self._pos = at + n
        chunk[at:self._pos] = blob
        return (len(self.arena.chunks) << 32) | at

    def close(self) -> None:
        """Seal the current chunk: cut to what was written (a copy into ``bytes`` would cost a
        page fault per 4 KiB again); nothing writes into it afterwards."""
        chunk = self._chunk
        if chunk is not None:
            del chunk[self._pos:]
            self.arena.chunks.append(chunk)
            self._chunk = None
            self._pos = 0
