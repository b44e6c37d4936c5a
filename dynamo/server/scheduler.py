"""Who runs next: read-only applications and consoles up to ``max_running`` at once, and one
writer at a time — write applications and injects in the order they came (the writer slot).

The scheduler only orders; ``launch`` (the lifecycle) starts a child and ``run_inject`` (the
committer) applies an inject, both given at construction.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dynamo.appserver.connection import Connection
from dynamo.core.appstate import AppState
from dynamo.protocol import replies
from dynamo.protocol.replies import ErrorCode
from dynamo.server.children import Child, Children
from dynamo.server.clients import send_exit
from dynamo.server.ledger import Ledger
from dynamo.store.registry import AppRecord, User

log = logging.getLogger("dynamo.server")


@dataclass(eq=False)
class Pending:
    """An application waiting for its turn (readers: a free slot; writers: the writer slot)."""

    record: AppRecord
    request: dict[str, Any]
    conn: Connection | None       # None for an asynchronous submission
    kind: str = "app"             # "app" or "shell"
    dn: str = ""                  # the submitter's certificate DN, for the journal


@dataclass(eq=False)
class InjectJob:
    conn: Connection
    user: User
    delete: bool
    document: str | list[str]   # its parts as they arrived, joined by the commit process


class Scheduler:
    def __init__(self, ledger: Ledger, children: Children, max_running: int,
                 launch: Callable[[Pending], Child | None], run_inject: Callable[[InjectJob], None]):
        self.ledger = ledger
        self.children = children
        self.max_running = max_running
        self.launch = launch
        self.run_inject = run_inject
        self.readers: deque[Pending] = deque()
        self.writes: deque[Pending | InjectJob] = deque()
        self.writer: Child | None = None
        self.closed = False       # stopping: nothing starts any more
        # set by dynamod: a change set is still being committed or applied (the next writer waits), and
        # whether the image may be forked now (not while a committed change set goes into it)
        self.committing: Callable[[], bool] = lambda: False
        self.forks_allowed: Callable[[], bool] = lambda: True
        # set by dynamod: the next reader waits (in its queue) for a child being forked for it elsewhere
        self.reader_waits: Callable[[Pending], bool] = lambda pending: False

    def enqueue(self, pending: Pending) -> None:
        if not pending.record.write:
            self.readers.append(pending)
            return
        self.writes.append(pending)
        if pending.conn is not None and (self.writer is not None or len(self.writes) > 1 or self.committing()):
            pending.conn.send(replies.queued("waiting for the current writer", pending.record.id))

    def enqueue_inject(self, job: InjectJob) -> None:
        self.writes.append(job)
        if self.writer is not None or self.committing():
            job.conn.send(replies.queued("waiting for the current writer"))

    def start_next_write(self) -> None:
        """Fill the writer slot: injects run to their end at once; a write application holds the slot
        until ``release``."""
        while not self.closed and self.writer is None and self.writes and not self.committing():
            if not self.forks_allowed():
                return
            job = self.writes.popleft()
            if isinstance(job, InjectJob):
                if not job.conn.closed:
                    self.run_inject(job)
            elif not self._client_left(job):
                self.writer = self.launch(job)

    def start_readers(self) -> None:
        while (not self.closed and self.readers and self.running_readers() < self.max_running
               and self.forks_allowed()):
            pending = self.readers[0]
            if self._client_left(pending):
                self.readers.popleft()
                continue
            if self.reader_waits(pending):
                return  # the loop goes on; this is called again every turn
            self.readers.popleft()
            self.launch(pending)

    def running_readers(self) -> int:
        return sum(1 for c in self.children if c is not self.writer)

    def release(self, child: Child) -> None:
        """``child`` has ended: if it held the writer slot, the next writer may go."""
        if child is self.writer:
            self.writer = None

    def _client_left(self, pending: Pending) -> bool:
        """A synchronous client that left before its application started has cancelled it."""
        if pending.conn is None or not pending.conn.closed:
            return False
        self.ledger.finish(pending.record, AppState.KILLED, None, "the client left before it started")
        return True

    def cancel(self, match: Callable[[Pending], bool], reason: str) -> bool:
        """Take the first queued application that ``match``es out of its queue, as killed."""
        for queue in (self.readers, self.writes):
            for pending in queue:
                if isinstance(pending, Pending) and match(pending):
                    queue.remove(pending)
                    log.info("app %d (%s): %s", pending.record.id, pending.record.title, reason)
                    self.ledger.finish(pending.record, AppState.KILLED, None, reason)
                    if pending.conn is not None:
                        send_exit(pending.conn, pending.record)
                    return True
        return False

    def settle(self) -> None:
        """At shutdown: whatever is still queued will not run."""
        self.closed = True
        for pending in [*self.readers, *self.writes]:
            if isinstance(pending, Pending):
                self.ledger.finish(pending.record, AppState.KILLED, None, "the server stopped before it ran")
                if pending.conn is not None:
                    send_exit(pending.conn, pending.record)
            else:
                pending.conn.send(replies.error("the server stopped before the inject ran", ErrorCode.UNAVAILABLE))
        self.readers.clear()
        self.writes.clear()
