"""dynamod: one process owning the RAM image, the store, the listeners and the children.

``Dynamod.run`` is the table of contents: wait for events, handle signals,
move bytes, reap children, enforce deadlines, finish children, start the next
writer and the next readers, run periodic work. Signal handlers only record.
Change sets are applied here, in the loop, one at a time: nothing else runs
while the image changes, and a signal that arrives meanwhile is handled after.
"""

from __future__ import annotations

import gc
import logging
import os
import pwd
import secrets
import selectors
import shutil
import signal
import socket
import stat
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dynamo import __version__
from dynamo.apps.runner import ChildSpec
from dynamo.appserver import connection as C
from dynamo.appserver.handlers import Handlers
from dynamo.config import Config
from dynamo.core.appstate import AppState
from dynamo.core.changeset import Prepared, apply_change_set
from dynamo.core.codec import Record
from dynamo.core.documents import parse_delete, parse_inject
from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta
from dynamo.errors import (
    ChangeSetError,
    ConfigurationError,
    DocumentError,
    DynamoError,
    JournalPruned,
    StartupError,
    StoreError,
)
from dynamo.protocol.framing import ProtocolError
from dynamo.protocol.messages import error, result
from dynamo.server import children as K
from dynamo.server import preflight
from dynamo.server.logs import ChangeLog, setup_server_log
from dynamo.server.pidfile import PidFile
from dynamo.server.signals import SignalQueue
from dynamo.store import JournalRetention, open_store
from dynamo.store.catchup import catch_up
from dynamo.store.registry import AppRecord, Registry, User
from dynamo.store.sql import SQLStore

log = logging.getLogger("dynamo.server")

MAINTENANCE_GC_EVERY = 6 * 3600.0   # full collection of frozen objects (deleted datasets...), when idle
CLEANUP_EVERY = 3600.0
PIPE_DRAIN_GRACE = 5.0             # an exited child's descendants may hold its pipes this long
LINGER = 5.0                       # a half-closed TLS connection is dropped after this
MAX_CONSOLE_INPUT = 1 << 20        # console input waiting for the console to read it


@dataclass
class Pending:
    """An application waiting for its turn (readers: a free slot; writers: the writer slot)."""

    record: AppRecord
    request: dict[str, Any]
    conn: C.Connection | None
    kind: str = "app"
    dn: str = ""                  # the submitter's certificate DN, for the journal


@dataclass
class InjectJob:
    conn: C.Connection
    user: User
    delete: bool
    document: str


def _set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


class Dynamod:
    def __init__(self, config: Config, on_ready: Callable[[Dynamod], None] | None = None):
        self.config = config
        self.on_ready = on_ready
        self.hostname = socket.gethostname()
        self.selector = selectors.DefaultSelector()
        self.signals = SignalQueue()
        self.handlers = Handlers(self)
        self.listeners: list[C.Listener] = []
        self.connections: set[C.Connection] = set()
        self.children: dict[int, K.Child] = {}
        self.readers: deque[Pending] = deque()
        self.writes: deque[Pending | InjectJob] = deque()
        self.writer: K.Child | None = None
        self.after_reply: deque[Callable[[], None]] = deque()
        self.stopping = False
        self.exit_code = 0
        self.pidfile = PidFile(config.path(config.server.pid_file))
        self.uid, self.gid = self._service_ids()
        self._next_compaction = self._next_cleanup = self._next_gc = 0.0
        self.store: SQLStore
        self.registry: Registry
        self.inventory: Inventory
        self.changelog: ChangeLog

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
                self.feed_consoles()
                self.reap_children()
                self.enforce_deadlines()
                self.finish_children()
                self.start_next_write()
                self.start_readers()
                self.periodic_work()
        except BaseException:
            log.exception("unexpected error in the main loop: stopping")
            self.exit_code = 70
            raise
        finally:
            self.shutdown()
        return self.exit_code

    def wait_for_events(self) -> list[tuple[selectors.SelectorKey, int]]:
        self.refresh_interest()
        return self.selector.select(self._timeout())

    def _timeout(self) -> float:
        """Sleep until the next deadline, at most a second (periodic work is keyed to time)."""
        now = time.monotonic()
        wake = now + 1.0
        for child in self.children.values():
            if child.deadline is not None and child.stop_reason is None:
                wake = min(wake, child.deadline)
            if child.term_sent is not None:
                wake = min(wake, child.term_sent + self.config.applications.kill_grace)
        return max(0.0, wake - now)

    # =====================================================================
    # start and stop
    # =====================================================================

    def start(self) -> None:
        preflight.prepare(self.config, self.uid, self.gid)  # state directories; can applications run?
        self.pidfile.acquire()
        setup_server_log(self.config.path(self.config.server.log_file), self.config.server.log_level)
        self.changelog = ChangeLog(self.config.path(self.config.server.change_log))
        log.info("dynamod %s starting (pid %d, configuration: %s)", __version__, os.getpid(), self.config.source)
        _set_title("dynamod: starting")
        self.open_store()
        self.load_inventory()
        self.bootstrap_registry()
        self.open_listeners()
        self.signals.install()
        self.selector.register(self.signals, selectors.EVENT_READ, self.signals)
        _set_title("dynamod: main")
        log.info("server ready: inventory version %d, listening on %s", self.inventory.version,
                 ", ".join(self._listener_names()))
        if self.on_ready is not None:
            self.on_ready(self)

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

    def open_store(self) -> None:
        store = open_store(self.config.store.url)
        assert isinstance(store, SQLStore)
        self.store = store
        self.registry = Registry(store)

    def load_inventory(self) -> None:
        started = time.monotonic()
        self.inventory = self.store.load()
        gc.collect()
        gc.freeze()  # the image is shared copy-on-write with every child from now on
        counts = self.inventory.counts()
        log.info("inventory loaded in %.1f s: version %d, %s", time.monotonic() - started, self.inventory.version,
                 ", ".join(f"{v} {k}" for k, v in counts.items()))
        for advice in self.store.advice():
            log.warning("store: %s", advice)

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
        listen = self.config.listen
        if listen.socket is not None:
            self.listeners.append(C.unix_listener(self.config.path(listen.socket)))
        if listen.tls_address is not None:
            assert listen.tls_cert and listen.tls_key and listen.tls_ca
            context = C.tls_context(self.config.path(listen.tls_cert), self.config.path(listen.tls_key),
                                    self.config.path(listen.tls_ca))
            self.listeners.append(C.tls_listener(listen.tls_address, context))
        for listener in self.listeners:
            self.selector.register(listener, selectors.EVENT_READ, listener)

    def _listener_names(self) -> list[str]:
        names = []
        for listener in self.listeners:
            if listener.path is not None:
                names.append(f"unix:{listener.path}")
            else:
                host, port = listener.sock.getsockname()[:2]
                names.append(f"tls://{host}:{port}")
        return names

    def shutdown(self) -> None:
        log.info("stopping: %d application(s) running", len(self.children))
        _set_title("dynamod: stopping")
        for listener in self.listeners:
            self._unregister(listener)
            listener.close()
        self.stop_all_children()
        while self.after_reply:
            self.after_reply.popleft()()
        for pending in [*self.readers, *self.writes]:
            if isinstance(pending, Pending):
                self._finish_record(pending.record, AppState.KILLED, None, "the server stopped before it ran")
                if pending.conn is not None:
                    self._send_exit(pending.conn, pending.record)
            else:
                pending.conn.send(error("the server stopped before the inject ran", "unavailable"))
        self.readers.clear()
        self.writes.clear()
        for conn in list(self.connections):
            try:
                conn.flush()
            except C.ConnectionClosed:
                pass
            self._drop(conn)
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
        for child in self.children.values():
            child.stop("killed")
        deadline = time.monotonic() + self.config.applications.kill_grace
        while self.children and time.monotonic() < deadline:
            self.reap_children()
            for child in list(self.children.values()):
                self._drain(child)
                if not child.running:
                    self._finish(child)
            time.sleep(0.05)
        for child in list(self.children.values()):
            child.signal_group(signal.SIGKILL)
            try:
                os.waitpid(child.pid, 0)
            except ChildProcessError:
                pass
            child.exit_status = child.exit_status if child.exit_status is not None else -signal.SIGKILL
            self._drain(child)
            self._finish(child)

    # =====================================================================
    # signals
    # =====================================================================

    def handle_signals(self) -> None:
        for signum in self.signals.drain():
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("received %s: stopping", signal.Signals(signum).name)
                self.stopping = True
            elif signum == signal.SIGHUP:
                log.info("received SIGHUP: reopening the change log")
                self.changelog.reopen()
            # SIGCHLD only wakes the loop: reap_children runs every turn

    # =====================================================================
    # I/O
    # =====================================================================

    def refresh_interest(self) -> None:
        for conn in list(self.connections):
            events = (selectors.EVENT_READ if conn.wants_read() else 0) | \
                     (selectors.EVENT_WRITE if conn.wants_write() else 0)
            self._set_interest(conn, events)
        for child in self.children.values():
            backlogged = child.connection is not None and child.connection.backlogged
            for stream in child.streams:
                if stream.open:
                    self._set_interest(stream, 0 if backlogged and stream.kind in ("out", "err") else
                                       selectors.EVENT_READ)

    def _set_interest(self, obj: Any, events: int) -> None:
        try:
            key = self.selector.get_map().get(obj.fileno())
        except (OSError, ValueError):
            return
        if key is None:
            if events:
                self.selector.register(obj, events, obj)
        elif not events:
            self.selector.unregister(obj)
        elif key.events != events:
            self.selector.modify(obj, events, obj)

    def _unregister(self, obj: Any) -> None:
        try:
            self.selector.unregister(obj)
        except (KeyError, ValueError, OSError):
            pass

    def dispatch(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, mask in events:
            target = key.data
            if isinstance(target, C.Listener):
                self.accept(target)
            elif isinstance(target, C.Connection):
                self.serve(target, mask)
            elif isinstance(target, K.Stream):
                self.read_stream(target)
        now = time.monotonic()
        for conn in list(self.connections):
            stalled = conn.stalled(now, self.config.listen.client_timeout)
            if stalled is not None:
                log.info("%s: dropped: %s", conn, stalled)
                self._drop(conn)
            elif conn.draining_since is not None:
                if now > conn.draining_since + LINGER:
                    self._drop(conn)
            elif conn.close_when_flushed and not conn.out:
                if conn.kind == "unix":
                    self._drop(conn)  # no reset problem on local sockets
                else:
                    conn.half_close(now)

    def accept(self, listener: C.Listener) -> None:
        while (sock := listener.accept()) is not None:
            if listener.context is not None:
                sock = listener.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            conn = C.Connection(sock, listener.kind, self.config.listen.max_frame)
            self.connections.add(conn)
            if listener.kind == "unix":
                try:
                    conn.identify_local()
                except OSError as exc:
                    log.warning("local connection without peer credentials: %s", exc)
                    self._drop(conn)
                    continue
                self.identify(conn)

    def identify(self, conn: C.Connection) -> None:
        try:
            user = (self.registry.user_by_name(conn.identity) if conn.kind == "unix"
                    else self.registry.user_by_dn(conn.identity))
        except StoreError as exc:
            log.error("%s: cannot look the user up: %s", conn, exc)
            Handlers.refuse(conn, f"the store is unavailable, try again later: {exc}", "unavailable")
            return
        if user is None:
            what = "local user" if conn.kind == "unix" else "certificate DN"
            Handlers.refuse(conn, f"unknown {what} {conn.identity!r}: ask an administrator to register you "
                            "(dynamo-user-auth)", "permission")
            return
        conn.user = user

    def serve(self, conn: C.Connection, mask: int) -> None:
        try:
            if conn.draining_since is not None:
                conn.discard_input()
                return
            if conn.handshaking:
                if not conn.handshake():
                    return
                self.identify(conn)
                # the request may have arrived with the handshake's last flight and sit in
                # OpenSSL's buffer, where select() cannot see it: read now
                mask |= selectors.EVENT_READ
            if mask & selectors.EVENT_WRITE:
                conn.flush()
            if mask & selectors.EVENT_READ and conn.wants_read():
                for message in conn.read():
                    if conn.user is None or conn.close_when_flushed:
                        break
                    self.handlers.handle(conn, message)
                conn.flush()
        except C.ConnectionClosed as exc:
            log.debug("%s closed: %s", conn, exc)
            self._drop(conn)
        except StoreError as exc:
            log.error("%s: the store failed: %s", conn, exc)
            Handlers.refuse(conn, f"the store is unavailable, try again later: {exc}", "unavailable")

    def _drop(self, conn: C.Connection) -> None:
        self._unregister(conn)
        conn.close()
        self.connections.discard(conn)
        child = conn.child
        if child is not None and child.connection is conn:
            child.connection = None
            if child.spec.kind == "shell":
                child.stop("killed")  # a console without its client has nobody to talk to

    def read_stream(self, stream: K.Stream) -> None:
        try:
            data = os.read(stream.fd, C.READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_stream(stream)
            return
        child = stream.child
        if stream.kind in ("out", "err"):
            text = stream.text.decode(data)
            if stream.log is not None:
                self._keep_output(stream, text)
            if text and child.connection is not None:
                child.connection.send({"type": stream.kind, "data": text})
            return
        assert stream.frames is not None
        try:
            for frame in stream.frames.feed(data):
                self._child_frame(child, stream.kind, frame)  # ProtocolError too if a frame cannot be relayed
        except ProtocolError as exc:
            child.change_error = f"malformed frame from the application: {exc}"
            child.stop("killed")
            self._close_stream(stream)

    def _keep_output(self, stream: K.Stream, text: str) -> None:
        """Append to the server's copy of the output (flushed: --poll shows a running application's),
        up to ``max_output``: a chatty application must not fill the server's disk."""
        assert stream.log is not None
        limit = self.config.applications.max_output
        room = limit - stream.logged
        try:
            stream.log.write(text[:room])
            stream.logged += min(len(text), room)
            if len(text) > room:
                stream.log.write(f"\n[dynamo: the server keeps only the first {limit} characters of this output]\n")
                stream.log.close()
                stream.log = None
            else:
                stream.log.flush()
        except OSError as exc:  # a full disk: the client still gets the output
            log.error("app %d (%s): cannot keep its output: %s", stream.child.record.id, stream.child.record.title,
                      exc)
            stream.log = None

    def _child_frame(self, child: K.Child, kind: str, frame: dict[str, Any]) -> None:
        if kind == "control":  # the console: out/err/prompt, in order
            conn = child.connection
            for key in ("out", "err", "prompt"):
                if key in frame and conn is not None:
                    conn.send({"type": key, "text" if key == "prompt" else "data": frame[key]})
            return
        records = frame.get("records")
        if isinstance(records, list) and child.commit_count is None:
            child.records.extend(records)  # decoded now, while the application runs
            if len(child.records) > self.config.applications.max_changes:
                child.change_error = f"more than {self.config.applications.max_changes} changes"
                child.stop("killed")
        elif isinstance(frame.get("commit"), int) and child.commit_count is None:
            child.commit_count = frame["commit"]
        else:
            child.change_error = "unexpected frame in the change stream"
            child.stop("killed")

    def _close_stream(self, stream: K.Stream) -> None:
        if stream.open:
            stream.open = False
            self._unregister(stream)
            os.close(stream.fd)
            if stream.text is not None:
                tail = stream.text.decode(b"", final=True)
                if tail and stream.child.connection is not None:
                    stream.child.connection.send({"type": stream.kind, "data": tail})
            if stream.log is not None:
                stream.log.close()
                stream.log = None

    def _drain(self, child: K.Child) -> None:
        """Read what the child's pipes still hold (at shutdown, without the selector)."""
        for stream in child.streams:
            while stream.open:
                try:
                    data = os.read(stream.fd, C.READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    self._close_stream(stream)
                    break
                if stream.log is not None and stream.text is not None:
                    self._keep_output(stream, stream.text.decode(data))

    # =====================================================================
    # children
    # =====================================================================

    def reap_children(self) -> None:
        for child in self.children.values():
            if child.running:
                try:
                    pid, status = os.waitpid(child.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = child.pid, -1
                if pid:
                    child.exit_status = status
                    child.exited_at = time.monotonic()

    def enforce_deadlines(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.running and child.deadline is not None and child.stop_reason is None and now > child.deadline:
                log.info("app %d (%s): timeout, stopping it", child.record.id, child.record.title)
                child.stop("timeout")
            if (child.running and child.term_sent is not None and not child.kill_sent
                    and now > child.term_sent + self.config.applications.kill_grace):
                log.info("app %d (%s): still alive after SIGTERM, sending SIGKILL", child.record.id,
                         child.record.title)
                child.signal_group(signal.SIGKILL)
                child.kill_sent = True
            if not child.running and child.pipes_open:
                if child.connection is not None and child.connection.backlogged:
                    child.exited_at = now  # its client is still taking the output: the grace starts later
                if now > (child.exited_at or now) + PIPE_DRAIN_GRACE:
                    # descendants of the child keep its pipes open: end them
                    child.signal_group(signal.SIGKILL)
                    for stream in child.streams:
                        self._close_stream(stream)

    def finish_children(self) -> None:
        for child in [c for c in self.children.values() if not c.running and not c.pipes_open]:
            self._finish(child)

    def _finish(self, child: K.Child) -> None:
        self.children.pop(child.pid, None)
        for stream in child.streams:
            self._close_stream(stream)
        if child.stdin_fd is not None:
            os.close(child.stdin_fd)
            child.stdin_fd = None
        record = child.record
        status = child.exit_status if child.exit_status is not None else -1
        code = os.waitstatus_to_exitcode(status) if status >= 0 else -signal.SIGKILL
        if child.stop_reason is not None:
            state = AppState.TIMEOUT if child.stop_reason == "timeout" else AppState.KILLED
            message = child.change_error or ("ran past its timeout" if state == AppState.TIMEOUT
                                             else "killed")
            self._finish_record(record, state, code, message)
        elif code != 0:
            message = f"exit code {code}" if code > 0 else f"killed by signal {signal_name(-code)}"
            self._finish_record(record, AppState.FAILED, code, message + ("; nothing applied" if record.write
                                                                         else ""))
        elif record.write and child.spec.kind == "app":
            self._apply_application(child)
        else:
            self._finish_record(record, AppState.DONE, 0, "")
        if child is self.writer:
            self.writer = None
        if child.connection is not None:
            self._send_exit(child.connection, record)
        log.info("app %d (%s): %s%s", record.id, record.title, record.status.value,
                 f" ({record.message})" if record.message else "")

    def _apply_application(self, child: K.Child) -> None:
        record = child.record
        if child.change_error or child.commit_count is None or child.commit_count != len(child.records):
            reason = child.change_error or "the application ended without committing its changes"
            self._finish_record(record, AppState.FAILED, 0, reason + "; nothing applied")
            return
        try:
            self.registry.update_application(record, status=AppState.APPLYING)
        except StoreError as exc:
            log.error("app %d: cannot record its state: %s", record.id, exc)
            record.status = AppState.APPLYING
        meta = ChangeMeta(user=record.user, dn=child.dn, title=record.title, checksum=record.checksum,
                          run_id=record.id)
        state, message = self._apply(child.records, meta, f"app {record.id} ({record.title}) {record.user}")
        self._finish_record(record, state, 0, message, version=self.inventory.version)

    def _apply(self, records: list[Record] | Prepared, meta: ChangeMeta, who: str) -> tuple[AppState, str]:
        """Apply a change set; returns the outcome for the record. The loop does nothing else meanwhile."""
        started = time.monotonic()
        try:
            apply_change_set(self.inventory, self.store, records, meta)
        except ChangeSetError as exc:
            log.warning("%s: change set refused: %s", who, exc)
            return AppState.REFUSED, f"changes refused, nothing applied: {exc}"
        except StoreError as exc:
            log.error("%s: the store failed, nothing applied: %s", who, exc)
            self.resync()
            return AppState.FAILED, f"the store failed, nothing applied: {exc}"
        elapsed = time.monotonic() - started
        version = self.inventory.version
        log.info("%s: %d change(s) applied and committed as version %d in %.2f s", who, len(records), version,
                 elapsed)
        # after the client has its answer (periodic_work): the change log, then the new objects join the
        # frozen generation shared with children
        plain = records.records if isinstance(records, Prepared) else records
        self.after_reply.append(lambda: self.changelog.write(version, who, plain))
        self.after_reply.append(_refreeze)
        return AppState.DONE, f"{len(records)} change(s) applied: inventory version {version}"

    def resync(self) -> None:
        """After a failed commit: if the store moved on without the image (a COMMIT that went
        through although its acknowledgement was lost, or another writer), replay the journal
        entries the image lacks, or, when they cannot be replayed, load the image again."""
        try:
            replayed = catch_up(self.inventory, self.store)
        except JournalPruned as exc:
            log.warning("the image cannot catch up with the store from the journal (%s): loading it again", exc)
            try:
                self.load_inventory()
            except StoreError as error:
                log.error("reloading the image failed, will try after the next failed commit: %s", error)
            return
        except StoreError as exc:
            log.error("cannot compare the image with the store, will try after the next failed commit: %s", exc)
            return
        if replayed:
            self.after_reply.append(_refreeze)
            log.warning("the store was %d change set(s) ahead of the image (a commit whose acknowledgement was "
                        "lost?): replayed from the journal, now at version %d", replayed, self.inventory.version)

    def _finish_record(self, record: AppRecord, state: AppState, code: int | None, message: str,
                       version: int | None = None) -> None:
        changes: dict[str, Any] = {"status": state, "exit_code": code, "message": message, "ended": time.time()}
        if version is not None:
            changes["version"] = version
        try:
            self.registry.update_application(record, **changes)
        except StoreError as exc:
            log.error("app %d: cannot record its end in the registry: %s", record.id, exc)
            for key, value in changes.items():
                setattr(record, key, value)

    @staticmethod
    def _send_exit(conn: C.Connection, record: AppRecord) -> None:
        conn.send({"type": "exit", "id": record.id, "status": record.status.value, "code": record.exit_code,
                   "message": record.message, "version": record.version})
        conn.close_when_flushed = True
        _flush_now(conn)

    # =====================================================================
    # starting applications
    # =====================================================================

    def submit(self, conn: C.Connection, request: dict[str, Any], checksum: str) -> None:
        user: User = conn.user
        record = self.registry.new_application(title=request["title"], user=user.name, write=request["write"],
                                               script=request["name"], checksum=checksum,
                                               args=list(request["args"]), server=self.hostname)
        is_async = bool(request.get("async"))
        pending = Pending(record, request, None if is_async else conn, dn=user.dn or "")
        log.info("app %d (%s): submitted by %s (%s)", record.id, record.title, user.name,
                 "write" if record.write else "read-only")
        if is_async:
            conn.send({"type": "accepted", "id": record.id})
            conn.close_when_flushed = True
        if record.write:
            self.writes.append(pending)
            if (self.writer is not None or len(self.writes) > 1) and not is_async:
                conn.send({"type": "queued", "id": record.id, "reason": "waiting for the current writer"})
        else:
            self.readers.append(pending)

    def open_shell(self, conn: C.Connection, tty: bool) -> None:
        user: User = conn.user
        record = self.registry.new_application(title="shell", user=user.name, write=False, script="<console>",
                                               checksum="", args=[], server=self.hostname)
        self.readers.append(Pending(record, {"tty": tty}, conn, kind="shell"))

    def start_readers(self) -> None:
        if self.stopping:  # SIGTERM arrived this turn: shutdown() settles the queue
            return
        limit = self.config.applications.max_running
        while self.readers and self._running_readers() < limit:
            pending = self.readers.popleft()
            if not self._client_left(pending):
                self._spawn(pending)

    def _running_readers(self) -> int:
        return sum(1 for c in self.children.values() if c is not self.writer)

    def start_next_write(self) -> None:
        if self.stopping:
            return
        while self.writer is None and self.writes:
            job = self.writes.popleft()
            if isinstance(job, InjectJob):
                if not job.conn.closed:
                    self._run_inject(job)
            elif not self._client_left(job):
                self.writer = self._spawn(job)

    def _client_left(self, pending: Pending) -> bool:
        """A synchronous client that left before its application started has cancelled it."""
        if pending.conn is None or not pending.conn.closed:
            return False
        self._finish_record(pending.record, AppState.KILLED, None, "the client left before it started")
        return True

    def _spawn(self, pending: Pending) -> K.Child | None:
        record, request = pending.record, pending.request
        # <work_area>/<id>-<random>/ belongs to the server and keeps the output logs; the application
        # gets its work/ (the current directory), so it cannot swap the logs for links to files only
        # the server may read, which --poll would then show. The random part: <work_area> is not
        # listable, so applications (all running as the service user) cannot find each other's.
        run_dir = self.config.path(self.config.applications.work_area) / f"{record.id}-{secrets.token_hex(8)}"
        work = run_dir / "work"
        try:
            run_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
            work.mkdir(exist_ok=True)
            if pending.kind == "app":
                (work / record.script).write_text(request["script"])
            if self.uid is not None:
                os.chown(work, self.uid, self.gid or -1)
        except OSError as exc:
            self._finish_record(record, AppState.FAILED, None, f"cannot prepare the work area: {exc}")
            if pending.conn is not None:
                self._send_exit(pending.conn, record)
            return None
        timeout = effective_timeout(self.config.applications.timeout, request.get("timeout"))
        spec = ChildSpec(app_id=record.id, title=record.title, kind=pending.kind, script_name=record.script,
                         source=request.get("script", ""), args=tuple(request.get("args", ())),
                         write=record.write, work_area=str(work), uid=self.uid, gid=self.gid,
                         tty=bool(request.get("tty", False)))
        try:
            child = K.spawn(spec, self.inventory, time.monotonic(), timeout, record)
        except OSError as exc:
            log.error("app %d (%s): cannot fork: %s", record.id, record.title, exc)
            self._finish_record(record, AppState.FAILED, None, f"the server could not start it: {exc}")
            if pending.conn is not None:
                self._send_exit(pending.conn, record)
            return None
        self.children[child.pid] = child
        child.dn = pending.dn
        for stream in child.streams:
            if stream.kind in ("out", "err"):
                stream.log = open(run_dir / f"_std{stream.kind}", "a", encoding="utf-8")  # noqa: SIM115
        if child.stdin_fd is not None:
            os.set_blocking(child.stdin_fd, False)
        try:
            self.registry.update_application(record, status=AppState.RUNNING, pid=child.pid, started=time.time(),
                                             work_area=str(work), version=self.inventory.version)
        except StoreError as exc:  # the application runs anyway; its record catches up when it ends
            log.error("app %d: cannot record its start: %s", record.id, exc)
            record.status, record.pid, record.work_area = AppState.RUNNING, child.pid, str(work)
        log.info("app %d (%s): started, pid %d, inventory version %d", record.id, record.title, child.pid,
                 self.inventory.version)
        if pending.conn is not None and not pending.conn.closed:
            child.connection = pending.conn
            pending.conn.child = child
            pending.conn.send({"type": "started", "id": record.id, "version": self.inventory.version})
        return child

    # =====================================================================
    # requests from the handlers
    # =====================================================================

    def send_input(self, conn: C.Connection, data: str | None) -> None:
        """Queue console input; ``feed_consoles`` writes it as the console reads (never blocking the loop)."""
        child = conn.child
        if child is None or child.stdin_fd is None or child.stdin_eof:
            return
        if data is None:
            child.stdin_eof = True
        else:
            child.stdin_pending += data.encode()
            if len(child.stdin_pending) > MAX_CONSOLE_INPUT:
                # a client that sends lines the console does not ask for: it is not our shell client
                log.warning("app %d (%s): more than %d bytes of console input waiting: stopping it",
                            child.record.id, child.record.title, MAX_CONSOLE_INPUT)
                child.stdin_pending.clear()
                child.stdin_eof = True
                child.stop("killed")
        self._feed_console(child)

    def feed_consoles(self) -> None:
        for child in self.children.values():
            if child.stdin_fd is not None and (child.stdin_pending or child.stdin_eof):
                self._feed_console(child)

    @staticmethod
    def _feed_console(child: K.Child) -> None:
        fd = child.stdin_fd
        if fd is None:
            return
        try:
            while child.stdin_pending:
                written = os.write(fd, child.stdin_pending)
                del child.stdin_pending[:written]
        except BlockingIOError:
            return  # the console is busy; the rest goes when it reads again
        except OSError:  # the console is gone
            child.stdin_pending.clear()
            child.stdin_eof = True
        if child.stdin_eof:
            os.close(fd)
            child.stdin_fd = None

    def interrupt(self, conn: C.Connection) -> None:
        child = conn.child
        if child is None:  # still queued: Ctrl-C cancels it
            self._cancel_queued(lambda p: p.conn is conn, "cancelled by its client while queued")
            return
        if child.spec.kind == "shell":
            child.signal_group(signal.SIGINT)  # interrupts the running statement, as in Python's console
            return
        log.info("app %d (%s): interrupted by its client", child.record.id, child.record.title)
        child.stop("killed")

    def kill(self, user: User, app_id: int) -> dict[str, Any]:
        for child in self.children.values():
            if child.record.id == app_id:
                log.info("app %d (%s): kill requested by %s", app_id, child.record.title, user.name)
                child.stop("killed")
                return {"id": app_id, "result": "stopping"}
        if self._cancel_queued(lambda p: p.record.id == app_id, f"killed by {user.name} while queued"):
            return {"id": app_id, "result": "killed"}
        return {"id": app_id, "result": "noaction", "detail": "the application is not queued or running"}

    def _cancel_queued(self, match: Callable[[Pending], bool], reason: str) -> bool:
        """Take the first queued application that ``match``es out of its queue, as killed."""
        for queue in (self.readers, self.writes):
            for pending in queue:
                if isinstance(pending, Pending) and match(pending):
                    queue.remove(pending)
                    log.info("app %d (%s): %s", pending.record.id, pending.record.title, reason)
                    self._finish_record(pending.record, AppState.KILLED, None, reason)
                    if pending.conn is not None:
                        self._send_exit(pending.conn, pending.record)
                    return True
        return False

    def poll(self, app_id: int) -> dict[str, Any] | None:
        record = self.registry.application(app_id)
        if record is None:
            return None
        data = record.to_json()
        if record.work_area:
            for name in ("_stdout", "_stderr"):
                data[name.strip("_")] = _tail(Path(record.work_area).parent / name)
        return data

    def list_applications(self, show_all: bool) -> list[dict[str, Any]]:
        records = self.registry.applications(active_only=not show_all, limit=100)
        return [r.to_json() for r in records]

    def queue_inject(self, conn: C.Connection, delete: bool, document: str) -> None:
        self.writes.append(InjectJob(conn, conn.user, delete, document))
        if self.writer is not None:
            conn.send({"type": "queued", "reason": "waiting for the current writer"})

    def _run_inject(self, job: InjectJob) -> None:
        conn, who = job.conn, f"inject by {job.user.name}"
        try:
            parsed = (parse_delete if job.delete else parse_inject)(job.document, self.inventory)
        except DocumentError as exc:
            log.info("%s: document refused: %s", who, exc)
            Handlers.refuse(conn, f"invalid document, nothing changed: {exc}", "invalid")
            return
        meta = ChangeMeta(user=job.user.name, dn=job.user.dn or "", title="dynamo-inject")
        state, message = self._apply(parsed.records, meta, who)
        if state != AppState.DONE:
            Handlers.refuse(conn, message, "invalid" if state == AppState.REFUSED else "store")
            return
        conn.send(result({"counts": parsed.counts, "version": self.inventory.version, "delete": job.delete}))
        conn.close_when_flushed = True
        _flush_now(conn)

    # =====================================================================
    # periodic work
    # =====================================================================

    def periodic_work(self) -> None:
        while self.after_reply:
            self.after_reply.popleft()()
        try:
            self.store.maintain()
        except StoreError as exc:
            log.error("store maintenance failed: %s", exc)
        now = time.monotonic()
        if now >= self._next_compaction:
            self._next_compaction = now + self.config.store.compact_every
            self._compact_journal()
        if now >= self._next_cleanup:
            self._next_cleanup = now + CLEANUP_EVERY
            self._clean_work_areas()
        # when idle (a full pass over the image blocks the loop ~2 s at W10), but no later than one
        # period overdue: a server that is never idle must still free deleted objects
        if now >= self._next_gc and (not self.children or now >= self._next_gc + MAINTENANCE_GC_EVERY):
            if self._next_gc:
                started = time.monotonic()
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                log.info("maintenance garbage collection: %.1f s", time.monotonic() - started)
            self._next_gc = now + MAINTENANCE_GC_EVERY

    def _compact_journal(self) -> None:
        retention = JournalRetention(self.config.store.journal_keep_days, self.config.store.journal_keep_entries)
        try:
            pruned = self.store.compact_journal(retention)
        except StoreError as exc:
            log.error("journal compaction failed: %s", exc)
            return
        if pruned:
            log.info("journal compaction: records of %d change set(s) removed", pruned)

    def _clean_work_areas(self) -> None:
        cutoff = time.time() - self.config.applications.retain_days * 86400
        try:
            old = self.registry.purge_applications(cutoff)
        except StoreError as exc:
            log.error("application clean-up failed: %s", exc)
            return
        base = self.config.path(self.config.applications.work_area).resolve()
        for record in old:
            run_dir = Path(record.work_area).parent.resolve() if record.work_area else None
            if run_dir is not None and run_dir.parent == base:
                shutil.rmtree(run_dir, ignore_errors=True)
        if old:
            log.info("removed %d finished application(s) older than %.0f days", len(old),
                     self.config.applications.retain_days)


def effective_timeout(limit: float, asked: float | None) -> float:
    """The server's limit (0 = none) caps what a client asks for (None or 0 = as long as allowed)."""
    if not asked:
        return limit
    return float(asked) if not limit else min(float(asked), limit)


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9; the number for signals without a name (real-time ones: an application may die of
    any signal, and the server must be able to say so)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _refreeze() -> None:
    gc.collect()
    gc.freeze()


def _flush_now(conn: C.Connection) -> None:
    """Send a final answer at once rather than at the next turn (housekeeping may come first)."""
    try:
        conn.flush()
    except C.ConnectionClosed:
        pass  # the loop drops it


def _tail(path: Path, size: int = 8192) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # the server's own regular file only
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return ""
        with open(fd, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""

