"""What the client commands share: configuration, connecting, talking, exit codes.

Kept light on imports: ``dynamo`` must start fast (the time to an
application's first output line includes this process starting). ``argparse``,
``dynamo.config``, ``socket`` and ``ssl`` are imported by the functions that need
them (a Unix socket needs only ``_socket``); ``typing`` only for the type checker;
no ``enum`` (see ``Replies``).
"""

from __future__ import annotations

import _socket
import os
import sys

from dynamo.exitcodes import ClientExit
from dynamo.protocol import framing

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any, NoReturn

    from dynamo.cli.clientconfig import ClientView
    from dynamo.config import Config


class Replies:
    """The values of ``dynamo.protocol.replies.Reply`` the commands act on, and of
    ``dynamo.core.appstate.AppState`` (what an ``exit`` reply's status says), as plain strings: those
    are ``StrEnum`` classes, and ``enum`` costs a client more than its request (tests/unit/test_replies.py
    holds the two equal)."""

    ERROR = "error"
    ACCEPTED = "accepted"
    QUEUED = "queued"
    STARTED = "started"
    OUT = "out"
    ERR = "err"
    PROMPT = "prompt"
    EXIT = "exit"
    # the final states
    DONE = "done"
    FAILED = "failed"
    KILLED = "killed"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    LOST = "lost"


ERROR_EXIT: dict[str, int] = {
    "permission": ClientExit.NO_PERMISSION,
    "invalid": ClientExit.CHANGES_REFUSED,
    "protocol": ClientExit.SOFTWARE,
    "not_found": ClientExit.NOT_FOUND,
    "store": ClientExit.SOFTWARE,
    "unavailable": ClientExit.UNAVAILABLE,
    "overloaded": ClientExit.TEMPFAIL,
    "internal": ClientExit.SOFTWARE,
}
"""The exit code for each refusal, by ``dynamo.protocol.replies.ErrorCode`` value (an unknown code: a
software error; tests/unit/test_replies.py holds the keys equal to the codes)."""


def fail(message: str, code: int) -> NoReturn:
    print(f"{os.path.basename(sys.argv[0])}: {message}", file=sys.stderr)
    sys.exit(code)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="configuration file (default: $DYNAMO_CONFIG, else the embedded default)")
    parser.add_argument("-s", "--server", help="unix:/path/to/socket or tls://host:port (default: [client] server)")
    parser.add_argument("-c", "--cert", help="client certificate (PEM) for TLS")
    parser.add_argument("-k", "--key", help="private key of the certificate (default: in the certificate file)")
    parser.add_argument("--ca", help="CA bundle the server's certificate must chain to")


def configuration(args: argparse.Namespace) -> Config:
    from dynamo.config import load_config
    from dynamo.errors import ConfigurationError
    try:
        return load_config(args.config)
    except ConfigurationError as exc:
        fail(str(exc), ClientExit.USAGE)


def client_configuration(args: Any) -> Config | ClientView:
    """Where to connect, as :func:`configuration` has it, without reading more than that (the
    ``dynamo`` command's hot path: ``dynamo.cli.clientconfig``)."""
    from dynamo.cli.clientconfig import client_config
    from dynamo.errors import ConfigurationError
    try:
        return client_config(args.config)
    except ConfigurationError as exc:
        fail(str(exc), ClientExit.USAGE)


class Client:
    def __init__(self, sock: _socket.socket):
        self.sock = sock

    def send(self, message: dict[str, Any]) -> None:
        try:
            framing.send(self.sock, message)
        except OSError as exc:
            # the server may have refused us and hung up before reading: its reason is waiting to be read
            try:
                last = framing.receive(self.sock)
            except (OSError, framing.ProtocolError):
                last = None
            if last is not None and last.get("type") == Replies.ERROR:
                refused(last)
            fail(certificate_refused(exc) or f"connection to the server failed: {exc}", ClientExit.UNAVAILABLE)

    def receive(self) -> dict[str, Any]:
        try:
            message = framing.receive(self.sock)
        except (OSError, framing.ProtocolError) as exc:
            # over TLS 1.3 the server judges our certificate after our handshake is done: its refusal
            # arrives as an alert on the first read
            fail(certificate_refused(exc) or f"connection to the server failed: {exc}", ClientExit.UNAVAILABLE)
        if message is None:
            fail("the server closed the connection", ClientExit.UNAVAILABLE)
        return message

    def close(self) -> None:
        self.sock.close()


def connect(args: Any, config: Config | ClientView) -> Client:
    url = args.server or os.environ.get("DYNAMO_SERVER") or config.client.server
    try:
        if url.startswith("unix:"):
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                sock.connect(url[len("unix:"):])
            except OSError:
                sock.close()
                raise
        elif url.startswith("tls://"):
            sock = _tls(url, args, config)
        else:
            fail(f"server {url!r}: expected unix:/path or tls://host:port", ClientExit.USAGE)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        fail(f"cannot reach the server at {url} ({exc.strerror}): is dynamod running?", ClientExit.UNAVAILABLE)
    except OSError as exc:
        fail(f"cannot connect to {url}: {exc}", ClientExit.UNAVAILABLE)
    return Client(sock)


def _tls(url: str, args: Any, config: Config | ClientView) -> _socket.socket:
    import socket
    import ssl
    host, _, port = url[len("tls://"):].rpartition(":")
    if not host or not port.isdigit():
        fail(f"server {url!r}: expected tls://host:port", ClientExit.USAGE)
    cert = args.cert or os.environ.get("X509_USER_PROXY") or (str(config.client.cert) if config.client.cert else None)
    ca = args.ca or (str(config.client.ca) if config.client.ca else None)
    if not cert:
        fail("TLS needs a client certificate (--cert, $X509_USER_PROXY or [client] cert)", ClientExit.USAGE)
    key = args.key or (str(config.client.key) if config.client.key else None)
    context = ssl.create_default_context(cafile=ca)  # verifies the server's certificate and host name
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        fail(f"cannot use the client certificate {cert}: {exc}", ClientExit.USAGE)
    raw = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
    try:
        sock = context.wrap_socket(raw, server_hostname=host.strip("[]"))
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        fail(f"the server's certificate is not trusted: {exc.verify_message}", ClientExit.UNAVAILABLE)
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        fail(certificate_refused(exc) or f"TLS connection to {host}:{port} failed: {exc}", ClientExit.UNAVAILABLE)
    sock.settimeout(None)
    return sock


# the TLS alerts a server sends when it does not accept the client's certificate (OpenSSL's reasons)
CERTIFICATE_ALERTS = frozenset({"TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                                "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
                                "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
                                "SSLV3_ALERT_CERTIFICATE_REVOKED"})


def certificate_refused(exc: BaseException) -> str | None:
    """What to tell the user when the server refused their certificate (a TLS alert), else None."""
    reason = getattr(exc, "reason", None)
    if reason not in CERTIFICATE_ALERTS:
        return None
    if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return "the server refused the connection: it requires a client certificate"
    if reason == "SSLV3_ALERT_CERTIFICATE_EXPIRED":
        return "the server refused your certificate: it has expired"
    return f"the server refused your certificate: it is not signed by a CA the server trusts ({reason})"


def refused(message: dict[str, Any]) -> NoReturn:
    code = message.get("code")
    fail(str(message.get("message", "refused")), ERROR_EXIT.get(code if isinstance(code, str) else "",
                                                                 ClientExit.SOFTWARE))


def request(args: Any, config: Config | ClientView, message: dict[str, Any]) -> Any:
    """Send one request and return the ``data`` of its result (errors end the program)."""
    client = connect(args, config)
    client.send(message)
    reply = client.receive()
    client.close()
    if reply.get("type") == Replies.ERROR:
        refused(reply)
    return reply.get("data")
