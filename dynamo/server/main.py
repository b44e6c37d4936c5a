"""dynamod: one process owning the RAM image, the store, the listeners and the children.

``Dynamod.run`` is the table of contents: wait for events, handle signals,
move bytes, reap children, enforce deadlines, finish children, start the next
writer and the next readers, run periodic work. Signal handlers only record.
Each step lives in a room of its own, named for its job:

- ``interest``: the selector; ``clients``: client connections; ``pipes``: children's pipes;
- ``children``: the children's states, reaping and deadlines; ``outcome``: what became of one;
- ``scheduler``: the queues and the writer slot; ``lifecycle``: an application's start and end;
- ``committer``: the image and every change to it; ``ledger``: application records;
- ``console``: a shell's input; ``workareas``; ``maintenance``: periodic work;
- ``service``: what the request handlers may ask of the server.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from dynamo import __version__
from dynamo.apps.containment import become_subreaper, sweep_orphans
from dynamo.appserver import connection as C
from dynamo.appserver.handlers import Handlers
from dynamo.config import Config
from dynamo.errors import ConfigurationError, DynamoError, StartupError, StoreError
from dynamo.exitcodes import ServerExit
from dynamo.proctitle import set_title
from dynamo.server import console, preflight
from dynamo.server.children import Child, Children, Stream
from dynamo.server.clients import Clients, listener_names, open_listeners, raise_descriptor_limit
from dynamo.server.committer import Committer
from dynamo.server.interest import READ, Interest
from dynamo.server.ledger import Ledger
from dynamo.server.lifecycle import Lifecycle
from dynamo.server.logs import ChangeLog, setup_server_log
from dynamo.server.maintenance import Maintenance
from dynamo.server.pidfile import PidFile
from dynamo.server.pipes import Pipes
from dynamo.server.scheduler import Scheduler
from dynamo.server.service import AppService
from dynamo.server.signals import SignalQueue
from dynamo.server.system import REAL, System
from dynamo.server.workareas import WorkAreas
from dynamo.store import open_store
from dynamo.store.registry import Registry
from dynamo.store.sql import SQLStore
from dynamo.web.generations import WebGenerations, registry_users

log = logging.getLogger("dynamo.server")


class Dynamod:
    def __init__(self, config: Config, on_ready: Callable[[Dynamod], None] | None = None, system: System = REAL):
        self.config = config
        self.on_ready = on_ready
        self.system = system
        self.hostname = socket.gethostname()
        self.interest = Interest()
        self.signals = SignalQueue()
        self.listeners: list[C.Listener] = []
        self.children = Children(config.applications.kill_grace, system)
        self.pipes = Pipes(self.interest, config.applications.max_output, config.applications.max_changes)
        self.stopping = False
        self.subreaper = False
        self.swept: set[int] = set()
        self.exit_code = ServerExit.OK
        self.pidfile = PidFile(config.path(config.server.pid_file))
        self.web = WebGenerations(config.web, config.path) if config.web.address else None
        uid, gid = self._service_ids()
        self.work_areas = WorkAreas(config.path(config.applications.work_area), uid, gid)
        # made by start(), once the store is open
        self.store: SQLStore
        self.registry: Registry
        self.changelog: ChangeLog
        self.committer: Committer
        self.lifecycle: Lifecycle
        self.scheduler: Scheduler
        self.clients: Clients
        self.maintenance: Maintenance

    # =====================================================================
    # the loop
    # =====================================================================

    def run(self) -> int:
        try:
            self.start()
        except BaseException as exc:
            self._failed_start(exc)
            raise
        try:
            while not self.stopping:
                events = self.wait_for_events()
                self.handle_signals()
                self.dispatch(events)
                console.feed_all(self.children)
                self.reap()
                self.enforce_deadlines()
                self.finish_children()
                self.scheduler.start_next_write()
                self.scheduler.start_readers()
                self.periodic_work()
        except BaseException:
            log.exception("unexpected error in the main loop: stopping")
            self.exit_code = ServerExit.SOFTWARE
            raise
        finally:
            self.shutdown()
        return self.exit_code

    def wait_for_events(self) -> list[tuple[Any, int]]:
        self.clients.refresh_interest()
        self.pipes.refresh_interest(self.children)
        now = self.system.monotonic()
        return self.interest.wait(min(self.children.next_wake(now), self.clients.resume_in(time.monotonic())))

    def dispatch(self, events: list[tuple[Any, int]]) -> None:
        for key, mask in events:
            target = key.data
            if isinstance(target, C.Listener):
                self.clients.accept(target)
            elif isinstance(target, C.Connection):
                self.clients.serve(target, mask)
            elif isinstance(target, Stream):
                self.pipes.read(target)
        events.clear()  # its keys hold pipes of children that may end this turn: nothing of theirs outlives it
        self.clients.expire(self.system.monotonic())

    def reap(self) -> None:
        """Reap our children, then kill and reap what applications left behind: descendants that
        outlived an application killed before it could clean up come to us (we are their subreaper)."""
        self.children.reap()
        if self.subreaper:
            ours = {child.pid for child in self.children}
            if self.web is not None:
                ours |= set(self.web.workers)  # forked by dynamod itself, reaped by WebGenerations
            swept = set(sweep_orphans(ours))
            for pid in swept - self.swept:  # a killed one may need two turns to be reaped: one line
                log.warning("process %d: left behind by an application that ended: killed", pid)
            self.swept = swept

    def enforce_deadlines(self) -> None:
        for child in self.children.enforce_deadlines():
            self.pipes.close_all(child)  # descendants of the child kept its pipes open: given up on

    def finish_children(self) -> None:
        for child in self.children.finished():
            self._finish(child)

    def _finish(self, child: Child) -> None:
        self.lifecycle.finish(child)
        self.scheduler.release(child)

    def periodic_work(self) -> None:
        self.committer.run_after_reply()
        self.maintenance.run()
        self.serve_web()

    def serve_web(self) -> None:
        """Web workers for the current version of the image (a new generation after a commit)."""
        if self.web is not None and not self.stopping:
            self.web.step(self.committer.inventory, lambda: registry_users(self.registry))

    # =====================================================================
    # start and stop
    # =====================================================================

    def start(self) -> None:
        preflight.prepare(self.config, self.work_areas.uid, self.work_areas.gid)  # state dirs; can applications run?
        self.pidfile.acquire()
        setup_server_log(self.config.path(self.config.server.log_file), self.config.server.log_level)
        self.changelog = ChangeLog(self.config.path(self.config.server.change_log))
        log.info("dynamod %s starting (pid %d, configuration: %s)", __version__, os.getpid(), self.config.source)
        set_title("dynamod: starting")
        self.open_store()
        self.committer.load()
        self.bootstrap_registry()
        self.open_listeners()
        log.info("open descriptors: up to %d", raise_descriptor_limit())
        self.subreaper = become_subreaper()
        if not self.subreaper:
            log.warning("cannot become a child subreaper: processes that escape a killed application survive it")
        if self.web is not None:
            self.web.open()
            # a new generation of web workers before the writer hears its change is in
            self.committer.on_version = lambda version: self.serve_web()
        self.signals.install()
        self.interest.set(self.signals, READ)
        self.serve_web()
        set_title("dynamod: main")
        log.info("server ready: inventory version %d, listening on %s", self.committer.inventory.version,
                 ", ".join(self._listener_names()))
        if self.on_ready is not None:
            self.on_ready(self)

    def open_store(self) -> None:
        """The store, and the rooms that work through it."""
        store = open_store(self.config.store.url)
        assert isinstance(store, SQLStore)
        self.store = store
        self.registry = Registry(store)
        ledger = Ledger(self.registry, self.system)
        self.committer = Committer(store, ledger, self.changelog)
        self.lifecycle = Lifecycle(self.config.applications, self.work_areas, self.committer, ledger, self.children,
                                   self.pipes, self.system)
        self.scheduler = Scheduler(ledger, self.children, self.config.applications.max_running,
                                   self.lifecycle.start, self.committer.run_inject)
        handlers = Handlers(AppService(self.registry, self.scheduler, self.children, self.hostname))
        self.clients = Clients(self.interest, self.registry, self.config.listen, handlers.handle, self.listeners)
        self.maintenance = Maintenance(self.config, store, self.registry, self.work_areas,
                                       busy=lambda: len(self.children) > 0, system=self.system)

    def _failed_start(self, exc: BaseException) -> None:
        """Log why the server could not start (the log is the first place an operator looks), release
        what was taken, and turn OS errors (a port in use, a missing certificate) into a DynamoError
        with a plain message rather than a traceback."""
        if logging.getLogger("dynamo").handlers:  # else the server log is not open yet: stderr tells
            if isinstance(exc, (DynamoError, OSError)):
                log.error("dynamod cannot start: %s", exc)
            else:
                log.exception("dynamod cannot start")
        for listener in self.listeners:
            listener.close()
        if self.web is not None:
            self.web.stop()
        store = getattr(self, "store", None)
        if store is not None:
            try:
                store.close()
            except StoreError:
                pass
        self.pidfile.release()
        if isinstance(exc, OSError):  # ssl.SSLError is an OSError too
            raise StartupError(f"cannot start: {exc}") from exc

    def _service_ids(self) -> tuple[int | None, int | None]:
        if os.getuid() != 0 or self.config.single_user:  # the embedded default runs applications as its user
            return None, None
        name = self.config.server.service_user
        if not name:
            raise ConfigurationError("dynamod runs as root: set [server] service_user, the user applications "
                                     "run as")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ConfigurationError(f"[server] service_user {name!r} does not exist") from None
        if entry.pw_uid == 0:
            raise ConfigurationError(f"[server] service_user {name!r} is root: applications must not run as root")
        return entry.pw_uid, entry.pw_gid

    def bootstrap_registry(self) -> None:
        lost = self.registry.mark_lost(self.hostname)
        if lost:
            log.warning("%d application(s) were queued or running when this server last stopped: marked lost",
                        lost)
        for name in self.config.server.admins:
            user = self.registry.user_by_name(name)
            if user is None:
                self.registry.add_user(name)
                log.info("registered administrator %r", name)
            for target in ("inventory", "application"):
                self.registry.grant(name, "admin", target)

    def open_listeners(self) -> None:
        open_listeners(self.config, self.listeners)
        for listener in self.listeners:
            self.interest.set(listener, READ)

    def _listener_names(self) -> list[str]:
        names = listener_names(self.listeners)
        if self.web is not None and self.web.sock is not None:
            names.append(self.web.name())
        return names

    def shutdown(self) -> None:
        log.info("stopping: %d application(s) running", len(self.children))
        set_title("dynamod: stopping")
        for listener in self.listeners:
            self.interest.drop(listener)
            listener.close()
        if self.web is not None:
            self.web.stop()
        if hasattr(self, "scheduler"):
            self.stop_all_children()
            self.committer.run_after_reply()
            self.scheduler.settle()
            self.clients.close_all()
        try:
            self.store.close()
        except (AttributeError, StoreError):
            pass
        try:
            self.signals.restore()
        except (ValueError, OSError):
            pass
        log.info("dynamod stopped")
        if hasattr(self, "changelog"):
            self.changelog.close()
        self.pidfile.release()
        logging.getLogger("dynamo").handlers.clear()

    def stop_all_children(self) -> None:
        """SIGTERM to every child, a grace period to end (reading their pipes meanwhile), then SIGKILL."""
        self.children.stop_all()
        deadline = self.system.monotonic() + self.config.applications.kill_grace
        while len(self.children) and self.system.monotonic() < deadline:
            self.children.reap()
            for child in self.children:
                self.pipes.drain(child)
                if not child.running:
                    self._finish(child)
            self.system.sleep(0.05)
        self.children.kill_remaining()
        for child in self.children:
            self.pipes.drain(child)
            self._finish(child)

    # =====================================================================
    # signals
    # =====================================================================

    def handle_signals(self) -> None:
        for signum in self.signals.drain():
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("received %s: stopping", signal.Signals(signum).name)
                self.stopping = True
                self.scheduler.closed = True  # nothing starts this turn: shutdown() settles the queues
            elif signum == signal.SIGHUP:
                log.info("received SIGHUP: reopening the change log")
                self.changelog.reopen()
            # SIGCHLD only wakes the loop: reap_children runs every turn
