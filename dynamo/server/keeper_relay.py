"""One TLS client inside the keeper: handshake, identify, then relay plaintext to the main process.

The keeper terminates TLS so that the server's private key never enters the main process (whose
memory applications inherit). After the handshake the client's verified certificate DN is
taken from the chain (``identity.peer_dn``, proxies resolved to their owner), and a stream
socket pair carries the plaintext: one end stays here, the other goes to the main process with
the DN (``keeper_link``). The main process serves it like any client and knows nothing of TLS.

Ends are passed on in both directions: when the client stops sending, the main process reads
end-of-stream; when the main process has sent everything and shuts its side, the keeper sends
the rest, shuts the TCP connection's sending side and lingers for the client to hang up (closing
a TCP socket with unread client data resets it, and the client could lose the last answer).
Each direction holds at most ``LIMIT`` bytes here: past that, the keeper stops reading from that
side, so the main process's own back-pressure (``connection.HIGH_WATER``) still applies.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl

from cryptography import x509 as _x509  # noqa: F401  identity.peer_dn's: imported as the keeper starts, not at its first peer

from dynamo.appserver import identity

log = logging.getLogger("dynamo.server")

READ = 1    # selectors.EVENT_READ
WRITE = 2   # selectors.EVENT_WRITE
CHUNK = 256 * 1024
LIMIT = 1 << 20
LINGER = 5.0
_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


class Relay:
    def __init__(self, tls: ssl.SSLSocket, peer: str, deadline: float):
        self.tls = tls
        self.peer = peer
        self.deadline: float | None = deadline   # for the handshake
        self.plain: socket.socket | None = None  # our end of the pair, once identified
        self.handoff: tuple[bytes, socket.socket] | None = None  # for the main process: (DN message, its end)
        self.dn = ""
        self.handshaking = True
        self.handshake_wants_write = False
        self.to_plain = bytearray()   # from the client, for the main process
        self.to_tls = bytearray()     # from the main process, for the client
        self.tls_eof = False          # the client sends no more
        self.tls_dead = False         # nothing can be sent to the client either
        self.plain_eof = False        # the main process sends no more
        self.plain_dead = False
        self.tls_shut = False
        self.plain_shut = False
        self.refused = False          # the handshake failed: its alert is out, the client's bytes are drained
        self.done = False

    def __repr__(self) -> str:
        return f"<TLS client {self.peer} {self.dn or '?'}>"

    # --- what to wait for ---------------------------------------------------------

    def masks(self) -> tuple[int, int]:
        """Events wanted on (the TLS socket, the plaintext socket)."""
        if self.done:
            return 0, 0
        if self.refused:
            return READ, 0
        if self.handshaking:
            return (WRITE if self.handshake_wants_write else READ), 0
        tls = READ if not self.tls_eof and len(self.to_plain) < LIMIT else 0
        tls |= WRITE if self.to_tls and not self.tls_dead else 0
        plain = READ if not self.plain_eof and len(self.to_tls) < LIMIT else 0
        plain |= WRITE if self.to_plain and not self.plain_dead else 0
        return tls, plain

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now > self.deadline

    # --- events -------------------------------------------------------------------

    def on_tls(self, mask: int, now: float) -> None:
        if self.refused:
            self._drain()
            return
        if self.handshaking:
            self._handshake(now)
        else:
            if mask & WRITE:
                self._send_tls()
            if mask & READ:
                self._recv_tls()
        self._settle(now)

    def on_plain(self, mask: int, now: float) -> None:
        if mask & WRITE:
            self._send_plain()
        if mask & READ:
            self._recv_plain()
        self._settle(now)

    def _handshake(self, now: float) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self.handshake_wants_write = False
            return
        except ssl.SSLWantWriteError:
            self.handshake_wants_write = True
            return
        except (ssl.SSLError, OSError) as exc:
            # INFO, not WARNING: anyone can open a connection and fail its handshake
            log.info("keeper: TLS handshake failed (client %s, from ip %s): %s", self.peer,
                     self.peer.rpartition(":")[0], exc)
            self._refuse(now)
            return
        self.handshaking = False
        self.deadline = None
        dn = identity.peer_dn(self.tls)
        if not dn:
            log.info("keeper: TLS client %s: no client certificate", self.peer)
            self.done = True
            return
        self.dn = dn
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        self.plain = ours
        self.handoff = (json.dumps({"dn": dn, "peer": self.peer}).encode(), theirs)
        # the request may have come with the handshake's last flight and sit in OpenSSL's buffer,
        # where select() cannot see it: read now
        self._recv_tls()

    def _refuse(self, now: float) -> None:
        """After a failed handshake: the alert saying why has been sent; shut our side and read (and
        drop) what the client still sends until it hangs up or ``LINGER`` passes. Closing at once
        with its unread bytes (over TLS 1.3, its request follows its certificate before the server
        has judged it) would reset the connection, and the client could lose the alert."""
        self.handshaking = False
        self.refused = True
        self.deadline = now + LINGER
        try:
            self.tls.shutdown(socket.SHUT_WR)  # SSLSocket.shutdown drops the SSL object: plain TCP from here
        except OSError:
            self.done = True

    def _drain(self) -> None:
        try:
            while self.tls.recv(CHUNK):
                pass
        except _WOULD_BLOCK:
            return
        except OSError:
            pass
        self.done = True  # end of stream or an error: the client is gone

    def _recv_tls(self) -> None:
        try:
            data = self.tls.recv(CHUNK)
            while self.tls.pending():
                data += self.tls.recv(self.tls.pending())
        except _WOULD_BLOCK:
            return
        except (ssl.SSLError, OSError) as exc:
            log.debug("%s: %s", self, exc)
            self.tls_eof = self.tls_dead = True
            return
        if not data:
            self.tls_eof = True
        elif not (self.tls_shut or self.plain_dead):  # lingering, or the main process is gone: discarded
            self.to_plain += data

    def _send_tls(self) -> None:
        while self.to_tls:
            try:
                sent = self.tls.send(self.to_tls[:CHUNK])
            except _WOULD_BLOCK:
                return
            except (ssl.SSLError, OSError):
                self.tls_dead = True
                return
            del self.to_tls[:sent]

    def _recv_plain(self) -> None:
        assert self.plain is not None
        try:
            data = self.plain.recv(CHUNK)
        except _WOULD_BLOCK:
            return
        except OSError:
            self.plain_eof = self.plain_dead = True
            return
        if not data:
            self.plain_eof = True
        elif not self.tls_dead:
            self.to_tls += data

    def _send_plain(self) -> None:
        assert self.plain is not None
        while self.to_plain:
            try:
                sent = self.plain.send(self.to_plain[:CHUNK])
            except _WOULD_BLOCK:
                return
            except OSError:
                self.plain_dead = True
                return
            del self.to_plain[:sent]

    def _settle(self, now: float) -> None:
        """Pass ends on, and decide whether the relay is finished."""
        if self.handshaking or self.done:
            return
        if self.tls_dead:
            self.to_tls.clear()
        if self.plain_dead:
            self.to_plain.clear()
        if self.tls_eof and not self.to_plain and not self.plain_shut:
            self.plain_shut = True
            self._shutdown(self.plain)
        if self.plain_eof and not self.to_tls and not self.tls_shut:
            self.tls_shut = True
            if not self.tls_dead:
                self._shutdown(self.tls)  # the client reads the rest, then hangs up
                self.deadline = now + LINGER
        upstream_done = self.tls_eof and not self.to_plain
        downstream_done = self.plain_eof and not self.to_tls
        if upstream_done and downstream_done:
            self.done = True

    @staticmethod
    def _shutdown(sock: socket.socket | None) -> None:
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.done = True
        for sock in (self.tls, self.plain, self.handoff[1] if self.handoff else None):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self.plain = self.handoff = None
