"""Fork a process as its parent's child: ``clone(CLONE_PARENT)``, one copy of the image's page tables.

The zygote (``dynamo.server.zygote``) forks spares that must be dynamod's children (dynamod reaps,
signals and times them). ``os.fork`` makes them the zygote's, so it forked through an intermediate
process that exits at once, the spare then re-parented to dynamod, the subreaper: two copies of the
page tables of a ~1 GB image and one teardown of them per spare, ~85 ms of CPU at W10 against ~45 ms
for one fork and its end (docs/performance.md, "Issue 10, fourth round: busy4"), on cores the calls
need. Linux's ``clone(CLONE_PARENT)`` makes the new process its parent's child at once; Python has no
such call, so this makes the system call itself, as ``os.fork`` wraps ``fork()``:

* ``PyOS_BeforeFork`` / ``PyOS_AfterFork_Child`` / ``PyOS_AfterFork_Parent`` around it (the
  interpreter's own fork bookkeeping and ``os.register_at_fork`` hooks), through ``ctypes.pythonapi``
  and ``PyDLL``: the GIL is held throughout, as ``os.fork`` holds it;
* ``CLONE_CHILD_SETTID`` / ``CLONE_CHILD_CLEARTID`` at the C library's record of the thread's id,
  as glibc's ``fork()`` passes them (else the new process's record would name the zygote's thread).
  Its address is found in this thread's ``pthread_self()`` block: the one int there equal to
  ``gettid()``; anything else (none, or more than one) and ``available()`` is False.

What glibc's ``fork()`` does besides and this does not: ``pthread_atfork`` handlers (none that
matter in the zygote: Python registers its own hooks, which run), and re-registering the robust
mutex list (robust mutexes are not used by the interpreter). Only in a process with one thread, on
Linux x86_64 or aarch64; elsewhere ``available()`` is False and callers fork through an intermediate.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import sys

CLONE_PARENT = 0x00008000
CLONE_CHILD_CLEARTID = 0x00200000
CLONE_CHILD_SETTID = 0x01000000
# system call numbers; aarch64 takes clone's child tid pointer fourth, tls fifth (x86_64: the other way)
SYSCALLS = {"x86_64": (56, 186), "aarch64": (220, 178)}
SCAN_INTS = 256  # ints of the pthread block searched for the thread id (glibc 2.36: offset 720)

_state: dict[str, int] = {}


def _libc() -> ctypes.CDLL:
    libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held during the call
    libc.syscall.restype = ctypes.c_long
    libc.pthread_self.restype = ctypes.c_void_p
    libc.pthread_self.argtypes = []
    return libc


def tid_address() -> int:
    """Where the C library keeps this thread's id (0 if it cannot be told for sure)."""
    machine = platform.machine()
    if not sys.platform.startswith("linux") or machine not in SYSCALLS:
        return 0
    try:
        libc = _libc()
        tid = int(libc.syscall(ctypes.c_long(SYSCALLS[machine][1])))
        block = libc.pthread_self()
    except (OSError, AttributeError):
        return 0
    if not block or tid <= 0:
        return 0
    ints = (ctypes.c_int * SCAN_INTS).from_address(block)
    found = [i for i in range(SCAN_INTS) if ints[i] == tid]
    return block + found[0] * ctypes.sizeof(ctypes.c_int) if len(found) == 1 else 0


def available() -> bool:
    """``fork_sibling`` can be used here (one thread, a known platform, the thread id's record found)."""
    return _single_threaded() and tid_address() != 0


def _single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def fork_sibling() -> int:
    """Fork; the new process is this process's parent's child. 0 in the new process, its pid here.
    Raises OSError (as ``os.fork``; also when ``available()`` is False)."""
    address = tid_address() if _single_threaded() else 0
    if not address:
        raise OSError("clone(CLONE_PARENT) is not available here")
    libc = _libc()
    api = ctypes.pythonapi
    number = SYSCALLS[platform.machine()][0]
    flags = CLONE_PARENT | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | signal.SIGCHLD
    fourth, fifth = (address, 0) if platform.machine() == "x86_64" else (0, address)
    args = [ctypes.c_long(v) for v in (number, flags, 0, 0, fourth, fifth)]
    api.PyOS_BeforeFork()
    pid = int(libc.syscall(*args))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    errno = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(errno, f"clone(CLONE_PARENT): {os.strerror(errno)}")
    return pid
