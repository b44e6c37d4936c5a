"""The applications' records: every change of state is checked, then written to the registry.

When the registry cannot be written (the store is down), the record in memory
still moves — the application runs or ends anyway, and its client is told —
but only along an allowed transition: ``check_transition`` comes first, always.

One change may be *held*: ``hold`` checks it at once and writes it later, when its
owner calls ``write_held`` (the lifecycle holds an application's ``running`` row until
its first output has gone to its client: docs/server.md, "Application records"). Until
then the record, in memory and in the registry, keeps its earlier state; any other
change of the same record writes the held one first, so the registry sees every state
in order.

With a ``RowWriter`` (dynamod's), a change is made to the record in memory at once and its row is
written by the writer's thread, in order, off the loop; ``current`` gives dynamod's answers the
records as last handed over.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dynamo.core.appstate import AppState, check_transition
from dynamo.errors import StoreError
from dynamo.server.rowwriter import Row, RowWriter
from dynamo.server.system import REAL, System
from dynamo.store.registry import AppRecord, Registry, application_update, change_record

log = logging.getLogger("dynamo.server")

SLOW_ROW_S = 0.01
"""A registry write this long is logged (debug level): it holds the loop."""


class Ledger:
    def __init__(self, registry: Registry, system: System = REAL, writer: RowWriter | None = None):
        """``writer``: the thread that writes the rows (``dynamo.server.rowwriter``); without one, or
        once it has failed, each row is written here, in the loop."""
        self.registry = registry
        self.system = system
        self.writer = writer
        self._held: dict[int, tuple[AppRecord, AppState, dict[str, Any]]] = {}

    def hold(self, record: AppRecord, state: AppState, **fields: Any) -> None:
        """``mark(record, state, **fields)``, checked now and written by ``write_held``."""
        self.write_held(record)
        check_transition(record.status, state)
        self._held[record.id] = (record, state, fields)

    def holds(self, record: AppRecord) -> bool:
        return record.id in self._held

    def write_held(self, record: AppRecord) -> None:
        held = self._held.pop(record.id, None)
        if held is not None:
            self.mark(held[0], held[1], **held[2])

    def write_all_held(self) -> None:
        for record, _, _ in list(self._held.values()):
            self.write_held(record)

    def mark(self, record: AppRecord, state: AppState, **fields: Any) -> None:
        self.write_held(record)
        check_transition(record.status, state)
        changes = {"status": state, **fields}
        writer = self._writer()
        if writer is not None:
            change_record(record, changes)
            writer.put(record, changes)
            return
        started = time.monotonic()
        try:
            self.registry.update_application(record, **changes)
        except StoreError as exc:
            log.error("app %d: cannot record that it is %s: %s", record.id, state.value, exc)
            for key, value in changes.items():
                setattr(record, key, value)
        took = time.monotonic() - started
        if took > SLOW_ROW_S:
            log.debug("app %d: its %s row took %.0f ms to write", record.id, state.value, took * 1000)

    def finish(self, record: AppRecord, state: AppState, code: int | None, message: str,
               version: int | None = None) -> None:
        fields: dict[str, Any] = {"exit_code": code, "message": message, "ended": self.system.time()}
        if version is not None:
            fields["version"] = version
        self.mark(record, state, **fields)

    def current(self, record: AppRecord) -> AppRecord:
        """``record`` as read from the registry, or as last handed to the writer if a row of it is
        still to be written: what dynamod answers about it."""
        newer = self.writer.pending(record.id) if self.writer is not None else None
        return newer if newer is not None else record

    def close(self) -> None:
        """Write the rows handed over (the server stops); those that cannot be written are logged."""
        writer = self._writer()  # a failed one has handed its rows to the loop: written here
        self.writer = None
        if writer is not None:
            writer.close()

    def relay_log(self) -> None:
        """What the writer's thread had to say, logged here (in the loop: ``RowWriter.relay_log``)."""
        if self.writer is not None:
            self.writer.relay_log()

    def _writer(self) -> RowWriter | None:
        writer = self.writer
        if writer is not None:
            writer.relay_log()
        if writer is None or writer.alive:
            return writer
        # the thread failed (its traceback is in the log): its rows, then every later one, in the loop
        self.writer = None
        self._write_here(writer.take_unwritten())
        return None

    def _write_here(self, rows: list[Row]) -> None:
        for row in rows:
            try:
                self.registry.db.execute(*application_update(row.app_id, row.changes))
            except StoreError as exc:
                log.error("app %d: cannot record that it is %s: %s", row.app_id, row.state, exc)
