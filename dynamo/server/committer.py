"""The image and every change to it: apply a change set (an application's or an inject's), catch the
image up with the store after a failed commit, write the change log, refreeze.

A change set is validated and committed by a commit process (``dynamo.server.offloop``) while the
loop goes on serving; the live image changes only once the store has committed, in slices between
loop turns (``applying``), and no process is forked from it meanwhile (``forks_allowed``). One
change set at a time: the scheduler starts no writer while the committer is ``busy``.

After the client has its answer (``after_reply``, run by the loop's periodic step) the new objects
join the frozen generation shared with children. By then nothing of the finished application may
still be reachable (its child forgets its records and its client when it ends): what is alive at
the freeze stays in memory until the maintenance collection, hours later.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import resource
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from dynamo.appserver.handlers import Handlers
from dynamo.core.appstate import AppState
from dynamo.core.changeset import WAITING, LiveChange, Prepared, apply_committed
from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta
from dynamo.errors import ChangeSetError, JournalPruned, StoreError
from dynamo.protocol import replies
from dynamo.protocol.replies import ErrorCode
from dynamo.server import heap, offloop
from dynamo.server.children import Child
from dynamo.server.clients import flush_now
from dynamo.server.interest import READ, Interest
from dynamo.server.ledger import Ledger
from dynamo.server.litter import Litter
from dynamo.server.logs import ChangeLog
from dynamo.server.offloop import CommitRun, Result, Work
from dynamo.server.scheduler import InjectJob
from dynamo.server.zygote import Zygote, discard
from dynamo.store.catchup import catch_up
from dynamo.store.sql import SQLStore

log = logging.getLogger("dynamo.server")

APPLY_SLICE_S = 0.02      # the live image is changed this long per loop turn
APPLY_SLICE_MIN_S = 0.004  # ... or only this long when something else waits for the loop (events_waiting)
ZYGOTE_MAX_AGE = 300.0    # seconds before an idle zygote is replaced (dynamod's writes leave it copies of pages)
ZYGOTE_RETRY = 10.0       # seconds before a zygote is forked again after one failed
STATE = {"done": AppState.DONE, "refused": AppState.REFUSED, "document": AppState.REFUSED,
         "failed": AppState.FAILED}


def _unsealed(result: Result) -> None:
    raise AssertionError("a streamed writer's change set is finished only once sealed")


def refreeze() -> None:
    gc.collect()
    gc.freeze()


# what the commit process needs to open the store: an opener, and the descriptors it must keep
StoreOpener = Callable[[], tuple[offloop.Opener, tuple[int, ...]]]


class Applying:
    """A committed change set on its way into the live image, a slice per loop turn."""

    def __init__(self, run: CommitRun, inventory: Inventory, status: dict[str, Any]):
        self.run = run
        self.version = int(status["version"])
        self.next_ids = {str(k): int(v) for k, v in status["next_ids"].items()}
        self.counts = status.get("counts") or {}
        self.num_records = int(status["records"])
        self.steps: Iterator[int] = apply_committed(inventory, offloop.records_of(run.chunks), slice_records=50)
        self.started = time.monotonic()
        # the objects made from now to the last slice are the image's: no collection pass over them
        # (one between two slices would walk every object the apply made so far, again and again)
        self.gc_was_enabled = gc.isenabled()
        gc.disable()

    def restore_gc(self) -> None:
        if self.gc_was_enabled:
            gc.enable()


class Alongside:
    """A writer's change set going into the live image while its commit process commits it; unless
    ``sealed``, while the writer still runs (its records applied as they come)."""

    def __init__(self, run: CommitRun, inventory: Inventory, sealed: bool = True):
        assert isinstance(run.work.records, (list, Prepared))
        self.run = run
        self.change = LiveChange(inventory, run.work.records, sealed=sealed)
        self.steps: Iterator[int] | None = self.change.steps(slice_records=50)
        self.error: ChangeSetError | None = None   # the live image refused it (and was rolled back)
        self.status: dict[str, Any] | None = None  # the commit process's "committed" status
        self.started, self.cpu = time.monotonic(), time.process_time()
        self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        self.gc_was_enabled = False
        if sealed:
            self.seal()
        # else the collector stays on while the writer runs (minutes, hours): what each slice makes is
        # frozen after it (``_alongside_slice``), so that no collection walks it

    def seal(self) -> None:
        """The writer exited 0: the rest goes in without the collector (as in Applying)."""
        self.change.seal()
        self.gc_was_enabled = gc.isenabled()
        gc.disable()

    @property
    def sealed(self) -> bool:
        return self.change.sealed

    @property
    def applied(self) -> bool:
        return self.steps is None

    @property
    def waiting(self) -> bool:
        """Caught up with a writer that still runs: nothing to do until more records come."""
        return self.steps is not None and self.change.caught_up

    def restore_gc(self) -> None:
        if self.gc_was_enabled:
            gc.enable()
            self.gc_was_enabled = False


class Committer:
    def __init__(self, store: SQLStore, ledger: Ledger, changelog: ChangeLog, interest: Interest | None = None,
                 opener: StoreOpener | None = None):
        self.store = store
        self.ledger = ledger
        self.changelog = changelog
        self.interest = interest or Interest()
        self.opener = opener
        self.inventory: Inventory
        self.after_reply: deque[Callable[[], None]] = deque()
        # told the new version as soon as the image has it, before the writer's answer (web workers
        # of an older version stop serving on it: a client that committed never reads an older image)
        self.on_version: Callable[[int], None] | None = None
        self.run: CommitRun | None = None          # the commit process at work
        self.applying: Applying | None = None      # its change set going into the live image
        self.alongside: Alongside | None = None    # or a writer's, while it is committed
        self.zygotes = False                       # set by dynamod when it is the subreaper (zygote.py)
        # forks for dynamod, at the current version; while a change set goes into the image, at the old one
        self.zygote: Zygote | None = None
        self.retired: list[Zygote] = []            # zygotes told to end, not yet reaped
        self.zygote_failed = -ZYGOTE_RETRY         # monotonic: when a zygote could last not be forked
        self.litter = Litter()                     # a committed change set's records and undo log, freed in slices
        # set by dynamod: a client, a child or a pipe waits for the loop (a slice then ends early)
        self.events_waiting: Callable[[], bool] = lambda: False

    def load(self) -> None:
        started = time.monotonic()
        # Garbage made so far must not join the frozen generation. Cheap: the collection walks only
        # what is not frozen, and a previous image (a reload) is.
        gc.collect()
        # Frozen as built, before the collector is back on: shared copy-on-write with every child from
        # now on, and no collection ever walks it (collecting it would take seconds and find nothing).
        self.inventory = self.store.load(freeze=True)
        counts = self.store.loaded_counts  # counted by the builder: Inventory.counts() walks the image
        heap.trim()  # the load's freed temporaries: not resident, nor mapped into every fork
        log.info("inventory loaded in %.1f s (%d readers): version %d, %s", time.monotonic() - started,
                 self.store.load_readers, self.inventory.version, ", ".join(f"{v} {k}" for k, v in counts.items()))
        for advice in self.store.advice():
            log.warning("store: %s", advice)

    def run_after_reply(self) -> None:
        while self.after_reply:
            self.after_reply.popleft()()

    # --- the state the loop asks about ---------------------------------------------

    @property
    def busy(self) -> bool:
        """A change set is being committed or applied: the next writer waits."""
        return self.run is not None or self.applying is not None or self.alongside is not None

    @property
    def storing(self) -> bool:
        """A change set may be in the store's hands now: busy, except while a writer's records are only being
        taken as it runs (its commit process opens the store after the seal). The store's upkeep waits."""
        run = self.run
        streaming = run is not None and run.feed is not None and not run.feed.sealed
        return self.busy and not streaming

    @property
    def image_whole(self) -> bool:
        """The live image is whole (not half-way through a change set): it may be forked."""
        return self.applying is None and self.alongside is None

    @property
    def forks_allowed(self) -> bool:
        """Applications may start now: from the live image, or else from the zygote (the old version)."""
        return self.image_whole or self.zygote is not None and self.zygote.holds(self.inventory)

    def pids(self) -> set[int]:
        """The processes the committer forked (not to be swept as orphans)."""
        pids = {z.pid for z in self.retired} | ({self.zygote.pid} if self.zygote is not None else set())
        if self.run is not None and self.run.exit_status is None:
            pids.add(self.run.pid)
        return pids

    def drop_zygote(self) -> None:
        """The zygote failed or holds an older version: it is retired (while the image is half-way
        through a change set, applications then wait for it)."""
        zygote, self.zygote = self.zygote, None
        self.unpipeline("no zygote to fork applications from")
        if zygote is not None:
            zygote.retire()
            self.retired.append(zygote)
            if zygote.ended:
                self.zygote_ended(zygote)

    def zygote_ended(self, zygote: Zygote) -> None:
        """Its answers reached their end (it exited, or was killed): reaped by ``step``."""
        self.interest.drop(zygote)
        if not zygote.retiring:
            self.zygote_failed = time.monotonic()
            log.warning("the zygote (pid %d) ended unexpectedly: another is forked in %.0f s, once "
                        "the image is whole (until then dynamod forks applications itself)", zygote.pid, ZYGOTE_RETRY)
        zygote.close()
        if zygote is self.zygote:
            self.zygote = None
            self.retired.append(zygote)
            self.unpipeline("the zygote ended")  # applications are forked by dynamod again: from a whole image

    def spared_since(self) -> int | None:
        """When (``boot_ticks``) the oldest spare asked for and not yet announced was asked for: a process
        started since then may be that spare, dynamod's child already (the orphan sweep leaves it be)."""
        asks = [z.asks[0][0] for z in (*self.retired, *((self.zygote,) if self.zygote is not None else ())) if z.asks]
        return min(asks, default=None)

    def tend_zygote(self, idle: bool, may_fork: bool) -> None:
        """While the image is whole: retire a zygote of an older version (or, when ``idle``, an old one) and
        fork the next one when ``may_fork``: at once, not at a quiet moment (one fork of the image per
        version, where readers would otherwise each be forked by dynamod until then)."""
        if not self.zygotes or not self.image_whole:
            return
        now = time.monotonic()
        zygote = self.zygote
        if zygote is not None and (not zygote.holds(self.inventory) or idle and now > zygote.forked + ZYGOTE_MAX_AGE):
            self.drop_zygote()
        if self.zygote is None and (idle or may_fork) and now >= self.zygote_failed + ZYGOTE_RETRY:
            gc.collect()  # garbage of the applications that ended must not join the frozen generation
            self._start_zygote("next version")

    def close_zygotes(self, timeout: float = 10.0) -> None:
        """At shutdown: every zygote told to end; what they announced meanwhile discarded; all reaped."""
        self.drop_zygote()
        for zygote in self.retired:
            zygote.retire()
            if not zygote.ended:
                zygote.rep.settimeout(timeout)
                while True:
                    try:
                        arrival = zygote.receive()
                    except BlockingIOError:
                        break
                    if arrival is None:
                        break
                    discard(arrival)
                    if arrival.pid > 0:
                        try:
                            os.waitpid(arrival.pid, 0)
                        except ChildProcessError:
                            pass
            self.interest.drop(zygote)
            zygote.close()
            zygote.reap(blocking=True)
        self.retired = []

    def wake_in(self) -> float:
        if self.applying is not None:
            return 0.0
        alongside = self.alongside
        if alongside is not None and (not alongside.applied and not alongside.waiting or alongside.status is not None):
            return 0.0
        if self.litter.pending:
            return 0.0
        if self.run is not None and not self.run.open:
            return 0.01  # its pipe closed: reap it soon
        if self.run is not None and self.run.feed is not None and self.run.feed.pending:
            return 0.01  # the writer's commit process has not taken all its records yet
        return 1.0

    # --- starting a change set --------------------------------------------------------

    def apply_application(self, child: Child, then: Callable[[], None]) -> None:
        """A writer exited 0 and committed cleanly (``outcome`` said APPLYING): commit and apply its change
        set, then settle its record and call ``then``."""
        record = child.record
        self.ledger.mark(record, AppState.APPLYING)
        meta = ChangeMeta(user=record.user, dn=child.dn, title=record.title, checksum=record.checksum,
                          run_id=record.id)

        def finish(result: Result) -> None:
            self.ledger.finish(record, STATE[result.state], 0, result.message, version=self.inventory.version)
            then()

        run = self._stream_of(child)
        if run is not None:
            assert run.feed is not None
            run.work.finish = finish
            run.sealed_at = time.monotonic()
            run.feed.seal(len(child.records))
            child.change_feed = None
            alongside = self.alongside
            if alongside is not None and alongside.run is run:
                alongside.seal()
            else:  # the image was whole meanwhile (no zygote, or it had to be whole again): now, as below
                self._ensure_zygote(run.work.who)
                alongside = self.alongside = Alongside(run, self.inventory)
            log.info("%s: sealed %d change(s) %.3f s after the application ended (%d applied to the image so far)",
                     run.work.who, len(child.records), run.sealed_at - child.state_since, alongside.change.applied)
            self._alongside_slice(APPLY_SLICE_S)
            return
        stale = self.run
        if stale is not None and stale.work.stream and (stale.feed is None or not stale.feed.sealed):
            self._discard(stale)  # this writer's streamed commit process failed, and was not reaped yet
        self.start(Work(self._who(child), meta, finish, records=child.records, alongside=True),
                   since=child.state_since)

    @staticmethod
    def _who(child: Child) -> str:
        record = child.record
        return f"app {record.id} ({record.title}) {record.user}"

    def _stream_of(self, child: Child) -> CommitRun | None:
        """The commit process taking ``child``'s records as they come, if it is still at it."""
        run = self.run
        if (run is None or not run.work.stream or run.work.records is not child.records or run.feed is None
                or run.feed.closed or run.feed.sealed or run.ended):
            return None
        return run

    # --- a writer's records, taken while it runs --------------------------------------

    def stream_writer(self, child: Child) -> None:
        """A write application has started: its commit process starts now, at this version, and applies its
        records as they come (``changefeed``); so does this image, when a zygote of this version can fork
        applications meanwhile. When the writer exits 0 (``apply_application``) only the rest is left: its
        last records, the block checks, and the store's transaction. Any hitch here only means that the
        change set is applied at the writer's exit instead, as without this."""
        if self.busy or self.opener is None or not self.image_whole:
            return
        record = child.record
        meta = ChangeMeta(user=record.user, dn=child.dn, title=record.title, checksum=record.checksum,
                          run_id=record.id)
        work = Work(self._who(child), meta, _unsealed, records=child.records, alongside=True, stream=True,
                    encodes_journal=self.store.ENCODES_JOURNAL)
        started = time.monotonic()
        try:
            run, _ = self._fork(work)
        except (StoreError, OSError) as exc:
            log.warning("%s: no commit process while it runs (%s): its change set is committed when it ends",
                        work.who, exc)
            return
        assert run.feed is not None
        child.change_feed = run.feed.push
        forked = time.monotonic()
        self._ensure_zygote(work.who)
        if self.zygote is not None and self.zygote.holds(self.inventory):
            self.alongside = Alongside(run, self.inventory, sealed=False)
        log.info("%s: commit process started with the writer (fork %.3f s, zygote %.3f s)%s", work.who,
                 forked - started, time.monotonic() - forked,
                 ", its records go into the image as they come" if self.alongside is not None else "")

    def abandon_stream(self, child: Child) -> None:
        """``child`` ended without committing (failed, killed, refused by the server): its commit process, which
        has written nothing, is ended, and what its records changed in the image is undone."""
        run = self._stream_of(child)
        if run is None:
            return
        self._drop_stream(run, "the writer ended without committing")

    def _drop_stream(self, run: CommitRun, why: str) -> None:
        assert run.feed is not None
        run.feed.close()  # unsealed: the commit process ends without a word (and is killed to be sure)
        run.abandoned = True
        run.work.records = None  # the writer's own, which it may still be adding to: not the litter's
        try:
            os.kill(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        alongside = self.alongside
        if alongside is not None and alongside.run is run:
            self._abandon(alongside)
        log.info("%s: %s: its commit process is ended, it wrote nothing", run.work.who, why)

    def _discard(self, run: CommitRun) -> None:
        """A streamed commit process that failed: ended and reaped now (it wrote nothing)."""
        if not run.abandoned:
            self._drop_stream(run, "its commit process failed")
        self.interest.drop(run)
        run.close()
        run.reap(blocking=True)
        self.run = None

    def unpipeline(self, why: str) -> None:
        """The image must be whole again (no zygote to fork from, web workers to start): a writer's records
        applied while it runs are rolled back; they go into the image after its exit instead."""
        alongside = self.alongside
        if alongside is not None and not alongside.sealed:
            log.info("%s: %s: the records applied to the image so far are rolled back (applied after the writer "
                     "ends instead)", alongside.run.work.who, why)
            self._abandon(alongside)

    def run_inject(self, job: InjectJob) -> None:
        conn = job.conn
        meta = ChangeMeta(user=job.user.name, dn=job.user.dn or "", title="dynamo-inject")

        def finish(result: Result) -> None:
            if result.state == "document":
                Handlers.refuse(conn, f"invalid document, nothing changed: {result.message}", ErrorCode.INVALID)
            elif result.state != "done":
                Handlers.refuse(conn, result.message,
                                ErrorCode.INVALID if result.state == "refused" else ErrorCode.STORE)
            else:
                conn.send(replies.result({"counts": result.counts, "version": result.version,
                                          "delete": job.delete}))
                conn.close_when_flushed = True
                flush_now(conn)

        job.document, document = "", job.document  # the commit process has it; the loop lets go of it
        self.start(Work(f"inject by {job.user.name}", meta, finish, document=document, delete=job.delete))

    def start(self, work: Work, since: float | None = None) -> None:
        """Fork the commit process for ``work``; ``since``: when the writer ended (for the log)."""
        assert not self.busy, "one change set at a time"
        started = time.monotonic()
        try:
            run, collected = self._fork(work)
        except (StoreError, OSError) as exc:
            log.error("%s: cannot start the commit: %s", work.who, exc)
            work.finish(Result("failed", f"the store failed, nothing applied: {exc}", self.inventory.version))
            return
        forked = time.monotonic()
        if work.alongside:
            # the image is half-changed from the first slice on: applications start from the zygote meanwhile
            self._ensure_zygote(work.who)
        after = f" {started - since:.3f} s after the application ended" if since is not None else ""
        log.info("%s: commit process started%s (collection %.3f s, fork %.3f s, zygote %.3f s)", work.who, after,
                 collected - started, forked - collected, time.monotonic() - forked)
        if work.alongside:
            self.alongside = Alongside(run, self.inventory)
            self._alongside_slice(APPLY_SLICE_S)

    def _fork(self, work: Work) -> tuple[CommitRun, float]:
        """Fork the commit process for ``work`` (it becomes ``self.run``); also returns when the collection
        before the fork ended. Raises ``StoreError`` or ``OSError`` when it cannot be started."""
        keep: tuple[int, ...] = ()
        try:
            if self.opener is None:
                raise StoreError("no store to commit to")
            opener, keep = self.opener()
            # As before any fork: what is alive now is shared, not copied by the child's collections. A
            # writer's records were decoded while it ran and sit in the oldest generation: a full collection
            # would walk them all (0.2 s at 100k records) to find nothing; the young generations hold what
            # the application's end left behind.
            gc.collect(1 if work.alongside else 2)
            gc.freeze()
            collected = time.monotonic()
            run = offloop.start(work, self.inventory, opener, keep, self.changelog)
        finally:
            for fd in keep:
                os.close(fd)
        run.started = time.monotonic()
        self.run = run
        self.interest.set(run, READ)
        return run, collected

    # --- the loop's steps ---------------------------------------------------------------

    def read(self, run: CommitRun) -> None:
        run.read()
        if not run.open:
            self.interest.drop(run)

    def step(self) -> None:
        """Reap a finished commit process and act on its status; apply a slice of a committed change set."""
        run = self.run
        if run is not None:
            feed = run.feed
            if feed is not None and feed.pending:
                feed.flush()
            if not run.open:
                run.reap()
            if feed is not None and not feed.sealed and not run.abandoned and run.ended:
                # a streamed writer's commit process ended before the writer did: the writer's change set is
                # committed by a new one when it ends, as without streaming
                log.warning("%s: its commit process ended early (%s): the change set is committed when the "
                            "writer ends", run.work.who, (run.status or {}).get("crashed") or run.exit_status)
                self._drop_stream(run, "its commit process ended early")
            if (not run.settled and not run.abandoned and (feed is None or feed.sealed)
                    and (run.status is not None or run.ended)):
                run.settled = True  # the status is its last frame
                self._settle(run)
            if run.ended:  # the next change set waits for it: its change log lines come first
                self.run = None
                if self.alongside is None or self.alongside.run is not run:  # else the live apply reads them
                    self._drop_records(run.work)
        if self.alongside is not None and not self.alongside.waiting:
            self._alongside_slice(APPLY_SLICE_S)
        if self.applying is not None:
            self._apply_slice(APPLY_SLICE_S)
        self.retired = [z for z in self.retired if not (z.ended and z.reap())]
        if self.litter.pending:
            self.litter.sweep(APPLY_SLICE_MIN_S if self.events_waiting() else APPLY_SLICE_S)

    def _drop_records(self, work: Work) -> None:
        """A finished change set's records: freed a slice a turn (``litter``)."""
        records, work.records = work.records, None
        if isinstance(records, Prepared):
            self.litter.add(records.decoded)
            self.litter.add(records.records)
        elif records is not None:
            self.litter.add(records)

    def settle(self) -> None:
        """At shutdown: wait for the commit process, and apply what it committed (its client is told)."""
        run = self.run
        if run is not None and run.feed is not None and not run.feed.sealed and not run.abandoned:
            self._drop_stream(run, "the server stops")  # its writer did not end (or ended without committing)
        if run is not None:
            self.interest.drop(run)
            if run.open:  # else it was read to its end (and closed), but not reaped yet
                os.set_blocking(run.fd, True)
                run.read(blocking=True)
            run.reap(blocking=True)
        self.step()
        while self.alongside is not None:
            self._alongside_slice(60.0)
        while self.applying is not None:
            self._apply_slice(60.0)
        self.retired = [z for z in self.retired if not (z.ended and z.reap())]
        self.litter.clear()

    # --- outcomes -------------------------------------------------------------------------

    def _settle(self, run: CommitRun) -> None:
        work, status, version = run.work, run.status or {}, self.inventory.version
        alongside = self.alongside
        if alongside is not None and alongside.run is run:
            if status.get("committed"):
                sealed = (f"; {time.monotonic() - run.sealed_at:.2f} s after the seal (checks, then the store: "
                          f"{status.get('after_seal')} s; waited for records {status.get('waited')} s)"
                          if run.sealed_at else "")
                log.info("%s: %d change(s) validated and committed as version %d in %.2f s (commit process: "
                         "parse, apply and commit: %s s; CPU %s s, %s page faults)%s", work.who, status["records"],
                         status["version"], time.monotonic() - run.started, status.get("times"), status.get("cpu"),
                         status.get("faults"), sealed)
                alongside.status = status  # done once the live image has it too
                return
            self._abandon(alongside)  # the image goes back to version N, whole; then as below
        if "document" in status:
            log.info("%s: document refused: %s", work.who, status["document"])
            work.finish(Result("document", str(status["document"]), version))
        elif "refused" in status:
            log.warning("%s: change set refused: %s", work.who, status["refused"])
            work.finish(Result("refused", f"changes refused, nothing applied: {status['refused']}", version))
        elif "store" in status:
            self._failed(run, StoreError(str(status["store"])))
        elif "committed" not in status:
            why = status.get("crashed") or f"it ended ({run.exit_status}) without saying"
            log.error("%s: the commit process failed: %s", work.who, why)
            self._failed(run, StoreError(f"the commit process failed: {why}"))
        elif not status["committed"]:  # an empty change set: no journal entry, no new version
            log.info("%s: no changes: inventory version %d unchanged", work.who, version)
            work.finish(Result("done", f"no changes applied: inventory version {version} unchanged", version))
        else:
            log.info("%s: %d change(s) validated and committed as version %d in %.2f s (commit process: "
                     "parse, apply and commit, send: %s s; CPU %s s, %s page faults)", work.who, status["records"],
                     status["version"], time.monotonic() - run.started, status.get("times"), status.get("cpu"),
                     status.get("faults"))
            self._ensure_zygote(work.who)
            self.applying = Applying(run, self.inventory, status)
            self._apply_slice(APPLY_SLICE_S)

    def _abandon(self, alongside: Alongside) -> None:
        """The change set was not committed: roll the live image back (it is whole again)."""
        self.alongside = None
        alongside.steps = None
        try:
            alongside.change.rollback()
        finally:
            alongside.restore_gc()  # the zygote stays: it holds the version the image is back at

    def _alongside_slice(self, budget: float) -> None:
        alongside = self.alongside
        assert alongside is not None
        if alongside.steps is not None:
            try:
                done = self._slice(alongside.steps, budget)
                if not alongside.sealed:
                    gc.freeze()  # what the slice made is the image's: no collection walks it while the writer runs
                if not done:
                    return
                alongside.steps = None
            except ChangeSetError as exc:
                # refused here: the commit process refuses it too (the same code on the same image)
                log.info("%s: the live image refuses the change set (%s): rolled back, waiting for the commit "
                         "process", alongside.run.work.who, exc)
                alongside.error = exc
                alongside.steps = None
                alongside.change.rollback()
                alongside.restore_gc()
        status = alongside.status
        if status is None:
            return  # the commit process is still at work
        self.alongside = None
        work = alongside.run.work
        version = int(status["version"])
        next_ids = {str(k): int(v) for k, v in status["next_ids"].items()}
        if alongside.error is None:
            self.litter.add(alongside.change.txn.detach())  # no longer needed: freed a slice a turn
        if self.run is not alongside.run:  # the commit process has ended: nothing reads the records any more
            self._drop_records(work)
        if alongside.error is not None or not alongside.change.commit(version, next_ids):
            alongside.restore_gc()
            why = alongside.error or ChangeSetError("the ids assigned differ from the committed ones")
            self._diverged(work, version, int(status["records"]), status.get("counts") or {}, why)
            return
        self.drop_zygote()
        # The new objects join the shared generation (no collection: they are alive), *before* the collector
        # is back on: else its first young collection walked all of them (0.5-0.7 s at W10, 100k records).
        gc.freeze()
        alongside.restore_gc()
        log.info("%s: version %d in the image %.2f s after the commit process started (dynamod's CPU meanwhile "
                 "%.2f s, %d page faults)", work.who, version, time.monotonic() - alongside.run.started,
                 time.process_time() - alongside.cpu,
                 resource.getrusage(resource.RUSAGE_SELF).ru_minflt - alongside.faults)
        if self.on_version is not None:
            self.on_version(version)
        work.finish(Result("done", f"{status['records']} change(s) applied: inventory version {version}",
                           version, status.get("counts") or {}))

    def _ensure_zygote(self, who: str) -> None:
        """Before a change set goes into the image (whole now): a zygote of this version, to fork
        applications from meanwhile."""
        if self.zygote is not None and not self.zygote.holds(self.inventory):
            self.drop_zygote()
        if self.zygote is None:
            self._start_zygote(who)

    def _start_zygote(self, who: str) -> None:
        if not self.zygotes:
            return
        assert self.image_whole
        started = time.monotonic()
        try:
            self.zygote = Zygote.start(self.inventory, started)
        except OSError as exc:
            self.zygote_failed = started
            log.warning("%s: no zygote (%s): applications are forked by dynamod, and wait while the image takes "
                        "a change set", who, exc)
            return
        self.interest.set(self.zygote, READ)
        log.info("zygote of version %d forked (pid %d, %.3f s)", self.inventory.version, self.zygote.pid,
                 time.monotonic() - started)

    def _slice(self, steps: Iterator[int], budget: float) -> bool:
        """Run ``steps`` for ``budget`` seconds, or ``APPLY_SLICE_MIN_S`` when other work waits for the
        loop; True once they are exhausted."""
        started = time.monotonic()
        deadline, early = started + budget, started + APPLY_SLICE_MIN_S
        for applied in steps:
            if applied == WAITING:
                return False  # caught up with a writer that still runs
            now = time.monotonic()
            if now > deadline or now > early and self.events_waiting():
                return False
        return True

    def _apply_slice(self, budget: float) -> None:
        applying = self.applying
        assert applying is not None
        try:
            if not self._slice(applying.steps, budget):
                return
        except ChangeSetError as exc:
            self.applying = None
            applying.restore_gc()
            self._diverged(applying.run.work, applying.version, applying.num_records, applying.counts, exc)
            return
        self.applying = None
        self.drop_zygote()
        inventory = self.inventory
        inventory.version = applying.version
        if inventory.ids is not None:
            inventory.ids.restore(applying.next_ids)
        gc.freeze()  # the new objects join the shared generation (no collection: they are alive), as above
        applying.restore_gc()
        work = applying.run.work
        log.info("%s: version %d applied to the image in %.2f s", work.who, applying.version,
                 time.monotonic() - applying.started)
        if self.on_version is not None:
            self.on_version(applying.version)
        work.finish(Result("done", f"{applying.num_records} change(s) applied: inventory version "
                                   f"{applying.version}", applying.version, applying.counts))

    def _diverged(self, work: Work, version: int, num_records: int, counts: dict[str, int],
                  exc: ChangeSetError) -> None:
        """A committed change set did not apply to the live image (a bug): load the image again."""
        self.drop_zygote()
        log.error("%s: version %d is committed but did not apply to the image (%s): loading the image again",
                  work.who, version, exc)
        try:
            self.load()
        except StoreError as error:
            log.error("loading the image failed: %s", error)
        if self.on_version is not None:
            self.on_version(self.inventory.version)
        work.finish(Result("done", f"{num_records} change(s) applied: inventory version {version}", version,
                           counts))

    def _failed(self, run: CommitRun, exc: StoreError) -> None:
        """The store failed while the change set was written, or the commit process died. The image
        never changed; the store may have committed anyway (the connection broke after COMMIT was sent):
        catch up, and if the journal holds this change set, say so, with its version, rather than
        "nothing applied"."""
        work = run.work
        before = self.inventory.version
        compared = self.resync()
        found = self._journal_has(work.meta, before) if compared else None
        if found is not None:
            version, num_records = found
            log.warning("%s: the store failed (%s) after the change set was committed as version %d: the "
                        "image caught up from the journal", work.who, exc, version)
            self.after_reply.append(functools.partial(self._log_changes, version, work.who))
            if self.on_version is not None:
                self.on_version(self.inventory.version)
            work.finish(Result("done", f"{num_records} change(s) applied: inventory version {version} (the "
                               "store's acknowledgement was lost; the journal shows the commit)", version))
            return
        if not compared:
            log.error("%s: the store failed, and whether the change set was committed cannot be known until "
                      "it is back: %s", work.who, exc)
            work.finish(Result("failed", f"the store failed: {exc}; the store could not be asked whether the "
                               "change set was committed (nothing was, unless the journal shows it)", before))
            return
        log.error("%s: the store failed, nothing applied: %s", work.who, exc)
        work.finish(Result("failed", f"the store failed, nothing applied: {exc}", before))

    def _log_changes(self, version: int, who: str) -> None:
        try:
            self.changelog.write(version, who, self.store.journal_records(version))
        except StoreError as exc:
            log.error("change log: version %d not written: %s", version, exc)

    def _journal_has(self, meta: ChangeMeta, since: int) -> tuple[int, int] | None:
        """The version at which the journal holds a change set made by ``meta`` after ``since``. One
        dynamod writes one change set at a time, so after a lost acknowledgement the store is at most
        that one ahead (or others, when another writer shares the store: those are told apart by meta)."""
        try:
            entries = self.store.journal_entries(since=since, limit=100)
        except StoreError:
            return None
        for entry in entries:
            if (entry.user, entry.title, entry.checksum, entry.run_id) == (meta.user, meta.title, meta.checksum,
                                                                           meta.run_id):
                return entry.seq, entry.num_records
        return None

    def resync(self) -> bool:
        """After a failed commit: if the store moved on without the image (a COMMIT that went
        through although its acknowledgement was lost, or another writer), replay the journal
        entries the image lacks, or, when they cannot be replayed, load the image again. False if
        the store could not be asked."""
        try:
            replayed = catch_up(self.inventory, self.store)
        except JournalPruned as exc:
            log.warning("the image cannot catch up with the store from the journal (%s): loading it again", exc)
            try:
                self.load()
            except StoreError as error:
                log.error("reloading the image failed, will try after the next failed commit: %s", error)
                return False
            return True
        except StoreError as exc:
            log.error("cannot compare the image with the store, will try after the next failed commit: %s", exc)
            return False
        if replayed:
            self.after_reply.append(refreeze)
            log.warning("the store was %d change set(s) ahead of the image (a commit whose acknowledgement was "
                        "lost?): replayed from the journal, now at version %d", replayed, self.inventory.version)
        return True
