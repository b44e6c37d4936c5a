"""The zygote (dynamo.server.zygote) in a real dynamod: it forks the readers' spares away from the loop;
killed, it is replaced and every call is still answered; killed while a change set goes into the image,
applications wait for the image and still see one whole version; dynamod stopped while it waits for a
spare leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import Server, children_of, cmdline_of, command, wait_for
from tests.e2e.test_offloop import COUNT, count, document, zygote_versions

PRINT = "print('ok', flush=True)\n"


def zygotes(server: Server) -> list[int]:
    return [pid for pid in server.all_children() if cmdline_of(pid).startswith("dynamod: zygote")]


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_readers_run_in_the_zygotes_spares_and_no_fork_of_the_image_is_left_to_the_loop(server: Server) -> None:
    wait_for(lambda: len(zygotes(server)) == 1 and len(server.spares()) == 2)
    script = server.script("ok.py", PRINT)
    for _ in range(10):
        done = server.run(str(script))
        assert (done.code, done.out) == (0, "ok\n"), done.err
    log = server.log()
    assert log.count("zygote of version") == 1, log  # one zygote for the version, no other fork
    assert "left behind by an application" not in log


def test_a_killed_zygote_is_replaced_and_calls_are_answered_meanwhile(server: Server) -> None:
    script = server.script("ok.py", PRINT)
    wait_for(lambda: len(zygotes(server)) == 1 and len(server.spares()) == 2)
    first = zygotes(server)[0]
    # killed while it forks the spares that replace the ones these calls take
    for _ in range(3):
        assert server.run(str(script)).out == "ok\n"
    os.kill(first, signal.SIGKILL)
    for _ in range(10):
        done = server.run(str(script))
        assert (done.code, done.out) == (0, "ok\n"), done.err
    wait_for(lambda: "ended unexpectedly" in server.log())
    wait_for(lambda: len(zygotes(server)) == 1 and zygotes(server)[0] != first, timeout=30)
    wait_for(lambda: len(server.spares()) == 2)
    for _ in range(3):
        assert server.run(str(script)).out == "ok\n"
    assert server.process is not None and server.process.poll() is None


def test_a_zygote_killed_while_the_image_takes_a_change_set(server: Server) -> None:
    """Applications that start meanwhile wait for the image (no zygote holds the old version any more):
    each sees the old version or the new one, whole."""
    script = server.script("count.py", COUNT)
    script.chmod(0o644)
    before = count(server, script)
    path = server.home / "big.json"
    path.write_text(document())
    path.chmod(0o644)
    inject = subprocess.Popen([command("dynamo-inject"), str(path)], env=server.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "commit process started" in server.log() or inject.poll() is not None, timeout=60)
    [old] = zygotes(server)
    assert zygote_versions(server) == [before[0]]
    os.kill(old, signal.SIGKILL)
    seen = []
    while inject.poll() is None:
        seen.append(count(server, script))
        time.sleep(0.02)
    out, err = inject.communicate()
    assert inject.returncode == 0, err
    after = count(server, script)
    assert after[0] == before[0] + 1 and after[1] > 0
    assert set(seen) <= {before, after}, set(seen) - {before, after}
    wait_for(lambda: zygote_versions(server) == [after[0]], timeout=30)


def test_stopping_while_the_zygote_forks_leaves_nothing_behind(server: Server) -> None:
    script = server.script("ok.py", PRINT)
    wait_for(lambda: len(zygotes(server)) == 1 and len(server.spares()) == 2)
    assert server.process is not None
    pid = server.process.pid
    for _ in range(2):  # both spares taken: the zygote is asked for two more
        assert server.run(str(script)).out == "ok\n"
    ours = descendants(pid)
    # and a reader asked for while dynamod stops: it is answered, or told the server stopped
    call = subprocess.Popen([command("dynamo"), str(script)], env=server.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ours |= descendants(pid)
    assert server.stop() == 0
    call.communicate(timeout=30)
    wait_for(lambda: not any(_alive(p) for p in ours))


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
