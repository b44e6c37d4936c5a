"""The applications' registry rows, written from a thread of their own on a connection of their own.

Each call changes its application's row twice after it is queued (``running``, then ``done`` or
another end) and a write application twice more; on MariaDB each row is a commit and a flush of
InnoDB's log, 10-30 ms while the store commits a change set on another connection, and once a run
39-226 ms (docs/performance.md, "Issue 10, fourth round: busy4"). Written in the loop, that held
every call. The ledger (``dynamo.server.ledger``) hands each change to a ``RowWriter`` instead:

* **In order.** One thread takes the rows in the order they were handed over and writes all it
  finds waiting in one transaction (one commit for a backlog), each change its own ``UPDATE``:
  the registry sees every state of every record in order, as before.
* **Seen by dynamod's own answers.** Until a row is written, ``pending(app_id)`` gives the record
  as the loop last handed it over; ``--poll`` and ``--list`` answer with it
  (``dynamo.server.service``), so a client never sees an older state than it was told.
* **The store down.** A row the store cannot take now (``StoreUnavailable``) stays at the head of
  the queue and is retried every ``RETRY_S`` (the connection is opened again as any store's is),
  so the registry catches up, in order, once the store is back; meanwhile the records in memory
  move on as before. A row the store refuses for good (any other ``StoreError``) is logged at error
  level and dropped, as the loop dropped it.
* **Closed with the server.** ``close`` writes what is left (for up to ``CLOSE_WAIT_S`` while the
  store is down) and logs every row it could not write: nothing is lost without a line.
* **A failing thread.** An unexpected exception ends the thread with its traceback in the log; the
  ledger then takes the rows not written (``take_unwritten``) and writes them, and every later
  one, in the loop as before: the server goes on.
* **Forks.** dynamod forks while the thread runs (the zygote, the commit process, web workers, a
  shell). Only the forking thread exists in the child: the child never touches this object, its
  lock or its connection (none of them calls the ledger), and a hook (``os.register_at_fork``)
  keeps the thread out of SQLite's library while a fork is made, so that no mutex of SQLite's
  (its allocator's, its file locks' list) is inherited locked by a child that opens its own SQLite
  connection (the commit process). PyMySQL holds no C-level lock: the fork does not wait for
  MariaDB. The zygote forks with ``clone`` only when it has one thread (``dynamo.server.sibling``):
  it is a child of dynamod, where this thread does not exist. Nor does the thread write the log: a
  thread inside a log handler's stream (its buffer's lock held) while dynamod forks would leave that
  lock held in the child, which would hang at its first log line (CPython gh-84579). What the
  thread has to say is queued; the loop logs it (``relay_log``, every turn).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from dynamo.errors import StoreError, StoreUnavailable
from dynamo.store.registry import AppRecord, application_update
from dynamo.store.statements import Statements

log = logging.getLogger("dynamo.server")

RETRY_S = 1.0
"""Seconds between two tries while the store cannot take the rows."""
CLOSE_WAIT_S = 10.0
"""Seconds ``close`` keeps trying while the store is down before it gives the rows up (logged)."""
SLOW_BATCH_S = 0.01
"""A transaction of rows this long is logged (debug level): it held the thread, not the loop."""


@dataclass(frozen=True)
class Row:
    seq: int
    app_id: int
    state: str                  # for the log
    changes: dict[str, Any]     # the columns, as Registry.update_application takes them


class RowWriter:
    def __init__(self, connect: Callable[[], Statements], *, fork_gate: bool = False,
                 retry_s: float = RETRY_S, name: str = "dynamo-rows"):
        """``connect``: the writer's own connection to the registry's tables, opened in the thread
        (and again after it was lost); ``fork_gate``: hold forks while a statement runs (SQLite)."""
        self._connect = connect
        self._retry_s = retry_s
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._rows: deque[Row] = deque()
        self._pending: dict[int, tuple[int, AppRecord]] = {}  # app id -> (seq of its last row, record)
        self._seq = 0
        self._closing = False
        self._stopped = False     # the thread has ended (closed, or failed)
        self.failed: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._db: Statements | None = None
        self._owner = os.getpid()
        self._close_by = 0.0
        self._gate = threading.Lock() if fork_gate else None
        self._gate_forking = False  # the forking thread took the gate (this process's fork hook)
        self._said: deque[tuple[int, str, tuple[Any, ...]]] = deque()  # the thread's log lines, for the loop
        if self._gate is not None:
            os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork,
                                after_in_child=self._after_fork)

    # ------------------------------------------------------------------ the loop's side

    def start(self) -> None:
        """Open the connection (here: a store that cannot be reached now fails the caller) and start."""
        self._db = self._connect()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and not self._stopped

    def put(self, record: AppRecord, changes: dict[str, Any]) -> None:
        """Write ``changes`` of ``record`` (already made to it in memory), after every row put before."""
        snapshot = copy.copy(record)
        state = record.status.value
        with self._cond:
            self._seq += 1
            self._rows.append(Row(self._seq, record.id, state, dict(changes)))
            self._pending[record.id] = (self._seq, snapshot)
            self._cond.notify()

    def pending(self, app_id: int) -> AppRecord | None:
        """The record as last handed over, while a row of it is still to be written."""
        with self._cond:
            found = self._pending.get(app_id)
        return None if found is None else copy.copy(found[1])

    def relay_log(self) -> None:
        """Log what the thread had to say (it never writes the log itself: see the module's doc)."""
        said = self._said
        while said:
            level, message, args = said.popleft()
            log.log(level, message, *args)

    def waiting(self) -> int:
        with self._cond:
            return len(self._rows)

    def drain(self, timeout: float) -> bool:
        """Wait until every row handed over is written (or given up); False at the timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._rows and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return not self._rows

    def take_unwritten(self) -> list[Row]:
        """The rows a failed thread left, in order (the caller writes them now)."""
        with self._cond:
            rows = list(self._rows)
            self._rows.clear()
            self._pending.clear()
        return rows

    def close(self, wait: float = CLOSE_WAIT_S) -> list[Row]:
        """Write what is left and end the thread; the rows it could not write (logged), in order."""
        thread = self._thread
        with self._cond:
            self._closing = True
            self._close_by = time.monotonic() + wait
            self._cond.notify_all()
        if thread is not None:
            thread.join(wait + 5)
        self.relay_log()
        left = self.take_unwritten()
        for row in left:
            log.error("app %d: its %s row was not written: the registry could not be reached", row.app_id,
                      row.state)
        db, self._db = self._db, None
        if db is not None and (thread is None or not thread.is_alive()):
            _close(db)
        return left

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # a bug: say so, and let the ledger write the rows in the loop
            self._say(logging.ERROR, "the registry's row writer failed: the rows are written in the main loop "
                      "from now on\n%s", traceback.format_exc().rstrip())
            self.failed = exc
        finally:
            with self._cond:
                self._stopped = True
                self._cond.notify_all()

    def _serve(self) -> None:
        outage_since: float | None = None
        while True:
            with self._cond:
                while not self._rows and not self._closing:
                    self._cond.wait()
                if not self._rows:
                    return  # closing, and nothing left
                batch = list(self._rows)
            try:
                self._write(batch)
            except StoreUnavailable as exc:
                if outage_since is None:
                    outage_since = time.monotonic()
                    self._say(logging.ERROR, "the registry cannot be written (%s): %d row(s) held, retried every "
                              "%g s", exc, len(batch), self._retry_s)
                self._discard()
                with self._cond:
                    if self._closing and time.monotonic() >= self._close_by:
                        return  # close() logs what is left
                    self._cond.wait(self._retry_s)
                continue
            if outage_since is not None:
                self._say(logging.INFO, "the registry is written again: %d held row(s) written after %.1f s",
                          len(batch), time.monotonic() - outage_since)
                outage_since = None
            self._done(batch[-1].seq, len(batch))

    def _write(self, batch: list[Row]) -> None:
        """All of ``batch`` in one transaction; a row refused for good is dropped (logged), the others kept."""
        started = time.monotonic()
        with self._held():
            db = self._open()
            try:
                with db.transaction():
                    for row in batch:
                        db.execute(*application_update(row.app_id, row.changes))
            except StoreUnavailable:
                raise
            except StoreError:
                # one of them is refused (not the connection): write them one at a time, dropping that one
                for row in batch:
                    try:
                        db.execute(*application_update(row.app_id, row.changes))
                    except StoreUnavailable:
                        raise
                    except StoreError as exc:
                        self._say(logging.ERROR, "app %d: cannot record that it is %s: %s", row.app_id, row.state,
                                  exc)
        took = time.monotonic() - started
        if took > SLOW_BATCH_S:
            self._say(logging.DEBUG, "registry rows: %d written in %.0f ms (apps %s)", len(batch), took * 1000,
                      ",".join(str(r.app_id) for r in batch[:8]))

    def _say(self, level: int, message: str, *args: Any) -> None:
        """A log line, logged by the loop (``relay_log``): a deque's append, no I/O, no lock of logging's."""
        self._said.append((level, message, args))

    def _done(self, last_seq: int, count: int) -> None:
        with self._cond:
            for _ in range(count):
                self._rows.popleft()
            for app_id in [a for a, (seq, _) in self._pending.items() if seq <= last_seq]:
                del self._pending[app_id]
            self._cond.notify_all()

    def _open(self) -> Statements:
        if self._db is None:
            self._db = self._connect()
        return self._db

    def _discard(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with self._held():
                _close(db)

    # ------------------------------------------------------------------ forks

    def _held(self) -> AbstractContextManager[Any]:
        return self._gate if self._gate is not None else nullcontext()

    def _before_fork(self) -> None:
        if self._gate is not None and os.getpid() == self._owner:
            self._gate.acquire()
            self._gate_forking = True

    def _after_fork(self) -> None:
        # in the parent and in the child alike the forking thread holds the gate: it lets it go (in
        # the child, the thread that could take it again does not exist)
        if self._gate is not None and self._gate_forking:
            self._gate_forking = False
            self._gate.release()


def _close(db: Statements) -> None:
    close = getattr(db, "close", None)
    if close is None:
        return
    try:
        close()
    except StoreError:
        pass
