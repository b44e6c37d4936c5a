"""Client connections: listen, accept, identify, serve, expire, drop (the set of connections has one owner)."""

from __future__ import annotations

import logging
import resource
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from dynamo.appserver import connection as C
from dynamo.appserver import identity
from dynamo.appserver.handlers import Handlers
from dynamo.config import Config, ListenConfig
from dynamo.errors import StoreError
from dynamo.protocol import framing, replies
from dynamo.protocol.replies import ErrorCode
from dynamo.server.children import StopReason
from dynamo.server.interest import READ, WRITE, Interest
from dynamo.store.registry import AppRecord, Registry

log = logging.getLogger("dynamo.server")

LINGER = 5.0    # a half-closed TLS connection is dropped after this
PAUSE = 0.1     # seconds without accepting after accept() found no descriptor for a new connection
SHED = 8        # at least this many unidentified connections are closed per exhausted accept()
INTERNAL = "the server failed on this request (logged)"


class Clients:
    def __init__(self, interest: Interest, registry: Registry, listen: ListenConfig,
                 handle: Callable[[C.Connection, dict[str, Any]], None], listeners: list[C.Listener] | None = None):
        self.interest = interest
        self.registry = registry
        self.listen = listen
        self.handle = handle
        self.listeners = listeners if listeners is not None else []
        self.connections: set[C.Connection] = set()
        self.budget = C.IncomingBudget(listen.max_incoming, listen.max_incoming_per_user)
        self.peers: dict[C.Connection, str] = {}       # uid:N or ip:ADDR, for the per-peer cap and the log
        self.per_peer: Counter[str] = Counter()
        self.refusals: dict[C.Connection, str] = {}    # over a cap: told so once TLS lets us speak
        self.counted: set[C.Connection] = set()        # the connections per_peer counts (not the refused)
        self.paused_until = 0.0                        # accepting resumes then (monotonic)

    def refresh_interest(self) -> None:
        paused = time.monotonic() < self.paused_until
        for listener in self.listeners:
            self.interest.set(listener, 0 if paused else READ)
        for conn in list(self.connections):
            self.interest.set(conn, (READ if conn.wants_read() else 0) | (WRITE if conn.wants_write() else 0))

    def resume_in(self, now: float) -> float:
        """Seconds until accepting resumes (the loop must wake then), or a long time."""
        return max(0.0, self.paused_until - now) if self.paused_until > now else 3600.0

    # --- accept ---------------------------------------------------------------------

    def accept(self, listener: C.Listener) -> None:
        while True:
            try:
                sock = listener.accept()
            except OSError as exc:  # not exhaustion (Listener handles that): log, and pause like it
                log.error("%s: accept failed: %s", listener.kind, exc)
                self.paused_until = time.monotonic() + PAUSE
                return
            if sock is None:
                if listener.exhausted:
                    self._exhausted()
                return
            if self.paused_until:
                log.warning("accepting connections again")
                self.paused_until = 0.0
            self._take(listener, sock)

    def _exhausted(self) -> None:
        """No descriptor (or buffer) for a new connection: pause accepting a moment rather than spin on a
        readable listener, and close the oldest connections that have not made a request (idle or
        half-open, typically what exhausted us), so that real clients get in again."""
        if not self.paused_until:  # once per episode
            log.warning("out of descriptors for new connections (%d open): pausing accept, shedding idle "
                        "connections", len(self.connections))
        self.paused_until = time.monotonic() + PAUSE
        idle = sorted((c for c in self.connections if c.request is None and not c.close_when_flushed),
                      key=lambda c: c.opened)
        for conn in idle[:max(SHED, len(idle) // 4)]:
            log.info("%s from %s: shed (no request yet, the server is out of descriptors)", conn,
                     self.peers.get(conn, "?"))
            self.drop(conn)

    def _take(self, listener: C.Listener, sock: socket.socket) -> None:
        peer = _peer(sock, listener.kind)
        if peer is None:
            sock.close()
            return
        if len(self.connections) >= self.listen.max_connections:
            log.warning("connection from %s refused: %d connections open (max_connections)", peer,
                        len(self.connections))
            _refuse_raw(sock, listener.kind, f"the server has {self.listen.max_connections} connections open, "
                        "its limit: try again later")
            return
        conn = C.Connection(sock, listener.kind, self.listen.max_frame)
        self._count(conn, peer)
        if listener.kind == "unix":
            try:
                conn.identify_local()
            except OSError as exc:
                log.warning("local connection without peer credentials: %s", exc)
                self.drop(conn)
                return
            self._identify_or_refuse(conn)

    def _count(self, conn: C.Connection, peer: str) -> None:
        """Register a new connection of ``peer``: its incoming data charged to the budget, and counted
        against the per-peer cap (or marked to be refused, once it can be told)."""
        conn.budget = self.budget
        self.connections.add(conn)
        self.peers[conn] = peer
        if self.per_peer[peer] >= self.listen.max_connections_per_peer:
            log.warning("connection from %s refused: %d connections open from there (max_connections_per_peer)",
                        peer, self.per_peer[peer])
            self.refusals[conn] = (f"{peer} has {self.listen.max_connections_per_peer} connections open to the "
                                   "server, its limit: close some and try again")
        else:
            self.per_peer[peer] += 1
            self.counted.add(conn)

    def _identify_or_refuse(self, conn: C.Connection) -> None:
        refusal = self.refusals.pop(conn, None)
        if refusal is None:
            self.identify(conn)
        else:
            Handlers.refuse(conn, refusal, ErrorCode.OVERLOADED)
            flush_now(conn)

    def adopt(self, sock: socket.socket, dn: str, peer: str) -> None:
        """A TLS client handed over by the keeper, identified by the certificate DN it verified; held to
        the same caps and incoming-data budget as the clients we accept ourselves."""
        if len(self.connections) >= self.listen.max_connections:
            log.warning("TLS connection from %s refused: %d connections open (max_connections)", peer,
                        len(self.connections))
            _refuse_raw(sock, "unix", f"the server has {self.listen.max_connections} connections open, "
                        "its limit: try again later")
            return
        conn = C.Connection.relayed(sock, dn, self.listen.max_frame)
        self._count(conn, peer)
        self._identify_or_refuse(conn)

    def identify(self, conn: C.Connection) -> None:
        try:
            user = (self.registry.user_by_name(conn.identity) if conn.kind == "unix"
                    else self.registry.user_by_dn(conn.identity))
        except StoreError as exc:
            log.error("%s: cannot look the user up: %s", conn, exc)
            Handlers.refuse(conn, f"the store is unavailable, try again later: {exc}", ErrorCode.UNAVAILABLE)
            return
        if user is None:
            what = "local user" if conn.kind == "unix" else "certificate DN"
            Handlers.refuse(conn, f"unknown {what} {conn.identity!r}: ask an administrator to register you "
                            "(dynamo-user-auth)", ErrorCode.PERMISSION)
            return
        conn.user = user

    def serve(self, conn: C.Connection, mask: int) -> None:
        """Move one connection's bytes and handle its requests. Whatever goes wrong costs this connection
        only: an unexpected error is logged with it, answered as the server's failure, and the loop goes on."""
        try:
            self._serve(conn, mask)
        except C.Overloaded as exc:
            log.warning("%s from %s: %s", conn, self.peers.get(conn, "?"), exc)
            self._last_word(conn, str(exc), ErrorCode.OVERLOADED)
        except C.BadFrame as exc:
            log.info("%s from %s: %s", conn, self.peers.get(conn, "?"), exc)
            self._last_word(conn, f"{exc}: connection closed", ErrorCode.PROTOCOL)
        except C.ConnectionClosed as exc:
            log.debug("%s closed: %s", conn, exc)
            self.drop(conn)
        except StoreError as exc:
            log.error("%s: the store failed: %s", conn, exc)
            Handlers.refuse(conn, f"the store is unavailable, try again later: {exc}", ErrorCode.UNAVAILABLE)
        except Exception:  # the class of faults nobody foresaw: this connection's, not the server's
            log.exception("%s from %s: unexpected error while serving its request %r: connection dropped", conn,
                          self.peers.get(conn, "?"), conn.request)
            self._last_word(conn, INTERNAL, ErrorCode.INTERNAL)

    def _serve(self, conn: C.Connection, mask: int) -> None:
        if conn.draining_since is not None:
            conn.discard_input()
            return
        if mask & WRITE:
            conn.flush()
        if mask & READ and conn.wants_read():
            for message in conn.read():
                if conn.user is None or conn.close_when_flushed:
                    break
                self.handle(conn, message)
            conn.flush()

    def _last_word(self, conn: C.Connection, message: str, code: ErrorCode) -> None:
        """Tell the client why its connection ends, then end it once that is sent (expire()): the partial
        frame it held is released now, and nothing more is read from it."""
        conn.decoder = framing.Decoder(conn.max_frame)
        self.budget.release(conn)
        if conn.closed:
            self.drop(conn)
            return
        conn.send(replies.error(message, code))
        conn.close_when_flushed = True
        flush_now(conn)
        child = conn.child
        if child is not None and child.connection is conn and child.spec.kind == "shell":
            child.stop(StopReason.KILLED)

    def expire(self, now: float) -> None:
        """Drop stalled clients and those whose answer is complete (TLS ones after a half-close)."""
        for conn in list(self.connections):
            stalled = conn.stalled(now, self.listen.client_timeout)
            if stalled is not None:
                log.info("%s: dropped: %s", conn, stalled)
                self.drop(conn)
            elif conn.draining_since is not None:
                if now > conn.draining_since + LINGER:
                    self.drop(conn)
            elif conn.close_when_flushed and not conn.out:
                if conn.kind == "unix":
                    self.drop(conn)  # no reset problem on local sockets
                else:
                    conn.half_close(now)

    def drop(self, conn: C.Connection) -> None:
        self.interest.drop(conn)
        conn.close()
        self.connections.discard(conn)
        peer = self.peers.pop(conn, None)
        self.refusals.pop(conn, None)
        if peer is not None and conn in self.counted:
            self.counted.discard(conn)
            self.per_peer[peer] -= 1
            if self.per_peer[peer] <= 0:
                del self.per_peer[peer]
        child, conn.child = conn.child, None
        if child is not None and child.connection is conn:
            child.connection = None
            if child.spec.kind == "shell":
                child.stop(StopReason.KILLED)  # a console without its client has nobody to talk to

    def close_all(self) -> None:
        """At shutdown: send what is buffered, then drop everyone."""
        for conn in list(self.connections):
            try:
                conn.flush()
            except C.ConnectionClosed:
                pass
            self.drop(conn)


def open_listeners(config: Config, listeners: list[C.Listener]) -> None:
    """Open the local listener into ``listeners``. The TLS listener is the keeper's
    (``dynamo.server.keeper``): the main process never loads the server's private key."""
    listen = config.listen
    if listen.socket is not None:
        listeners.append(C.unix_listener(config.path(listen.socket)))


def listener_names(listeners: list[C.Listener]) -> list[str]:
    names = []
    for listener in listeners:
        if listener.path is not None:
            names.append(f"unix:{listener.path}")
        else:
            host, port = listener.sock.getsockname()[:2]
            names.append(f"tls://{host}:{port}")
    return names


def flush_now(conn: C.Connection) -> None:
    """Send a final answer at once rather than at the next turn (housekeeping may come first)."""
    try:
        conn.flush()
    except C.ConnectionClosed:
        pass  # the loop drops it


def send_exit(conn: C.Connection, record: AppRecord) -> None:
    """The application's end, as its client's last message."""
    conn.send(replies.exit_(record.id, record.status.value, record.exit_code, record.message, record.version))
    conn.close_when_flushed = True
    flush_now(conn)


def _peer(sock: socket.socket, kind: str) -> str | None:
    """Who is on the other end, for the per-peer cap: a local uid, or a remote IP address."""
    try:
        if kind == "unix":
            return f"uid {identity.peer_uid(sock)}"
        return f"ip {sock.getpeername()[0]}"
    except OSError:  # gone already
        return None


def _refuse_raw(sock: socket.socket, kind: str, message: str) -> None:
    """Refuse a connection that will not be kept: a local client is told why (one frame, if the socket
    takes it at once); a TLS client cannot be told anything before a handshake we will not spend on it."""
    if kind == "unix":
        try:
            sock.send(framing.encode(replies.error(message, ErrorCode.OVERLOADED)))
        except OSError:
            pass
    sock.close()


def raise_descriptor_limit() -> int:
    """Raise the soft limit of open descriptors to the hard limit (each client holds one); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open descriptor limit from %d to %d: %s", soft, target, exc)
    return soft
