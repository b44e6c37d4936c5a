"""The main process's end of the keeper (``dynamo.server.keeper``): start it, ask it, hear from it.

Two SOCK_SEQPACKET socket pairs join the processes (message boundaries kept, descriptors passed
with SCM_RIGHTS):

- ``requests``: the main process asks, the keeper answers, one at a time, synchronously —
  ``{"op": "db"}`` (answer: a logged-in database socket and PyMySQL's handshake state) and
  ``{"op": "listen"}`` (answer: the TLS listener's address, or why it cannot listen);
- ``arrivals``: the keeper announces each TLS client whose handshake completed: the plaintext end
  of a socket pair, with the verified certificate DN in the same message, so the main process
  never holds a relayed connection whose identity it does not know.

The keeper is forked before the main process opens its store, its listeners or any secret, and
the main process never reads the password file or the TLS key itself.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import threading
import time
from typing import Any

from dynamo.config import Config
from dynamo.errors import DynamoError, StartupError, StoreError, StoreUnavailable

log = logging.getLogger("dynamo.server")

MESSAGE = 64 << 10          # largest message on either pair
STOP_WAIT = 5.0             # seconds the keeper has to end after its pairs close


class KeeperGone(DynamoError):
    """The keeper ended: the main process can neither reach the database nor take TLS clients."""


def needed(config: Config) -> bool:
    """A keeper is started when there is something to keep: a MySQL login or a TLS key."""
    return config.listen.tls_address is not None or config.store.url.startswith(("mysql:", "mariadb:"))


def start(config: Config) -> KeeperLink:
    """Fork the keeper; the parent gets the link. The child never returns."""
    requests, keeper_requests = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    arrivals, keeper_arrivals = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            requests.close()
            arrivals.close()
            from dynamo.server.keeper import serve
            code = serve(config, keeper_requests, keeper_arrivals)
        except BaseException:
            log.exception("keeper: unexpected error")
        finally:
            os._exit(code)
    keeper_requests.close()
    keeper_arrivals.close()
    arrivals.setblocking(False)
    return KeeperLink(pid, requests, arrivals)


class KeeperLink:
    def __init__(self, pid: int, requests: socket.socket, arrivals: socket.socket):
        self.pid = pid
        self.requests = requests
        self.arrivals = arrivals
        self.gone = False
        # one request and its answer at a time: the registry's row writer (dynamo.server.rowwriter)
        # asks for a database connection from its thread when it lost its own
        self._calling = threading.Lock()

    def fileno(self) -> int:
        """The selector watches the arrivals (and, through them, the keeper's end)."""
        return self.arrivals.fileno()

    def __repr__(self) -> str:
        return f"<keeper {self.pid}>"

    def call(self, request: dict[str, Any], timeout: float) -> tuple[dict[str, Any], list[int]]:
        """Send ``request`` and wait for the answer (KeeperGone if the keeper ended or went silent)."""
        with self._calling:
            return self._call(request, timeout)

    def _call(self, request: dict[str, Any], timeout: float) -> tuple[dict[str, Any], list[int]]:
        if self.gone:
            raise KeeperGone("the keeper process has ended")
        try:
            self.requests.sendall(json.dumps(request).encode())
            ready, _, _ = select.select([self.requests], [], [], timeout)
            if not ready:
                raise KeeperGone(f"the keeper did not answer {request['op']!r} within {timeout:g} s")
            data, fds, _flags, _addr = socket.recv_fds(self.requests, MESSAGE, 1)
        except OSError as exc:
            self.gone = True
            raise KeeperGone(f"the keeper process is unreachable: {exc}") from exc
        if not data:
            self.gone = True
            raise KeeperGone("the keeper process has ended")
        return json.loads(data), fds

    def connect_db(self, timeout: float) -> tuple[int, dict[str, Any]]:
        """A logged-in database socket and its handshake state; StoreError/StoreUnavailable as the keeper saw it."""
        try:
            answer, fds = self.call({"op": "db"}, timeout + 5)
        except KeeperGone as exc:
            raise StoreUnavailable(f"no database connection: {exc}") from exc
        if "error" in answer:
            for fd in fds:
                os.close(fd)
            raise (StoreUnavailable if answer.get("unavailable") else StoreError)(answer["error"])
        if len(fds) != 1:
            raise StoreUnavailable("the keeper sent no database connection")
        return fds[0], answer["state"]

    def listen_tls(self) -> str:
        """Have the keeper open the TLS listener; its ``tls://host:port`` name."""
        try:
            answer, _ = self.call({"op": "listen"}, 30)
        except KeeperGone as exc:
            raise StartupError(f"cannot listen for TLS: {exc}") from exc
        if "error" in answer:
            raise StartupError(answer["error"])
        return str(answer["name"])

    def accept(self) -> list[tuple[socket.socket, dict[str, Any]]]:
        """The TLS clients the keeper announced: (plaintext socket, {"dn", "peer"}); KeeperGone at its end."""
        arrived: list[tuple[socket.socket, dict[str, Any]]] = []
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.arrivals, MESSAGE, 1)
            except (BlockingIOError, InterruptedError):
                return arrived
            except OSError as exc:
                self.gone = True
                raise KeeperGone(f"the keeper's channel failed: {exc}") from exc
            if not data and not fds:
                self.gone = True
                raise KeeperGone("the keeper process has ended")
            if len(fds) != 1:  # the descriptor was lost (the main process was out of them): the client goes
                for fd in fds:
                    os.close(fd)
                log.warning("keeper: a TLS connection arrived without its socket (out of descriptors?)")
                continue
            sock = socket.socket(fileno=fds[0])
            sock.setblocking(False)
            arrived.append((sock, json.loads(data)))

    def close(self) -> str:
        """Close the pairs (the keeper ends when it sees them close), wait for it; how it ended."""
        self.requests.close()
        self.arrivals.close()
        return reap(self.pid, STOP_WAIT)


def reap(pid: int, wait: float) -> str:
    """Wait up to ``wait`` s for ``pid`` to end, then SIGKILL it; a description of its end."""
    deadline = time.monotonic() + wait
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return "already reaped"
        if done:
            return describe(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "killed after it did not end"
        time.sleep(0.02)


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with {os.WEXITSTATUS(status)}"
