"""The operating system as the server's supervision of children sees it.

Reaping, signalling and deadlines go through one ``System`` object (supervisor's
``options.py`` idea), so unit tests can drive them with a fake: no fork, no
real signals, a clock they move by hand.
"""

from __future__ import annotations

import os
import time


class System:
    def fork(self) -> int:
        return os.fork()

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        return os.waitpid(pid, options)

    def kill(self, pid: int, signum: int) -> None:
        os.kill(pid, signum)

    def killpg(self, pgid: int, signum: int) -> None:
        os.killpg(pgid, signum)

    def lowest_priority(self, pid: int) -> None:
        """Nice 19 for a child of ours about to be killed: tearing down its copy of the image's page tables
        (~20 ms of CPU at W10) gives way to everything else. Errors ignored (it may be gone)."""
        try:
            os.setpriority(os.PRIO_PROCESS, pid, 19)
        except OSError:
            pass

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


REAL = System()
