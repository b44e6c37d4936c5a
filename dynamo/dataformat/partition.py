"""Partition: a named slice of storage with per-site quotas (SitePartition)."""

from __future__ import annotations

from typing import Any

from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import MAX_PARTITION_NAME, check_int, check_name


class Partition(DataObject):
    """``Partition(name, id)``."""

    __slots__ = ("_name", "id")

    TYPE = "partition"
    ATTRS = ()

    def __init__(self, name: str, id: int = 0):
        self._name = check_name(name, "partition name", MAX_PARTITION_NAME)
        self.id = check_int(id, "partition id")

    @property
    def name(self) -> str:
        return self._name

    @property
    def key(self) -> tuple[Any, ...]:
        return (self._name,)

    def __repr__(self) -> str:
        return f"Partition({self._name!r},{self.id})"
