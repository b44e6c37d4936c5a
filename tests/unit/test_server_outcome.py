"""``outcome(child)``: every way an application can end, mapped to its record's state, code and message."""

from __future__ import annotations

import signal

import pytest

from dynamo.apps.states import AppState
from dynamo.server.children import StopReason
from dynamo.server.outcome import Outcome, outcome, signal_name
from tests.unit.server_fakes import FakeSystem, child


def ended(status: int | None, write: bool = False, kind: str = "app", reason: StopReason | None = None,
          commit: int | None = None, records: int = 0, change_error: str | None = None) -> Outcome:
    c = child(FakeSystem(), write=write, kind=kind)
    c.exit_status = status
    c.stop_reason = reason
    c.commit_count = commit
    c.change_error = change_error
    c.records.extend([("update", "Site", {"name": f"T{i}"}) for i in range(records)])
    return outcome(c)


def exit_status(code: int) -> int:
    return code << 8


@pytest.mark.parametrize("write", [False, True])
def test_exit_0_of_a_reader_or_a_shell_is_done(write: bool) -> None:
    kind = "shell" if write else "app"   # a console never streams changes, whatever its record says
    assert ended(exit_status(0), write=write, kind=kind) == Outcome(AppState.DONE, 0, "")


def test_non_zero_exit_fails() -> None:
    assert ended(exit_status(3)) == Outcome(AppState.FAILED, 3, "exit code 3")
    assert ended(exit_status(1), write=True, commit=0) == Outcome(AppState.FAILED, 1,
                                                                  "exit code 1; nothing applied")


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGSEGV, "SIGSEGV"), (signal.SIGKILL, "SIGKILL"),
                                               (signal.SIGRTMIN + 2, str(signal.SIGRTMIN + 2)),
                                               (signal.SIGRTMAX, "SIGRTMAX")])
def test_death_by_a_signal_names_it(signum: int, name: str) -> None:
    assert signal_name(signum) == name
    result = ended(signum)  # a raw waitpid status: killed by signum
    assert result.state is AppState.FAILED and result.code == -signum
    assert result.message == f"killed by signal {signal_name(signum)}"


def test_a_real_time_signal_without_a_name_is_given_by_number() -> None:
    signum = signal.SIGRTMIN + 3
    with pytest.raises(ValueError):
        signal.Signals(signum)
    assert ended(signum).message == f"killed by signal {signum}"


def test_timeout_and_kill_win_over_the_exit_code() -> None:
    assert ended(signal.SIGTERM, reason=StopReason.TIMEOUT) == Outcome(AppState.TIMEOUT, -signal.SIGTERM,
                                                                       "ran past its timeout")
    assert ended(exit_status(0), reason=StopReason.KILLED) == Outcome(AppState.KILLED, 0, "killed")
    # the server stopped it because of its change stream: that is the message
    assert ended(signal.SIGTERM, write=True, reason=StopReason.KILLED, change_error="more than 5 changes") == \
        Outcome(AppState.KILLED, -signal.SIGTERM, "more than 5 changes")


def test_a_child_that_could_not_be_waited_for_counts_as_killed_by_sigkill() -> None:
    assert ended(None).code == -signal.SIGKILL
    assert ended(-1).message == "killed by signal SIGKILL"


def test_a_writer_that_committed_its_changes_goes_to_applying() -> None:
    assert ended(exit_status(0), write=True, commit=3, records=3) == Outcome(AppState.APPLYING, 0, "")
    assert ended(exit_status(0), write=True, commit=0) == Outcome(AppState.APPLYING, 0, "")


def test_a_writer_without_commit_fails_with_nothing_applied() -> None:
    assert ended(exit_status(0), write=True, records=2) == Outcome(
        AppState.FAILED, 0, "the application ended without committing its changes; nothing applied")


def test_a_commit_count_that_does_not_match_fails() -> None:
    assert ended(exit_status(0), write=True, commit=5, records=4) == Outcome(
        AppState.FAILED, 0, "the application ended without committing its changes; nothing applied")


def test_a_change_stream_error_fails_even_after_commit() -> None:
    assert ended(exit_status(0), write=True, commit=1, records=1, change_error="unexpected frame") == Outcome(
        AppState.FAILED, 0, "unexpected frame; nothing applied")
