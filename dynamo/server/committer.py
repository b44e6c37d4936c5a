"""The image and every change to it: apply a change set (an application's or an inject's), catch the
image up with the store after a failed commit, write the change log, refreeze.

Change sets are applied in the loop, one at a time: nothing else runs while the image changes.
After the client has its answer (``after_reply``, run by the loop's periodic step) the change log
is written and the new objects join the frozen generation shared with children. By then nothing of
the finished application may still be reachable (its child forgets its records and its client when
it ends): what is alive at the freeze stays in memory until the maintenance collection, hours later.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections import deque
from collections.abc import Callable

from dynamo.appserver.handlers import Handlers
from dynamo.core.appstate import AppState
from dynamo.core.changeset import Prepared, apply_change_set
from dynamo.core.codec import Record
from dynamo.core.documents import parse_delete, parse_inject
from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta
from dynamo.errors import ChangeSetError, DocumentError, JournalPruned, StoreError
from dynamo.protocol import replies
from dynamo.protocol.replies import ErrorCode
from dynamo.server.children import Child
from dynamo.server.clients import flush_now
from dynamo.server.ledger import Ledger
from dynamo.server.logs import ChangeLog
from dynamo.server.scheduler import InjectJob
from dynamo.store.catchup import catch_up
from dynamo.store.sql import SQLStore

log = logging.getLogger("dynamo.server")


def refreeze() -> None:
    gc.collect()
    gc.freeze()


class Committer:
    def __init__(self, store: SQLStore, ledger: Ledger, changelog: ChangeLog):
        self.store = store
        self.ledger = ledger
        self.changelog = changelog
        self.inventory: Inventory
        self.after_reply: deque[Callable[[], None]] = deque()
        # told the new version as soon as the image has it, before the writer's answer (web workers
        # of an older version stop serving on it: a client that committed never reads an older image)
        self.on_version: Callable[[int], None] | None = None

    def load(self) -> None:
        started = time.monotonic()
        # Garbage made so far must not join the frozen generation. Cheap: the collection walks only
        # what is not frozen, and a previous image (a reload) is.
        gc.collect()
        # Frozen as built, before the collector is back on: shared copy-on-write with every child from
        # now on, and no collection ever walks it (collecting it would take seconds and find nothing).
        self.inventory = self.store.load(freeze=True)
        counts = self.store.loaded_counts  # counted by the builder: Inventory.counts() walks the image
        log.info("inventory loaded in %.1f s: version %d, %s", time.monotonic() - started, self.inventory.version,
                 ", ".join(f"{v} {k}" for k, v in counts.items()))
        for advice in self.store.advice():
            log.warning("store: %s", advice)

    def run_after_reply(self) -> None:
        while self.after_reply:
            self.after_reply.popleft()()

    def apply_application(self, child: Child) -> None:
        """A writer exited 0 and committed cleanly (``outcome`` said APPLYING): apply its change set."""
        record = child.record
        self.ledger.mark(record, AppState.APPLYING)
        meta = ChangeMeta(user=record.user, dn=child.dn, title=record.title, checksum=record.checksum,
                          run_id=record.id)
        state, message = self.apply(child.records, meta, f"app {record.id} ({record.title}) {record.user}")
        self.ledger.finish(record, state, 0, message, version=self.inventory.version)

    def run_inject(self, job: InjectJob) -> None:
        conn, who = job.conn, f"inject by {job.user.name}"
        try:
            parsed = (parse_delete if job.delete else parse_inject)(job.document, self.inventory)
        except DocumentError as exc:
            log.info("%s: document refused: %s", who, exc)
            Handlers.refuse(conn, f"invalid document, nothing changed: {exc}", ErrorCode.INVALID)
            return
        meta = ChangeMeta(user=job.user.name, dn=job.user.dn or "", title="dynamo-inject")
        state, message = self.apply(parsed.records, meta, who)
        if state != AppState.DONE:
            Handlers.refuse(conn, message, ErrorCode.INVALID if state == AppState.REFUSED else ErrorCode.STORE)
            return
        conn.send(replies.result({"counts": parsed.counts, "version": self.inventory.version, "delete": job.delete}))
        conn.close_when_flushed = True
        flush_now(conn)

    def apply(self, records: list[Record] | Prepared, meta: ChangeMeta, who: str) -> tuple[AppState, str]:
        """Apply a change set; returns the outcome for the record. The loop does nothing else meanwhile."""
        started = time.monotonic()
        try:
            committed = apply_change_set(self.inventory, self.store, records, meta)
        except ChangeSetError as exc:
            log.warning("%s: change set refused: %s", who, exc)
            return AppState.REFUSED, f"changes refused, nothing applied: {exc}"
        except StoreError as exc:
            return self._failed(records, meta, who, exc)
        elapsed = time.monotonic() - started
        version = self.inventory.version
        if not committed:  # an empty change set: no journal entry, no new version
            log.info("%s: no changes: inventory version %d unchanged", who, version)
            return AppState.DONE, f"no changes applied: inventory version {version} unchanged"
        if self.on_version is not None:
            self.on_version(version)
        log.info("%s: %d change(s) applied and committed as version %d in %.2f s", who, len(records), version,
                 elapsed)
        return self._committed(records, who, version, "")

    def _committed(self, records: list[Record] | Prepared, who: str, version: int, note: str) -> tuple[AppState, str]:
        plain = records.records if isinstance(records, Prepared) else records
        self.after_reply.append(functools.partial(self.changelog.write, version, who, plain))
        self.after_reply.append(refreeze)
        return AppState.DONE, f"{len(records)} change(s) applied: inventory version {version}{note}"

    def _failed(self, records: list[Record] | Prepared, meta: ChangeMeta, who: str,
                exc: StoreError) -> tuple[AppState, str]:
        """The store failed while the change set was written. The image rolled back; the store may
        have committed anyway (the connection broke after COMMIT was sent): catch up, and if the
        journal holds this change set, say so, with its version, rather than "nothing applied"."""
        before = self.inventory.version
        compared = self.resync()
        version = self._journal_has(meta, before) if compared else None
        if version is not None:
            log.warning("%s: the store failed (%s) after the change set was committed as version %d: the "
                        "image caught up from the journal", who, exc, version)
            return self._committed(records, who, version, " (the store's acknowledgement was lost; the "
                                   "journal shows the commit)")
        if not compared:
            log.error("%s: the store failed, and whether the change set was committed cannot be known until "
                      "it is back: %s", who, exc)
            return AppState.FAILED, (f"the store failed: {exc}; the store could not be asked whether the change "
                                     "set was committed (nothing was, unless the journal shows it)")
        log.error("%s: the store failed, nothing applied: %s", who, exc)
        return AppState.FAILED, f"the store failed, nothing applied: {exc}"

    def _journal_has(self, meta: ChangeMeta, since: int) -> int | None:
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
                return entry.seq
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
