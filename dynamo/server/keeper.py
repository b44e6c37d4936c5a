"""dynamod's keeper: the only process that reads the database password and the TLS private key.

Applications are forks of dynamod's main process, so whatever that process ever held in
memory — freed memory included — an application can read. Privilege separation as in
OpenSSH: a small process, forked by dynamod before it opens anything secret, keeps the
secrets and hands the main process only what it needs:

- a database connection already logged in (the socket, passed with SCM_RIGHTS, and PyMySQL's
  handshake state: ``dynamo.store.handover``), on each request — at start and after an outage;
- each TLS client as a plaintext socket, after the keeper has done the handshake with the
  server's key and identified the client by its verified certificate (``keeper_relay``).

The keeper never forks, runs one selector loop, and gives a misbehaving TLS client nothing but
the end of its own connection. It ignores SIGINT/SIGTERM/SIGHUP (a terminal's ^C reaches the
whole process group): it ends when the main process closes its end of the pairs. It makes
itself non-dumpable, so processes of the same user (the embedded single-user server's
applications) cannot ptrace it or read its /proc/<pid>/mem. If it dies, the main process
logs it and stops (``Dynamod``); a keeper restarted from the running main process would work,
but a keeper that died has met something unforeseen, and an operator should see it.
"""

from __future__ import annotations

import ctypes
import json
import logging
import resource
import selectors
import signal
import socket
import time
from collections import deque
from typing import Any

from dynamo.appserver import connection as C
from dynamo.config import Config
from dynamo.errors import ConfigurationError, StartupError, StoreError, StoreUnavailable
from dynamo.proctitle import set_title
from dynamo.server.keeper_link import MESSAGE
from dynamo.server.keeper_relay import Relay
from dynamo.store import handover
from dynamo.store.mysql import MySQLStore, parse_mysql_url, read_password

log = logging.getLogger("dynamo.server")

PR_SET_DUMPABLE = 4
PAUSE = 0.5         # seconds without accepting after the keeper ran out of descriptors
DRAIN = 2.0         # seconds the keeper goes on sending TLS clients their last bytes once the main process ends


def serve(config: Config, requests: socket.socket, arrivals: socket.socket) -> int:
    """The keeper's life; its exit status."""
    set_title("dynamod: keeper")
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    _not_dumpable()
    _raise_descriptor_limit()
    return Keeper(config, requests, arrivals).run()


def _not_dumpable() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("keeper: cannot make itself non-dumpable")


def _raise_descriptor_limit() -> None:
    """Each TLS client costs the keeper two descriptors: take all the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


class Keeper:
    def __init__(self, config: Config, requests: socket.socket, arrivals: socket.socket):
        self.config = config
        self.requests = requests
        self.arrivals = arrivals
        self.selector = selectors.DefaultSelector()
        self.masks: dict[int, int] = {}
        self.relays: set[Relay] = set()
        self.handoffs: deque[Relay] = deque()
        self.listener: C.Listener | None = None
        self.paused_until = 0.0
        arrivals.setblocking(False)

    def run(self) -> int:
        ending: float | None = None  # when the main process closed its end
        while ending is None or (self.relays and time.monotonic() < ending + DRAIN):
            now = time.monotonic()
            self._refresh(now, ending is not None)
            for key, mask in self.selector.select(timeout=PAUSE if ending is None else 0.05):
                target = key.data
                if target is self.requests:
                    if not self.answer():
                        ending = self.closing(ending)
                elif target is self.arrivals:
                    if mask & selectors.EVENT_READ and self._main_gone():
                        ending = self.closing(ending)
                    self.hand_over()
                elif isinstance(target, tuple):
                    relay, side = target
                    self.relay_event(relay, side, mask)
                elif target is self.listener and ending is None:
                    self.accept(time.monotonic())
            self.finish_relays(time.monotonic())
        return self.stop("the main process closed its end")

    def closing(self, since: float | None) -> float:
        """The main process has ended: take no more, but let the relays send what they hold (its last
        answers to TLS clients) for up to DRAIN seconds."""
        if since is None:
            for sock in (self.requests, self.arrivals):
                self._forget(sock)
            if self.listener is not None:
                self._forget(self.listener)
                self.listener.close()
                self.listener = None
            self.handoffs.clear()
            for relay in self.relays:
                if relay.handoff is not None:  # the main process never got it: the client is dropped
                    relay.done = True
        return since if since is not None else time.monotonic()

    def _main_gone(self) -> bool:
        try:
            return not self.arrivals.recv(1)  # the main process never writes here: readable means its end
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def stop(self, why: str) -> int:
        log.debug("keeper: stopping: %s", why)
        for relay in list(self.relays):
            relay.close()
        if self.listener is not None:
            self.listener.close()
        return 0

    # --- the selector ------------------------------------------------------------------

    def _want(self, fileobj: Any, data: Any, mask: int) -> None:
        fd = fileobj.fileno()
        old = self.masks.get(fd, 0)
        if mask == old:
            return
        if not old:
            self.selector.register(fd, mask, data)
        elif not mask:
            self.selector.unregister(fd)
        else:
            self.selector.modify(fd, mask, data)
        if mask:
            self.masks[fd] = mask
        else:
            del self.masks[fd]

    def _refresh(self, now: float, ending: bool = False) -> None:
        if not ending:
            self._want(self.requests, self.requests, selectors.EVENT_READ)
            self._want(self.arrivals, self.arrivals, selectors.EVENT_READ |
                       (selectors.EVENT_WRITE if self.handoffs else 0))
        if self.listener is not None:
            self._want(self.listener, self.listener, selectors.EVENT_READ if now >= self.paused_until else 0)
        for relay in self.relays:
            tls, plain = relay.masks()
            self._want(relay.tls, (relay, "tls"), tls)
            if relay.plain is not None:
                self._want(relay.plain, (relay, "plain"), plain)

    def _forget(self, sock: socket.socket | C.Listener | None) -> None:
        if sock is not None and sock.fileno() >= 0:
            self._want(sock, None, 0)

    # --- requests of the main process --------------------------------------------------

    def answer(self) -> bool:
        """Answer one request; False when the main process has gone."""
        try:
            data = self.requests.recv(MESSAGE)
        except OSError:
            return False
        if not data:
            return False
        try:
            op = json.loads(data).get("op")
        except (ValueError, AttributeError):
            op = None
        try:
            if op == "db":
                self.connect_db()
            elif op == "listen":
                self.reply(self.listen())
            else:
                self.reply({"error": f"unknown request {data[:100]!r}"})
        except OSError:
            return False  # the answer could not be sent: the main process has gone
        except Exception as exc:  # a bug or a surprise of a library: the request fails, not the keeper
            log.exception("keeper: request %r failed", op)
            self.reply({"error": f"the keeper failed: {exc}"})
        return True

    def reply(self, answer: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
        socket.send_fds(self.requests, [json.dumps(answer).encode()], list(fds))

    def connect_db(self) -> None:
        """Log in to the database and hand the socket over; one line of error otherwise."""
        store = self.config.store
        try:
            params = parse_mysql_url(store.url)
            if store.password_file is not None:
                params["password"] = read_password(str(self.config.path(store.password_file)))
            with MySQLStore._translate():
                conn = handover.authenticate(params)
            params.pop("password", None)
        except (StoreError, ConfigurationError) as exc:
            log.debug("keeper: no database connection: %s", exc)
            self.reply({"error": str(exc), "unavailable": isinstance(exc, StoreUnavailable)})
            return
        try:
            self.reply({"state": handover.state_of(conn)}, (conn._sock.fileno(),))
        finally:
            handover.release(conn)  # the main process's copy of the socket carries the session on

    def listen(self) -> dict[str, Any]:
        listen = self.config.listen
        if listen.tls_address is None or self.listener is not None:
            return {"error": "no TLS listener is configured" if self.listener is None else "already listening"}
        assert listen.tls_cert and listen.tls_key and listen.tls_ca
        try:
            context = C.tls_context(self.config.path(listen.tls_cert), self.config.path(listen.tls_key),
                                    self.config.path(listen.tls_ca))
            self.listener = C.tls_listener(listen.tls_address, context)
        except (StartupError, OSError) as exc:
            return {"error": str(exc)}
        host, port = self.listener.sock.getsockname()[:2]
        return {"name": f"tls://{host}:{port}"}

    # --- TLS clients -------------------------------------------------------------------

    def accept(self, now: float) -> None:
        assert self.listener is not None and self.listener.context is not None
        while (sock := self.listener.accept()) is not None:
            try:
                host, port = sock.getpeername()[:2]
                peer = f"{host}:{port}"
                tls = self.listener.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError) as exc:
                log.info("keeper: TLS client dropped at once: %s", exc)
                sock.close()
                continue
            self.relays.add(Relay(tls, peer, now + self.config.listen.client_timeout))
        if self.listener.exhausted:
            log.warning("keeper: out of descriptors: not accepting TLS clients for %g s (%d connected)",
                        PAUSE, len(self.relays))
            self.paused_until = now + PAUSE

    def relay_event(self, relay: Relay, side: str, mask: int) -> None:
        """One relay's event; an unexpected error costs that client its connection, never the keeper."""
        now = time.monotonic()
        try:
            if side == "tls":
                relay.on_tls(mask, now)
            else:
                relay.on_plain(mask, now)
        except Exception:
            log.exception("keeper: %s: unexpected error: connection dropped", relay)
            relay.done = True
        if relay.handoff is not None and relay not in self.handoffs:
            self.handoffs.append(relay)
            self.hand_over()

    def hand_over(self) -> None:
        """Send the identified clients' plaintext ends to the main process."""
        while self.handoffs:
            relay = self.handoffs[0]
            if relay.handoff is None:  # closed meanwhile
                self.handoffs.popleft()
                continue
            message, theirs = relay.handoff
            try:
                socket.send_fds(self.arrivals, [message], [theirs.fileno()])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("keeper: %s: cannot hand the connection over: %s", relay, exc)
                relay.done = True
            self.handoffs.popleft()
            relay.handoff = None
            theirs.close()

    def finish_relays(self, now: float) -> None:
        for relay in list(self.relays):
            if relay.expired(now):
                if relay.handshaking:
                    log.info("keeper: TLS client %s: no handshake within %g s", relay.peer,
                             self.config.listen.client_timeout)
                relay.done = True
            if relay.done:
                self._forget(relay.tls)
                self._forget(relay.plain)
                relay.close()
                self.relays.discard(relay)


__all__ = ["Keeper", "serve"]
