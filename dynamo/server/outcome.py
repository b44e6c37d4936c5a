"""What became of an application, from its child's end alone (pure: no I/O, no store)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from dynamo.apps.states import AppState
from dynamo.server.children import Child, StopReason


@dataclass(frozen=True)
class Outcome:
    state: AppState      # APPLYING: a writer that committed cleanly; its change set is applied next
    code: int | None     # the exit code, negative for a signal (as subprocess does)
    message: str


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9; the number for signals without a name (real-time ones: an application may die of
    any signal, and the server must be able to say so)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def exit_code(status: int | None) -> int:
    """The exit code of a waitpid status; a child that could not be waited for counts as SIGKILLed."""
    if status is None or status < 0:
        return -signal.SIGKILL
    return os.waitstatus_to_exitcode(status)


def outcome(child: Child) -> Outcome:
    code = exit_code(child.exit_status)
    write = child.record.write
    if child.stop_reason is not None:
        timeout = child.stop_reason is StopReason.TIMEOUT
        message = child.change_error or ("ran past its timeout" if timeout else "killed")
        return Outcome(AppState.TIMEOUT if timeout else AppState.KILLED, code, message)
    if code != 0:
        message = f"exit code {code}" if code > 0 else f"killed by signal {signal_name(-code)}"
        return Outcome(AppState.FAILED, code, message + ("; nothing applied" if write else ""))
    if write and child.spec.kind == "app":
        if child.change_error or child.commit_count is None or child.commit_count != len(child.records):
            reason = child.change_error or "the application ended without committing its changes"
            return Outcome(AppState.FAILED, 0, reason + "; nothing applied")
        return Outcome(AppState.APPLYING, 0, "")
    return Outcome(AppState.DONE, 0, "")
