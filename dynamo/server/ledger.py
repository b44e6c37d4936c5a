"""The applications' records: every change of state is checked, then written to the registry.

When the registry cannot be written (the store is down), the record in memory
still moves — the application runs or ends anyway, and its client is told —
but only along an allowed transition: ``check_transition`` comes first, always.
"""

from __future__ import annotations

import logging
from typing import Any

from dynamo.apps.states import AppState, check_transition
from dynamo.errors import StoreError
from dynamo.server.system import REAL, System
from dynamo.store.registry import AppRecord, Registry

log = logging.getLogger("dynamo.server")


class Ledger:
    def __init__(self, registry: Registry, system: System = REAL):
        self.registry = registry
        self.system = system

    def mark(self, record: AppRecord, state: AppState, **fields: Any) -> None:
        check_transition(record.status, state)
        changes = {"status": state, **fields}
        try:
            self.registry.update_application(record, **changes)
        except StoreError as exc:
            log.error("app %d: cannot record that it is %s: %s", record.id, state.value, exc)
            for key, value in changes.items():
                setattr(record, key, value)

    def finish(self, record: AppRecord, state: AppState, code: int | None, message: str,
               version: int | None = None) -> None:
        fields: dict[str, Any] = {"exit_code": code, "message": message, "ended": self.system.time()}
        if version is not None:
            fields["version"] = version
        self.mark(record, state, **fields)
