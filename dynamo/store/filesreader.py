"""The load's second reader: a process of its own reads blocks with their files.

A load runs in one Python thread, and the GIL keeps it on one core: sqlite3 releases the GIL
only while it steps, PyMySQL parses in Python, and the bytes of each row, their copy into the
arena and that copy's page faults all happen holding it. ``block_files`` (every block's packed
file table) is most of a load's bytes, and nothing of it becomes a Python object in the image:
its rows are copied into the arena and only the offsets are kept. So a second process reads the
blocks with their files (SQLite: all of them, its two scans, joined by id in columns,
``_Blocks.offsets``; MariaDB: the join for the highest ids), on the other core, in a read
transaction of its own, while the loader reads and builds everything else:

* the loader creates two memory files (``memfd_create``: the files', the columns') and starts this
  module as a fresh interpreter (``python -P -m dynamo.store.filesreader``; not a fork: SQLite's
  file locks and shared-memory state must not be inherited), handing it the files, and on its
  standard input what to read and how to connect (``main``);
* the reader reads the blocks first, writes them in columns into the columns' memory file (the
  names as they come, a line each; then int64 columns: ids, sizes, number of files << 1 | open,
  last updates; then, marshalled, where the runs of one dataset's blocks start and their dataset
  ids: made here, on the reader's core) and reports on its standard output (a JSON line: the
  store's version it read, the number of blocks, where the parts are). SQLite: the loader builds
  the blocks from the columns (``ImageBuilder.blocks_columns``) while the reader goes on to read
  their files (MariaDB: its join gives both at once, reported one after the other at its end);
* SQLite, with ``replicas_share`` in the spec: the reader then reads that last share of
  ``dataset_replicas`` (the rows after a rowid both processes compute alike, ``replicas_split``),
  their packed tables into the files' memory file as arena chunks, the rest in int64 columns, and
  reports (``ReadReplicas``); the loader, which read the rows up to that rowid itself, makes
  their objects after the blocks;
* the reader writes the file tables into the files' memory file, laid out as arena chunks (each
  value preceded by its length, ``dataformat.arena``), each chunk starting on a page (``dataformat.arena.FileChunks``),
  the blocks' file offsets into the columns' file, and reports again (the chunks, the offsets'
  place, the number of files). Whatever is large goes through the memory files, not the pipe: the
  reader never waits for the loader to read it;
* the loader checks that the reader saw the version its own transaction sees (every commit
  changes ``store_meta.version``, in the same transaction as its rows), maps each chunk
  read-only and private (``MAP_PRIVATE``, ``PROT_READ``: the image's memory stays private to
  dynamod, shared with its forks, and nobody can write into it), faults the mappings in
  (``MADV_POPULATE_READ``: the pages are then counted in the loader's RSS, as the arena's own
  chunks are) and closes the files. The memory lives as long as a mapping does. The blocks are
  linked to their file tables (``ImageBuilder.files_read``); the columns' file is gone once the
  blocks are built (its mappings die with the load's temporaries).

A reader that saw another version (a commit between the two transactions' starts) is of no
use: the loader reads that part itself in its own transaction (``SQLStore.load``). A reader
that fails (an error, a signal, an exit without a report), before or after it reported the blocks,
fails the load; a load that fails kills and reaps its reader.
"""

from __future__ import annotations

import gc
import io
import itertools
import json
import marshal
import mmap
import operator
import os
import struct
import subprocess
import sys
from array import array
from typing import IO, Any, Iterable, Iterator, Sequence

from dynamo.dataformat.arena import FileChunks, map_chunk, page_end, write_all
from dynamo.errors import StoreError

PAGE = mmap.PAGESIZE
# SQLite: the two scans of the load (SQLStore.LOAD_QUERIES), merged here
FILES_QUERY = "SELECT block_id, files FROM block_files WHERE block_id > ? ORDER BY block_id"
# the blocks' number of files and open flag come as one int (the low bits of Block._meta: _Blocks.add_blocks)
BLOCKS_QUERY = ("SELECT id, dataset_id, name, size, (num_files << 1) | (is_open != 0), last_update FROM blocks "
                "ORDER BY id")
VERSION_QUERY = "SELECT value FROM store_meta WHERE name = 'version'"
# SQLite: the dataset replicas above a rowid (``replicas_split``), read after the blocks; the loader reads the
# others (rowid order, the order of the one scan the load makes without a second reader: the image is the same)
REPLICAS_QUERY = ("SELECT dataset_id, site_id, growing, group_id, block_replicas FROM dataset_replicas "
                  "WHERE rowid > ? ORDER BY rowid")
# two subqueries: SQLite looks MIN and MAX of the rowid up in the table's tree only when each is a query of its own
ROWIDS_QUERY = "SELECT (SELECT MIN(rowid) FROM dataset_replicas), (SELECT MAX(rowid) FROM dataset_replicas)"
REPLICA_COLUMNS = 5  # dataset ids, site ids, growing, group ids (0: none), offsets (-1: no table)
_U32 = struct.Struct("<I")


class ReadBlocks:
    """The blocks a reader read, sent before it reads their files: in columns, the ids (ascending),
    sizes, number of files << 1 | open flag (``lows``) and last updates (int64 memoryviews of a
    read-only mapping; ``Block._meta`` is made of the last two); the names, where each run of one
    dataset's blocks starts and that dataset's id (lists)."""

    __slots__ = ("ids", "sizes", "lows", "updates", "names", "starts", "run_datasets")

    def __init__(self, ids: Sequence[int], sizes: Sequence[int], lows: Sequence[int], updates: Sequence[int],
                 names: list[str], starts: list[int], run_datasets: list[int]):
        self.ids, self.sizes, self.lows, self.updates = ids, sizes, lows, updates
        self.names, self.starts, self.run_datasets = names, starts, run_datasets


class ReadFiles:
    """The blocks' files a reader read (after their ``ReadBlocks``): the offset of each block's file
    table relative to the first of ``chunks`` (``index << 32 | position``, as arena offsets; -1: a
    block without files), the chunks (read-only mappings) and the number of files in the tables."""

    __slots__ = ("offsets", "chunks", "num_files")

    def __init__(self, offsets: Sequence[int], chunks: list[mmap.mmap], num_files: int):
        self.offsets, self.chunks, self.num_files = offsets, chunks, num_files


class ReadReplicas:
    """The dataset replicas a reader read after the blocks (SQLite: those above the rowid ``split``): in
    int64 columns (memoryviews of a read-only mapping), each one's dataset id, site id, growing flag, group
    id (0: none) and the offset of its packed block replicas relative to the first of ``chunks`` (-1: none
    held); the chunks (read-only mappings) and the number of block replicas in the tables."""

    __slots__ = ("split", "dataset_ids", "site_ids", "growing", "group_ids", "offsets", "chunks", "block_replicas")

    def __init__(self, split: int, columns: Sequence[Sequence[int]], chunks: list[mmap.mmap], block_replicas: int):
        self.split = split
        self.dataset_ids, self.site_ids, self.growing, self.group_ids, self.offsets = columns
        self.chunks, self.block_replicas = chunks, block_replicas


def replicas_split(low: int | None, high: int | None, share: float) -> int:
    """The rowid of ``dataset_replicas`` up to which the loader reads the rows itself: the second reader reads
    the last ``share`` of the rowids from ``low`` to ``high`` (None: an empty table). The loader and the
    reader each compute it in their own snapshot; when they saw the same version, they agree."""
    if low is None or high is None:
        return 0
    return low - 1 + int((high - low + 1) * (1.0 - share))


class FilesReader:
    """The loader's side: starts the reader process, takes its blocks (``blocks``), then their files
    (``files``), or ends it (``close``: always, also when the load failed). ``spec`` says what to read
    and how to connect (``main``); it goes to the reader on its standard input, with ``fds`` (a
    database socket).

    The reader reports twice on its standard output, a JSON line each time: when it has read the
    blocks (their columns are then in the columns' memory file), and when it has read their files
    (the file tables in the files' memory file, the offsets in the columns' file); with a share of the
    dataset replicas to read (``replicas_share`` in the spec: SQLite), in between, when it has read
    those (``replicas``: read before the files). Whatever is large goes through the memory files, not
    the pipe: the reader never waits for the loader to read."""

    # the interpreter's arguments before the two memory files' descriptors (tests run a reader of their own)
    ARGS: tuple[str, ...] = ("-P", "-m", "dynamo.store.filesreader")

    def __init__(self, spec: dict[str, Any], fds: tuple[int, ...] = ()):
        self.spec = spec
        self._fd = os.memfd_create("dynamo-block-files", os.MFD_CLOEXEC)
        self._columns_fd = -1
        try:
            self._columns_fd = os.memfd_create("dynamo-block-columns", os.MFD_CLOEXEC)
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, *self.ARGS, str(self._fd), str(self._columns_fd)],
                pass_fds=(self._fd, self._columns_fd, *fds), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                close_fds=True)
        except BaseException:
            os.close(self._fd)
            if self._columns_fd >= 0:
                os.close(self._columns_fd)
            raise
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(spec).encode())
            self._proc.stdin.close()
        except OSError:
            pass  # the reader is gone already: blocks() says why

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def wait_for_report(self) -> None:
        """Until the reader reports its blocks (it holds its read snapshot by then; for tests)."""
        proc = self._proc
        assert proc is not None and isinstance(proc.stdout, io.BufferedReader)
        proc.stdout.peek(1)

    def _report(self) -> dict[str, Any]:
        """The reader's next report line; StoreError when it failed (an error it reports, or an
        exit without the report)."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        try:
            head = json.loads(proc.stdout.readline() or b"null")
        except ValueError:
            head = None
        if not isinstance(head, dict) or "error" in head:
            status = proc.wait()
            why = head["error"] if isinstance(head, dict) else f"exit status {status}, no report"
            raise StoreError(f"the load's second reader failed: {why}")
        return head

    def blocks(self, version: int) -> ReadBlocks | None:
        """The blocks, once the reader has read them (it reads their files meanwhile); None when it
        read another version of the store than ``version``. Raises StoreError when the reader failed."""
        head = self._report()
        if int(head["version"]) != version:
            return None
        try:
            count, names_length, start, lists_length = (int(head[key])
                                                        for key in ("count", "names", "columns", "lists"))
            if min(count, names_length, lists_length) < 0 or start % PAGE or start < names_length:
                raise ValueError("the blocks' columns are out of range")
            # the names, a line each, from the start; on the first page after them four int64 columns, then
            # the run starts and runs' datasets marshalled: viewed in place in read-only mappings
            names = _lines(self._map_columns(names_length), count)
            data = self._map_columns(4 * 8 * count + lists_length, start)
            ids, sizes, lows, updates = (data[8 * count * i:8 * count * (i + 1)].cast("q") for i in range(4))
            lists = marshal.loads(data[4 * 8 * count:])
            if not (isinstance(lists, tuple) and len(lists) == 2 and all(isinstance(x, list) for x in lists)):
                raise ValueError("the block runs are not lists")
            starts, run_datasets = lists
            if len(starts) != len(run_datasets) or (starts[:1] != [0] if count else starts):
                raise ValueError("the block runs do not match the blocks")
        except (KeyError, EOFError, ValueError, TypeError) as exc:
            raise StoreError(f"the load's second reader failed: {exc}") from exc
        self._count = count
        return ReadBlocks(ids, sizes, lows, updates, names, starts, run_datasets)

    @property
    def reads_replicas(self) -> bool:
        """Whether the reader reads a share of the dataset replicas after the files (a third report)."""
        return float(self.spec.get("replicas_share") or 0) > 0

    def _last_report(self) -> dict[str, Any]:
        """The reader's last report, and its exit (status 0, else StoreError)."""
        head = self._report()
        proc = self._proc
        assert proc is not None
        status = proc.wait()
        if status != 0:
            raise StoreError(f"the load's second reader failed: exit status {status}")
        return head

    def files(self) -> ReadFiles:
        """The blocks' files, once the reader is done (after ``blocks``, and ``replicas`` when it
        ``reads_replicas``). Raises StoreError when the reader failed."""
        head = self._last_report()
        try:
            start, length = head["offsets"]
            if length != 8 * self._count:
                raise ValueError("the file offsets do not match the blocks")
            offsets = self._map_columns(length, start).cast("q") if length else memoryview(b"").cast("q")
        except (ValueError, TypeError) as exc:
            raise StoreError(f"the load's second reader failed: {exc}") from exc
        chunks = self._map_chunks(head["chunks"])
        return ReadFiles(offsets, chunks, int(head["files"]))

    def replicas(self) -> ReadReplicas:
        """The dataset replicas the reader read after the blocks (``reads_replicas``; after ``blocks``, before
        ``files``), once it has read them (it reads the files meanwhile). Raises StoreError when the reader
        failed."""
        head = self._report()
        try:
            split, count, total, start = (int(head[key]) for key in ("split", "replicas", "block_replicas", "columns"))
            if count < 0 or total < 0 or start % PAGE:
                raise ValueError("the replicas' columns are out of range")
            data = self._map_columns(8 * REPLICA_COLUMNS * count, start).cast("q") if count else None
            columns = [data[count * i:count * (i + 1)] if data is not None else memoryview(b"").cast("q")
                       for i in range(REPLICA_COLUMNS)]
            chunks = self._map_chunks(head["chunks"])
        except (KeyError, EOFError, ValueError, TypeError) as exc:
            raise StoreError(f"the load's second reader failed: {exc}") from exc
        return ReadReplicas(split, columns, chunks, total)

    def _map_chunks(self, layout: list[tuple[int, int]]) -> list[mmap.mmap]:
        """The chunks ``(start, length)`` of the files' memory file, mapped read-only and faulted in."""
        chunks: list[mmap.mmap] = []
        try:
            for start, length in layout:
                chunks.append(map_chunk(self._fd, start, length))
        except BaseException:
            for chunk in chunks:
                chunk.close()
            raise
        return chunks

    def _map_columns(self, length: int, start: int = 0) -> memoryview:
        """``length`` bytes of the columns' memory file from ``start`` (a page), read-only."""
        if length == 0:
            return memoryview(b"")
        if os.fstat(self._columns_fd).st_size < start + length:
            raise EOFError("report cut short")
        return memoryview(map_chunk(self._columns_fd, start, length))

    def close(self) -> None:
        """End the reader (killed if still running) and close the memory files (the mappings made
        of them stay)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for fd in (self._fd, self._columns_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._columns_fd = -1


_PIECE = 1 << 20  # bytes of names decoded at once


def _lines(data: memoryview, count: int) -> list[str]:
    """The ``count`` lines of ``data`` (UTF-8, each ended by a line break), decoded and split a piece of about
    ``_PIECE`` bytes at a time: never a copy of them all at once."""
    lines: list[str] = []
    end = len(data)
    if end:
        raw = data.obj
        assert isinstance(raw, mmap.mmap)
        if raw[end - 1:end] != b"\n":
            raise ValueError("the block names are cut short")
        at = 0
        while at < end:
            cut = raw.find(b"\n", min(at + _PIECE, end - 1))  # the last line break of the piece
            lines.extend(str(data[at:cut], "utf-8").split("\n"))
            at = cut + 1
    if len(lines) != count:
        raise ValueError(f"{len(lines)} block names for {count} blocks")
    return lines


# ---------------------------------------------------------------------------
# the reader's side (its own process)
# ---------------------------------------------------------------------------

class _Blocks:
    """The blocks read, in columns, their files in chunks of the memory file (``FileChunks``).

    Rows come in batches and are turned into columns a batch at a time (``zip``, ``array.extend``,
    ``map``, ``FileChunks.add_many``: C loops), not a row at a time in Python (with the file tables written
    by ``pwritev`` then, the reader alone at W10: 3.1 -> 2.7 s). Each block's ``Block._meta``, whether the
    ids ascend and where the runs of one dataset's blocks start are made from each batch's columns as
    they come (tuples of the rows' ints), not from the whole columns afterwards. The names go into the
    columns' memory file as they come, a line each (names hold no line break: ``dataformat``), and
    ``Block._meta`` is made by the loader from two int64 columns: this process keeps neither a
    million strings nor a million large ints, nor marshals them (~150 MB of fresh memory at W10)."""

    def __init__(self, fd: int, columns_fd: int):
        self.ids, self.sizes = array("q"), array("q")
        self.lows, self.updates = array("q"), array("q")  # number of files << 1 | open, last update
        self.columns_fd = columns_fd
        self._names_end = 0  # the names written so far, a line each, from the columns' file's start
        self.starts: list[int] = []  # where each run of one dataset's blocks starts
        self.run_datasets: list[int] = []  # the dataset id of each run
        self.file_ids, self.file_offsets = array("q"), array("q")  # the file tables, by block id
        self.chunks = _chunks(fd)
        self.files = 0
        self._columns_end = 0

    def add_blocks(self, batch: Sequence[tuple[Any, ...]]) -> None:
        """Rows ``(id, dataset id, name, size, number of files << 1 | open, last update)`` in id order
        (``BLOCKS_QUERY``)."""
        if batch:
            self._add_columns(*zip(*batch, strict=True))

    def _add_columns(self, ids: tuple[int, ...], dataset_ids: tuple[int, ...], names: tuple[str, ...],
                     sizes: tuple[int, ...], lows: Iterable[int], updates: tuple[int, ...]) -> None:
        """One batch of blocks in columns; ``lows``: each one's number of files << 1 | open."""
        n = len(self.ids)
        if n and ids[0] <= self.ids[n - 1] or not all(map(operator.lt, ids, itertools.islice(ids, 1, None))):
            raise StoreError("blocks: the rows are not in id order")
        # the runs starting in this batch (at its first row too, unless the last batch's run goes on)
        runs = [0] if not n or dataset_ids[0] != self.run_datasets[-1] else []
        runs.extend(itertools.compress(range(1, len(ids)),
                                       map(operator.ne, itertools.islice(dataset_ids, 1, None), dataset_ids)))
        self.starts.extend(map(n.__add__, runs))
        self.run_datasets.extend(map(dataset_ids.__getitem__, runs))
        self.ids.extend(ids)
        self.sizes.extend(sizes)
        self.lows.extend(lows)
        self.updates.extend(updates)
        text = "\n".join(names).encode() + b"\n"
        if text.count(b"\n") != len(names):
            raise StoreError("blocks: a block name holds a line break")
        write_all(self.columns_fd, text, self._names_end)
        self._names_end += len(text)

    def add_files(self, batch: Sequence[tuple[int, bytes]]) -> None:
        """Rows ``(block id, files)`` in block id order."""
        if not batch:
            return
        ids, blobs = zip(*batch, strict=True)
        self.file_ids.extend(ids)
        self.file_offsets.extend(self.chunks.add_many(blobs))
        self.files += count_all(blobs)

    def add_joined(self, batch: Sequence[tuple[Any, ...]]) -> None:
        """Rows ``(id, dataset id, name, size, number of files, open, last update, files or None)``
        in id order (MariaDB's join)."""
        if not batch:
            return
        ids, dataset_ids, names, sizes, nums, opens, updates, files = zip(*batch, strict=True)
        lows = map(operator.or_, map(operator.lshift, nums, itertools.repeat(1)), map(bool, opens))
        self._add_columns(ids, dataset_ids, names, sizes, lows, updates)
        self.add_files([(bid, blob) for bid, blob in zip(ids, files, strict=True) if blob is not None])

    def offsets(self) -> array[int]:
        """The file offset of each block (-1: none), its file table found by id."""
        ids, file_ids = self.ids, self.file_ids
        if file_ids == ids:  # every block has files: the two columns line up (W10's store)
            return self.file_offsets
        skipped = len(ids) - len(file_ids)
        if skipped > 0 and ids[skipped:] == file_ids:  # the loader read the first blocks' files (SQLite)
            offsets = array("q", [-1]) * skipped
            offsets.extend(self.file_offsets)
            return offsets
        found = dict(zip(file_ids, self.file_offsets, strict=True))
        return array("q", [found.get(bid, -1) for bid in ids])

    def blocks_report(self, version: int) -> dict[str, Any]:
        """The blocks written into the columns' memory file (after the names, from the first page after
        them: ids, sizes, lows and last updates as int64 columns, then the starts of the runs of one
        dataset's blocks and the runs' dataset ids, marshalled: made here, not by the loader); the report
        that says so."""
        n = len(self.ids)
        lists = marshal.dumps((self.starts, self.run_datasets))
        self.starts, self.run_datasets = [], []
        at = start = page_end(self._names_end)
        for part in (self.ids, self.sizes, self.lows, self.updates):
            write_all(self.columns_fd, memoryview(part).cast("B"), at)
            at += 8 * len(part)
        self.lows, self.updates = array("q"), array("q")
        write_all(self.columns_fd, lists, at)
        self._columns_end = at + len(lists)
        return {"version": version, "count": n, "names": self._names_end, "columns": start, "lists": len(lists)}

    def files_report(self) -> dict[str, Any]:
        """The blocks' file offsets written into the columns' memory file (on the first page after
        the columns) and the files' chunks sealed; the report that says so."""
        offsets = self.offsets()
        start = page_end(self._columns_end)
        write_all(self.columns_fd, memoryview(offsets).cast("B"), start)
        self._columns_end = start + 8 * len(offsets)
        return {"files": self.files, "chunks": _sealed(self.chunks), "offsets": [start, 8 * len(offsets)]}

    def columns_end(self) -> int:
        """Where the columns written so far end in the columns' memory file."""
        return self._columns_end

    def follow(self, files_start: int, columns_end: int) -> None:
        """Other values were written into the memory files (before any file table): the file tables' chunks
        start at ``files_start`` (a page), the file offsets after ``columns_end`` in the columns' file."""
        assert not self.chunks.sealed and self.chunks.end() == 0 and not self.file_ids, "follow() before the files"
        self.chunks = _chunks(self.chunks.fd, files_start)
        self._columns_end = columns_end


class _Replicas:
    """The dataset replicas of the reader's share (``REPLICAS_QUERY``), in int64 columns
    (``REPLICA_COLUMNS``), their packed block replicas in chunks of the memory file (``FileChunks``, after the
    files'), a batch at a time in C loops, as the loader does with its own (``ImageBuilder.dataset_replicas``)."""

    def __init__(self, chunks: FileChunks):
        self.columns = [array("q") for _ in range(REPLICA_COLUMNS)]
        self.chunks = chunks
        self.block_replicas = 0

    def add(self, batch: Sequence[tuple[Any, ...]]) -> None:
        """Rows ``(dataset id, site id, growing, group id or None, block replicas)``."""
        if not batch:
            return
        from dynamo.dataformat.replicatable import VERSION
        dataset_ids, site_ids, growing, group_ids, blobs = zip(*batch, strict=True)
        versions = bytes(map(_FIRST, blobs))
        if versions.count(VERSION) != len(versions):
            bad = next(i for i, v in enumerate(versions) if v != VERSION)
            raise StoreError(f"dataset replica of dataset {dataset_ids[bad]} at site {site_ids[bad]}: "
                             f"unknown format {versions[bad]}")
        counts = list(map(_FIRST, map(_U32.unpack_from, blobs, itertools.repeat(1))))
        if all(counts):
            offsets: Iterable[int] = self.chunks.add_many(blobs)
        else:  # replicas holding no block replica have no table (-1)
            held = iter(self.chunks.add_many(list(itertools.compress(blobs, counts))))
            offsets = [next(held) if n else -1 for n in counts]
        if None in group_ids:
            group_ids = tuple(0 if gid is None else gid for gid in group_ids)
        for column, values in zip(self.columns, (dataset_ids, site_ids, map(bool, growing), group_ids, offsets),
                                  strict=True):
            column.extend(values)
        self.block_replicas += sum(counts)

    def report(self, split: int, columns_fd: int, after: int) -> dict[str, Any]:
        """The columns written into the columns' memory file (from the first page after ``after``), one after
        the other, and the chunks sealed; the report that says so."""
        start = page_end(after)
        at = start
        for column in self.columns:
            write_all(columns_fd, memoryview(column).cast("B"), at)
            at += 8 * len(column)
        return {"split": split, "replicas": len(self.columns[0]), "block_replicas": self.block_replicas,
                "columns": start, "chunks": _sealed(self.chunks)}


def count_all(blobs: Sequence[bytes]) -> int:
    """The number of files in these file tables (``filetable.count`` of each, summed): read from the
    headers in C loops when all are of version 2 (every table written today)."""
    from dynamo.dataformat.filetable import count
    versions = bytes(map(_FIRST, blobs))
    if versions.count(2) == len(versions):
        return sum(map(_FIRST, map(_U32.unpack_from, blobs, itertools.repeat(2))))
    return sum(map(count, blobs))


_FIRST = operator.itemgetter(0)


def with_files(blocks: Iterable[tuple[Any, ...]], files: Iterable[tuple[int, bytes]]) -> Iterator[tuple[Any, ...]]:
    """Each block row with its files (None: none), the two scans merged (both in id order)."""
    tables = iter(files)
    table = next(tables, None)
    for row in blocks:
        bid = row[0]
        while table is not None and table[0] < bid:  # files of no block (the foreign key forbids them)
            table = next(tables, None)
        if table is not None and table[0] == bid:
            yield (*row, table[1])
            table = next(tables, None)
        else:
            yield (*row, None)


def _read_sqlite(spec: dict[str, Any], fd: int, columns_fd: int, out: IO[bytes]) -> None:
    import sqlite3
    conn = sqlite3.connect(spec["path"], timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA cache_size = -2048")  # one pass over the tables (SQLiteStore._loading)
        conn.execute("BEGIN DEFERRED")
        version = _version(conn.execute(VERSION_QUERY).fetchall())
        blocks = _Blocks(fd, columns_fd)
        for batch in _lists(conn.execute(BLOCKS_QUERY)):
            blocks.add_blocks(batch)
        # the loader builds the blocks while the rest is read here
        _send(out, blocks.blocks_report(version))
        share = float(spec.get("replicas_share") or 0)
        if share > 0:  # a share of the dataset replicas (their tables in chunks before the files'), then the files
            low, high = conn.execute(ROWIDS_QUERY).fetchone()
            split = replicas_split(low, high, share)
            replicas = _Replicas(_chunks(fd))
            for batch in _lists(conn.execute(REPLICAS_QUERY, (split,))):
                replicas.add(batch)
            head = replicas.report(split, columns_fd, blocks.columns_end())
            blocks.follow(replicas.chunks.end(), head["columns"] + 8 * REPLICA_COLUMNS * int(head["replicas"]))
            _send(out, head)
        for batch in _lists(conn.execute(FILES_QUERY, (int(spec.get("after", 0)),))):
            blocks.add_files(batch)
        conn.execute("COMMIT")
    finally:
        conn.close()
    _send(out, blocks.files_report())


def _read_mysql(spec: dict[str, Any], fd: int, columns_fd: int, out: IO[bytes]) -> None:
    import pymysql
    import pymysql.cursors

    from dynamo.store.handover import SESSION, adopt
    if spec.get("socket") is not None:
        conn = adopt(spec["params"], int(spec["socket"]), spec["state"])
    else:
        conn = pymysql.connect(**spec["params"], **SESSION)
    try:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            cur.execute(VERSION_QUERY)
            version = _version(cur.fetchall())
        blocks = _Blocks(fd, columns_fd)
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(spec["query"], (spec["after"],))
            for batch in _lists(cur):
                blocks.add_joined(batch)
        conn.rollback()
    finally:
        conn.close()
    _send(out, blocks.blocks_report(version))  # one join: both reports at its end
    _send(out, blocks.files_report())


def _send(out: IO[bytes], head: dict[str, Any]) -> None:
    out.write(json.dumps(head).encode() + b"\n")
    out.flush()


def _chunks(fd: int, start: int = 0) -> FileChunks:
    """Values written into the files' memory file as arena chunks from ``start`` (a page); each sealed chunk
    is its place ``(start, length)``, mapped by the loader."""
    return FileChunks(fd, [], _place, start)


def _place(fd: int, start: int, length: int) -> tuple[int, int]:
    return (start, length)


def _sealed(chunks: FileChunks) -> list[tuple[int, int]]:
    """The places of the chunks written, the open one sealed."""
    chunks.seal()
    return chunks.sealed


def _version(found: list[Any]) -> int:
    if not found:
        raise StoreError("store_meta has no version")
    return int(found[0][0])


def _lists(cursor: Any, size: int = 2000) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of an executed query in lists of ``size``: taken from the cursor's iterator (sqlite3
    makes each row in C; its ``fetchmany`` was ~0.05 s slower for W10's blocks)."""
    rows = iter(cursor)
    while batch := list(itertools.islice(rows, size)):
        yield batch


def main(argv: list[str]) -> int:
    """``python -m dynamo.store.filesreader FILES_MEMFD COLUMNS_MEMFD`` with the spec on standard input:
    ``{"dialect": "sqlite", "path": ..., "after": id}`` (block_files of the blocks above ``after``) or
    ``{"dialect": "mysql", "params": ..., "socket": fd or null, "state": ..., "query": ..., "after": id}``
    (blocks with ids above ``after``). Reports on standard output (``FilesReader``): the blocks read,
    then their files, or an error (a JSON line each)."""
    out = sys.stdout.buffer
    # The reader makes no reference cycles, and ~2 M rows' tuples would set off ~3,000 collections
    # (0.15 s of its ~1.8 s at W10): as in the loader (SQLStore.load), the collector stays off.
    gc.disable()
    try:
        fd_text, columns_text = argv
        spec = json.loads(sys.stdin.buffer.read())
        readers = {"sqlite": _read_sqlite, "mysql": _read_mysql}
        if not isinstance(spec, dict) or spec.get("dialect") not in readers:
            raise StoreError("no second reader for this store")
        readers[spec["dialect"]](spec, int(fd_text), int(columns_text), out)
    except Exception as exc:  # reported to the loader, which fails the load with it
        _send(out, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
