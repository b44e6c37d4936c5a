"""Change sets committed off the main loop: the commit process.

A change set (an inject document, or a write application's records) is validated and committed
by a **commit process**: trusted server code forked from dynamod at the image's current version N,
running as the server's user, holding the image copy-on-write. It

1. turns a document into records (``parse_inject``/``parse_delete``; a refused document is
   answered as before, nothing changed);
2. applies the change set to its copy of the image under the undo log (the one validation code,
   ``apply_change_set``) and commits it to the store on a connection of its own;
3. sends the committed change set's normalized records back over a pipe (not for a writer's
   change set, ``Work.alongside``: dynamod holds those records and applies them itself), and a
   final status frame; then writes the change log and runs the store's maintenance (SQLite's
   checkpoint), and exits.

A write application's commit process is forked when the application starts (``Work.stream``): its
records come over a feed as the application makes them (``dynamo.server.changefeed``) and are applied as
they come; the store is opened, and the change set committed, once dynamod seals the feed at the
application's exit 0 (an unsealed feed ends the process without a word).

A writer's change set goes into dynamod's live image meanwhile, in slices under an undo log
(``dynamo.core.changeset.LiveChange``), rolled back unless the status says committed. An inject's
records exist only here: once the status says committed, the committer applies the records sent
back to the live image (trusted, no undo log, in slices: ``apply_committed``). No fork happens
from an image in the middle of either.

The pipe carries frames of ``>IB`` (length, kind) then the payload: ``C`` a JSON array of normalized
records (the journal's, ids included), ``S`` the status (JSON). Both ends are dynamod's own code.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import resource
import signal
import stat
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

from dynamo.core.changeset import Prepared, apply_change_set
from dynamo.core.codec import Record
from dynamo.core.documents import parse_delete, parse_inject
from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta, JournalWriter
from dynamo.errors import ChangeSetError, DocumentError, StoreError, StoreUnavailable
from dynamo.proctitle import set_title
from dynamo.server.changefeed import Abandoned, Feed, StreamedRecords
from dynamo.server.logs import ChangeLog
from dynamo.store.sql import SQLStore

log = logging.getLogger("dynamo.server")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode

HEAD = struct.Struct(">IB")
CHUNK, STATUS = ord("C"), ord("S")
READ_LIMIT = 4 << 20      # bytes taken from the pipe per loop turn
FRAME_RECORDS = 500       # normalized records per C frame
PIPE_SIZE = 1 << 20


@dataclass(eq=False)
class Work:
    """One change set to validate and commit, and whom to tell."""

    who: str                                  # for the log: "inject by alice", "app 12 (title) bob"
    meta: ChangeMeta
    finish: Callable[[Result], None]          # told the outcome once the image has it
    records: Prepared | list[Record] | None = None   # a writer's change set
    # or an inject/delete document: its parts as they arrived (joined here: at 1 M files, 150 MB of new
    # pages, ~0.2 s of page faults that would hold dynamod's loop)
    document: str | list[str] | None = None
    delete: bool = False
    # dynamod applies the change set to its image itself, alongside (a writer's records, which it holds):
    # then only the outcome comes back, not the normalized records
    alongside: bool = False
    # a writer's records come over a feed while it runs (``changefeed``), sealed when it exits 0
    stream: bool = False
    encodes_journal: bool = False   # the store's ENCODES_JOURNAL (a streamed writer's store is opened late)


@dataclass
class Result:
    state: str                 # "done", "refused", "document", "failed"
    message: str
    version: int
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class CommitRun:
    """The parent's handle on a commit process."""

    work: Work
    pid: int
    fd: int
    buffer: bytearray = field(default_factory=bytearray)
    chunks: list[bytes] = field(default_factory=list)
    status: dict[str, Any] | None = None
    open: bool = True
    exit_status: int | None = None
    started: float = 0.0
    settled: bool = False     # its status was acted on (it may still be running: change log, checkpoint)
    feed: Feed | None = None  # a streamed writer's: its change stream, forwarded while it runs
    abandoned: bool = False   # ... ended unsealed (the writer did not commit): no status is awaited
    sealed_at: float = 0.0    # when the feed was sealed (the writer exited 0)

    def fileno(self) -> int:
        return self.fd

    @property
    def ended(self) -> bool:
        return not self.open and self.exit_status is not None

    def read(self, blocking: bool = False) -> None:
        """Take what the pipe holds (up to ``READ_LIMIT`` a turn); frames are cut as they complete."""
        taken = 0
        while self.open and (blocking or taken < READ_LIMIT):
            try:
                data = os.read(self.fd, PIPE_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.close()
                break
            taken += len(data)
            self.buffer += data
            self._frames()

    def _frames(self) -> None:
        buffer, start = self.buffer, 0
        while len(buffer) - start >= HEAD.size:
            length, kind = HEAD.unpack_from(buffer, start)
            end = start + HEAD.size + length
            if len(buffer) < end:
                break
            payload = bytes(buffer[start + HEAD.size:end])
            if kind == CHUNK:
                self.chunks.append(payload)
            else:
                self.status = json.loads(payload)
            start = end
        del buffer[:start]

    def close(self) -> None:
        if self.open:
            self.open = False
            os.close(self.fd)

    def reap(self, blocking: bool = False) -> None:
        if self.exit_status is None:
            try:
                pid, status = os.waitpid(self.pid, 0 if blocking else os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, -1
            if pid:
                self.exit_status = status


Opener = Callable[[], SQLStore]


def start(work: Work, inventory: Inventory, opener: Opener, keep: tuple[int, ...], changelog: ChangeLog,
          fork: Callable[[], int] = os.fork) -> CommitRun:
    """Fork the commit process for ``work``; ``keep``: descriptors it needs (a database socket)."""
    read_fd, write_fd = os.pipe()
    feed_in, feed_out = os.pipe() if work.stream else (-1, -1)
    try:
        pid = fork()
    except OSError:
        for fd in (read_fd, write_fd, feed_in, feed_out):
            if fd >= 0:
                os.close(fd)
        raise
    if pid == 0:
        os.close(read_fd)
        if feed_out >= 0:
            os.close(feed_out)
        _child(work, inventory, opener, write_fd, keep, changelog, feed_in)
    os.close(write_fd)
    if feed_in >= 0:
        os.close(feed_in)
    os.set_blocking(read_fd, False)
    return CommitRun(work, pid, read_fd, feed=Feed(feed_out) if feed_out >= 0 else None)


# ---------------------------------------------------------------------------
# the commit process
# ---------------------------------------------------------------------------

def _child(work: Work, inventory: Inventory, opener: Opener, fd: int, keep: tuple[int, ...],
           changelog: ChangeLog, feed: int = -1) -> NoReturn:
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        set_title("dynamod: commit")
        yield_cpu()
        # No collector in this short-lived process: its objects are freed when it exits. (With it, the
        # first allocations after apply_change_set turned it back on walked every object the change set
        # made, 0.3-0.6 s at 100k records, before the status went out.)
        gc.disable()
        close_channels({fd, feed, *keep})
        try:
            import fcntl
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        _commit(work, inventory, opener, fd, changelog, StreamedRecords(feed) if feed >= 0 else None)
    except Abandoned:
        pass  # the writer did not commit: nothing was written, nobody waits for a word
    except BaseException as exc:  # noqa: BLE001 - whatever it was, the server is told, then this process ends
        code = 1
        try:
            _send(fd, STATUS, json.dumps({"crashed": f"{type(exc).__name__}: {exc}"}).encode())
        except BaseException:  # noqa: BLE001 - the server sees the pipe close without a status
            pass
    finally:
        os._exit(code)


COMMIT_NICE = 5


def yield_cpu() -> None:
    """The commit process gives way to the loop and to the calls it serves: on a machine with few
    cores, a CPU-bound commit at dynamod's priority takes half of what the calls get (issue 10).
    Nice 5 (a third of the weight of the processes at 0) and SCHED_BATCH (its wake-ups preempt no
    one); it still gets every CPU the others leave idle. Not lower: at nice 10, on a machine loaded
    by other work (load 7 on 2 cores), a W10 inject's commit process took 297 s, parsing 183 s of it;
    under SCHED_IDLE the commit, and every writer queued behind it, would wait for a moment of
    idleness."""
    try:
        os.nice(COMMIT_NICE)
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (OSError, AttributeError):
        pass  # a platform without them: the commit competes as before


def close_channels(keep: set[int]) -> None:
    """Close inherited sockets and pipes (clients, listeners, the keeper's link, applications' pipes):
    their peers must see them close when dynamod closes them. Regular files stay open: SQLite's
    process-wide state refers to the descriptors of the database it inherited."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep or fd <= 2:
            continue
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
            try:
                os.close(fd)
            except OSError:
                pass


class _Keeping(JournalWriter):
    """The journal's writer, keeping the normalized records too (they go back to dynamod)."""

    def __init__(self, eager: bool) -> None:
        super().__init__(eager=eager)
        self.kept: list[Record] = []

    def add(self, record: Record) -> None:
        super().add(record)
        self.kept.append(record)


def records_of(frames: list[bytes]) -> Iterator[Record]:
    """The normalized records of the ``C`` frames, decoded one frame at a time."""
    for frame in frames:
        yield from json.loads(frame)


def _send(fd: int, kind: int, payload: bytes) -> None:
    data = memoryview(HEAD.pack(len(payload), kind) + payload)
    while data:
        data = data[os.write(fd, data):]


def _status(fd: int, **status: Any) -> None:
    _send(fd, STATUS, json.dumps(status).encode())


class _StoreAtCommit:
    """What ``apply_change_set`` needs of a store, the store itself opened only for the commit (a streamed
    writer's change set is applied as its application runs, minutes or hours before it is complete)."""

    def __init__(self, opener: Opener, encodes_journal: bool):
        self.opener = opener
        self.ENCODES_JOURNAL = encodes_journal
        self.store: SQLStore | None = None
        self.opened_at = 0.0

    def commit(self, inventory: Inventory, txn: Any, journal: JournalWriter, meta: ChangeMeta) -> int:
        self.opened_at = time.monotonic()
        self.store = self.opener()
        return self.store.commit(inventory, txn, journal, meta)


def _commit(work: Work, inventory: Inventory, opener: Opener, fd: int, changelog: ChangeLog,
            streamed: StreamedRecords | None = None) -> None:
    records: Prepared | list[Record] | StreamedRecords = work.records if work.records is not None else []
    if streamed is not None:
        records = streamed  # applied as they come; committed once sealed (a refusal waits for the seal too)
    counts: dict[str, int] = {}
    started, cpu = time.monotonic(), time.process_time()
    held: list[Any] = []
    if work.document is not None:
        try:
            text = work.document if isinstance(work.document, str) else "".join(work.document)
            work.document = None
            parsed = (parse_delete if work.delete else parse_inject)(text, inventory)
        except DocumentError as exc:
            _status(fd, document=str(exc))
            return
        work.document = None
        records, counts = parsed.records, parsed.counts
    parsed_at = time.monotonic()
    try:
        # a streamed writer's store is opened when the change set is complete: no snapshot or transaction
        # held while the application runs
        store = opener() if streamed is None else cast(SQLStore, _StoreAtCommit(opener, work.encodes_journal))
        # a store that encodes the journal during its commit (MariaDB) gets the records unencoded
        journal = (JournalWriter if work.alongside else _Keeping)(eager=not store.ENCODES_JOURNAL)
        # the undo log is left to the process's exit: dropping it would hold up the status
        committed = apply_change_set(inventory, store, records, work.meta, journal=journal, hold=held)
    except ChangeSetError as exc:
        if streamed is not None:
            streamed.drain()  # said once the writer has exited 0 (Abandoned if it does not)
        _status(fd, refused=str(exc))
        return
    except StoreError as exc:
        if streamed is not None:
            streamed.drain()
        _status(fd, store=str(exc), unavailable=isinstance(exc, StoreUnavailable))
        return
    committed_at = time.monotonic()
    if committed and isinstance(journal, _Keeping):
        kept = journal.kept
        for start in range(0, len(kept), FRAME_RECORDS):  # small frames: the loop decodes one per slice
            _send(fd, CHUNK, _dumps(kept[start:start + FRAME_RECORDS]).encode())
    ids = inventory.ids.next_ids if inventory.ids is not None else {}
    _status(fd, committed=committed, version=inventory.version, next_ids=ids, counts=counts,
            records=journal.num_records, times=[round(parsed_at - started, 2), round(committed_at - parsed_at, 2),
                                                round(time.monotonic() - committed_at, 2)],
            cpu=round(time.process_time() - cpu, 2), waited=round(streamed.waited, 2) if streamed else None,
            # a streamed writer's: from the seal to the store's transaction (checks, packing), and that transaction
            after_seal=[round(store.opened_at - streamed.sealed_at, 2), round(committed_at - store.opened_at, 2)]
            if streamed is not None and isinstance(store, _StoreAtCommit) and store.opened_at else None,
            faults=resource.getrusage(resource.RUSAGE_SELF).ru_minflt)  # copy-on-write (and new) pages
    # dynamod goes on with the status; what is left here it does not wait for (but the next change set does)
    if isinstance(store, _StoreAtCommit):
        if store.store is None:
            return  # nothing to commit: the store was never opened
        store = store.store
    if committed:
        plain = records.records if isinstance(records, (Prepared, StreamedRecords)) else records
        changelog.write(inventory.version, work.who, plain)  # committed: the change log may say so
        try:
            store.maintain()  # SQLite: the checkpoint, off the loop too
        except StoreError as exc:
            log.warning("%s: store maintenance after the commit failed: %s", work.who, exc)
