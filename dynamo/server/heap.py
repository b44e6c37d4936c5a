"""Give the C library's free memory back to the system after the load.

Loading the image makes and frees large temporaries (a driver's rows, columns being built). The
C library keeps what they used for later ``malloc`` calls: at W10 ~40 MB of free heap, resident in
dynamod and mapped, page by page, into every fork of it (a fork copies the page-table entries of
free memory as of any other). ``malloc_trim`` hands those pages back (``madvise``), in a few
milliseconds. Only with the GNU C library; elsewhere nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource
import time

log = logging.getLogger("dynamo.server")


def trim() -> None:
    """``malloc_trim(0)`` where the C library has it; logs what it gave back (debug level)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        malloc_trim = libc.malloc_trim
        libc.gnu_get_libc_version  # noqa: B018 (only glibc's trim is known to do this)
    except (OSError, AttributeError):
        return
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    before, started = _rss_kib(), time.monotonic()
    malloc_trim(0)
    log.debug("malloc_trim: %d MB given back in %.3f s", (before - _rss_kib()) >> 10, time.monotonic() - started)


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (resource.getpagesize() >> 10)
    except (OSError, ValueError, IndexError):
        return 0
