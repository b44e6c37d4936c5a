"""The spare (dynamo.server.spare): the next reader's child is forked ahead, runs the next read-only
application, never one of an older image, and never outlives dynamod."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.e2e.conftest import Server, cmdline_of, gone, wait_for
from tests.e2e.test_applications import authorize

REPORT = """
import os
from dynamo.core.executable import inventory
print(os.getpid(), inventory.version, sorted(inventory.sites), flush=True)
"""
WRITER = """
import sys
from dynamo.core.executable import inventory
from dynamo.dataformat import Site
inventory.update(Site(sys.argv[1], "example.org"))
"""


def report(server: Server) -> tuple[int, int, list[str]]:
    done = server.run(str(server.script("report.py", REPORT)))
    assert done.code == 0, done.err
    pid, version, sites = done.out.split(" ", 2)
    return int(pid), int(version), eval(sites)  # noqa: S307 - a list of names the test made


def ready_spares(server: Server) -> set[int]:
    """The spares in stock (the zygote keeps dynamod supplied with two: dynamo.server.lifecycle)."""
    wait_for(lambda: len(server.spares()) == 2)
    return set(server.spares())


def writer_spares(server: Server) -> list[int]:
    return [pid for pid in server.all_children() if cmdline_of(pid).startswith("dynamo: writer spare")]


def test_a_reader_runs_in_the_spare_of_the_current_image(server: Server) -> None:
    ready = ready_spares(server)
    pid, version, sites = report(server)
    assert pid in ready and sites == []
    assert ready_spares(server) - ready  # the next one
    writer = server.script("writer.py", WRITER)
    authorize(server, str(writer), "writer")
    stale = ready_spares(server)
    wait_for(lambda: writer_spares(server))
    [writer_spare] = writer_spares(server)
    done = server.run(f"{writer} T1_SPARE", "--write-request", "--title", "writer")
    assert done.code == 0, done.err
    log = server.log()
    assert f"(writer): started, pid {writer_spare} " in log  # the writer's own spare, forked ahead
    pid, new_version, sites = report(server)  # at once: the spares of the old image are not used
    assert new_version > version and sites == ["T1_SPARE"] and pid not in stale
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in stale))  # discarded and reaped
    pid, _, sites = report(server)
    assert sites == ["T1_SPARE"]


def test_the_spare_dies_with_dynamod(server: Server) -> None:
    spare = min(ready_spares(server))
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(30)
    server.process = None
    wait_for(lambda: gone(spare))
