"""The selector, and what the loop waits for on each descriptor (one owner: rooms ask it)."""

from __future__ import annotations

import selectors
from typing import Any

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE


class Interest:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()

    def set(self, obj: Any, events: int) -> None:
        """Wait for ``events`` on ``obj`` (a file-like object whose selector data is itself); 0 = nothing."""
        try:
            key = self.selector.get_map().get(obj.fileno())
        except (OSError, ValueError):
            return
        if key is None:
            if events:
                self.selector.register(obj, events, obj)
        elif not events:
            self.selector.unregister(obj)
        elif key.events != events:
            self.selector.modify(obj, events, obj)

    def drop(self, obj: Any) -> None:
        try:
            self.selector.unregister(obj)
        except (KeyError, ValueError, OSError):
            pass

    def wait(self, timeout: float) -> list[tuple[selectors.SelectorKey, int]]:
        return self.selector.select(timeout)

    def close(self) -> None:
        self.selector.close()
