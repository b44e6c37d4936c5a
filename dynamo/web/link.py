"""How a web worker asks dynamod something on behalf of its HTTP caller: the web workers' channel.

A worker never applies a change itself (its image is a copy-on-write snapshot, and the store is
dynamod's): to inject, delete, list applications or read one's output it becomes a client of
dynamod's native protocol, identified as the HTTP caller. It makes a fresh socket pair, keeps one
end and hands the other to dynamod over the *link* (a SOCK_SEQPACKET socket pair made by dynamod
before it forks any worker) together with the caller's certificate DN; dynamod serves that end
exactly as a TLS client its keeper hands over (``Clients.adopt``): the DN is looked up in the
registry, and the request goes through the same handlers, rights checks and writer queue as
``dynamo-inject`` or ``dynamo``. No protocol field names an identity: who a connection speaks for
is said only on the link.

Who may send on the link: dynamod's end receives each message with the sender's credentials,
which the kernel fills in (``SO_PASSCRED``); a message is taken only from a process that is one of
dynamod's current web workers. Only dynamod and its web workers hold the sending end (applications
and consoles close every descriptor they inherit at their fork; the keeper is forked before the
link exists), and the credentials check refuses anything else that might come by it.
"""

from __future__ import annotations

import array
import json
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dynamo.protocol import framing
from dynamo.protocol.replies import Reply

log = logging.getLogger("dynamo.web")

MESSAGE = 4 << 10              # a link message: {"dn", "peer"}
CHUNK = 1 << 20                # characters per "data" frame of an inject (as dynamo-inject sends)
_CREDS = struct.Struct("3i")   # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Arrival:
    sock: socket.socket
    dn: str
    peer: str
    sender: int


class WebLink:
    """dynamod's side: made before the first worker is forked; the workers inherit ``worker_end``."""

    def __init__(self) -> None:
        self.ours, self.worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.ours.setblocking(False)

    def fileno(self) -> int:
        return self.ours.fileno()

    def __repr__(self) -> str:
        return "<web link>"

    def accept(self, is_worker: Callable[[int], bool]) -> Iterator[Arrival]:
        """The connections the workers handed over since the last call, from workers only."""
        while True:
            fds = array.array("i")
            try:
                data, ancillary, _flags, _addr = self.ours.recvmsg(
                    MESSAGE, socket.CMSG_SPACE(fds.itemsize) + socket.CMSG_SPACE(_CREDS.size))
            except (BlockingIOError, InterruptedError):
                return
            sender = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    sender = _CREDS.unpack(payload[:_CREDS.size])[0]
            arrival = self._arrival(data, list(fds), sender, is_worker)
            if arrival is not None:
                yield arrival

    @staticmethod
    def _arrival(data: bytes, fds: list[int], sender: int, is_worker: Callable[[int], bool]) -> Arrival | None:
        problem = None
        header: Any = None
        if not is_worker(sender):
            problem = f"from process {sender}, which is not a web worker"
        elif len(fds) != 1:
            problem = f"with {len(fds)} descriptors instead of one (dynamod out of descriptors?)"
        else:
            try:
                header = json.loads(data)
            except ValueError:
                header = None
            if not (isinstance(header, dict) and isinstance(header.get("dn"), str)
                    and isinstance(header.get("peer"), str)):
                problem = "that is not {dn, peer}"
        if problem is not None:
            log.warning("web link: a message %s: ignored", problem)
            for fd in fds:
                os.close(fd)
            return None
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        return Arrival(sock, header["dn"][:4096], f"ip {header['peer'][:64]}", sender)

    def close(self) -> None:
        self.ours.close()
        self.worker_end.close()


class ServerError(Exception):
    """dynamod refused or failed a request (``code``: an ErrorCode value, or "unreachable")."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Dynamod:
    """A worker's side: native-protocol requests to dynamod as ``dn``, one connection each."""

    def __init__(self, link: socket.socket, timeout: float | None = None):
        self.link = link
        self.timeout = timeout

    def connect(self, dn: str, peer: str) -> socket.socket:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            header = json.dumps({"dn": dn, "peer": peer}).encode()
            socket.send_fds(self.link, [header], [theirs.fileno()])
        except OSError as exc:
            mine.close()
            raise ServerError("unreachable", f"dynamod cannot be reached: {exc}") from exc
        finally:
            theirs.close()
        mine.settimeout(self.timeout)
        return mine

    def call(self, dn: str, peer: str, request: dict[str, Any], data: str | None = None) -> Any:
        """Send ``request`` (and, for an inject, ``data`` in frames once accepted); the result's data.
        ``ServerError`` for an error reply or a connection that ends without a result."""
        sock = self.connect(dn, peer)
        try:
            framing.send(sock, request)
            if data is not None:
                _expect(framing.receive(sock), Reply.ACCEPTED)
                for start in range(0, len(data), CHUNK):
                    framing.send(sock, {"op": "data", "text": data[start:start + CHUNK]})
                framing.send(sock, {"op": "end"})
            while True:
                reply = _expect(framing.receive(sock), Reply.RESULT, Reply.QUEUED)
                if reply["type"] == Reply.RESULT:
                    return reply.get("data")
        except (OSError, framing.ProtocolError) as exc:
            raise ServerError("unreachable", f"the connection to dynamod failed: {exc}") from exc
        finally:
            sock.close()


def _expect(reply: dict[str, Any] | None, *kinds: str) -> dict[str, Any]:
    if reply is None:
        raise ServerError("unreachable", "dynamod closed the connection")
    kind = reply.get("type")
    if kind == Reply.ERROR:
        raise ServerError(str(reply.get("code")), str(reply.get("message")))
    if kind not in kinds:
        raise ServerError("internal", f"unexpected reply {kind!r} from dynamod")
    return reply
