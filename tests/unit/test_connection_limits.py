"""Connection-level limits, on real socket pairs (no server)."""

from __future__ import annotations

import errno
import socket
import struct
import threading

import pytest

from dynamo.appserver import connection as C


def _pair(budget: C.IncomingBudget | None = None, identity: str = "alice") -> tuple[C.Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn = C.Connection(ours, "unix", 16 << 20)
    conn.identity = identity
    conn.budget = budget
    return conn, theirs


def _send(peer: socket.socket, data: bytes) -> None:
    """Send in the background: the reader under test takes it in its own time."""
    threading.Thread(target=peer.sendall, args=(data,), daemon=True).start()


def _read_until(conn: C.Connection, held: int) -> None:
    while conn.held < held:
        conn.read()


def test_incomplete_frames_are_charged_per_user_and_in_total() -> None:
    budget = C.IncomingBudget(total=3 << 20, per_user=2 << 20)
    a1, p1 = _pair(budget, "alice")
    a2, p2 = _pair(budget, "alice")
    b1, p3 = _pair(budget, "bob")
    chunk = struct.pack(">I", 10 << 20) + b"x" * ((1 << 20) + 100)
    for peer in (p1, p3):
        _send(peer, chunk)
    for conn in (a1, b1):
        _read_until(conn, len(chunk) - 4)
    assert budget.held == a1.held + b1.held
    _send(p2, chunk)
    with pytest.raises(C.Overloaded, match="'alice' hold more than"):
        _read_until(a2, len(chunk))
    a2.close()
    assert budget.by_user["alice"] == a1.held  # the dropped connection's bytes are released
    a1.close()
    b1.close()
    assert budget.held == 0 and budget.by_user == {}


def test_total_budget() -> None:
    budget = C.IncomingBudget(total=1 << 20, per_user=8 << 20)
    conns = [_pair(budget, f"u{i}") for i in range(2)]
    for _, peer in conns:
        _send(peer, struct.pack(">I", 10 << 20) + b"x" * (600 << 10))
    _read_until(conns[0][0], 600 << 10)
    with pytest.raises(C.Overloaded, match="the server holds more than"):
        _read_until(conns[1][0], 600 << 10)


def test_a_client_reading_a_trickle_is_dropped_by_the_byte_rate_rule() -> None:
    conn, peer = _pair()
    conn.request = "shell"
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for _ in range(80):
        conn.send({"type": "out", "data": "y" * 100_000})
    conn.flush()
    assert conn.backlogged and conn.backlogged_since is not None
    start = conn.backlogged_since
    peer.recv(1000)  # a few bytes now and then keep the silence rule quiet...
    conn.flush()
    conn.last_sent = start + 59
    reason = conn.stalled(start + 61, timeout=60)
    assert reason is not None and "bytes/s" in reason  # ...but not the rate rule
    fast, _ = _pair()
    fast.backlogged_since, fast.sent_in_backlog, fast.out = 0.0, 10 << 20, bytearray(C.HIGH_WATER + 1)
    fast.request, fast.last_sent = "run", 60.0
    assert fast.stalled(61.0, timeout=60) is None  # 170 KB/s is enough


def test_a_trickle_just_below_high_water_does_not_restart_the_rate_window() -> None:
    conn, peer = _pair()
    conn.request = "shell"
    conn.send({"type": "out", "data": "y" * (C.HIGH_WATER + 10)})
    start = conn.backlogged_since
    assert start is not None
    peer.setblocking(False)
    conn.flush()
    while len(conn.out) > C.HIGH_WATER - 1000:  # the client takes a little: just below the mark...
        peer.recv(65536)
        conn.flush()
    conn.send({"type": "out", "data": "y" * 2000})  # ...and back-pressure lets a little more in
    assert conn.backlogged_since == start
    conn.last_sent = start + 59
    reason = conn.stalled(start + 61, timeout=60)
    assert reason is not None and "bytes/s" in reason


def test_accept_reports_descriptor_exhaustion_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    listener_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def no_fd() -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    listener = C.Listener(listener_sock, "unix")
    monkeypatch.setattr(listener, "sock", type("S", (), {"accept": staticmethod(no_fd), "fileno": lambda: -1})())
    assert listener.accept() is None and listener.exhausted
    listener_sock.close()
