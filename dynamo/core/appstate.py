"""Application states and the transitions allowed between them.

It depends on nothing but ``dynamo.errors``, so that both the registry (``store/``) and
the server and the commands can import it (``store/`` must not import ``apps/``).
"""

from __future__ import annotations

from enum import StrEnum

from dynamo.errors import TransitionError


class AppState(StrEnum):
    QUEUED = "queued"        # waiting for a slot (writers wait for the previous writer)
    RUNNING = "running"      # the child process is alive
    APPLYING = "applying"    # a writer exited 0; its change set is being applied
    DONE = "done"            # exit code 0 (and, for a writer, its changes committed)
    FAILED = "failed"        # non-zero exit code or uncaught exception: nothing applied
    KILLED = "killed"        # stopped by a user or by the server's shutdown: nothing applied
    TIMEOUT = "timeout"      # ran past its deadline and was killed: nothing applied
    REFUSED = "refused"      # a writer exited 0 but its change set was invalid: nothing applied
    LOST = "lost"            # the server stopped while it was queued or running


ALLOWED: dict[AppState, frozenset[AppState]] = {
    AppState.QUEUED: frozenset({AppState.RUNNING, AppState.KILLED, AppState.LOST, AppState.FAILED}),
    AppState.RUNNING: frozenset({AppState.APPLYING, AppState.DONE, AppState.FAILED, AppState.KILLED,
                                 AppState.TIMEOUT, AppState.LOST}),
    # LOST: the server died while applying, and the journal has no entry of the application's
    AppState.APPLYING: frozenset({AppState.DONE, AppState.REFUSED, AppState.FAILED, AppState.LOST}),
}


def check_transition(old: AppState, new: AppState) -> None:
    """Raise ``TransitionError`` unless an application may go from ``old`` to ``new``."""
    if new not in ALLOWED.get(old, frozenset()):
        raise TransitionError(f"application cannot go from {old} to {new}")


__all__ = ["ALLOWED", "AppState", "TransitionError", "check_transition"]
