"""Columnar storage of a dataset replica's block replicas.

A DatasetReplica loaded from the store keeps its block replicas packed, in the
store's own row format (the ``block_replicas`` column of ``dataset_replicas``),
and makes BlockReplica objects only when asked. Layout (little-endian)::

    u8   format version (1)
    u32  n
    i64  block_ids[n]
    i64  last_updates[n]
    i32  group_ids[n]        (0 = the null group)
    u8   flags[n]            (1 = custodial, 2 = incomplete)
    then, for each incomplete replica in order: u32 k, i64 file_ids[k]

Readers take ``(buf, at)``: the table starts at ``buf[at]`` (inside an arena, or a
``bytes`` of its own at 0).

A change set changes one block replica of a table without making objects of the others:
``edit`` returns the table with one row replaced, removed or appended (``row``, ``segment``).
"""

from __future__ import annotations

import struct
from array import array
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from dynamo.dataformat.arena import Buffer
from dynamo.errors import ObjectError

if TYPE_CHECKING:
    from dynamo.dataformat.blockreplica import BlockReplica

VERSION = 1
HEAD = struct.Struct("<BI")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_I32 = struct.Struct("<i")
FLAG_CUSTODIAL = 1
FLAG_INCOMPLETE = 2
_FLAGS = {(False, False): 0, (True, False): 1, (False, True): 2, (True, True): 3}


class Layout(NamedTuple):
    n: int
    ids_at: int
    updates_at: int
    groups_at: int
    flags_at: int
    tail_at: int


def layout(buf: Buffer, at: int = 0) -> Layout:
    version, n = HEAD.unpack_from(buf, at)
    if version != VERSION:
        raise ObjectError(f"unknown block replica format {version}")
    ids_at = at + HEAD.size
    updates_at = ids_at + 8 * n
    groups_at = updates_at + 8 * n
    flags_at = groups_at + 4 * n
    return Layout(n, ids_at, updates_at, groups_at, flags_at, flags_at + n)


_COLUMNS: dict[int, struct.Struct] = {}


def columns(buf: Buffer, at: int = 0) -> tuple[int, tuple[Any, ...], int]:
    """``(n, values, tail)``: values are the n block ids, n last updates, n group ids, then the
    flags as one bytes value; ``tail`` is where the incomplete replicas' file ids start."""
    version, n = HEAD.unpack_from(buf, at)
    if version != VERSION:
        raise ObjectError(f"unknown block replica format {version}")
    fmt = _COLUMNS.get(n)
    if fmt is None:
        fmt = struct.Struct(f"<{n}q{n}q{n}i{n}s")
        if len(_COLUMNS) < 4096:
            _COLUMNS[n] = fmt
    return n, fmt.unpack_from(buf, at + HEAD.size), at + HEAD.size + fmt.size


def count(buf: Buffer, at: int = 0) -> int:
    return int(HEAD.unpack_from(buf, at)[1])


def find(buf: Buffer, lay: Layout, block_id: int) -> int:
    """The index of ``block_id``'s replica, or -1 (a C-speed search of the id column)."""
    key = _I64.pack(block_id)
    start, end = lay.ids_at, lay.updates_at
    pos = buf.find(key, start, end)
    while pos >= 0 and (pos - start) % 8:
        pos = buf.find(key, pos + 1, end)
    return -1 if pos < 0 else (pos - start) // 8


def file_ids_of(buf: Buffer, lay: Layout, index: int) -> list[int]:
    """The file ids held by the (incomplete) replica at ``index``."""
    flags = buf[lay.flags_at:lay.flags_at + index]
    skip = sum(1 for f in flags if f & FLAG_INCOMPLETE)
    at = lay.tail_at
    for _ in range(skip):
        at += 4 + 8 * _U32.unpack_from(buf, at)[0]
    (k,) = _U32.unpack_from(buf, at)
    return memoryview(buf)[at + 4:at + 4 + 8 * k].cast("q").tolist()


def pack(replicas: Iterable[BlockReplica]) -> bytes:
    """The packed form of these (live) block replicas."""
    reps = list(replicas)
    tail = []
    for r in reps:
        lfns = r.lfns
        if lfns is not None:
            block = r._live_block()
            file_ids = {lfn: e.id for lfn, e in block._iter_entries()}
            tail.append(_U32.pack(len(lfns)))
            tail.append(array("q", [file_ids[lfn] for lfn in lfns]).tobytes())
    return b"".join((
        HEAD.pack(VERSION, len(reps)),
        array("q", [r._live_block().id for r in reps]).tobytes(),
        array("q", [r.last_update for r in reps]).tobytes(),
        array("i", [r.group.id for r in reps]).tobytes(),  # type: ignore[union-attr]
        bytes([_FLAGS[r.is_custodial, r.lfns is not None] for r in reps]),
        *tail,
    ))


def segment(file_ids: list[int] | None) -> bytes:
    """An incomplete replica's part of the tail (``u32 k, i64 file_ids[k]``); b"" when complete."""
    if file_ids is None:
        return b""
    return _U32.pack(len(file_ids)) + array("q", file_ids).tobytes()


def flags_of(is_custodial: bool, incomplete: bool) -> int:
    return _FLAGS[bool(is_custodial), bool(incomplete)]


def _segment_at(buf: Buffer, lay: Layout, index: int) -> int:
    """Where replica ``index``'s part of the tail starts (its end if it holds no part)."""
    at = lay.tail_at
    for flag in buf[lay.flags_at:lay.flags_at + index]:
        if flag & FLAG_INCOMPLETE:
            at += 4 + 8 * _U32.unpack_from(buf, at)[0]
    return at


def segment_bounds(buf: Buffer, lay: Layout, index: int) -> tuple[int, int]:
    """``(start, end)`` of replica ``index``'s part of the tail (equal when it is complete; for
    ``index == n``, the end of the table)."""
    start = _segment_at(buf, lay, index)
    if index < lay.n and buf[lay.flags_at + index] & FLAG_INCOMPLETE:
        return start, start + 4 + 8 * _U32.unpack_from(buf, start)[0]
    return start, start


class Row(NamedTuple):
    block_id: int
    last_update: int
    group_id: int
    flags: int


def row(buf: Buffer, lay: Layout, index: int) -> Row:
    """The values of replica ``index``."""
    return Row(_I64.unpack_from(buf, lay.ids_at + 8 * index)[0], _I64.unpack_from(buf, lay.updates_at + 8 * index)[0],
               _I32.unpack_from(buf, lay.groups_at + 4 * index)[0], buf[lay.flags_at + index])


def edit(buf: Buffer, at: int, index: int, new: Row | None, tail: bytes = b"") -> bytes:
    """The table at ``buf[at]`` with replica ``index`` replaced by ``new`` and its file ids ``tail``
    (``segment``); ``new`` None: removed; ``index == n``: appended. The other rows are copied as they
    are, column by column (no object is made for them)."""
    version, n = HEAD.unpack_from(buf, at)
    if version != VERSION:
        raise ObjectError(f"unknown block replica format {version}")
    if not 0 <= index <= n or (index == n and new is None):
        raise IndexError(f"block replica index {index} of {n}")
    if new is not None and bool(new.flags & FLAG_INCOMPLETE) != bool(tail):
        raise ValueError("an incomplete block replica needs its file ids, a complete one none")
    ids_at = at + HEAD.size
    updates_at = ids_at + 8 * n
    groups_at = updates_at + 8 * n
    flags_at = groups_at + 4 * n
    tail_at = flags_at + n
    flags = buf[flags_at:tail_at]
    if b"\x02" in flags or b"\x03" in flags:
        lay = Layout(n, ids_at, updates_at, groups_at, flags_at, tail_at)
        start, stop = segment_bounds(buf, lay, index)
        end = segment_bounds(buf, lay, n)[0]
        before, after = buf[tail_at:start], buf[stop:end]
    else:
        before = after = b""
    if new is None:
        return b"".join((HEAD.pack(VERSION, n - 1),
                         buf[ids_at:ids_at + 8 * index], buf[ids_at + 8 * index + 8:updates_at],
                         buf[updates_at:updates_at + 8 * index], buf[updates_at + 8 * index + 8:groups_at],
                         buf[groups_at:groups_at + 4 * index], buf[groups_at + 4 * index + 4:flags_at],
                         flags[:index], flags[index + 1:], before, after))
    skip = index + 1 if index < n else n  # replaced, or appended
    return b"".join((HEAD.pack(VERSION, n if index < n else n + 1),
                     buf[ids_at:ids_at + 8 * index], _I64.pack(new.block_id), buf[ids_at + 8 * skip:updates_at],
                     buf[updates_at:updates_at + 8 * index], _I64.pack(new.last_update),
                     buf[updates_at + 8 * skip:groups_at],
                     buf[groups_at:groups_at + 4 * index], _I32.pack(new.group_id), buf[groups_at + 4 * skip:flags_at],
                     flags[:index], _FLAG_BYTES[new.flags], flags[skip:], before, tail, after))


_FLAG_BYTES = tuple(bytes((f,)) for f in range(4))
EMPTY = HEAD.pack(VERSION, 0)


def rebased(buf: Buffer, block_shift: int, file_shift: int) -> bytes:
    """The same table with every block id raised by ``block_shift`` and every file id (of the
    incomplete replicas) by ``file_shift``: a copy in other id spaces (``bench.replicate``)."""
    lay = layout(buf)
    n = lay.n
    block_ids = array("q", buf[lay.ids_at:lay.updates_at])
    parts = [buf[:lay.ids_at], array("q", [i + block_shift for i in block_ids]).tobytes(),
             buf[lay.updates_at:lay.tail_at]]
    at = lay.tail_at
    for flag in buf[lay.flags_at:lay.flags_at + n]:
        if flag & FLAG_INCOMPLETE:
            (k,) = _U32.unpack_from(buf, at)
            file_ids = array("q", buf[at + 4:at + 4 + 8 * k])
            parts.append(buf[at:at + 4])
            parts.append(array("q", [i + file_shift for i in file_ids]).tobytes())
            at += 4 + 8 * k
    if at != len(buf):
        raise ObjectError(f"block replica table: {len(buf) - at} bytes after the last replica's files")
    return b"".join(parts)
