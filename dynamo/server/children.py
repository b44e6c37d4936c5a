"""The children's life on the parent side: their state, reaping, deadlines.

A child is RUNNING until dynamod decides to stop it (TERMINATING: SIGTERM to its
process group), KILLING once the grace period has passed without an exit
(SIGKILL), and EXITED once reaped; it can exit from any of the three. Its pipes
may outlive it (descendants hold them), for at most ``drain_grace`` seconds
after the exit. ``Children`` owns the map of live children and moves them
along these states between loop turns; the loop never sleeps on one child.
Every OS call goes through a ``System`` (a fake in unit tests).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import IO, Any

from dynamo.apps.runner import ChildSpec
from dynamo.core.changeset import Prepared
from dynamo.protocol import framing
from dynamo.server.system import REAL, System
from dynamo.store.registry import AppRecord

log = logging.getLogger("dynamo.server")

PIPE_DRAIN_GRACE = 5.0    # an exited child's descendants may hold its pipes this long


class ChildState(Enum):
    RUNNING = "running"
    TERMINATING = "terminating"   # SIGTERM sent to the group; SIGKILL follows after the grace period
    KILLING = "killing"           # SIGKILL sent to the group
    EXITED = "exited"             # reaped: exit_status holds the waitpid status


ALLOWED: dict[ChildState, frozenset[ChildState]] = {
    ChildState.RUNNING: frozenset({ChildState.TERMINATING, ChildState.KILLING, ChildState.EXITED}),
    ChildState.TERMINATING: frozenset({ChildState.KILLING, ChildState.EXITED}),
    ChildState.KILLING: frozenset({ChildState.EXITED}),
    ChildState.EXITED: frozenset(),
}


class StopReason(StrEnum):
    KILLED = "killed"     # by a user, its client, a bad change stream or the server's shutdown
    TIMEOUT = "timeout"   # it ran past its deadline


class ChildStateError(RuntimeError):
    pass


@dataclass(eq=False)
class Stream:
    """One pipe from a child: its descriptor, what it carries, and its decoder."""

    fd: int
    kind: str                     # "out", "err", "changes" or "control"
    child: Child
    text: Any = None              # incremental UTF-8 decoder for out/err
    frames: framing.Decoder | None = None
    log: IO[str] | None = None    # the work area's _stdout / _stderr
    logged: int = 0               # characters written to log
    open: bool = True

    def fileno(self) -> int:
        return self.fd


@dataclass(eq=False)
class Child:
    record: AppRecord
    spec: ChildSpec
    pid: int
    started: float
    deadline: float | None
    system: System = REAL
    state: ChildState = ChildState.RUNNING
    state_since: float = 0.0      # monotonic time of the last change of state
    stop_reason: StopReason | None = None  # why dynamod decided to stop it, if it did
    exit_status: int | None = None  # os.waitpid status once reaped
    streams: list[Stream] = field(default_factory=list)
    stdin_fd: int | None = None   # the console's input (shell only)
    stdin_pending: bytearray = field(default_factory=bytearray)  # input the console has not read yet
    stdin_eof: bool = False       # the client ended its input: close stdin_fd once pending is written
    records: Prepared = field(default_factory=Prepared)
    change_feed: Callable[[bytes], None] | None = None  # a writer's change stream also goes here (changefeed)
    commit_count: int | None = None
    change_error: str | None = None
    connection: Any = None        # the client connection streaming this child's output, if any
    dn: str = ""                  # the submitter's certificate DN (journaled with a writer's changes)
    heard: bool = False           # something came from it on a pipe (its "running" row may be written)

    def __repr__(self) -> str:
        return f"<child {self.pid} app {self.record.id} {self.state.value}>"

    @property
    def running(self) -> bool:
        return self.state is not ChildState.EXITED

    @property
    def pipes_open(self) -> bool:
        return any(s.open for s in self.streams)

    def change_state(self, new: ChildState) -> None:
        if new not in ALLOWED[self.state]:
            raise ChildStateError(f"child {self.pid}: cannot go from {self.state.value} to {new.value}")
        self.state = new
        self.state_since = self.system.monotonic()

    def exited(self, status: int) -> None:
        self.exit_status = status
        self.change_state(ChildState.EXITED)

    def signal_group(self, signum: int) -> None:
        try:
            self.system.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:  # the group is gone and the pid reused: fall back to the child itself
            try:
                self.system.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, reason: StopReason) -> None:
        """Begin stopping the whole process group: SIGTERM now, SIGKILL after the grace period.
        The first reason given is the one the application's record keeps."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.state is ChildState.RUNNING:
            self.change_state(ChildState.TERMINATING)
            self.signal_group(signal.SIGTERM)

    def kill(self) -> None:
        if self.state in (ChildState.RUNNING, ChildState.TERMINATING):
            self.change_state(ChildState.KILLING)
        self.signal_group(signal.SIGKILL)

    def forget(self) -> None:
        """Drop what a finished child holds (its change set, its client, its pipes): a child that stays
        reachable after its end would keep them until the next full collection, and beyond it if the
        image is frozen meanwhile."""
        self.records = Prepared()
        self.change_feed = None
        self.streams = []
        if self.connection is not None and self.connection.child is self:
            self.connection.child = None
        self.connection = None


class Children:
    """The live children, by pid; reaping and deadlines."""

    def __init__(self, kill_grace: float, system: System = REAL, drain_grace: float = PIPE_DRAIN_GRACE):
        self.kill_grace = kill_grace
        self.drain_grace = drain_grace
        self.system = system
        self.by_pid: dict[int, Child] = {}

    def __iter__(self) -> Iterator[Child]:
        return iter(list(self.by_pid.values()))

    def __len__(self) -> int:
        return len(self.by_pid)

    def add(self, child: Child) -> None:
        self.by_pid[child.pid] = child

    def remove(self, child: Child) -> None:
        self.by_pid.pop(child.pid, None)

    def by_app(self, app_id: int) -> Child | None:
        return next((c for c in self.by_pid.values() if c.record.id == app_id), None)

    def reap(self) -> None:
        """``waitpid(pid, WNOHANG)`` for each child we own, never ``-1``: only ours."""
        for child in self.by_pid.values():
            if child.running:
                try:
                    pid, status = self.system.waitpid(child.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = child.pid, -1
                if pid:
                    child.exited(status)

    def enforce_deadlines(self) -> list[Child]:
        """Stop children past their deadline, SIGKILL those that outlived SIGTERM's grace; returns the
        exited children whose pipes descendants held too long (their group is killed: close the pipes)."""
        now = self.system.monotonic()
        abandoned = []
        for child in self.by_pid.values():
            if child.state is ChildState.RUNNING and child.deadline is not None and now > child.deadline:
                log.info("app %d (%s): timeout, stopping it", child.record.id, child.record.title)
                child.stop(StopReason.TIMEOUT)
            if child.state is ChildState.TERMINATING and now > child.state_since + self.kill_grace:
                log.info("app %d (%s): still alive after SIGTERM, sending SIGKILL", child.record.id,
                         child.record.title)
                child.kill()
            if child.state is ChildState.EXITED and child.pipes_open:
                if child.connection is not None and child.connection.backlogged:
                    child.state_since = now  # its client is still taking the output: the grace starts later
                if now > child.state_since + self.drain_grace:
                    child.signal_group(signal.SIGKILL)
                    abandoned.append(child)
        return abandoned

    def finished(self) -> list[Child]:
        """Exited children whose pipes are all closed: ready for their outcome."""
        return [c for c in self.by_pid.values() if not c.running and not c.pipes_open]

    def next_wake(self, now: float, longest: float = 1.0) -> float:
        """Seconds until the next deadline or escalation, at most ``longest``."""
        wake = now + longest
        for child in self.by_pid.values():
            if child.state is ChildState.RUNNING and child.deadline is not None:
                wake = min(wake, child.deadline)
            elif child.state is ChildState.TERMINATING:
                wake = min(wake, child.state_since + self.kill_grace)
        return max(0.0, wake - now)

    def stop_all(self) -> None:
        for child in self.by_pid.values():
            child.stop(StopReason.KILLED)

    def kill_remaining(self) -> None:
        """At the end of the shutdown grace: SIGKILL and wait (blocking) for each child still alive."""
        for child in self.by_pid.values():
            child.signal_group(signal.SIGKILL)
            if not child.running:
                continue
            try:
                self.system.waitpid(child.pid, 0)
            except ChildProcessError:
                pass
            if child.state is not ChildState.KILLING:
                child.change_state(ChildState.KILLING)
            child.exited(-signal.SIGKILL)
