"""Containment of a real forked process: limits, and descendants that try to outlive it."""

from __future__ import annotations

import os
import signal
import time
import traceback

from dynamo.apps import containment
from dynamo.apps.containment import Limits


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except OSError:
        return False


def _fork_app(body: object) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            body()  # type: ignore[operator]
        finally:
            os._exit(0)
    return pid


def test_an_escaped_grandchild_dies_with_its_application(tmp_path: object) -> None:
    """The child double-forks and calls setsid (leaving its process group); at its end it kills the escapee."""
    report = os.pipe()

    def app() -> None:
        containment.become_subreaper()
        if os.fork() == 0:  # the first fork leaves...
            os.setsid()
            if os.fork() == 0:  # ...the second lives on in its own session
                os.write(report[1], f"{os.getpid()}\n".encode())
                time.sleep(60)
                os._exit(0)
            os._exit(0)
        time.sleep(0.5)
        containment.kill_descendants()

    pid = _fork_app(app)
    os.close(report[1])
    grandchild = int(os.read(report[0], 64).decode())
    assert _alive(grandchild)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_orphans_of_a_killed_application_are_swept_by_the_server() -> None:
    """The application is SIGKILLed before it can clean up: its escapee comes to the subreaper above."""
    report = os.pipe()
    sweeper = os.fork()
    if sweeper == 0:  # plays dynamod: a subreaper that forks one application
        code = 1
        try:
            containment.become_subreaper()

            def app() -> None:
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        os.write(report[1], f"{os.getpid()}\n".encode())
                        time.sleep(60)
                    os._exit(0)
                time.sleep(60)

            app_pid = _fork_app(app)
            time.sleep(0.5)
            os.kill(app_pid, signal.SIGKILL)
            os.waitpid(app_pid, 0)
            swept: list[int] = []
            deadline = time.monotonic() + 5
            while not swept and time.monotonic() < deadline:
                swept = containment.sweep_orphans(known=set())
                time.sleep(0.05)
            code = 0 if swept else 2
        finally:
            os._exit(code)
    os.close(report[1])
    grandchild = int(os.read(report[0], 64).decode())
    _, status = os.waitpid(sweeper, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_the_sweep_leaves_children_started_since_a_spare_was_asked_for() -> None:
    """A zygote's spare is the subreaper's child before the subreaper is told its pid: the sweep leaves
    be what started since the oldest spare asked for, and sweeps what started before."""
    sweeper = os.fork()
    if sweeper == 0:  # plays dynamod, whose only children are these two
        code = 1
        try:
            old = _sleeper()
            time.sleep(0.05)
            asked = containment.boot_ticks()
            time.sleep(0.05)  # clock ticks are 10 ms
            young = _sleeper()
            started = containment.started_ticks(young)
            assert started is not None and started >= asked
            assert containment.sweep_orphans(known=set(), spared_since=asked) == [old]
            assert containment.sweep_orphans(known={old}) == [young]
            code = 0
        except BaseException:  # noqa: BLE001 - reported through the exit code
            traceback.print_exc()
        finally:
            containment.kill_descendants()
            os._exit(code)
    _, status = os.waitpid(sweeper, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _sleeper() -> int:
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    return pid


def test_memory_limit_is_above_the_inherited_image() -> None:
    r, w = os.pipe()

    def app() -> None:
        containment.apply_limits(Limits(memory=64 << 20, file_size=1 << 20, open_files=64))
        results = []
        try:
            bytearray(32 << 20)  # within the allowance
            results.append("small ok")
        except MemoryError:
            results.append("small refused")
        try:
            bytearray(256 << 20)
            results.append("big ok")
        except MemoryError:
            results.append("big refused")
        os.write(w, ",".join(results).encode())

    pid = _fork_app(app)
    os.close(w)
    out = os.read(r, 256).decode()
    os.waitpid(pid, 0)
    assert out == "small ok,big refused"
