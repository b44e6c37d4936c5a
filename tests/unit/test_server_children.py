"""The children's states, reaping and deadline escalation, through a fake OS."""

from __future__ import annotations

import os
import signal

import pytest

from dynamo.server.children import ALLOWED, Children, ChildState, ChildStateError, StopReason, Stream
from tests.unit.server_fakes import FakeSystem, child

TERM, KILL = signal.SIGTERM, signal.SIGKILL


def supervised(system: FakeSystem, *kids: int, timeout: float | None = None) -> Children:
    children = Children(kill_grace=10.0, system=system, drain_grace=5.0)
    for pid in kids:
        children.add(child(system, pid, timeout=timeout))
    return children


def test_every_state_change_is_checked() -> None:
    system = FakeSystem()
    c = child(system)
    for source, targets in ALLOWED.items():
        for target in ChildState:
            c.state = source
            if target in targets:
                c.change_state(target)
                assert c.state is target
            else:
                with pytest.raises(ChildStateError):
                    c.change_state(target)


def test_an_exited_child_never_runs_again() -> None:
    system = FakeSystem()
    c = child(system)
    c.exited(0)
    assert not c.running
    with pytest.raises(ChildStateError):
        c.exited(0)
    c.stop(StopReason.KILLED)  # too late to signal: only the reason is kept
    assert c.state is ChildState.EXITED and c.stop_reason is StopReason.KILLED
    assert system.signals == []


def test_stop_keeps_the_first_reason_and_signals_once() -> None:
    system = FakeSystem()
    c = child(system)
    c.stop(StopReason.TIMEOUT)
    c.stop(StopReason.KILLED)
    assert c.stop_reason is StopReason.TIMEOUT
    assert system.signals == [("killpg", c.pid, TERM)]


def test_a_vanished_group_falls_back_to_the_pid_or_nothing() -> None:
    system = FakeSystem()
    c = child(system)
    system.gone.add(c.pid)
    c.signal_group(TERM)  # ProcessLookupError: nothing left to signal
    assert system.signals == []

    def denied(pgid: int, signum: int) -> None:
        raise PermissionError(pgid)

    system.killpg = denied  # type: ignore[method-assign]
    c.signal_group(TERM)    # the pid was reused by another group: signal only our child
    assert system.signals == [("kill", c.pid, TERM)]


def test_reap_waits_only_for_our_children_and_never_blocks() -> None:
    system = FakeSystem()
    children = supervised(system, 101, 102)
    system.exits[102] = 3 << 8
    children.reap()
    assert sorted(system.waited) == [(101, os.WNOHANG), (102, os.WNOHANG)]
    states = {c.pid: c.state for c in children}
    assert states == {101: ChildState.RUNNING, 102: ChildState.EXITED}
    assert children.by_app(102) is not None and children.by_app(102).exit_status == 3 << 8  # type: ignore[union-attr]


def test_a_child_that_cannot_be_waited_for_counts_as_gone() -> None:
    system = FakeSystem()
    children = supervised(system, 101)

    def lost(pid: int, options: int) -> tuple[int, int]:
        raise ChildProcessError(pid)

    system.waitpid = lost  # type: ignore[method-assign]
    children.reap()
    (c,) = children
    assert c.state is ChildState.EXITED and c.exit_status == -1


def test_timeout_escalates_term_then_kill_after_the_grace() -> None:
    system = FakeSystem()
    children = supervised(system, 101, timeout=30.0)
    (c,) = children
    system.now += 30.0
    children.enforce_deadlines()
    assert system.signals == []                       # at the deadline, not yet past it
    system.now += 0.1
    children.enforce_deadlines()
    assert c.state is ChildState.TERMINATING and c.stop_reason is StopReason.TIMEOUT
    assert system.signals == [("killpg", 101, TERM)]
    system.now += 9.9
    children.enforce_deadlines()
    assert c.state is ChildState.TERMINATING          # the grace is not over
    system.now += 0.2
    children.enforce_deadlines()
    assert c.state is ChildState.KILLING
    assert system.signals == [("killpg", 101, TERM), ("killpg", 101, KILL)]
    children.enforce_deadlines()
    assert len(system.signals) == 2                   # SIGKILL once
    children.reap()
    assert c.state is ChildState.EXITED and c.exit_status == KILL


def test_a_child_that_ends_on_sigterm_gets_no_sigkill() -> None:
    system = FakeSystem()
    children = supervised(system, 101)
    (c,) = children
    c.stop(StopReason.KILLED)
    system.exits[101] = TERM
    children.reap()
    system.now += 60
    children.enforce_deadlines()
    assert system.signals == [("killpg", 101, TERM)]
    assert c.state is ChildState.EXITED


def _with_pipe(system: FakeSystem, children: Children) -> Stream:
    (c,) = children
    stream = Stream(fd=-1, kind="out", child=c)
    c.streams.append(stream)
    return stream


def test_descendants_holding_the_pipes_are_killed_after_the_drain_grace() -> None:
    system = FakeSystem()
    children = supervised(system, 101)
    _with_pipe(system, children)
    (c,) = children
    system.exits[101] = 0
    children.reap()
    assert children.finished() == []                  # its pipes are still open
    system.now += 5.0
    assert children.enforce_deadlines() == []
    system.now += 0.1
    assert children.enforce_deadlines() == [c]
    assert system.signals == [("killpg", 101, KILL)]


def test_the_drain_grace_waits_for_a_client_that_still_takes_output() -> None:
    class Backlogged:
        backlogged = True
        child = None

    system = FakeSystem()
    children = supervised(system, 101)
    stream = _with_pipe(system, children)
    (c,) = children
    c.connection = Backlogged()
    system.exits[101] = 0
    children.reap()
    system.now += 60
    assert children.enforce_deadlines() == []
    c.connection.backlogged = False
    system.now += 5.1
    assert children.enforce_deadlines() == [c]
    stream.open = False
    assert children.finished() == [c]


def test_next_wake_is_the_nearest_deadline_or_escalation() -> None:
    system = FakeSystem()
    children = supervised(system, 101, 102, timeout=0.25)
    assert children.next_wake(system.now) == pytest.approx(0.25)
    for c in children:
        c.stop(StopReason.KILLED)
    assert children.next_wake(system.now) == pytest.approx(1.0)   # kill_grace 10 s: the loop's second first
    system.now += 9.5
    assert children.next_wake(system.now) == pytest.approx(0.5)
    for c in children:
        c.kill()
    assert children.next_wake(system.now) == pytest.approx(1.0)   # nothing more to escalate: no busy loop


def test_shutdown_kills_and_waits_for_what_is_left() -> None:
    system = FakeSystem()
    children = supervised(system, 101, 102)
    system.exits[102] = 0
    children.reap()
    children.stop_all()
    children.kill_remaining()
    assert [c.state for c in children] == [ChildState.EXITED, ChildState.EXITED]
    assert (101, 0) in system.waited
    assert ("killpg", 101, TERM) in system.signals and ("killpg", 101, KILL) in system.signals
    assert children.by_app(101).exit_status == -KILL  # type: ignore[union-attr]
    assert children.by_app(102).exit_status == 0      # type: ignore[union-attr]


def test_forget_lets_go_of_records_client_and_pipes() -> None:
    class Conn:
        child = None

    system = FakeSystem()
    c = child(system, write=True)
    conn = Conn()
    c.connection, conn.child = conn, c
    c.records.extend([("update", "Site", {"name": "T1"})])
    c.streams.append(Stream(fd=-1, kind="out", child=c))
    c.forget()
    assert len(c.records) == 0 and c.streams == [] and c.connection is None and conn.child is None


def test_a_forgotten_child_and_its_change_set_need_no_cycle_collector() -> None:
    """What is alive when the image is refrozen stays until the maintenance collection: a finished child
    must be freed by reference counting alone, its change set even while its client still holds it."""
    import gc
    import weakref

    class Conn:
        child = None

    system = FakeSystem()
    c = child(system, write=True)
    conn = Conn()
    c.connection, conn.child = conn, c
    c.records.extend([("update", "Site", {"name": f"T{i}"}) for i in range(100)])
    c.streams.append(Stream(fd=-1, kind="changes", child=c))
    records, alive = weakref.ref(c.records), weakref.ref(c)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        c.forget()
        assert records() is None
        del c
        assert alive() is None and conn.child is None
    finally:
        if was_enabled:
            gc.enable()
