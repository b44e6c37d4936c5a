"""The protocol every inventory object follows.

* ``key``: the identifier as a tuple of names (seed: name for Dataset, File,
  Group, Site; name+dataset for Block; name+site for SitePartition;
  block+site for BlockReplica; dataset+site for DatasetReplica).
* Equality is by value: same type, same key, same attribute values. Links
  compare by the names they point to, so a live object equals a detached clone
  of it. The database id is storage bookkeeping and does not take part.
* The hash is the hash of the key, which is consistent with that equality and
  stays stable when non-key attributes change (keys are read-only).
* ``ATTRS`` lists the attributes that ``Inventory.update`` copies onto an
  existing object.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DataObject:
    __slots__ = ()

    TYPE: ClassVar[str]
    ATTRS: ClassVar[tuple[str, ...]]

    @property
    def key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, a) for a in self.ATTRS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, DataObject)
        return self.key == other.key and self._values() == other._values()

    def __hash__(self) -> int:
        return hash((self.TYPE, self.key))

    def copy_from(self, other: DataObject) -> None:
        """Copy the attribute values (never the key, id or links) of ``other``."""
        for attr in self.ATTRS:
            setattr(self, attr, getattr(other, attr))

    def snapshot(self) -> tuple[Any, ...]:
        """The attribute values, for restoring with :meth:`restore`."""
        return tuple(getattr(self, a) for a in self.ATTRS)

    def restore(self, values: tuple[Any, ...]) -> None:
        for attr, value in zip(self.ATTRS, values, strict=True):
            setattr(self, attr, value)

    # --- the original's object API (see docs/migrating.md) ---------------------

    def embed_into(self, inventory: Any, check: bool = False) -> Any:
        """``inventory.update(self)``: the live object (with ``check``, ``(live, changed)``)."""
        if check:
            before = _find_live(inventory, self)
            state = None if before is None else before.snapshot()
            live = inventory.update(self)
            return live, before is None or state != live.snapshot() or live is self
        return inventory.update(self)

    def unlink_from(self, inventory: Any) -> Any:
        """``inventory.delete(self)``; None when there is nothing to delete, as in the original."""
        from dynamo.errors import MissingReference

        try:
            return inventory.delete(self)
        except MissingReference:
            return None

    def unlink(self) -> Any:
        """Delete this (live) object from the application's inventory, with the cascades of
        ``inventory.delete`` (recorded in a write application, unlike the original's, which
        only cut the links in memory)."""
        from dynamo.core import executable  # the application's inventory, set by the runner

        return executable.inventory.delete(self)


def _find_live(inventory: Any, obj: DataObject) -> DataObject | None:
    """The live object with ``obj``'s identifier, or None (for embed_into's ``check``)."""
    finders = {
        "site": lambda: inventory.sites.get(obj.key[0]),
        "group": lambda: inventory.groups.get(obj.key[0]),
        "partition": lambda: inventory.partitions.get(obj.key[0]),
        "dataset": lambda: inventory.datasets.get(obj.key[0]),
    }
    finder = finders.get(obj.TYPE)
    return finder() if finder is not None else None
