"""Large garbage, freed a slice at a time between the loop's turns.

A committed writer's change set leaves behind its records (100k decoded records and their objects) and
the live image's undo log (100k entries holding the objects the change set replaced). Dropped at once,
their deallocation held dynamod's loop 0.3 and 0.55 s at W10, and every client waited for it. Handed
here instead, they are freed from the end of each list, a few milliseconds a turn (``sweep``). Only
lists nothing will read again are handed over: they are emptied in place.
"""

from __future__ import annotations

import time
from typing import Any

STEP = 500  # items freed between two looks at the clock


class Litter:
    def __init__(self) -> None:
        self.heaps: list[list[Any]] = []

    @property
    def pending(self) -> bool:
        return bool(self.heaps)

    def add(self, heap: list[Any]) -> None:
        if heap:
            self.heaps.append(heap)

    def sweep(self, budget: float) -> None:
        """Free items for about ``budget`` seconds (at least one step)."""
        deadline = time.monotonic() + budget
        while self.heaps:
            heap = self.heaps[-1]
            while heap:
                del heap[-STEP:]
                if time.monotonic() > deadline:
                    return
            self.heaps.pop()

    def clear(self) -> None:
        """All at once (at shutdown)."""
        while self.heaps:
            self.heaps.pop().clear()
