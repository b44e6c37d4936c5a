"""The committer at shutdown (real processes and pipes, no store)."""

from __future__ import annotations

import os

from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta
from dynamo.server.committer import Committer
from dynamo.server.offloop import CommitRun, Result, Work


def test_shutdown_after_the_commit_process_closed_its_pipe_but_before_it_was_reaped() -> None:
    """The loop read the commit process's pipe to its end and closed it; the process was not reaped yet
    when the server stopped: settle() reaps it and tells its client (it once failed on the closed pipe)."""
    committer = Committer(None, None, None)  # type: ignore[arg-type]  # settle() needs no store here
    committer.inventory = Inventory()
    results: list[Result] = []
    work = Work("inject by t", ChangeMeta(title="t"), results.append, document="")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    os.close(read_fd)  # nothing opens a descriptor from here on: its number stays free
    run = CommitRun(work, pid, read_fd, status={"document": "refused"}, open=False)
    committer.run = run
    committer.settle()
    assert [r.state for r in results] == ["document"]
    assert run.exit_status is not None and committer.run is None
