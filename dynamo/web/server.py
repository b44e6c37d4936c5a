"""cheroot's HTTP server around the WSGI application, on a socket someone else opened.

Only cheroot is used, never CherryPy's engine: the engine installs signal handlers and owns
the process, and dynamod (or a web worker it forked) keeps both. The listening socket is made
by :func:`listen` in dynamod and inherited by its workers, so that several processes accept
from one socket and a new generation takes over without a moment when nobody listens.

Limits (request line and headers, body, keep-alive idle time) are cheroot's; the request's
parameters are limited by :mod:`dynamo.web.request`. A TLS handshake happens in cheroot's
accepting thread, bounded by ``timeout``; the other workers keep accepting meanwhile.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from cheroot import makefile as cheroot_files
from cheroot import server as http_server
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from cryptography import x509 as _x509  # noqa: F401  peer_dn's: imported by dynamod before its workers fork

from dynamo.appserver.identity import peer_dn
from dynamo.web.user import User

MAX_HEADER = 64 << 10


def listen(address: str, backlog: int = 128) -> socket.socket:
    """A listening TCP socket for ``host:port`` (port 0: any free port)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # inherited by accepted connections: cheroot writes headers and body apart, and Nagle's algorithm
    # with the client's delayed ACK would hold the body back 40 ms (cheroot sets this on sockets it makes)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, int(port)))
    sock.listen(backlog)
    return sock


def web_tls_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The native protocol's rules (its CA, RFC 3820 proxies), but a client certificate is
    optional at the handshake so that a caller without one gets a readable 403."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=str(ca))
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    return context


class _Adapter(BuiltinSSLAdapter):
    """cheroot's adapter with our context, adding the caller's DN (proxies resolved) to environ."""

    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path, ca: Path):
        super().__init__(str(cert), str(key), str(ca))
        self.context = context

    def get_environ(self, sock: ssl.SSLSocket) -> dict[str, Any]:  # type: ignore[override]
        env: dict[str, Any] = super().get_environ(sock)
        env["dynamo.client_dn"] = peer_dn(sock) if sock.getpeercert() else None
        return env


class _Request(http_server.HTTPRequest):
    """cheroot's request, but the headers of a response with a Content-Length go out in one write
    with its body: cheroot writes them apart, two system calls and (with TCP_NODELAY) two packets
    for every answer, which the client must also read apart (docs/performance.md, the web). And
    the answer to HEAD has no body: cheroot sent the application's, which a keep-alive client
    then read as the start of its next answer."""

    _held: bytes | None = None

    def send_headers(self) -> None:
        lengthy = self.method != b"HEAD" and any(k.lower() == b"content-length" for k, _ in self.outheaders)
        if not lengthy:
            super().send_headers()
            return
        real = self.conn.wfile
        self.conn.wfile = _Capture()
        try:
            super().send_headers()
            held = self.conn.wfile.data
        finally:
            self.conn.wfile = real
        if self.chunked_write:  # cannot be, with a Content-Length; but never hold what cheroot would frame
            self.conn.wfile.write(held)
        else:
            self._held = held

    def write(self, chunk: bytes) -> None:
        if self.method == b"HEAD":
            return
        held, self._held = self._held, None
        if held is not None:
            self.conn.wfile.write(held + chunk)
        else:
            super().write(chunk)

    def respond(self) -> None:
        try:
            super().respond()
        finally:
            held, self._held = self._held, None
            if held is not None:  # an empty body: the headers alone
                self.conn.wfile.write(held)


class _Capture:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


class _Reader(cheroot_files.StreamReader):
    """cheroot's reader (pure-Python buffered I/O, which cheroot chose so that it can see its buffer),
    with a ``readline`` that takes a line already in the buffer in one step: cheroot reads the
    request line and every header line by line, and the inherited readline does a peek and a
    read, each under the lock, per line."""

    # _pyio.BufferedReader's own (cheroot's has_data reads them too)
    _read_lock: Any
    _read_buf: bytes
    _read_pos: int

    def readline(self, size: int | None = -1) -> bytes:
        with self._read_lock:
            buf, pos = self._read_buf, self._read_pos
            end = buf.find(b"\n", pos) + 1
            if end and (size is None or size < 0 or end - pos <= size):
                self._read_pos = end
                self.bytes_read += end - pos
                return bytes(buf[pos:end])
        return bytes(super().readline(-1 if size is None else size))


class _Connection(http_server.HTTPConnection):
    RequestHandlerClass = _Request

    def __init__(self, server: Any, sock: Any, makefile: Any = cheroot_files.MakeFile):
        super().__init__(server, sock, makefile)
        if type(self.rfile) is cheroot_files.StreamReader:  # plain HTTP (TLS has readers of its own)
            self.rfile = _Reader(sock, "rb", self.rbufsize)


class _Server(wsgi.Server):
    ConnectionClass = _Connection

    def __init__(self, sock: socket.socket, app: Any, **options: Any):
        self._given = sock
        super().__init__(sock.getsockname()[:2], app, **options)

    def bind(self, family: int, type: int, proto: int = 0) -> socket.socket:
        # prepare() would make a socket of its own: use the shared one
        self.socket = self._given
        return self._given


class WebServer:
    """Serves ``app`` on ``sock`` with ``threads`` threads; ``start()`` in a thread of its own,
    ``serve()`` in the calling one; ``stop()`` from anywhere."""

    User = User

    def __init__(self, app: Any, sock: socket.socket, *, threads: int = 8, timeout: float = 10.0,
                 max_body: int = 64 << 20, tls: tuple[Path, Path, Path] | None = None):
        self.sock = sock
        self.server = _Server(sock, app, numthreads=threads, timeout=timeout, request_queue_size=128,
                              server_name="dynamo")
        self.server.max_request_header_size = MAX_HEADER
        # the accept loop's select timeout: how long stop_accepting() may take
        self.server.expiration_interval = 0.05
        self.server.max_request_body_size = max_body
        if tls is not None:
            self.server.ssl_adapter = _Adapter(web_tls_context(*tls), *tls)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def serve(self) -> None:
        self.server.prepare()
        self.server.serve()

    def start(self) -> None:
        self.server.prepare()
        self._thread = threading.Thread(target=self.server.serve, name="web", daemon=True)
        self._thread.start()

    def stop_accepting(self) -> None:
        """Take no new connection (returns once the accepting loop has ended); ``stop`` then
        finishes the requests in hand. cheroot's own stop() does this first, privately."""
        if self.server.ready:
            getattr(self.server, "_connections").stop()  # noqa: B009 - private in cheroot

    def stop(self) -> None:
        self.server.stop()
        if self._thread is not None:
            self._thread.join(10)
