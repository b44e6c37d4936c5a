"""The interactive shell on a terminal: banner, prompts, readline, continuation lines, Ctrl-C, Ctrl-D."""

from __future__ import annotations

import os
import pty
import select
import time

from tests.e2e.conftest import Server, command

TRANSCRIPT: list[bytes] = []


def read_until(fd: int, text: str, timeout: float = 20) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            TRANSCRIPT.append(chunk)
            if text.encode() in seen:
                return seen.decode(errors="replace")
    raise AssertionError(f"{text!r} not seen; the whole transcript: {b''.join(TRANSCRIPT)!r}")


def test_terminal_shell(server: Server, tmp_path: object) -> None:
    env = server.env(DYNAMO_HISTORY=str(server.home / "history"), TERM="dumb")
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(command("dynamo"), [command("dynamo")], env)
    try:
        banner = read_until(fd, ">>> ")
        assert "Dynamo 0.1.0 shell, inventory version 0 (read-only" in banner
        os.write(fd, b"for name in ['a', 'b']:\n")
        read_until(fd, "... ")
        os.write(fd, b"    print('site', name)\n\n")
        out = read_until(fd, ">>> ")
        assert "site a" in out and "site b" in out
        os.write(fd, b"len(inventory.sites)\n")
        assert "0" in read_until(fd, ">>> ")
        os.write(fd, b"unfinished = (\n")
        read_until(fd, "... ")
        os.write(fd, b"\x03")  # Ctrl-C at a continuation prompt: the statement is dropped
        assert "KeyboardInterrupt" in read_until(fd, ">>> ")
        os.write(fd, b"\x04")  # Ctrl-D leaves
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)
    history = (server.home / "history").read_text()
    assert "len(inventory.sites)" in history
