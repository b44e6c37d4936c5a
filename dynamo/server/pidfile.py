"""The pid file, held with an exclusive lock while dynamod runs: a second dynamod on the
same state directory refuses to start instead of fighting over the socket and the store."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dynamo.errors import StartupError
from dynamo.privatefiles import FILE_MODE, fix_mode


class PidFile:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(f"another dynamod (pid {other}) holds {self.path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.set_inheritable(fd, False)
        self.fd = fd

    def secure(self) -> None:
        """Correct the mode of a pid file left by an older dynamod (called once the log is open)."""
        fix_mode(self.path)

    def release(self) -> None:
        if self.fd is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None

