"""Group: an owner of replicas (a physics group, an operations team)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from dynamo.dataformat._base import DataObject
from dynamo.dataformat._common import (
    MAX_GROUP_NAME,
    EnumAttribute,
    check_enum,
    check_int,
    check_name,
    enum_name,
    enum_val,
)


class OwnershipLevel(StrEnum):
    """Whether a group owns whole dataset replicas or individual block replicas."""

    DATASET = "Dataset"
    BLOCK = "Block"


class Group(DataObject):
    """``Group(name, olevel, id)``. The null group (name None, id 0) means "no owner";
    every inventory holds it under ``inventory.groups[None]`` and it cannot be
    changed or deleted."""

    __slots__ = ("_name", "_olevel", "id")

    TYPE = "group"
    ATTRS = ("olevel",)

    # assigning a value string stores the member (see EnumAttribute)
    olevel = EnumAttribute("_olevel", OwnershipLevel, "group olevel")

    OL_DATASET, OL_BLOCK = OwnershipLevel.DATASET, OwnershipLevel.BLOCK
    null_group: ClassVar[Group]
    """The original's ``Group.null_group``: a null group equal to every inventory's
    ``groups[None]`` (each inventory holds its own live one)."""

    @staticmethod
    def olevel_name(arg: Any) -> Any:
        return enum_name(OwnershipLevel, arg)

    @staticmethod
    def olevel_val(arg: Any) -> Any:
        return enum_val(OwnershipLevel, arg)

    def __init__(self, name: str | None, olevel: OwnershipLevel | str = OwnershipLevel.BLOCK, id: int = 0):
        self._name = None if name is None else check_name(name, "group name", MAX_GROUP_NAME)
        self._olevel = check_enum(OwnershipLevel, olevel, "group olevel")
        self.id = check_int(id, "group id")

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def key(self) -> tuple[Any, ...]:
        return (self._name,)

    @property
    def is_null(self) -> bool:
        return self._name is None

    def __repr__(self) -> str:
        return f"Group({self._name!r},'{self._olevel.value}',{self.id})"


def null_group() -> Group:
    """A fresh null group object (each inventory owns its own)."""
    return Group(None)


Group.null_group = null_group()
