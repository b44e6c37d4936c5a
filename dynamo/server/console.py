"""The console pump: a shell's input, queued from its client and written as the console reads it
(never blocking the loop)."""

from __future__ import annotations

import logging
import os

from dynamo.server.children import Child, Children, StopReason

log = logging.getLogger("dynamo.server")

MAX_CONSOLE_INPUT = 1 << 20    # console input waiting for the console to read it


def send_input(child: Child | None, data: str | None) -> None:
    """Queue ``data`` for the console (None: the client ended its input) and write what it takes now."""
    if child is None or child.stdin_fd is None or child.stdin_eof:
        return
    if data is None:
        child.stdin_eof = True
    else:
        child.stdin_pending += data.encode()
        if len(child.stdin_pending) > MAX_CONSOLE_INPUT:
            # a client that sends lines the console does not ask for: it is not our shell client
            log.warning("app %d (%s): more than %d bytes of console input waiting: stopping it",
                        child.record.id, child.record.title, MAX_CONSOLE_INPUT)
            child.stdin_pending.clear()
            child.stdin_eof = True
            child.stop(StopReason.KILLED)
    feed(child)


def feed_all(children: Children) -> None:
    for child in children:
        if child.stdin_fd is not None and (child.stdin_pending or child.stdin_eof):
            feed(child)


def feed(child: Child) -> None:
    fd = child.stdin_fd
    if fd is None:
        return
    try:
        while child.stdin_pending:
            written = os.write(fd, child.stdin_pending)
            del child.stdin_pending[:written]
    except BlockingIOError:
        return  # the console is busy; the rest goes when it reads again
    except OSError:  # the console is gone
        child.stdin_pending.clear()
        child.stdin_eof = True
    if child.stdin_eof:
        close(child)


def close(child: Child) -> None:
    if child.stdin_fd is not None:
        os.close(child.stdin_fd)
        child.stdin_fd = None
