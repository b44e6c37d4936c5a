"""``fork_sibling``: the new process is its parent's parent's child (one fork, no intermediate), with
the interpreter's fork hooks run and the C library's record of its thread id its own (threads and
subprocesses work in it)."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from dynamo.server import sibling

pytestmark = pytest.mark.skipif(not sibling.available(), reason="clone(CLONE_PARENT) not available here")


def test_the_new_process_is_our_child_and_whole() -> None:
    me = os.getpid()
    report_r, report_w = os.pipe()
    told_r, told_w = os.pipe()
    middle = os.fork()
    if middle == 0:  # plays the zygote: its sibling-forked child is ours
        code = 1
        try:
            hooked: list[int] = []
            os.register_at_fork(after_in_child=lambda: hooked.append(os.getpid()))
            pid = sibling.fork_sibling()
            if pid == 0:
                ran = []
                thread = threading.Thread(target=lambda: ran.append(threading.get_native_id()))
                thread.start()
                thread.join()
                echoed = subprocess.run(["echo", "hi"], capture_output=True, check=True).stdout
                whole = (os.getppid() == me and hooked == [os.getpid()] and sibling.tid_address() != 0
                         and ran and ran[0] != os.getpid() and echoed == b"hi\n")
                os.write(report_w, b" whole " if whole else b" broken ")
                os._exit(7)
            os.write(told_w, pid.to_bytes(4, "big"))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(middle, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    pid = int.from_bytes(os.read(told_r, 4), "big")
    _, status = os.waitpid(pid, 0)  # the sibling: ours to reap (not waitpid(-1): pytest may have others)
    assert os.waitstatus_to_exitcode(status) == 7
    for fd in (report_w, told_r, told_w):
        os.close(fd)
    with os.fdopen(report_r, "rb") as report:
        assert report.read() == b" whole "
