"""Periodic work, keyed to ``time.monotonic()``: store upkeep, journal compaction, removal of old
work areas, and the full collection of the frozen image."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable

from dynamo.config import Config
from dynamo.errors import StoreError
from dynamo.server.system import REAL, System
from dynamo.server.workareas import WorkAreas
from dynamo.store import JournalRetention
from dynamo.store.registry import Registry
from dynamo.store.sql import SQLStore

log = logging.getLogger("dynamo.server")

MAINTENANCE_GC_EVERY = 6 * 3600.0   # full collection of frozen objects (deleted datasets...), when idle
CLEANUP_EVERY = 3600.0
STORE_EVERY = 1.0   # the store's upkeep (SQLite: checkpoints, which sync the registry's rows) at most this often


class Maintenance:
    def __init__(self, config: Config, store: SQLStore, registry: Registry, work_areas: WorkAreas,
                 busy: Callable[[], bool], system: System = REAL, committing: Callable[[], bool] = lambda: False):
        self.config = config
        self.store = store
        self.registry = registry
        self.work_areas = work_areas
        self.busy = busy              # children are running: the full collection waits
        self.committing = committing  # a change set is being committed: the store's upkeep waits
        self.system = system
        self.next_compaction = self.next_cleanup = self.next_gc = self.next_store = 0.0

    def run(self) -> None:
        now = self.system.monotonic()
        # Not while a change set is committed: a checkpoint's fsync then waits for the commit's own
        # writes to reach the disk (100+ ms), and the loop with it.
        if now >= self.next_store and not self.committing():
            self.next_store = now + STORE_EVERY
            try:
                self.store.maintain()
            except StoreError as exc:
                log.error("store maintenance failed: %s", exc)
        if now >= self.next_compaction:
            self.next_compaction = now + self.config.store.compact_every
            self.compact_journal()
        if now >= self.next_cleanup:
            self.next_cleanup = now + CLEANUP_EVERY
            self.clean_work_areas()
        # when idle (a full pass over the image blocks the loop ~2 s at W10), but no later than one
        # period overdue: a server that is never idle must still free deleted objects
        if now >= self.next_gc and (not self.busy() or now >= self.next_gc + MAINTENANCE_GC_EVERY):
            if self.next_gc:
                self.collect()
            self.next_gc = now + MAINTENANCE_GC_EVERY

    def collect(self) -> None:
        started = self.system.monotonic()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.info("maintenance garbage collection: %.1f s", self.system.monotonic() - started)

    def compact_journal(self) -> None:
        retention = JournalRetention(self.config.store.journal_keep_days, self.config.store.journal_keep_entries)
        try:
            pruned = self.store.compact_journal(retention)
        except StoreError as exc:
            log.error("journal compaction failed: %s", exc)
            return
        if pruned:
            log.info("journal compaction: records of %d change set(s) removed", pruned)

    def clean_work_areas(self) -> None:
        retain_days = self.config.applications.retain_days
        try:
            removed = self.work_areas.clean(self.registry, self.system.time() - retain_days * 86400)
        except StoreError as exc:
            log.error("application clean-up failed: %s", exc)
            return
        if removed:
            log.info("removed %d finished application(s) older than %.0f days", removed, retain_days)
