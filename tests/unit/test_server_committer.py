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


def test_the_stores_upkeep_waits_for_a_commit_not_for_a_writer_whose_records_are_taken_as_it_runs() -> None:
    """``storing`` (the store's upkeep waits: SQLite's checkpoints, which sync the registry's rows) is true
    while a change set may be in the store's hands, not for the whole run of a writer whose commit process
    takes its records as they come (hours, maybe) and opens the store only after the seal."""
    from dynamo.server.changefeed import Feed

    committer = Committer(None, None, None)  # type: ignore[arg-type]
    committer.inventory = Inventory()
    assert not committer.storing
    read_fd, write_fd = os.pipe()
    work = Work("app 1 (w) u", ChangeMeta(title="w"), lambda result: None, stream=True, alongside=True)
    committer.run = CommitRun(work, os.getpid(), read_fd, feed=Feed(write_fd))
    assert committer.busy and not committer.storing
    committer.run.feed.seal(0)  # type: ignore[union-attr]
    assert committer.busy and committer.storing
    os.close(read_fd)
