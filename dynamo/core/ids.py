"""Id allocation.

Ids are assigned by the store: the server's inventory draws them from an
allocator whose counters the store loads with the image and saves with every
commit. Counters only move forward, so a deleted object's id is never reused
(caches and replicas may still hold it). A rollback restores the counters.
"""

from __future__ import annotations

ID_KINDS = ("site", "group", "partition", "dataset", "block", "file")


class IdAllocator:
    __slots__ = ("next_ids",)

    def __init__(self, next_ids: dict[str, int] | None = None):
        self.next_ids = {kind: 1 for kind in ID_KINDS}
        if next_ids:
            for kind, value in next_ids.items():
                if kind not in self.next_ids:
                    raise ValueError(f"unknown id kind {kind!r}")
                self.next_ids[kind] = max(1, value)

    def allocate(self, kind: str) -> int:
        value = self.next_ids[kind]
        self.next_ids[kind] = value + 1
        return value

    def observe(self, kind: str, value: int) -> None:
        """An id assigned elsewhere (a journal being replayed) is now in use."""
        if value >= self.next_ids[kind]:
            self.next_ids[kind] = value + 1

    def checkpoint(self) -> dict[str, int]:
        return dict(self.next_ids)

    def restore(self, checkpoint: dict[str, int]) -> None:
        self.next_ids = dict(checkpoint)
