"""The zygote with real forks: a read-only application is its spare, forked ahead and handed over as
dynamod's child; a writer is forked on request; an unused spare ends with the zygote, leaving nothing
behind. Run in a fork that plays dynamod (a child subreaper), as dynamod is."""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from dynamo.apps import containment
from dynamo.apps.containment import Limits
from dynamo.apps.runner import ChildSpec
from dynamo.core.inventory import Inventory
from dynamo.server.zygote import Zygote


def _spec(work: Path, write: bool) -> ChildSpec:
    return ChildSpec(app_id=1, title="t", kind="app", script_name="t.py", source="print('ran', flush=True)\n",
                     args=(), write=write, work_area=str(work), uid=None, gid=None, limits=Limits())


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        children = containment.children_of(todo.pop())
        found |= children
        todo.extend(children)
    return found


def _spare_of(zygote: Zygote) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        spares = [p for p in _descendants(zygote.pid) if _title(p).startswith("dynamo: spare")]
        if spares:
            return spares[0]
        time.sleep(0.01)
    raise AssertionError("the zygote forked no spare")


def _run(zygote: Zygote, spec: ChildSpec) -> int:
    """Have the zygote start ``spec``; check that it runs as our child; its pid."""
    pid, fds = zygote.fork_child(spec)
    with os.fdopen(fds.pop("out"), "rb") as out:
        assert out.read() == b"ran\n"
    for fd in fds.values():
        os.close(fd)
    _, status = os.waitpid(pid, 0)  # ours to reap: the subreaper's child
    assert os.waitstatus_to_exitcode(status) == 0
    return pid


def _scenario(work: Path) -> None:
    containment.become_subreaper()
    zygote = Zygote.start(Inventory())
    spare = _spare_of(zygote)
    assert _run(zygote, _spec(work, write=False)) == spare  # the spare, forked before it was asked for
    next_spare = _spare_of(zygote)                          # and the next one, forked after the answer
    assert next_spare != spare
    assert _run(zygote, _spec(work, write=True)) not in (spare, next_spare)  # a writer: forked on request
    assert _spare_of(zygote) == next_spare
    zygote.close()
    assert zygote.reap(blocking=True)
    deadline = time.monotonic() + 10
    while containment.children_of(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not containment.children_of(os.getpid()), "the zygote left a process to dynamod"
    assert not Path(f"/proc/{next_spare}").exists()


def test_the_zygote_hands_over_its_spare_and_leaves_nothing_behind(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _scenario(work)
            code = 0
        except BaseException:  # noqa: BLE001 - reported to the test through the exit code
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
