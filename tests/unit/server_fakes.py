"""A fake operating system and plain records for the server's unit tests (no fork, no database)."""

from __future__ import annotations

import os
import signal
from typing import Any

from dynamo.apps.runner import ChildSpec
from dynamo.core.appstate import AppState
from dynamo.server.children import Child
from dynamo.server.system import System
from dynamo.store.registry import AppRecord


class FakeSystem(System):
    """A clock moved by hand, children that exit when a test says so, and a log of the signals sent."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.signals: list[tuple[str, int, int]] = []   # ("killpg" or "kill", pid, signal)
        self.exits: dict[int, int] = {}                  # pid -> waitpid status, once "exited"
        self.gone: set[int] = set()                      # pids whose group no longer exists
        self.waited: list[tuple[int, int]] = []
        self.lowered: list[int] = []                     # pids put at the lowest priority

    def fork(self) -> int:
        raise AssertionError("unit tests do not fork")

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        self.waited.append((pid, options))
        if pid in self.exits:
            return pid, self.exits.pop(pid)
        if options & os.WNOHANG:
            return 0, 0
        raise ChildProcessError(pid)

    def kill(self, pid: int, signum: int) -> None:
        self.signals.append(("kill", pid, signum))

    def lowest_priority(self, pid: int) -> None:
        self.lowered.append(pid)

    def killpg(self, pgid: int, signum: int) -> None:
        if pgid in self.gone:
            raise ProcessLookupError(pgid)
        self.signals.append(("killpg", pgid, signum))
        if signum == signal.SIGKILL:
            self.exits.setdefault(pgid, signal.SIGKILL)  # a raw status: killed by SIGKILL

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1.8e9 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def record(app_id: int = 1, write: bool = False, status: AppState = AppState.RUNNING, **fields: Any) -> AppRecord:
    values: dict[str, Any] = dict(id=app_id, title=f"app{app_id}", user="alice", write=write, script="a.py",
                                  checksum="", args=[], status=status, exit_code=None, message="", server="h",
                                  pid=None, work_area="", submitted=0.0, started=None, ended=None, version=None)
    values.update(fields)
    return AppRecord(**values)


def child(system: FakeSystem, pid: int = 100, write: bool = False, kind: str = "app",
          timeout: float | None = None) -> Child:
    rec = record(pid, write=write)
    spec = ChildSpec(app_id=rec.id, title=rec.title, kind=kind, script_name=rec.script, source="", args=(),
                     write=write, work_area="/nonexistent")
    return Child(record=rec, spec=spec, pid=pid, started=system.now,
                 deadline=None if timeout is None else system.now + timeout, system=system, state_since=system.now)


class MemoryRegistry:
    """The one registry call the ledger makes, kept in memory; ``down`` makes it fail as a lost store does."""

    def __init__(self) -> None:
        self.down = False
        self.updates: list[tuple[int, dict[str, Any]]] = []

    def update_application(self, record: AppRecord, **changes: Any) -> None:
        from dynamo.core.appstate import check_transition
        from dynamo.errors import StoreError

        if self.down:
            raise StoreError("the store is down")
        if "status" in changes:
            check_transition(record.status, AppState(changes["status"]))
        for key, value in changes.items():
            setattr(record, key, value)
        self.updates.append((record.id, changes))


class FakeConn:
    """What the scheduler and the lifecycle use of a client connection."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed = False
        self.close_when_flushed = False
        self.child: Any = None
        self.backlogged = False

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def flush(self) -> None:
        pass
