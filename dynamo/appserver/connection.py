"""Listening sockets and client connections, non-blocking, for dynamod's single loop.

A ``Connection`` turns readable bytes into validated messages and queues
outgoing frames; the loop asks it which events it wants. Local-socket
connections identify the user by peer uid. TLS clients arrive from dynamod's
keeper (``dynamo.server.keeper``), which holds the server's key, did the
handshake and verified the certificate DN: ``Connection.relayed`` carries their
plaintext. A ``Listener`` with an SSL context is what the keeper's listener is
made of (the keeper's ``keeper_relay`` does the handshakes; no connection of
the main process speaks TLS).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import stat
import time
from pathlib import Path
from typing import Any

from dynamo.appserver import identity
from dynamo.errors import ConnectionClosed, ProtocolError, StartupError
from dynamo.protocol import framing

READ_SIZE = 256 * 1024
# Stop reading an application's output while this much is waiting to be sent to its client.
HIGH_WATER = 4 << 20
# A client whose output is backlogged must take at least this many bytes a second, averaged over the
# client timeout: reading a few bytes a minute must not keep a stalled application (and its memory) alive.
MIN_RATE = 16 << 10
# accept() failures that mean "no descriptor or buffer for a new connection now": pause, do not die
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Overloaded(ConnectionClosed):
    """A connection is dropped because a limit of the server was reached (memory for incoming data,
    connections of one peer); the message says which, and is sent to the client."""


class BadFrame(ConnectionClosed):
    """The client sent something that is not a valid frame: the connection cannot go on (the stream
    is out of step), and the message says why, for the client."""


class IncomingBudget:
    """Memory held for incomplete frames, in total and per user: a client that starts a large frame
    and never finishes it holds that memory, and many such clients must not exhaust the server."""

    def __init__(self, total: int, per_user: int):
        self.total = total
        self.per_user = per_user
        self.held = 0
        self.by_user: dict[str, int] = {}

    def charge(self, conn: Connection, now_held: int) -> None:
        """Record that ``conn`` now holds ``now_held`` bytes; Overloaded if a limit is passed."""
        delta = now_held - conn.held
        if delta == 0:
            return
        user = conn.identity
        self.held += delta
        self.by_user[user] = self.by_user.get(user, 0) + delta
        conn.held = now_held
        if not self.by_user[user]:
            del self.by_user[user]
        if delta > 0 and self.by_user.get(user, 0) > self.per_user:
            raise Overloaded(f"incomplete requests of {user!r} hold more than {self.per_user} bytes: "
                             "connection dropped")
        if delta > 0 and self.held > self.total:
            raise Overloaded(f"the server holds more than {self.total} bytes of incomplete requests: "
                             "connection dropped, try again later")

    def release(self, conn: Connection) -> None:
        try:
            self.charge(conn, 0)
        except Overloaded:  # cannot happen when releasing
            pass


class Listener:
    def __init__(self, sock: socket.socket, kind: str, context: ssl.SSLContext | None = None,
                 path: Path | None = None):
        self.sock = sock
        self.kind = kind            # "unix" or "tls"
        self.context = context
        self.path = path
        self.exhausted = False   # the last accept() found no descriptor (or memory) for a new connection

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> socket.socket | None:
        """A new connection, or None: none waiting, or, with ``exhausted`` set, none can be taken now
        (the process or the system is out of descriptors or buffers): the caller pauses accepting
        and sheds connections rather than spinning on a listener that stays readable."""
        self.exhausted = False
        try:
            sock, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        except OSError as exc:
            if exc.errno in EXHAUSTED:
                self.exhausted = True
                return None
            raise
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        self.sock.close()
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def unix_listener(path: Path) -> Listener:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(f"{path} exists and is not a socket")
        path.unlink()  # a stale socket: the pid file lock guarantees no other dynamod is using it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {path}: {exc}") from exc
    # any local user may connect; each is identified by uid and checked against the registry
    os.chmod(path, 0o666)
    sock.listen(128)
    sock.setblocking(False)
    return Listener(sock, "unix", path=path)


def tls_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"TLS certificate {cert} with key {key}: {exc}") from exc
    try:
        context.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"TLS CA bundle {ca}: {exc}") from exc
    context.verify_mode = ssl.CERT_REQUIRED  # users are their certificates
    # grid users present RFC 3820 proxy certificates signed by their own certificate;
    # identity.peer_dn names them by the certificate that signed the proxy
    context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    return context


def tls_listener(address: str, context: ssl.SSLContext) -> Listener:
    host, _, port = address.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {address}: {exc}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return Listener(sock, "tls", context=context)


class Connection:
    """One client: its socket, identity, request state and output buffer."""

    def __init__(self, sock: socket.socket, kind: str, max_frame: int):
        self.sock = sock
        self.kind = kind
        self.decoder = framing.Decoder(max_frame)
        self.max_frame = max_frame
        self.out = bytearray()
        self.identity = ""          # unix user name or certificate DN
        self.user: Any = None       # registry.User once identified
        self.request: str | None = None
        self.child: Any = None      # the application whose output this connection receives
        self.upload: Any = None     # an inject document being received
        self.close_when_flushed = False
        self.draining_since: float | None = None  # half-closed, waiting for the client to hang up
        self.closed = False
        self.opened = time.monotonic()
        self.last_sent = self.opened  # the last time the client took some output (or when it had none)
        self.backlogged_since: float | None = None  # when the output first passed HIGH_WATER
        self.sent_in_backlog = 0    # bytes the client took since then
        self.held = 0               # bytes of incomplete frames charged to the IncomingBudget
        self.budget: IncomingBudget | None = None

    @classmethod
    def relayed(cls, sock: socket.socket, dn: str, max_frame: int) -> Connection:
        """A TLS client whose handshake dynamod's keeper did (it holds the key): ``sock`` carries its
        plaintext, ``dn`` is the identity the keeper verified. Served like any TLS client."""
        conn = cls(sock, "tls", max_frame)
        conn.identity = dn
        return conn

    def fileno(self) -> int:
        return self.sock.fileno()

    def __repr__(self) -> str:
        return f"<connection {self.kind} {self.identity or '?'}>"

    # --- events the loop should wait for -------------------------------------

    def wants_read(self) -> bool:
        if self.draining_since is not None:
            return not self.closed
        return not self.closed and not self.close_when_flushed

    def wants_write(self) -> bool:
        return not self.closed and bool(self.out)

    @property
    def backlogged(self) -> bool:
        return len(self.out) > HIGH_WATER

    # --- identity ---------------------------------------------------------------

    def identify_local(self) -> int:
        uid = identity.peer_uid(self.sock)
        self.identity = identity.unix_name(uid)
        return uid

    # --- I/O --------------------------------------------------------------------

    def half_close(self, now: float) -> None:
        """Everything is sent: stop sending, but keep reading until the client hangs up.

        Closing a TCP socket that still holds unread client data makes the kernel
        reset the connection, and the client may lose our last frames with it.
        """
        self.draining_since = now
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()

    def discard_input(self) -> None:
        """While draining: read and drop; ConnectionClosed once the client has hung up."""
        try:
            data = self.sock.recv(READ_SIZE)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return
        except (ssl.SSLError, OSError) as exc:
            raise ConnectionClosed(str(exc)) from exc
        if not data:
            raise ConnectionClosed("end of stream")

    def read(self) -> list[dict[str, Any]]:
        """Messages that arrived; raises ConnectionClosed at end of stream or on a bad frame."""
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return []
        except (ssl.SSLError, OSError) as exc:
            raise ConnectionClosed(str(exc)) from exc
        if not data:
            raise ConnectionClosed("end of stream")
        try:
            messages = list(self.decoder.feed(data))
        except ProtocolError as exc:
            raise BadFrame(f"malformed frame: {exc}") from exc
        if self.budget is not None:
            self.budget.charge(self, self.decoder.pending)  # Overloaded past a limit
        return messages

    def send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            if not self.out:
                self.last_sent = time.monotonic()
            self.out += framing.encode(message, self.max_frame)
            self._track_backlog(0)

    def stalled(self, now: float, timeout: float, min_rate: int = MIN_RATE) -> str | None:
        """Why the connection should be dropped: no request in time, output not taken in time, or output
        taken too slowly while it is backlogged (a byte-rate rule: silence is not the only way to stall)."""
        if self.draining_since is not None or self.closed:
            return None
        if self.request is None and now > self.opened + timeout:
            return f"no request within {timeout:g} s"
        if self.out and now > self.last_sent + timeout:
            return f"the client took no output for {timeout:g} s"
        if self.backlogged_since is not None and now > self.backlogged_since + timeout:
            rate = self.sent_in_backlog / (now - self.backlogged_since)
            if rate < min_rate:
                return (f"the client took its output at {rate:.0f} bytes/s for {timeout:g} s while more than "
                        f"{HIGH_WATER} bytes waited (at least {min_rate} bytes/s are needed)")
            self.backlogged_since, self.sent_in_backlog = now, 0  # judged: start a new window
        return None

    def _track_backlog(self, sent: int) -> None:
        if self.backlogged_since is None:
            if len(self.out) > HIGH_WATER:
                self.backlogged_since, self.sent_in_backlog = time.monotonic(), 0
        elif len(self.out) <= HIGH_WATER // 2:
            # caught up. Not merely below HIGH_WATER: back-pressure keeps the output just around it, and a
            # trickle that dips below it now and then would otherwise restart the rate window for ever
            self.backlogged_since = None
        else:
            self.sent_in_backlog += sent

    def flush(self) -> None:
        while self.out and not self.closed:
            try:
                sent = self.sock.send(self.out[:READ_SIZE])
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                return
            except (ssl.SSLError, OSError) as exc:
                raise ConnectionClosed(str(exc)) from exc
            del self.out[:sent]
            self.last_sent = time.monotonic()
            self._track_backlog(sent)

    def close(self) -> None:
        if self.budget is not None:
            self.budget.release(self)
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass
