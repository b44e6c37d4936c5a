"""An application's start (work area, fork, record, client) and its end (outcome, apply, answer)."""

from __future__ import annotations

import logging
import os

from dynamo.apps.runner import ChildSpec
from dynamo.config import ApplicationsConfig
from dynamo.core.appstate import AppState
from dynamo.protocol import replies
from dynamo.server import console
from dynamo.server.children import Child, Children
from dynamo.server.clients import send_exit
from dynamo.server.committer import Committer
from dynamo.server.fork import spawn
from dynamo.server.ledger import Ledger
from dynamo.server.outcome import outcome
from dynamo.server.pipes import Pipes
from dynamo.server.scheduler import Pending
from dynamo.server.system import System
from dynamo.server.workareas import WorkAreas

log = logging.getLogger("dynamo.server")


def effective_timeout(limit: float, asked: float | None) -> float:
    """The server's limit (0 = none) caps what a client asks for (None or 0 = as long as allowed)."""
    if not asked:
        return limit
    return float(asked) if not limit else min(float(asked), limit)


class Lifecycle:
    def __init__(self, config: ApplicationsConfig, work_areas: WorkAreas, committer: Committer, ledger: Ledger,
                 children: Children, pipes: Pipes, system: System):
        self.config = config
        self.work_areas = work_areas
        self.committer = committer
        self.ledger = ledger
        self.children = children
        self.pipes = pipes
        self.system = system

    def start(self, pending: Pending) -> Child | None:
        record, request = pending.record, pending.request
        try:
            run_dir = self.work_areas.prepare(record.id, record.script if pending.kind == "app" else None,
                                              request.get("script", ""))
        except OSError as exc:
            self._not_started(pending, f"cannot prepare the work area: {exc}")
            return None
        work = run_dir / "work"
        spec = ChildSpec(app_id=record.id, title=record.title, kind=pending.kind, script_name=record.script,
                         source=request.get("script", ""), args=tuple(request.get("args", ())),
                         write=record.write, work_area=str(work), uid=self.work_areas.uid, gid=self.work_areas.gid,
                         tty=bool(request.get("tty", False)))
        inventory = self.committer.inventory
        try:
            child = spawn(spec, inventory, self.system,
                          effective_timeout(self.config.timeout, request.get("timeout")), record)
        except OSError as exc:
            log.error("app %d (%s): cannot fork: %s", record.id, record.title, exc)
            self._not_started(pending, f"the server could not start it: {exc}")
            return None
        self.children.add(child)
        child.dn = pending.dn
        self.pipes.open_logs(child, run_dir)
        if child.stdin_fd is not None:
            os.set_blocking(child.stdin_fd, False)
        # if the store is down, the application runs anyway; its record catches up when it ends
        self.ledger.mark(record, AppState.RUNNING, pid=child.pid, started=self.system.time(), work_area=str(work),
                         version=inventory.version)
        log.info("app %d (%s): started, pid %d, inventory version %d", record.id, record.title, child.pid,
                 inventory.version)
        conn = pending.conn
        if conn is not None and not conn.closed:
            child.connection = conn
            conn.child = child
            conn.send(replies.started(record.id, inventory.version))
        return child

    def _not_started(self, pending: Pending, message: str) -> None:
        self.ledger.finish(pending.record, AppState.FAILED, None, message)
        if pending.conn is not None:
            send_exit(pending.conn, pending.record)

    def finish(self, child: Child) -> None:
        """The child has exited and its pipes are closed (or given up on): settle its record, apply a
        writer's change set, tell its client, and let go of everything it held."""
        self.children.remove(child)
        self.pipes.close_all(child)
        console.close(child)
        record = child.record
        result = outcome(child)
        if result.state is AppState.APPLYING:
            self.committer.apply_application(child)
        else:
            self.ledger.finish(record, result.state, result.code, result.message)
        if child.connection is not None:
            send_exit(child.connection, record)
        log.info("app %d (%s): %s%s", record.id, record.title, record.status.value,
                 f" ({record.message})" if record.message else "")
        child.forget()
