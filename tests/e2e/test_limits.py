"""Hostile inputs and exhausted resources (issue 8 §1, §2, §4): each costs the connection or the
application it came from, never the server; the client is told why."""

from __future__ import annotations

import functools
import resource
import socket
import sqlite3
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dynamo.protocol import framing
from tests.e2e.conftest import Server, wait_for


def _server(home: Path, listen: str = "", **popen: Any) -> Server:
    server = Server(home, f"sqlite:///{home}/inventory.db")
    if listen:
        server.config.write_text(server.config.read_text().replace("[listen]\n", f"[listen]\n{listen}\n"))
    if popen:
        real = subprocess.Popen
        subprocess.Popen = functools.partial(real, **popen)  # type: ignore[misc]
        try:
            server.start()
        finally:
            subprocess.Popen = real  # type: ignore[misc]
    else:
        server.start()
    return server


@pytest.fixture
def stopped(server_home: Path) -> Iterator[list[Server]]:
    """Servers a test started, stopped (and checked alive until then) at its end."""
    servers: list[Server] = []
    yield servers
    for server in servers:
        if server.process is not None:
            assert server.process.poll() is None, f"dynamod died:\n{server.log()[-3000:]}"
            assert server.stop() == 0


def _connect(server: Server) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(server.socket))
    sock.settimeout(15)
    return sock


def _ask(server: Server, payload: bytes) -> dict[str, Any] | None:
    with _connect(server) as sock:
        sock.sendall(payload)
        return framing.receive(sock)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmRSS")


def _serves(server: Server) -> None:
    assert server.process is not None and server.process.poll() is None, server.log()[-3000:]
    listed = server.run("--list")
    assert listed.code == 0, listed.err


# --- §1 and §4: one bad request costs its connection ------------------------------------------------


def test_a_request_that_fails_inside_the_server_costs_its_connection_only(server_home: Path,
                                                                          stopped: list[Server]) -> None:
    server = _server(server_home)
    stopped.append(server)
    hello = server.script("hello.py", "print('hello')\n")
    assert server.run(str(hello)).code == 0
    # a record the registry cannot read (a status written by a newer Dynamo sharing the store): an
    # error nobody foresaw, deep in the registry, while serving a request
    with sqlite3.connect(server_home / "inventory-registry.db") as db:
        db.execute("UPDATE applications SET status = 'from-a-newer-dynamo' WHERE id = 1")
    reply = _ask(server, framing.encode({"op": "poll", "id": 1}))
    assert reply == {"type": "error", "code": "internal", "message": "the server failed on this request (logged)"}
    log = server.log()
    assert "<connection unix root> from uid 0: unexpected error while serving its request 'poll'" in log, log[-3000:]
    assert "Traceback" in log
    with sqlite3.connect(server_home / "inventory-registry.db") as db:
        db.execute("UPDATE applications SET status = 'done' WHERE id = 1")
    _serves(server)
    # a frame whose JSON nests too deep for the decoder
    deep = b'{"op":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    reply = _ask(server, struct.pack(">I", len(deep)) + deep)
    assert reply is not None and reply["type"] == "error", reply
    _serves(server)


def test_a_frame_that_fails_inside_the_server_costs_its_application_only(server_home: Path,
                                                                         stopped: list[Server]) -> None:
    server = _server(server_home)
    stopped.append(server)
    # a read-only shell writes, to its own console stream, a frame nesting deeper than the decoder can
    server.shell("import os, struct, sys\n"
                 "p = b'{\"out\":' + b'[' * 100000 + b']' * 100000 + b'}'\n"
                 "os.write(sys.stdout.fd, struct.pack('>I', len(p)) + p)\n")
    log = server.log()
    assert "app 1 (shell): unexpected error on its control stream" in log or "malformed frame" in log, log[-3000:]
    _serves(server)


def test_a_malformed_frame_is_answered_before_the_connection_closes(server_home: Path,
                                                                    stopped: list[Server]) -> None:
    server = _server(server_home)
    stopped.append(server)
    reply = _ask(server, struct.pack(">I", 5) + b"hello")
    assert reply is not None and reply["code"] == "protocol", reply
    assert "malformed frame" in reply["message"] and "JSON" in reply["message"]
    reply = _ask(server, struct.pack(">I", 1 << 30))
    assert reply is not None and reply["code"] == "protocol" and "exceeds the limit" in reply["message"], reply
    _serves(server)


# --- §2: resource exhaustion -------------------------------------------------------------------------


def test_out_of_descriptors_the_server_sheds_idle_connections_and_serves(server_home: Path,
                                                                         stopped: list[Server]) -> None:
    limit = (64, 128)
    server = _server(server_home, "max_connections_per_peer = 10000",
                     preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit))
    stopped.append(server)
    assert server.process is not None
    limits = Path(f"/proc/{server.process.pid}/limits").read_text()
    assert any(line.startswith("Max open files") and line.split()[3:5] == ["128", "128"]
               for line in limits.splitlines()), limits  # the soft limit was raised to the hard one
    idle = []
    try:
        for _ in range(300):  # far more than the server has descriptors for, none sending a request
            idle.append(_connect(server))
        started = time.monotonic()
        _serves(server)
        assert time.monotonic() - started < 30
    finally:
        for sock in idle:
            sock.close()
    assert "out of descriptors for new connections" in server.log()
    _serves(server)


def test_connections_per_peer_are_capped(server_home: Path, stopped: list[Server]) -> None:
    server = _server(server_home, "max_connections_per_peer = 8")
    stopped.append(server)
    _serves(server)  # the start-up probe's connection is gone by now: uid 0 holds none
    time.sleep(0.5)
    socks = [_connect(server) for _ in range(12)]
    try:
        refused = []
        for sock in socks[8:]:
            reply = framing.receive(sock)
            assert reply is not None
            refused.append(reply)
        assert all(r["code"] == "overloaded" and "connections open to the server, its limit" in r["message"]
                   for r in refused), refused
        # the refused ones go away: they never counted, so the 8 still open keep the cap full
        for sock in socks[8:]:
            sock.close()
        time.sleep(0.5)
        later = [_connect(server) for _ in range(4)]
        socks += later
        replies = [framing.receive(sock) for sock in later]
        assert all(r is not None and r["code"] == "overloaded" for r in replies), replies
    finally:
        for sock in socks:
            sock.close()
    _serves(server)  # the count went down as they closed


def test_partial_frames_cannot_exhaust_the_servers_memory(server_home: Path, stopped: list[Server]) -> None:
    server = _server(server_home)
    stopped.append(server)
    assert server.process is not None
    before = _rss(server.process.pid)
    socks = [_connect(server) for _ in range(40)]
    chunk = b"x" * (1 << 20)
    try:
        for sock in socks:
            sock.setblocking(False)
            sock.send(struct.pack(">I", 15 << 20))
        for _ in range(12):  # up to 12 MiB on each: 480 MiB of frames that never end
            for sock in socks:
                try:
                    sock.send(chunk)
                except OSError:
                    pass  # full (the server stopped reading it) or dropped
            time.sleep(0.05)
        time.sleep(1)
        grown = _rss(server.process.pid) - before
        assert grown < 150 << 20, f"the server grew by {grown >> 20} MiB"
        _serves(server)
        overloaded = 0
        for sock in socks:
            sock.settimeout(5)
            try:
                reply = framing.receive(sock)
            except (OSError, framing.ProtocolError):
                continue
            if reply is not None and reply["code"] == "overloaded":
                overloaded += 1
        assert overloaded > 0
    finally:
        for sock in socks:
            sock.close()
    assert "hold more than" in server.log()
    _serves(server)


def _flooding_shell(server: Server) -> socket.socket:
    sock = _connect(server)
    _flood(sock)
    return sock


def _flood(sock: socket.socket) -> None:
    """Open a shell that prints without end."""
    framing.send(sock, {"op": "shell", "tty": False})
    while (reply := framing.receive(sock)) is not None and reply["type"] != "prompt":
        pass  # input sent before the console runs is not kept
    framing.send(sock, {"op": "stdin", "data": "while True: print('x' * 4000)\n\n"})


def test_a_shell_whose_client_does_not_read_does_not_grow_the_server(server_home: Path,
                                                                     stopped: list[Server]) -> None:
    server = _server(server_home)
    stopped.append(server)
    assert server.process is not None
    with _flooding_shell(server):
        time.sleep(3)
        before = _rss(server.process.pid)
        time.sleep(12)
        grown = _rss(server.process.pid) - before
        assert grown < 100 << 20, f"the server grew by {grown >> 20} MiB in 12 s"
        _serves(server)


def test_a_client_reading_a_trickle_is_dropped(server_home: Path, stopped: list[Server]) -> None:
    # A local socket lets the server write again only once the client took about 3/4 of its ~200 KB
    # buffer: at 10 KB/s that is every ~16 s, so the timeout must be longer for the silence rule to
    # stay quiet and the rate rule to be the one that drops the client.
    server = _server(server_home, "client_timeout = 30.0")
    stopped.append(server)
    with _flooding_shell(server) as sock:
        started = time.monotonic()
        while "dropped:" not in server.log() and time.monotonic() - started < 90:
            try:
                sock.recv(2500)  # 10 KB a second: never silent, but below the rate an output needs
            except OSError:
                break
            time.sleep(0.25)
        log = server.log()
        assert "dropped:" in log, "a trickling client kept its shell for 90 s"
        assert "bytes/s for 30 s while more than" in log, log[-2000:]
    _serves(server)


def test_nothing_an_application_started_survives_its_end(server_home: Path, stopped: list[Server]) -> None:
    server = _server(server_home)
    stopped.append(server)
    shared = Path(tempfile.mkdtemp(prefix="dynesc", dir="/tmp"))
    shared.chmod(0o777)
    pidfile = shared / "sleeper.pid"
    script = server.script("escape.py", f"""
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)   # no clean exit: the application is SIGKILLed
pid = os.fork()
if pid == 0:
    os.setsid()                                 # out of the process group dynamod signals
    if os.fork() == 0:
        with open({str(pidfile)!r}, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(300)
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(300)
""")
    done = server.run(str(script), "--timeout", str(2.0 / 3600))
    assert done.code == 124, done.err
    wait_for(pidfile.exists)
    sleeper = int(pidfile.read_text())

    def gone() -> bool:
        try:
            return "zombie" in Path(f"/proc/{sleeper}/status").read_text()
        except OSError:
            return True

    wait_for(gone, timeout=15)
    assert f"process {sleeper}: left behind by an application" in server.log()
    for entry in shared.iterdir():
        entry.unlink()
    shared.rmdir()
