"""Keeping an application inside its bounds: resource limits, and nothing it started outliving it.

Both ends use this module. The child (``dynamo.apps.runner``) applies its
limits, and makes itself a *child subreaper* so that a descendant that
double-forks and calls ``setsid`` (leaving the process group, which is what
dynamod signals) is re-parented to the application rather than to init; when
the script ends, the application kills every descendant it still has. dynamod
is a subreaper too: when an application is killed before it could clean up
(SIGKILL after a timeout), its orphans come to dynamod, which kills and reaps
every child it did not fork (``sweep_orphans``).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38


@dataclass(frozen=True)
class Limits:
    """Per-application resource limits (0 = no limit)."""

    memory: int = 0          # bytes of address space beyond what the application inherits from dynamod
    cpu_seconds: int = 0     # CPU time (RLIMIT_CPU: SIGXCPU, then SIGKILL one second later)
    processes: int = 0       # processes of the application's user (RLIMIT_NPROC: only meaningful for its own uid)
    open_files: int = 0      # descriptors per process
    file_size: int = 0       # largest file it may write, in bytes (RLIMIT_FSIZE)
    nice: int = 0            # added to the nice value it inherits (a write application's: lower priority)


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process instead of init (Linux >= 3.4)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def forbid_tracing() -> bool:
    """Not dumpable: no process of the same uid (another application, in the modes where they share
    one) may ptrace this one or read its memory through /proc; the flag is inherited by forks and
    reset by exec."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def no_new_privileges() -> bool:
    """No program this process or its descendants execute gains privileges (setuid and setgid bits, file
    capabilities: PR_SET_NO_NEW_PRIVS); inherited by forks and execs, and cannot be undone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def children_of(pid: int) -> set[int]:
    """The live children of ``pid`` (from /proc: every thread's list)."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.update(int(p) for p in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def _address_space() -> int:
    """This process's virtual size in bytes (the image it inherited counts against RLIMIT_AS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def apply_limits(limits: Limits) -> None:
    """Set the limits on this process (the application, after it dropped its privileges). Hard limits
    too, so the script cannot raise them again."""
    if limits.memory:
        _set(resource.RLIMIT_AS, _address_space() + limits.memory)
    if limits.cpu_seconds:
        _set(resource.RLIMIT_CPU, limits.cpu_seconds)
    if limits.processes:
        _set(resource.RLIMIT_NPROC, limits.processes)
    if limits.open_files:
        _set(resource.RLIMIT_NOFILE, limits.open_files)
    if limits.file_size:
        _set(resource.RLIMIT_FSIZE, limits.file_size)
    if limits.nice:
        os.nice(limits.nice)


def _set(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def kill_descendants(rounds: int = 50) -> int:
    """Kill and reap every descendant of this (subreaper) process; returns how many were killed.

    Killing a child re-parents its own children to us, so repeat until none is left."""
    me = os.getpid()
    killed = 0
    for _ in range(rounds):
        pids = children_of(me)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return killed


def boot_ticks() -> int:
    """Now, in clock ticks since boot (the unit of a process's start time in /proc)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def started_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def sweep_orphans(known: set[int], spared_since: int | None = None) -> list[int]:
    """dynamod's side: kill and reap children it did not fork (descendants of applications that died
    before they could clean up, re-parented to dynamod as their subreaper). Returns their pids.
    ``spared_since`` (``boot_ticks``): children started since then are left to a later sweep (a spare a
    zygote forked for dynamod may be its child before dynamod is told its pid)."""
    swept = []
    for pid in children_of(os.getpid()) - known:
        if spared_since is not None:
            started = started_ticks(pid)
            if started is None or started >= spared_since:
                continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        swept.append(pid)
    return swept
