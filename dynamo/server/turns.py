"""How long the loop's turns take, step by step: a turn that held the loop for long is logged.

Every client waits for the turn in progress before its bytes are read, so a long turn is a
tail latency for everyone (issue 10). ``lap(step)`` after each step costs one clock read;
a turn longer than ``SLOW_TURN_S`` (its wait for events not counted) is logged at debug
level with its steps, e.g. ``slow loop turn: 84 ms: dispatch 2, committer 71, ...``.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("dynamo.server")

SLOW_TURN_S = 0.04


class TurnClock:
    def __init__(self, threshold: float = SLOW_TURN_S):
        self.threshold = threshold
        self.clock = time.monotonic
        self.enabled = False
        self.laps: list[tuple[str, float]] = []
        self.last = 0.0
        self.began = 0.0

    def begin(self) -> None:
        """The turn's work starts (its wait for events is over)."""
        self.enabled = log.isEnabledFor(logging.DEBUG)
        if self.enabled:
            self.began = self.last = self.clock()
            self.laps.clear()

    def lap(self, step: str) -> None:
        if self.enabled:
            now = self.clock()
            self.laps.append((step, now - self.last))
            self.last = now

    def end(self) -> None:
        if self.enabled and self.last - self.began > self.threshold:
            log.debug("slow loop turn: %.0f ms: %s", (self.last - self.began) * 1000,
                      ", ".join(f"{step} {seconds * 1000:.0f}" for step, seconds in self.laps if seconds >= 0.001))
