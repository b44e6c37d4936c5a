"""What the request handlers may ask of the server (``dynamo.appserver.handlers.Service``), and no more."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

from dynamo.appserver.connection import Connection
from dynamo.protocol import replies
from dynamo.server import console
from dynamo.server.children import Children, StopReason
from dynamo.server.ledger import SLOW_ROW_S, Ledger
from dynamo.server.pipes import tail
from dynamo.server.scheduler import InjectJob, Pending, Scheduler
from dynamo.store.registry import ACTIVE, AppRecord, Registry, User

log = logging.getLogger("dynamo.server")


class AppService:
    def __init__(self, registry: Registry, scheduler: Scheduler, children: Children, hostname: str,
                 ledger: Ledger | None = None):
        self.registry = registry
        self.ledger = ledger  # the records whose rows its writer has yet to write (``Ledger.current``)
        self.scheduler = scheduler
        self.children = children
        self.hostname = hostname

    def submit(self, conn: Connection, request: dict[str, Any], checksum: str) -> None:
        user: User = conn.user
        is_async = bool(request.get("async"))
        started = time.monotonic()
        record = self.registry.new_application(title=request["title"], user=user.name, write=request["write"],
                                               script=request["name"], checksum=checksum,
                                               args=list(request["args"]), server=self.hostname)
        log.info("app %d (%s): submitted by %s (%s)", record.id, record.title, user.name,
                 "write" if record.write else "read-only")
        took = time.monotonic() - started
        if took > SLOW_ROW_S:
            log.debug("app %d: its queued row took %.0f ms to write", record.id, took * 1000)
        if is_async:
            conn.send(replies.accepted(record.id))
            conn.close_when_flushed = True
        self.scheduler.enqueue(Pending(record, request, None if is_async else conn, dn=user.dn or ""))

    def open_shell(self, conn: Connection, tty: bool) -> None:
        user: User = conn.user
        record = self.registry.new_application(title="shell", user=user.name, write=False, script="<console>",
                                               checksum="", args=[], server=self.hostname)
        self.scheduler.enqueue(Pending(record, {"tty": tty}, conn, kind="shell"))

    def queue_inject(self, conn: Connection, delete: bool, document: str | list[str]) -> None:
        self.scheduler.enqueue_inject(InjectJob(conn, conn.user, delete, document))

    def send_input(self, conn: Connection, data: str | None) -> None:
        console.send_input(conn.child, data)

    def interrupt(self, conn: Connection) -> None:
        child = conn.child
        if child is None:  # still queued: Ctrl-C cancels it
            self.scheduler.cancel(lambda p: p.conn is conn, "cancelled by its client while queued")
            return
        if child.spec.kind == "shell":
            child.signal_group(signal.SIGINT)  # interrupts the running statement, as in Python's console
            return
        log.info("app %d (%s): interrupted by its client", child.record.id, child.record.title)
        child.stop(StopReason.KILLED)

    def kill(self, user: User, app_id: int) -> dict[str, Any]:
        child = self.children.by_app(app_id)
        if child is not None:
            log.info("app %d (%s): kill requested by %s", app_id, child.record.title, user.name)
            child.stop(StopReason.KILLED)
            return {"id": app_id, "result": "stopping"}
        if self.scheduler.cancel(lambda p: p.record.id == app_id, f"killed by {user.name} while queued"):
            return {"id": app_id, "result": "killed"}
        return {"id": app_id, "result": "noaction", "detail": "the application is not queued or running"}

    def poll(self, app_id: int) -> dict[str, Any] | None:
        record = self.registry.application(app_id)
        if record is None:
            return None
        return self._current(record).to_json()

    def output(self, found: dict[str, Any]) -> dict[str, str]:
        """The end of an application's stdout and stderr (``found``: its record, from ``poll``). Only
        for its owner and administrators: the handlers decide."""
        work_area = found.get("work_area")
        if not work_area:
            return {}
        return {name.strip("_"): tail(Path(work_area).parent / name) for name in ("_stdout", "_stderr")}

    def list_applications(self, show_all: bool, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        records = [self._current(r) for r in self.registry.applications(active_only=not show_all, limit=limit,
                                                                         offset=offset)]
        if not show_all:  # a row of an ended one may be still to be written
            records = [r for r in records if r.status in ACTIVE]
        return [r.to_json() for r in records]

    def _current(self, record: AppRecord) -> AppRecord:
        return self.ledger.current(record) if self.ledger is not None else record
