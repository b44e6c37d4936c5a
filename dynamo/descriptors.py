"""Descriptors a freshly forked process must not keep."""

from __future__ import annotations

import os


def close_inherited(keep: set[int]) -> None:
    """Close every open descriptor of this process but those in ``keep`` (in a child just forked:
    database connections, listening and client sockets, log files, other children's pipes)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
