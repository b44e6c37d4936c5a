"""Signal handling: handlers only record; the main loop acts.

A non-blocking socket pair is installed as the wakeup descriptor, so a signal
arriving while the loop waits in ``select`` wakes it at once.
"""

from __future__ import annotations

import signal
import socket
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


class SignalQueue:
    def __init__(self) -> None:
        self.pending: list[int] = []
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def install(self) -> None:
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in HANDLED:
            signal.signal(signum, self._record)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a vanished client is an EPIPE, not a death

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    def fileno(self) -> int:
        return self._reader.fileno()

    def drain(self) -> list[int]:
        """The signals received since the last call (and empty the wakeup socket)."""
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        taken, self.pending = self.pending, []
        return taken

    def restore(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum in HANDLED:
            signal.signal(signum, signal.SIG_DFL)
        self._reader.close()
        self._writer.close()
