"""The zygote with real forks: spares asked for without waiting arrive as our children, with their
pipes, and run the spec handed to them; a writer is forked on request; a retired zygote announces what
it forked and leaves nothing behind; a zygote killed while asked is seen to end, and a request to it
fails instead of hanging. Run in a fork that plays dynamod (a child subreaper), as dynamod is."""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from dynamo.apps import containment
from dynamo.apps.containment import Limits
from dynamo.apps.runner import ChildSpec
from dynamo.core.inventory import Inventory
from dynamo.server.spare import encode_spec
from dynamo.server.zygote import ZYGOTE_NICE, Arrival, Zygote, ZygoteError, can_restore_priority


def _spec(work: Path, write: bool) -> ChildSpec:
    return ChildSpec(app_id=1, title="t", kind="app", script_name="t.py", source="print('ran', flush=True)\n",
                     args=(), write=write, work_area=str(work), uid=None, gid=None, limits=Limits())


def _arrivals(zygote: Zygote, count: int = 1, timeout: float = 20) -> list[Arrival]:
    found: list[Arrival] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and not zygote.ended and time.monotonic() < deadline:
        select.select([zygote], [], [], 0.1)
        found.extend(zygote.read())
    return found


def _ran(pid: int, out_fd: int, others: list[int]) -> None:
    """``pid`` printed "ran" and exited 0, and we reaped it (the subreaper's child)."""
    with os.fdopen(out_fd, "rb") as out:
        assert out.read() == b"ran\n"
    for fd in others:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _nothing_left(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while containment.children_of(os.getpid()) and time.monotonic() < deadline:
        for pid in containment.children_of(os.getpid()):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.01)
    assert not containment.children_of(os.getpid()), "the zygote left a process behind"
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def _spares_and_writers(work: Path) -> None:
    zygote = Zygote.start(Inventory(), time.monotonic())
    assert zygote.ask_spare(time.monotonic()) and zygote.asked == 1
    [spare] = _arrivals(zygote)
    assert spare.spare and not spare.error and set(spare.fds) == {"spec", "out", "err"} and zygote.asked == 0
    assert os.getppid() != spare.pid and spare.pid in containment.children_of(os.getpid())  # ours already
    frame = encode_spec(_spec(work, write=False))
    assert frame is not None
    os.write(spare.fds["spec"], frame)
    os.close(spare.fds["spec"])
    _ran(spare.pid, spare.fds["out"], [spare.fds["err"]])
    # a writer's spare: its change stream too; it runs a writer only
    assert zygote.ask_spare(time.monotonic(), write=True) and zygote.asked == 0 and zygote.asked_writer
    [writer] = _arrivals(zygote)
    assert writer.spare and set(writer.fds) == {"spec", "out", "err", "changes"} and not zygote.asked_writer
    frame = encode_spec(_spec(work, write=True))
    assert frame is not None
    os.write(writer.fds["spec"], frame)
    os.close(writer.fds["spec"])
    _ran(writer.pid, writer.fds["out"], [writer.fds["err"], writer.fds["changes"]])
    # a writer, forked on request while a spare asked for is on its way: the spare waits in ``arrived``
    assert zygote.ask_spare(time.monotonic())
    pid, fds = zygote.fork_child(_spec(work, write=True))
    assert set(fds) == {"out", "err", "changes"}
    _ran(pid, fds.pop("out"), list(fds.values()))
    [unused] = zygote.read() or _arrivals(zygote)  # announced before the answer: kept for the loop
    assert unused.spare and zygote.asked == 0
    # retired with a spare asked for and one unused: it announces the one, ends, and the spares end with it
    assert zygote.ask_spare(time.monotonic())
    zygote.retire()
    assert not zygote.ask_spare(time.monotonic())
    late = _arrivals(zygote, count=2)
    assert [a.spare for a in late] == [True] and zygote.asked == 0
    assert _arrivals(zygote) == [] and zygote.ended
    for arrival in (unused, *late):
        for fd in arrival.fds.values():
            os.close(fd)  # a spare ends on its closed spec pipe
    zygote.close()
    assert zygote.reap(blocking=True)
    _nothing_left([unused.pid, late[0].pid])


def _killed_while_asked(work: Path) -> None:
    zygote = Zygote.start(Inventory(), time.monotonic())
    assert zygote.ask_spare(time.monotonic())
    os.kill(zygote.pid, signal.SIGKILL)
    arrivals = _arrivals(zygote, count=2)
    assert zygote.ended and zygote.asked == 0  # its end is seen; nothing is waited for any more
    for arrival in arrivals:  # a spare it announced before it died (the kill may come after): ours to end
        for fd in arrival.fds.values():
            os.close(fd)
    with pytest.raises(ZygoteError):
        zygote.fork_child(_spec(work, write=True), timeout=5)
    zygote.close()
    assert zygote.reap(blocking=True)
    _nothing_left([a.pid for a in arrivals])


def _killed_during_a_request(work: Path) -> None:
    zygote = Zygote.start(Inventory(), time.monotonic())
    [spare] = (zygote.ask_spare(time.monotonic()), _arrivals(zygote))[1]
    for fd in spare.fds.values():
        os.close(fd)
    os.kill(zygote.pid, signal.SIGSTOP)  # it hangs: the request must not
    started = time.monotonic()
    with pytest.raises(ZygoteError):
        zygote.fork_child(_spec(work, write=True), timeout=1)
    assert time.monotonic() - started < 5 and zygote.retiring
    os.kill(zygote.pid, signal.SIGKILL)
    zygote.close()
    assert zygote.reap(blocking=True)
    _nothing_left([spare.pid])


def _children_at_our_priority(work: Path) -> None:
    """The zygote runs lower (when its children can go back up), the spares it forks at our priority; and
    they are ours from the start (one fork where ``sibling`` can, else through an intermediate)."""
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    zygote = Zygote.start(Inventory(), time.monotonic())
    assert zygote.ask_spare(time.monotonic())
    [spare] = _arrivals(zygote)
    assert spare.pid in containment.children_of(os.getpid())
    lowered = can_restore_priority(ours)
    assert os.getpriority(os.PRIO_PROCESS, zygote.pid) == (min(19, ours + ZYGOTE_NICE) if lowered else ours)
    source = "import os\nprint('ran', os.getpriority(os.PRIO_PROCESS, 0))\n"
    frame = encode_spec(dataclasses.replace(_spec(work, write=False), source=source))
    assert frame is not None
    os.write(spare.fds["spec"], frame)
    os.close(spare.fds["spec"])
    with os.fdopen(spare.fds["out"], "rb") as out:
        assert out.read() == f"ran {ours}\n".encode()
    os.close(spare.fds["err"])
    _, status = os.waitpid(spare.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # a spare a call will wait for (dynamod has none left): dynamod raises the zygote to our priority at once (it
    # may be half-way through a slow fork at the lower one), and lowers it again once everything asked has come
    zygote.hurry()
    assert zygote.hurried and os.getpriority(os.PRIO_PROCESS, zygote.pid) == ours
    assert zygote.ask_spare(time.monotonic())
    [urgent] = _arrivals(zygote)
    assert not zygote.hurried
    assert urgent.spare and os.getpriority(os.PRIO_PROCESS, urgent.pid) == ours
    assert os.getpriority(os.PRIO_PROCESS, zygote.pid) == (min(19, ours + ZYGOTE_NICE) if lowered else ours)
    for fd in urgent.fds.values():
        os.close(fd)  # it ends on its closed spec pipe
    os.waitpid(urgent.pid, 0)
    zygote.retire()
    assert _arrivals(zygote) == [] and zygote.ended
    zygote.close()
    assert zygote.reap(blocking=True)


def _as_subreaper(scenario: Callable[[Path], None], work: Path) -> None:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            containment.become_subreaper()
            scenario(work)
            code = 0
        except BaseException:  # noqa: BLE001 - reported to the test through the exit code
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("scenario", [_spares_and_writers, _killed_while_asked, _killed_during_a_request,
                                      _children_at_our_priority])
def test_the_zygote(scenario: Callable[[Path], None], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _as_subreaper(scenario, work)
