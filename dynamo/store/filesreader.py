"""The load's second reader: a process of its own reads ``block_files`` into a memory file.

A load runs in one Python thread, and the GIL keeps it on one core: sqlite3 releases the GIL
only while it steps, and the bytes of each row, their copy into the arena and that copy's page
faults all happen holding it. ``block_files`` (every block's packed file table) is most of a
load's bytes, and nothing of it becomes a Python object in the image: its rows are copied into
the arena and only the offsets are kept. So a second process reads it, on the other core, in a
read transaction of its own, while the loader builds everything else:

* the loader creates a memory file (``memfd_create``) and starts this module as a fresh
  interpreter (``python -P -m dynamo.store.filesreader``; not a fork: SQLite's file locks and
  shared-memory state must not be inherited), handing it the file;
* the reader writes the file tables into the memory file, laid out as arena chunks (each value
  preceded by its length, ``dataformat.arena``), each chunk starting on a page, and reports on
  its standard output: a JSON line (the store's version it read, the chunks, the number of
  tables and of files), then the block ids (``array('q')``, ascending) and the offsets;
* the loader checks that the reader saw the version its own transaction sees (every commit
  changes ``store_meta.version``, in the same transaction as its rows), maps each chunk
  read-only and private (``MAP_PRIVATE``, ``PROT_READ``: the image's memory stays private to
  dynamod, shared with its forks, and nobody can write into it), faults the mappings in
  (``MADV_POPULATE_READ``: the pages are then counted in the loader's RSS, as the arena's own
  chunks are) and closes the file. The memory lives as long as a mapping does.

A reader that saw another version (a commit between the two transactions' starts) is of no
use: the loader reads ``block_files`` itself in its own transaction (``SQLStore.load``). A reader
that fails (an error, a signal, an exit without its report) fails the load; a load that fails
kills and reaps its reader.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import struct
import subprocess
import sys
from array import array
from typing import IO, Any, Iterable

from dynamo.errors import StoreError

PAGE = mmap.PAGESIZE
CHUNK_SIZE = 64 << 20  # as the arena's (dataformat.arena.CHUNK_SIZE)
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux >= 5.14
FILES_QUERY = "SELECT block_id, files FROM block_files ORDER BY block_id"
VERSION_QUERY = "SELECT value FROM store_meta WHERE name = 'version'"
_U32 = struct.Struct("<I")


class ReadFiles:
    """What a reader read: the block ids (ascending), the offsets of their file tables relative
    to the first of ``chunks`` (``index << 32 | position``, as arena offsets), the chunks
    (read-only mappings) and the number of files in the tables."""

    __slots__ = ("ids", "offsets", "chunks", "num_files")

    def __init__(self, ids: array[int], offsets: array[int], chunks: list[mmap.mmap], num_files: int):
        self.ids, self.offsets, self.chunks, self.num_files = ids, offsets, chunks, num_files


class FilesReader:
    """The loader's side: starts the reader process, and takes its result (``result``) or ends it
    (``close``: always, also when the load failed)."""

    def __init__(self, dialect: str, target: str):
        self._fd = os.memfd_create("dynamo-block-files", os.MFD_CLOEXEC)
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-P", "-m", "dynamo.store.filesreader", dialect, target, str(self._fd)],
                pass_fds=(self._fd,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, close_fds=True)
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def wait_for_report(self) -> None:
        """Until the reader reports (its read transaction is over by then; for tests)."""
        proc = self._proc
        assert proc is not None and isinstance(proc.stdout, io.BufferedReader)
        proc.stdout.peek(1)

    def result(self, version: int) -> ReadFiles | None:
        """The reader's result once it is done; None when it read another version of the store
        than ``version``. Raises StoreError when the reader failed."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        out = proc.stdout
        try:
            head = json.loads(out.readline() or b"null")
        except ValueError:
            head = None
        if not isinstance(head, dict) or "error" in head:
            status = proc.wait()
            why = head["error"] if isinstance(head, dict) else f"exit status {status}, no report"
            raise StoreError(f"the load's second reader (block_files) failed: {why}")
        if int(head["version"]) != version:
            return None
        count = int(head["count"])
        ids, offsets = array("q"), array("q")
        try:
            _read_array(out, ids, count)
            _read_array(out, offsets, count)
        except (EOFError, ValueError) as exc:
            raise StoreError(f"the load's second reader (block_files) failed: {exc}") from exc
        status = proc.wait()
        if status != 0:
            raise StoreError(f"the load's second reader (block_files) failed: exit status {status}")
        chunks = []
        try:
            for start, length in head["chunks"]:
                chunk = mmap.mmap(self._fd, length, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ, offset=start)
                chunks.append(chunk)
                try:
                    chunk.madvise(_MADV_POPULATE_READ)
                except (OSError, ValueError):
                    pass  # an older kernel: the pages are mapped as they are read
        except BaseException:
            for chunk in chunks:
                chunk.close()
            raise
        return ReadFiles(ids, offsets, chunks, int(head["files"]))

    def close(self) -> None:
        """End the reader (killed if still running) and close the memory file (the mappings made
        of it stay)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _read_array(stream: IO[bytes], into: array[int], count: int) -> None:
    try:
        into.fromfile(stream, count)
    except EOFError as exc:
        raise EOFError(f"report cut short ({len(into)} of {count} values)") from exc


# ---------------------------------------------------------------------------
# the reader's side (its own process)
# ---------------------------------------------------------------------------

class _ChunkWriter:
    """Packed values appended to chunks of a memory file, each chunk starting on a page."""

    def __init__(self, fd: int):
        self.fd = fd
        self.chunks: list[tuple[int, int]] = []  # (start in the file, length)
        self._end = 0  # where the next chunk starts
        self._chunk: mmap.mmap | None = None
        self._start = 0

    def take(self, need: int, used: int) -> mmap.mmap:
        """Seal the current chunk at ``used`` bytes; a new one of at least ``need``."""
        self.seal(used)
        size = max(CHUNK_SIZE, need)
        self._start = self._end
        os.ftruncate(self.fd, self._start + size)
        self._chunk = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED, offset=self._start)
        return self._chunk

    def seal(self, used: int) -> None:
        chunk, self._chunk = self._chunk, None
        if chunk is not None:
            chunk.close()
            used = max(used, 1)  # a mapping cannot be empty
            self.chunks.append((self._start, used))
            self._end = self._start + -(-used // PAGE) * PAGE
            os.ftruncate(self.fd, self._end)  # the rest of the chunk was never written: no memory


def copy_files(rows: Iterable[tuple[int, bytes]],
               fd: int) -> tuple[array[int], array[int], list[tuple[int, int]], int, bool]:
    """Append each row's file table to chunks of the memory file ``fd``: the block ids, the
    offsets, the chunks, the number of files and whether the ids ascend."""
    from dynamo.dataformat.filetable import count as count_files
    writer = _ChunkWriter(fd)
    ids, offsets = array("q"), array("q")
    add_id, add_offset = ids.append, offsets.append
    pack_into = _U32.pack_into
    chunk: mmap.mmap | None = None
    pos = size = 0
    index = -1
    files = 0
    last = -1
    ascending = True
    for bid, blob in rows:
        files += count_files(blob)
        n = len(blob)
        if chunk is None or pos + n + 4 > size:
            chunk = writer.take(n + 4, pos)
            pos, size = 0, len(chunk)
            index += 1
        pack_into(chunk, pos, n)
        at = pos + 4
        pos = at + n
        chunk[at:pos] = blob
        if bid <= last:
            ascending = False
        last = bid
        add_id(bid)
        add_offset((index << 32) | at)
    writer.seal(pos)
    return ids, offsets, writer.chunks, files, ascending


def _read_sqlite(path: str, fd: int) -> tuple[dict[str, Any], array[int], array[int]]:
    import sqlite3
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA cache_size = -2048")  # one pass over the table (SQLiteStore._loading)
        conn.execute("BEGIN DEFERRED")
        found = conn.execute(VERSION_QUERY).fetchall()
        if not found:
            raise StoreError("store_meta has no version")
        cursor = conn.execute(FILES_QUERY)
        ids, offsets, chunks, files, ascending = copy_files(_batches(cursor), fd)
        conn.execute("COMMIT")
    finally:
        conn.close()
    if not ascending:
        raise StoreError("block_files: the rows are not in block id order")
    return {"version": int(found[0][0]), "count": len(ids), "files": files, "chunks": chunks}, ids, offsets


def _batches(cursor: Any, size: int = 2000) -> Iterable[tuple[int, bytes]]:
    while batch := cursor.fetchmany(size):
        yield from batch


def main(argv: list[str]) -> int:
    out = sys.stdout.buffer
    try:
        dialect, target, fd_text = argv
        if dialect != "sqlite":
            raise StoreError(f"no second reader for {dialect!r}")
        head, ids, offsets = _read_sqlite(target, int(fd_text))
    except Exception as exc:  # reported to the loader, which fails the load with it
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
        out.flush()
        return 1
    out.write(json.dumps(head).encode() + b"\n")
    out.write(memoryview(ids).cast("B"))
    out.write(memoryview(offsets).cast("B"))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
