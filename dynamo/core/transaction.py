"""Tracking of one change set's effect on the RAM image.

While a change set is applied, every primitive mutation of the image pushes
its inverse onto an undo log and marks what the store must rewrite. If
validation, the final consistency checks or the database commit fail, the undo
log is replayed backwards and the image is exactly as before; the allocator's
counters are restored too. Applications in forked children mutate their image
without a transaction (``NO_TRACKING``): their copy is thrown away anyway.

Dirty tracking is by object identity (``id(obj)``), not by value: an object
deleted and then re-created under the same name within one change set is two
different objects, and the store must delete the first row and insert the
second. What the store writes is decided at commit time from the final state
(``Changes``), so an object modified several times is written once.
"""

from __future__ import annotations

from typing import Any, Callable

from dynamo.core.ids import IdAllocator

# Tables (or table-like units) the store writes. Row keys in ``deleted`` are
# database ids: (id,) or (dataset_id, site_id) or (site_id, partition_id).
TABLES = ("groups", "sites", "partitions", "site_partitions", "datasets", "blocks", "block_files",
          "dataset_replicas")


def _discard(entry: tuple[Any, ...]) -> None:
    pass


class Tracker:
    """The interface the inventory reports mutations to; this base does nothing.

    ``push`` takes one undo entry ``(function, *arguments)``; it is a plain
    callable (``list.append`` in a transaction) because it runs for every
    primitive mutation.
    """

    active = False
    push: Callable[[tuple[Any, ...]], None] = staticmethod(_discard)

    def undo(self, func: Callable[..., Any], *args: Any) -> None:
        self.push((func, *args))

    def touched(self, table: str, obj: Any) -> None:
        pass

    def deleted(self, table: str, key: tuple[int, ...]) -> None:
        pass

    def files_touched(self, block: Any) -> None:
        pass

    def block_replicas_touched(self, dataset_replica: Any) -> None:
        pass

    def block_counts_touched(self, block: Any) -> None:
        pass

    def unpacked(self, dataset_replica: Any) -> None:
        pass


NO_TRACKING = Tracker()


class Transaction(Tracker):
    active = True

    def __init__(self, allocator: IdAllocator | None):
        self._undo: list[tuple[Any, ...]] = []
        self.push = self._undo.append
        self.dirty: dict[str, dict[int, Any]] = {t: {} for t in TABLES}
        # dataset replicas whose block replicas changed; unless also in dirty["dataset_replicas"]
        # (created, or their own values changed), their row changes in the packed column alone
        self.block_replicas_dirty: dict[int, Any] = {}
        self.deleted_rows: dict[str, list[tuple[int, ...]]] = {t: [] for t in TABLES}
        # blocks whose files or size/num_files changed -> index of the last record touching them
        self.blocks_to_check: dict[int, tuple[Any, int]] = {}
        # dataset replicas whose block replicas were unpacked, to pack again at the end
        self.unpacked_replicas: dict[int, Any] = {}
        self.record_index = -1
        self.allocator = allocator
        self._checkpoint = allocator.checkpoint() if allocator else None

    # --- tracking ---------------------------------------------------------

    def touched(self, table: str, obj: Any) -> None:
        self.dirty[table][id(obj)] = obj

    def deleted(self, table: str, key: tuple[int, ...]) -> None:
        self.deleted_rows[table].append(key)

    def files_touched(self, block: Any) -> None:
        self.dirty["block_files"][id(block)] = block
        self.blocks_to_check[id(block)] = (block, self.record_index)

    def block_replicas_touched(self, dataset_replica: Any) -> None:
        self.block_replicas_dirty[id(dataset_replica)] = dataset_replica

    def block_counts_touched(self, block: Any) -> None:
        self.blocks_to_check[id(block)] = (block, self.record_index)

    def unpacked(self, dataset_replica: Any) -> None:
        self.unpacked_replicas[id(dataset_replica)] = dataset_replica

    # --- outcome ----------------------------------------------------------

    def rollback(self) -> None:
        """Undo every mutation, newest first, and restore the id counters."""
        undo = self._undo
        while undo:
            func, *args = undo.pop()
            func(*args)
        if self.allocator is not None and self._checkpoint is not None:
            self.allocator.restore(self._checkpoint)

    def release(self) -> None:
        """The change set is committed: drop the undo information."""
        self._undo.clear()

    def detach(self) -> list[tuple[Any, ...]]:
        """The undo information, for a caller that frees it at its own pace once the change set is
        committed (dynamod: 100k entries at once held its loop ~0.5 s at W10); this log is left empty."""
        undo = self._undo[:]
        self._undo.clear()  # only references: the entries live on in ``undo``
        return undo
