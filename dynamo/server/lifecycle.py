"""An application's start (work area, fork, record, client) and its end (outcome, apply, answer)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dynamo.apps.containment import Limits
from dynamo.apps.runner import ChildSpec
from dynamo.config import ApplicationsConfig
from dynamo.core.appstate import AppState
from dynamo.core.inventory import Inventory
from dynamo.protocol import replies
from dynamo.server import console
from dynamo.server.children import Child, Children
from dynamo.server.clients import send_exit
from dynamo.server.committer import Committer
from dynamo.server.fork import hand_over, spawn
from dynamo.server.identities import Identities, Identity, NoIdentity
from dynamo.server.ledger import Ledger
from dynamo.server.outcome import outcome
from dynamo.server.pipes import Pipes
from dynamo.server.scheduler import Pending
from dynamo.server.spare import SPEC_MAX, Spare, Spares
from dynamo.server.system import System
from dynamo.server.workareas import WorkAreas
from dynamo.server.zygote import Zygote, discard, spawn_via
from dynamo.store.registry import AppRecord

log = logging.getLogger("dynamo.server")

ROW_DELAY = 0.25
"""Seconds an application's "running" row may wait for its first output before it is written anyway."""
SPARE_QUIET = 0.005
"""A wait this long that finds nothing to do is a quiet moment: the spare is forked then."""
SPARE_PATIENCE = 1.0
"""Seconds the spare may be missing before it is forked whether the loop is quiet or not."""
SPARE_STOCK = 2
"""Spares the zygote keeps dynamod supplied with: the next reader's, and one for the reader after it
(calls that come one after another need not wait for the zygote's forks)."""
SPARE_WAIT = 2.0
"""Seconds a read-only application waits for the spare the zygote was asked for before it is forked
another way (the zygote is expected to answer in tens of milliseconds)."""


def effective_timeout(limit: float, asked: float | None) -> float:
    """The server's limit (0 = none) caps what a client asks for (None or 0 = as long as allowed)."""
    if not asked:
        return limit
    return float(asked) if not limit else min(float(asked), limit)


def limits_for(config: ApplicationsConfig, identity: Identity | None, write: bool = False) -> Limits:
    """The configured limits; RLIMIT_NPROC only for a uid of the application's own (a shared user's
    count is every application's, and dynamod's own user's includes dynamod); a write application's
    lower priority (``write_nice``)."""
    own = identity is not None and identity.own
    return Limits(memory=config.max_memory, cpu_seconds=config.max_cpu,
                  processes=config.max_processes if own else 0, open_files=config.max_open_files,
                  file_size=config.max_file_size, nice=config.write_nice if write else 0)


class Lifecycle:
    def __init__(self, config: ApplicationsConfig, work_areas: WorkAreas, committer: Committer, ledger: Ledger,
                 children: Children, pipes: Pipes, system: System, identities: Identities | None = None):
        self.config = config
        self.identities = identities or Identities()
        self.held: dict[int, Identity] = {}   # application id -> the uid of its own it runs as
        self.work_areas = work_areas
        self.committer = committer
        self.ledger = ledger
        self.children = children
        self.pipes = pipes
        self.system = system
        self.spares = Spares(system)
        self.missing_since: float | None = None  # monotonic: since when there has been no spare

    def start(self, pending: Pending) -> Child | None:
        record, request = pending.record, pending.request
        try:
            identity = self.identities.acquire()
        except NoIdentity as exc:
            log.error("app %d (%s): not started: %s", record.id, record.title, exc)
            self._not_started(pending, f"the server has no free identity to run it as: {exc}")
            return None
        try:
            run_dir = self.work_areas.prepare(record.id, record.script if pending.kind == "app" else None,
                                              request.get("script", ""), identity)
        except OSError as exc:
            self.identities.release(identity)
            self._not_started(pending, f"cannot prepare the work area: {exc}")
            return None
        work = run_dir / "work"
        spec = ChildSpec(app_id=record.id, title=record.title, kind=pending.kind, script_name=record.script,
                         source=request.get("script", ""), args=tuple(request.get("args", ())),
                         write=record.write, work_area=str(work), uid=identity.uid if identity else None,
                         gid=identity.gid if identity else None, tty=bool(request.get("tty", False)),
                         limits=limits_for(self.config, identity, record.write))
        inventory = self.committer.inventory
        timeout = effective_timeout(self.config.timeout, request.get("timeout"))
        zygote = None if self.committer.image_whole else self.committer.zygote
        try:
            # a spare was forked from a whole image of this version (never while one is half-changed)
            child = self._from_spare(spec, inventory, timeout, record)
            if child is None and zygote is not None:  # the image is taking a committed change set
                try:
                    child = spawn_via(zygote, spec, self.system, timeout, record)
                finally:
                    self.from_zygote(zygote)  # spares it announced while this waited
            elif child is None:
                child = spawn(spec, inventory, self.system, timeout, record)
        except OSError as exc:
            if zygote is not None:
                self.committer.drop_zygote()
            log.error("app %d (%s): cannot fork: %s", record.id, record.title, exc)
            self.identities.release(identity)
            self._not_started(pending, f"the server could not start it: {exc}")
            return None
        if identity is not None and identity.own:
            self.held[record.id] = identity
        self.children.add(child)
        child.dn = pending.dn
        self.pipes.open_logs(child, run_dir)
        if child.stdin_fd is not None:
            os.set_blocking(child.stdin_fd, False)
        # Its row says "running" once its first output has gone to its client (write_held_rows): the
        # registry's commit (MariaDB: a log flush) would otherwise stand between the fork and that output.
        # The row itself was written before the fork (queued), so a crash in between loses no record
        # of the application: the next start marks the row lost, as any it finds queued or running.
        # If the store is down, the application runs anyway; its record catches up when it ends.
        self.ledger.hold(record, AppState.RUNNING, pid=child.pid, started=self.system.time(), work_area=str(work),
                         version=inventory.version)
        log.info("app %d (%s): started, pid %d%s, inventory version %d", record.id, record.title, child.pid,
                 f" as uid {identity.uid}" if identity is not None else "", inventory.version)
        conn = pending.conn
        if conn is not None and not conn.closed:
            child.connection = conn
            conn.child = child
            conn.send(replies.started(record.id, inventory.version))
        if record.write and spec.kind == "app":
            self.committer.stream_writer(child)  # its records are applied as they come
        return child

    def _from_spare(self, spec: ChildSpec, inventory: Inventory, timeout: float, record: AppRecord) -> Child | None:
        """The child, from the spare forked ahead of need (``dynamo.server.spare``), if it can run ``spec``."""
        taken = self.spares.take(spec, inventory)
        if taken is None:
            return None
        spare, frame = taken
        try:
            return hand_over(spare, frame, spec, self.system, timeout, record)
        except OSError as exc:
            log.warning("app %d (%s): the spare child is gone (%s): forking one", record.id, record.title, exc)
            self.spares.discard(spare)
            return None

    def from_zygote(self, zygote: Zygote) -> None:
        """The zygote announced spares (``dynamo.server.zygote``): the current version's is the next reader's
        child; any other is discarded. An answer nobody waits for any more is discarded too."""
        now = self.system.monotonic()
        for arrival in zygote.read():
            if arrival.error:
                log.warning("the zygote (pid %d) could not fork a %s: %s", zygote.pid,
                            "spare" if arrival.spare else "child", arrival.error)
                continue
            fds = arrival.fds
            if not arrival.spare or not {"spec", "out", "err"} <= set(fds) <= {"spec", "out", "err", "changes"}:
                discard(arrival)
                self.spares.discarded.add(arrival.pid)
                continue
            if arrival.asked:
                log.debug("spare %d from the zygote %.0f ms after the ask (its fork: %.0f ms)", arrival.pid,
                          (now - arrival.asked) * 1000, arrival.fork_ms)
            spare = Spare(pid=arrival.pid, inventory=zygote.inventory, version=zygote.version, spec_w=fds["spec"],
                          out_r=fds["out"], err_r=fds["err"], forked=now, changes_r=fds.get("changes", -1))
            current = zygote.holds(self.committer.inventory)
            if spare.changes_r >= 0 and current and self.spares.writer is None:
                self.spares.writer = spare
            elif spare.changes_r < 0 and current and self.spares.count() < SPARE_STOCK:
                self.spares.add(spare)
            else:
                self.spares.discard(spare)
        if zygote.ended:
            self.committer.zygote_ended(zygote)

    def waits_for_spare(self, pending: Pending) -> bool:
        """A read-only application waits (in its queue; the loop goes on) for the spare the zygote was asked
        for, rather than being forked by dynamod, for up to ``SPARE_WAIT``."""
        if pending.kind != "app" or pending.record.write or self.spares.spare is not None:
            return False
        if len(pending.request.get("script", "")) * 4 > SPEC_MAX:  # may not fit the spare's pipe
            return False
        zygote = self.committer.zygote
        if zygote is None or not zygote.holds(self.committer.inventory):
            return False
        now = self.system.monotonic()
        zygote.hurry()  # this reader waits for what it forks: raised before it forks
        if not zygote.asked and not zygote.ask_spare(now):
            return False
        return now < zygote.asked_since + SPARE_WAIT

    def tend_spare(self, quiet: bool = True) -> None:
        """Keep a spare child of the current image, forked while the loop is idle: when its last wait
        found nothing to do (``quiet``; a fork holds the loop ~9 ms per GB of image, so not while a
        client or a child's output waits for it, unless the spare has been missing for
        ``SPARE_PATIENCE``), not while a child just started waits for its first output
        (``rows_held``), nor while the image is half-way through a committed change set (a spare
        forked then would hold half of it)."""
        now = self.system.monotonic()
        if self.spares.spare is not None or self.missing_since is None:
            self.missing_since = None if self.spares.spare is not None else now
        patient = self.missing_since is not None and now < self.missing_since + SPARE_PATIENCE
        rows_held = self.rows_held()
        idle = (quiet or not patient) and not rows_held and self.committer.image_whole
        self.committer.tend_zygote(idle, may_fork=not rows_held)
        zygote = self.committer.zygote
        inventory = self.committer.inventory
        if zygote is not None and zygote.holds(inventory):
            # the zygote forks the spares, away from this loop: it is asked once the last child started has
            # been heard from (its forks would take CPU from that child's first output)
            self.spares.tend(inventory, idle=False)
            if not self.spares.count():
                zygote.hurry()  # the next reader would wait for the spare asked for: raised before it forks
            while self.spares.count() + zygote.asked < SPARE_STOCK and (not rows_held or not self.spares.count()):
                # none in stock nor on its way: the next reader would wait for this one (after a commit, say)
                if not zygote.ask_spare(now):
                    break
            if self.spares.writer is None and not zygote.asked_writer and not rows_held:
                zygote.ask_spare(now, write=True)
        else:
            self.spares.tend(inventory, idle=idle)
        if self.spares.spare is not None:
            self.missing_since = None

    def spare_due_in(self) -> float:
        """Seconds the loop may wait before ``tend_spare`` should look for a quiet moment again."""
        zygote = self.committer.zygote
        if zygote is not None and zygote.holds(self.committer.inventory):
            if self.spares.spare is None and zygote.asked:  # a reader may wait for it: not beyond SPARE_WAIT
                return max(0.0, zygote.asked_since + SPARE_WAIT - self.system.monotonic())
            return SPARE_QUIET if self.spares.count() + zygote.asked < SPARE_STOCK else 3600.0
        if self.committer.image_whole and (self.spares.spare is None and not self.spares.failed or
                                           self.committer.zygotes and zygote is None):
            return SPARE_QUIET
        return 3600.0

    def write_held_rows(self, now: float) -> None:
        """Write the "running" rows ``start`` held back: for each child whose first output its client now
        has (none left waiting in the connection), or that was forked ``ROW_DELAY`` ago or more (an
        application that prints nothing, or a client that does not read)."""
        for child in self.children:
            if not self.ledger.holds(child.record):
                continue
            conn = child.connection
            if now >= child.started + ROW_DELAY or child.heard and (conn is None or conn.closed or not conn.out):
                self.ledger.write_held(child.record)

    def rows_held(self) -> bool:
        """Some child's "running" row waits for its first output (``write_held_rows``)."""
        return any(self.ledger.holds(child.record) for child in self.children)

    def row_due_in(self, now: float) -> float:
        """Seconds until ``write_held_rows`` must run for a child that stays silent (1 s when none waits)."""
        due = [child.started + ROW_DELAY - now for child in self.children if self.ledger.holds(child.record)]
        return max(0.0, min(due, default=1.0))

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
        # any outcome: nothing that runs as the application's own uid outlives it (a double-forked,
        # setsid descendant included), and the uid is free again only once nothing does
        self.identities.release(self.held.pop(record.id, None))
        if child.spec.uid is not None:
            self.work_areas.seal(Path(child.spec.work_area))
        result = outcome(child)
        if result.state is AppState.APPLYING:  # its client is told once the change set is in (or refused)
            self.committer.apply_application(child, lambda: self._answer(child))
            return
        if record.write:
            self.committer.abandon_stream(child)  # what its records changed so far is undone
        self.ledger.finish(record, result.state, result.code, result.message)
        self._answer(child)

    def _answer(self, child: Child) -> None:
        record = child.record
        if child.connection is not None:
            send_exit(child.connection, record)
        log.info("app %d (%s): %s%s", record.id, record.title, record.status.value,
                 f" ({record.message})" if record.message else "")
        child.forget()
