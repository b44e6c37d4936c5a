"""Client connections: listen, accept, identify, serve, expire, drop (the set of connections has one owner)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dynamo.appserver import connection as C
from dynamo.appserver.handlers import Handlers
from dynamo.config import Config, ListenConfig
from dynamo.errors import StoreError
from dynamo.protocol import replies
from dynamo.protocol.replies import ErrorCode
from dynamo.server.children import StopReason
from dynamo.server.interest import READ, WRITE, Interest
from dynamo.store.registry import AppRecord, Registry

log = logging.getLogger("dynamo.server")

LINGER = 5.0    # a half-closed TLS connection is dropped after this


class Clients:
    def __init__(self, interest: Interest, registry: Registry, listen: ListenConfig,
                 handle: Callable[[C.Connection, dict[str, Any]], None]):
        self.interest = interest
        self.registry = registry
        self.listen = listen
        self.handle = handle
        self.connections: set[C.Connection] = set()

    def refresh_interest(self) -> None:
        for conn in list(self.connections):
            self.interest.set(conn, (READ if conn.wants_read() else 0) | (WRITE if conn.wants_write() else 0))

    def accept(self, listener: C.Listener) -> None:
        while (sock := listener.accept()) is not None:
            if listener.context is not None:
                sock = listener.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            conn = C.Connection(sock, listener.kind, self.listen.max_frame)
            self.connections.add(conn)
            if listener.kind == "unix":
                try:
                    conn.identify_local()
                except OSError as exc:
                    log.warning("local connection without peer credentials: %s", exc)
                    self.drop(conn)
                    continue
                self.identify(conn)

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
                mask |= READ
            if mask & WRITE:
                conn.flush()
            if mask & READ and conn.wants_read():
                for message in conn.read():
                    if conn.user is None or conn.close_when_flushed:
                        break
                    self.handle(conn, message)
                conn.flush()
        except C.ConnectionClosed as exc:
            log.debug("%s closed: %s", conn, exc)
            self.drop(conn)
        except StoreError as exc:
            log.error("%s: the store failed: %s", conn, exc)
            Handlers.refuse(conn, f"the store is unavailable, try again later: {exc}", ErrorCode.UNAVAILABLE)

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
    """Open the configured listeners into ``listeners`` (filled as they open: a failure leaves the
    opened ones there to be closed)."""
    listen = config.listen
    if listen.socket is not None:
        listeners.append(C.unix_listener(config.path(listen.socket)))
    if listen.tls_address is not None:
        assert listen.tls_cert and listen.tls_key and listen.tls_ca
        context = C.tls_context(config.path(listen.tls_cert), config.path(listen.tls_key), config.path(listen.tls_ca))
        listeners.append(C.tls_listener(listen.tls_address, context))


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
