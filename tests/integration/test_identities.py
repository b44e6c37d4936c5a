"""Killing everything of a uid, for real: a process of an application's uid that double-forked and
left its session is found in /proc and killed, and so is a pid reused by nobody else."""

from __future__ import annotations

import os
import time

import pytest

from dynamo.server.identities import kill_everything_of, processes_of

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root to run processes as another uid")

UID = 61900  # in systemd's dynamic range: no user of the test machine has it


def _spawn_escapee(uid: int) -> int:
    """A process of ``uid`` that double-forks and calls setsid; returns the escapee's pid."""
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            if os.fork() == 0:
                os.setsid()
                middle = os.getpid()
                if os.fork() == 0:
                    # reported once the middle process has exited: else the test may still see it, a
                    # second process of the uid (1 run of the suite in ~20)
                    while os.getppid() == middle:
                        time.sleep(0.001)
                    os.write(report_w, f"{os.getpid()}\n".encode())
                    time.sleep(120)
                os._exit(0)
        finally:
            os._exit(0)
    os.close(report_w)
    escapee = int(os.read(report_r, 64).decode())
    os.close(report_r)
    os.waitpid(pid, 0)
    return escapee


def test_everything_of_a_uid_is_killed() -> None:
    assert not processes_of((UID,))
    escapee = _spawn_escapee(UID)
    assert escapee in processes_of((UID,))
    assert processes_of(range(UID - 5, UID + 5)) == {escapee: UID}
    assert kill_everything_of(UID)
    assert not processes_of((UID,))
    assert kill_everything_of(UID)  # nothing left: at once
