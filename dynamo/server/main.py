"""dynamod: one process owning the RAM image, the store, the listeners and the children.

``Dynamod.run`` is the table of contents: wait for events, handle signals,
move bytes, reap children, enforce deadlines, finish children, start the next
writer and the next readers, run periodic work. Signal handlers only record.
Each step lives in a room of its own, named for its job:

- ``interest``: the selector; ``clients``: client connections; ``pipes``: children's pipes;
- ``children``: the children's states, reaping and deadlines; ``outcome``: what became of one;
- ``scheduler``: the queues and the writer slot; ``lifecycle``: an application's start and end;
- ``committer``: the image and every change to it (``offloop``: the commit process that validates and
  commits a change set; ``zygote``: forks applications, away from the loop, from the current version or,
  while the image changes, from the old one);
  ``ledger``: application records (``rowwriter``: their rows, written by a thread of its own);
- ``console``: a shell's input; ``workareas``; ``maintenance``: periodic work;
- ``service``: what the request handlers may ask of the server.
"""

from __future__ import annotations

import logging
import os
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
from dynamo.errors import DynamoError, StartupError, StoreError, StoreUnavailable
from dynamo.exitcodes import ServerExit
from dynamo.proctitle import set_title
from dynamo.server import console, identities, preflight
from dynamo.server.children import Child, Children, Stream
from dynamo.server.clients import Clients, listener_names, open_listeners, raise_descriptor_limit
from dynamo.server.committer import Committer
from dynamo.server.interest import READ, Interest
from dynamo.server.keeper_link import KeeperGone, KeeperLink
from dynamo.server.keeper_link import needed as keeper_needed
from dynamo.server.keeper_link import start as start_keeper
from dynamo.server.ledger import Ledger
from dynamo.server.lifecycle import Lifecycle
from dynamo.server.logs import ChangeLog, setup_server_log
from dynamo.server.maintenance import Maintenance
from dynamo.server.offloop import CommitRun
from dynamo.server.pidfile import PidFile
from dynamo.server.pipes import Pipes
from dynamo.server.rowwriter import RowWriter
from dynamo.server.scheduler import Scheduler
from dynamo.server.service import AppService
from dynamo.server.signals import SignalQueue
from dynamo.server.system import REAL, System
from dynamo.server.turns import TurnClock
from dynamo.server.workareas import WorkAreas
from dynamo.server.zygote import Zygote
from dynamo.store import open_store, url_has_password
from dynamo.store.filesreader import FilesReader
from dynamo.store.registry import Registry
from dynamo.store.sql import SQLStore
from dynamo.store.statements import Statements
from dynamo.web.generations import WebGenerations, registry_users
from dynamo.web.link import WebLink

log = logging.getLogger("dynamo.server")


class Dynamod:
    def __init__(self, config: Config, on_ready: Callable[[Dynamod], None] | None = None, system: System = REAL,
                 files_reader: FilesReader | None = None):
        self.config = config
        # the first load's second reader, started before this process's imports (dynamo.cli.dynamod): handed
        # to the store when it is opened, ended if the start fails before
        self.files_reader = files_reader
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
        self.identities = identities.for_config(config)  # who applications run as
        self.work_areas = WorkAreas(config.path(config.applications.work_area))
        self.keeper: KeeperLink | None = None   # holds the secrets: dynamo.server.keeper
        self.tls_name: str | None = None        # the keeper's TLS listener
        self.turn = TurnClock()                 # logs the turns that held the loop long (debug level)
        self.quiet = False                      # the last wait for events found none
        # made by start(), once the store is open
        self.store: SQLStore
        self.registry: Registry
        self.ledger: Ledger
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
            turn = self.turn
            while not self.stopping:
                events = self.wait_for_events()
                self.quiet = not events
                turn.begin()
                self.handle_signals()
                self.dispatch(events)
                turn.lap("dispatch")
                self.lifecycle.write_held_rows(self.system.monotonic())  # after the first output went out
                turn.lap("rows")
                console.feed_all(self.children)
                self.reap()
                turn.lap("reap")
                self.enforce_deadlines()
                self.finish_children()
                turn.lap("finish")
                self.scheduler.start_readers()  # before a slice of a change set: a reader need not wait for it
                turn.lap("readers")
                self.committer.step()
                turn.lap("committer")
                self.scheduler.start_next_write()
                turn.lap("writer")
                self.scheduler.start_readers()
                turn.lap("readers")
                self.periodic_work()
                turn.lap("periodic")
                turn.end()
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
        return self.interest.wait(min(self.children.next_wake(now), self.clients.resume_in(time.monotonic()),
                                      self.lifecycle.row_due_in(now), self.committer.wake_in(),
                                      self.lifecycle.spare_due_in()))

    def dispatch(self, events: list[tuple[Any, int]]) -> None:
        for key, mask in events:
            target = key.data
            if isinstance(target, C.Listener):
                self.clients.accept(target)
            elif isinstance(target, C.Connection):
                self.clients.serve(target, mask)
            elif isinstance(target, Stream):
                self.pipes.read(target)
            elif isinstance(target, KeeperLink):
                self.from_keeper(target)
            elif isinstance(target, WebLink):
                self.from_web(target)
            elif isinstance(target, CommitRun):
                self.committer.read(target)
            elif isinstance(target, Zygote):
                self.lifecycle.from_zygote(target)
        events.clear()  # its keys hold pipes of children that may end this turn: nothing of theirs outlives it
        self.clients.expire(self.system.monotonic())

    def reap(self) -> None:
        """Reap our children, then kill and reap what applications left behind: descendants that
        outlived an application killed before it could clean up come to us (we are their subreaper)."""
        self.children.reap()
        if self.subreaper:
            ours = {child.pid for child in self.children} | self.committer.pids()
            if self.web is not None:
                ours |= set(self.web.workers)  # forked by dynamod itself, reaped by WebGenerations
            if self.keeper is not None:
                ours.add(self.keeper.pid)  # the keeper of the secrets: ours, watched through its channels
            ours |= self.lifecycle.spares.pids()  # the next reader's child, forked ahead (server.spare)
            # a zygote's spare may be our child before we are told its pid (dynamo.server.zygote)
            swept = set(sweep_orphans(ours, self.committer.spared_since()))
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
        self.ledger.relay_log()  # the registry's row writer's log lines (its thread writes no log itself)
        self.committer.run_after_reply()
        self.turn.lap("after_reply")
        # Not while a child just forked has not been heard from: the store's checkpoint (SQLite: two
        # fsyncs) would hold up its first output; it runs once that output has gone out.
        if not self.lifecycle.rows_held():
            self.maintenance.run()
            self.turn.lap("maintenance")
        self.serve_web()
        if not self.stopping:
            self.lifecycle.tend_spare(self.quiet)
            self.turn.lap("spare")

    def serve_web(self) -> None:
        """Web workers for the current version of the image (a new generation after a commit)."""
        if self.web is None or self.stopping:
            return
        if not self.committer.image_whole:
            self.web.reap()
            if self.web.wants_fork(self.committer.inventory):
                self.committer.unpipeline("the web server needs a worker")  # a writer's records: after its end
        if self.committer.image_whole:
            self.web.step(self.committer.inventory, lambda: registry_users(self.registry))

    # =====================================================================
    # start and stop
    # =====================================================================

    def start(self) -> None:
        self.identities.check()  # no process runs as a uid of the range
        probe = self.identities.probe()
        preflight.prepare(self.config, *((probe.uid, probe.gid) if probe else (None, None)))  # can applications run?
        self.pidfile.acquire()
        home = self.config.server.home
        setup_server_log(self.config.path(self.config.server.log_file), self.config.server.log_level, home)
        self.pidfile.secure()
        self.changelog = ChangeLog(self.config.path(self.config.server.change_log), home)
        log.info("dynamod %s starting (pid %d, configuration: %s)", __version__, os.getpid(), self.config.source)
        set_title("dynamod: starting")
        self.start_keeper()
        self.open_store()
        self.committer.load()
        self.bootstrap_registry()
        if self.ledger.writer is not None:
            self.ledger.writer.start()
        # Before anything listens: once a client can connect, SIGTERM is a clean stop, not a kill.
        self.signals.install()
        self.interest.set(self.signals, READ)
        self.open_listeners()
        log.info("open descriptors: up to %d", raise_descriptor_limit())
        self.subreaper = become_subreaper()
        self.committer.zygotes = self.subreaper  # its applications must come to us when their parent exits
        if not self.subreaper:
            log.warning("cannot become a child subreaper: processes that escape a killed application survive it")
        if self.web is not None:
            self.web.open()
            assert self.web.link is not None
            self.interest.set(self.web.link, READ)
            # a new generation of web workers before the writer hears its change is in
            self.committer.on_version = lambda version: self.serve_web()
        self.serve_web()
        set_title("dynamod: main")
        log.info("server ready: inventory version %d, listening on %s", self.committer.inventory.version,
                 ", ".join(self._listener_names()))
        if self.on_ready is not None:
            self.on_ready(self)

    def start_keeper(self) -> None:
        """Fork the keeper before anything secret is opened: it alone reads the database password and
        the TLS key, because applications are forks of this process and can read all its memory."""
        if url_has_password(self.config.store.url):
            log.warning("[store] url holds a password: every application can read it from its memory; "
                        "put it in [store] password_file instead (docs/server.md)")
        if keeper_needed(self.config):
            self.keeper = start_keeper(self.config)
            log.info("keeper started (pid %d)", self.keeper.pid)

    def _db_connection(self) -> tuple[int, dict[str, Any]]:
        if self.keeper is None:
            raise StoreError("no keeper to connect to the database")
        return self.keeper.connect_db(10)

    def _commit_store(self) -> tuple[Callable[[], SQLStore], tuple[int, ...]]:
        """How the commit process opens the store: a connection of its own (from the keeper, taken here,
        before the fork, since the keeper's link is the main process's), never this process's."""
        url = self.config.store.url
        if self.keeper is None or not url.startswith(("mysql:", "mariadb:")):  # the keeper may be TLS's only
            return lambda: _as_sql(open_store(url, create=False)), ()
        handed = [self.keeper.connect_db(10)]

        def connector() -> tuple[int, dict[str, Any]]:
            if not handed:
                raise StoreUnavailable("the commit process has one database connection and lost it")
            return handed.pop()

        return lambda: _as_sql(open_store(url, create=False, connector=connector)), (handed[0][0],)

    def from_keeper(self, keeper: KeeperLink) -> None:
        try:
            for sock, info in keeper.accept():
                host = str(info.get("peer", "")).rpartition(":")[0] or "?"  # the keeper sends host:port
                self.clients.adopt(sock, str(info.get("dn", "")), f"ip {host}")
        except KeeperGone as exc:
            self.interest.drop(keeper)
            log.error("keeper (pid %d) %s: %s: stopping", keeper.pid, keeper.close(), exc)
            self.keeper = None
            self.exit_code = ServerExit.SOFTWARE
            self.stopping = True
            self.scheduler.closed = True

    def from_web(self, link: WebLink) -> None:
        """Native-protocol clients a web worker handed over, each identified as its HTTP caller (dynamo.web.link)."""
        assert self.web is not None
        for arrival in link.accept(self.web.is_worker):
            self.clients.adopt(arrival.sock, arrival.dn, arrival.peer)

    def open_store(self) -> None:
        """The store, and the rooms that work through it."""
        store = open_store(self.config.store.url, connector=self._db_connection if self.keeper else None)
        assert isinstance(store, SQLStore)
        self.store = store
        reader, self.files_reader = self.files_reader, None
        if reader is not None:
            store.adopt_files_reader(reader)
        self.registry = Registry(store)
        ledger = self.ledger = Ledger(self.registry, self.system, self._row_writer(store))
        self.committer = Committer(store, ledger, self.changelog, self.interest, self._commit_store)
        self.committer.events_waiting = lambda: bool(self.interest.wait(0))
        self.lifecycle = Lifecycle(self.config.applications, self.work_areas, self.committer, ledger, self.children,
                                   self.pipes, self.system, self.identities)
        self.scheduler = Scheduler(ledger, self.children, self.config.applications.max_running,
                                   self.lifecycle.start, self.committer.run_inject)
        self.scheduler.committing = lambda: self.committer.busy
        self.scheduler.forks_allowed = lambda: self.committer.forks_allowed
        self.scheduler.reader_waits = self.lifecycle.waits_for_spare
        handlers = Handlers(AppService(self.registry, self.scheduler, self.children, self.hostname, ledger))
        self.clients = Clients(self.interest, self.registry, self.config.listen, handlers.handle, self.listeners)
        self.maintenance = Maintenance(self.config, store, self.registry, self.work_areas,
                                       busy=lambda: len(self.children) > 0, system=self.system,
                                       committing=lambda: self.committer.storing)

    def _row_writer(self, store: SQLStore) -> RowWriter | None:
        """The thread that writes the applications' rows off the loop, on a connection of its own
        (``dynamo.server.rowwriter``); started once the registry is settled (``bootstrap_registry``)."""
        db = store.registry_connection()  # the first here: a store that cannot be opened stops the start
        if db is None:
            return None
        first = [db]

        def connect() -> Statements:  # in the writer's thread: the first, then again after it was lost
            again = first.pop() if first else store.registry_connection()
            if again is None:
                raise StoreUnavailable("no connection to the registry")
            return again

        return RowWriter(connect, fork_gate=store.kind == "sqlite")

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
        if self.files_reader is not None:  # the store was not opened: the reader it would have taken
            self.files_reader.close()
            self.files_reader = None
        if self.web is not None:
            self.web.stop()
        self.stop_keeper()
        ledger = getattr(self, "ledger", None)
        if ledger is not None:
            ledger.close()
        store = getattr(self, "store", None)
        if store is not None:
            try:
                store.close()
            except StoreError:
                pass
        self.pidfile.release()
        if isinstance(exc, OSError):  # ssl.SSLError is an OSError too
            raise StartupError(f"cannot start: {exc}") from exc

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
        # TLS (in the keeper) first: whoever can connect to the local socket finds every listener open
        if self.keeper is not None:
            if self.config.listen.tls_address is not None:
                self.tls_name = self.keeper.listen_tls()
            self.interest.set(self.keeper, READ)
        open_listeners(self.config, self.listeners)
        for listener in self.listeners:
            self.interest.set(listener, READ)

    def _listener_names(self) -> list[str]:
        names = listener_names(self.listeners) + ([self.tls_name] if self.tls_name else [])
        if self.web is not None and self.web.sock is not None:
            names.append(self.web.name())
        return names

    def stop_keeper(self) -> None:
        keeper, self.keeper = self.keeper, None
        if keeper is not None:
            self.interest.drop(keeper)
            log.info("keeper (pid %d) %s", keeper.pid, keeper.close())

    def shutdown(self) -> None:
        log.info("stopping: %d application(s) running", len(self.children))
        set_title("dynamod: stopping")
        for listener in self.listeners:
            self.interest.drop(listener)
            listener.close()
        if self.web is not None:
            if self.web.link is not None:
                self.interest.drop(self.web.link)
            self.web.stop()
        if hasattr(self, "scheduler"):
            self.lifecycle.spares.close()
            self.committer.close_zygotes()
            self.stop_all_children()
            self.committer.settle()  # a change set being committed is seen through, its client told
            self.identities.close()
            self.committer.run_after_reply()
            self.scheduler.settle()
            self.clients.close_all()
        if hasattr(self, "ledger"):
            self.ledger.close()  # every row handed over is written (or logged) before the store closes
        try:
            self.store.close()
        except (AttributeError, StoreError):
            pass
        self.stop_keeper()
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


def _as_sql(store: object) -> SQLStore:
    assert isinstance(store, SQLStore)
    return store
