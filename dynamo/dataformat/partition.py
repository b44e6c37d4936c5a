"""Partition: a named slice of storage with per-site quotas (SitePartition)."""

from __future__ import annotations

from typing import Any

from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import MAX_PARTITION_NAME, check_int, check_link, check_name
from dynamo.dataformat.condition import Condition


class Partition(DataObject):
    """``Partition(name, id)``, or the original's ``Partition(name, condition, id)``.

    ``condition`` (text, see :mod:`condition`) says which block replicas belong to the
    partition; None means every block replica. ``parent`` (a Partition inside an inventory, a
    name outside, or None) makes this a subpartition; the inventory keeps the parent's
    ``subpartitions`` tuple (None when it has none, as in the original). A superpartition
    contains what any of its subpartitions contains.
    """

    __slots__ = ("_name", "id", "_condition", "_parent", "_subpartitions")

    TYPE = "partition"
    ATTRS = ("condition", "parent")

    def __init__(self, name: str, id: Any = 0, pid: int = 0, *, condition: str | None = None,
                 parent: Partition | str | None = None):
        self._name = check_name(name, "partition name", MAX_PARTITION_NAME)
        if id is None or isinstance(id, (str, Condition)):  # the original's (name, condition, pid)
            condition, id = (id.text if isinstance(id, Condition) else id), pid
        self.id = check_int(id, "partition id")
        self._condition: Condition | None = None
        self.condition = condition
        self._parent: Partition | str | None = None
        self.parent = parent
        self._subpartitions: tuple[Partition, ...] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def key(self) -> tuple[Any, ...]:
        return (self._name,)

    @property
    def condition(self) -> str | None:
        return None if self._condition is None else self._condition.text

    @condition.setter
    def condition(self, text: str | None) -> None:
        self._condition = None if text is None else Condition(text)

    @property
    def parent(self) -> Partition | str | None:
        return self._parent

    @parent.setter
    def parent(self, value: Partition | str | None) -> None:
        if isinstance(value, str):
            check_name(value, "partition parent", MAX_PARTITION_NAME)
        elif value is not None:
            check_link(value, "partition parent", "partition")
        self._parent = value

    @property
    def parent_name(self) -> str | None:
        p = self._parent
        return p if p is None or isinstance(p, str) else p.name

    @property
    def subpartitions(self) -> tuple[Partition, ...] | None:
        return self._subpartitions

    def _values(self) -> tuple[Any, ...]:
        return (self.condition, self.parent_name)

    def contains(self, replica: Any) -> bool:
        """Whether the block replica belongs to this partition."""
        if self._subpartitions is not None:
            return any(p.contains(replica) for p in self._subpartitions)
        return self._condition is None or self._condition.match(replica)

    def __repr__(self) -> str:
        return f"Partition({self._name!r},{self.id})"
