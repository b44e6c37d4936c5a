"""The console pump: input queued and written as the console reads, never blocking the loop."""

from __future__ import annotations

import os
import signal

from dynamo.server import console
from dynamo.server.children import ChildState, StopReason
from tests.unit.server_fakes import FakeSystem, child


def test_input_goes_as_the_console_reads_and_eof_closes_it() -> None:
    system = FakeSystem()
    c = child(system, kind="shell")
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    c.stdin_fd = write_end
    try:
        big = "x" * (1 << 20)   # more than a pipe holds: the rest waits, the loop does not
        console.send_input(c, big)
        assert c.stdin_pending and c.stdin_fd is not None
        taken = b""
        while len(taken) < len(big):
            taken += os.read(read_end, 1 << 16)
            console.feed(c)
        assert taken == big.encode() and not c.stdin_pending
        console.send_input(c, None)
        assert c.stdin_fd is None and c.stdin_eof
        assert os.read(read_end, 10) == b""          # the console sees its end of input
        console.send_input(c, "ignored")
        assert not c.stdin_pending
    finally:
        os.close(read_end)


def test_a_client_that_floods_the_console_stops_it() -> None:
    system = FakeSystem()
    c = child(system, kind="shell")
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    c.stdin_fd = write_end
    try:
        for _ in range(40):
            console.send_input(c, "y" * (64 << 10))
        assert c.state is ChildState.TERMINATING and c.stop_reason is StopReason.KILLED
        assert system.signals == [("killpg", c.pid, signal.SIGTERM)]
        assert c.stdin_fd is None and not c.stdin_pending
    finally:
        os.close(read_end)
