"""Validation helpers shared by the object classes.

Objects validate their values when an application constructs them, so a bad
value fails in the application that made it, with a message that says which
attribute. The store loads objects through the unchecked ``_make`` factories
instead: values read back from our own tables were validated on the way in.
"""

from __future__ import annotations

import re
from enum import StrEnum
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from dynamo.dataformat._base import DataObject
from dynamo.errors import ObjectError

# Longest accepted names; the store's columns are sized from these.
MAX_SITE_NAME = 64
MAX_GROUP_NAME = 64
MAX_PARTITION_NAME = 64
MAX_DATASET_NAME = 512
MAX_BLOCK_NAME = 128
MAX_LFN = 1024
MAX_HOST = 255
MAX_BACKEND = 1024
MAX_SOFTWARE_VERSION = 128

E = TypeVar("E", bound=StrEnum)

# whitespace or a control character: one C-level search instead of a per-character loop
_NOT_IN_NAMES = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def check_name(value: object, what: str, limit: int) -> str:
    """A name: a non-empty string without whitespace or control characters."""
    if not isinstance(value, str):
        raise ObjectError(f"{what}: expected a string, got {type(value).__name__}")
    if not value:
        raise ObjectError(f"{what}: must not be empty")
    if len(value) > limit:
        raise ObjectError(f"{what}: longer than {limit} characters")
    if _NOT_IN_NAMES.search(value) is not None or not value.isprintable():
        raise ObjectError(f"{what}: {value!r} contains whitespace or control characters")
    return value


def check_text(value: object, what: str, limit: int) -> str:
    """Free text (host, backend): a string without control characters."""
    if not isinstance(value, str):
        raise ObjectError(f"{what}: expected a string, got {type(value).__name__}")
    if len(value) > limit:
        raise ObjectError(f"{what}: longer than {limit} characters")
    if not value.isprintable():
        raise ObjectError(f"{what}: {value!r} contains control characters")
    return value


def check_int(value: object, what: str, minimum: int = 0) -> int:
    """An integer (not a bool) no smaller than ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ObjectError(f"{what}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ObjectError(f"{what}: must be >= {minimum}, got {value}")
    if value >= 2**63:
        raise ObjectError(f"{what}: {value} does not fit in 64 bits")
    return value


def check_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ObjectError(f"{what}: expected true or false, got {type(value).__name__}")
    return value


def check_enum(enum: type[E], value: object, what: str) -> E:
    """Coerce a member or its string value into the enum."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        try:
            return enum(value)
        except ValueError:
            pass
    allowed = ", ".join(repr(m.value) for m in enum)
    raise ObjectError(f"{what}: {value!r} is not one of {allowed}")


def check_dataset_name(value: object, what: str) -> str:
    """A dataset name: a name without '#', which separates dataset and block in 'dataset#block'."""
    return _without_hash(check_name(value, what, MAX_DATASET_NAME), what)


def check_block_name(value: object, what: str) -> str:
    """A block name: a name without '#' (see :func:`check_dataset_name`)."""
    return _without_hash(check_name(value, what, MAX_BLOCK_NAME), what)


def _without_hash(value: str, what: str) -> str:
    if "#" in value:
        raise ObjectError(f"{what}: {value!r} must not contain '#' (it separates dataset and block in "
                          "'dataset#block' references)")
    return value


def check_link(value: object, what: str, type_name: str, nullable: bool = False) -> None:
    """A link given to a constructor in place of a name: a live object of the right type or
    (``nullable``) None. Anything else would travel on until the inventory tripped over it with
    an AttributeError or TypeError naming nothing. Constructors check a name themselves first (the
    common case, kept to one call)."""
    if not (isinstance(value, DataObject) and value.TYPE == type_name) and not (nullable and value is None):
        expected = "a string, None" if nullable else "a string"
        raise ObjectError(f"{what}: expected {expected} or a {type_name.capitalize()}, got {type(value).__name__}")


def split_block_full_name(full_name: str) -> tuple[str, str]:
    """``'dataset#block'`` -> ``('dataset', 'block')``.

    Neither name may contain '#', so a reference holds exactly one.
    """
    dataset, sep, block = full_name.partition("#")
    if not sep or not dataset or not block or "#" in block:
        raise ObjectError(f"block reference {full_name!r}: expected 'dataset#block'")
    return dataset, block


class EnumAttribute(property, Generic[E]):
    """An enum-valued attribute over a private slot: assigning a member or its value string
    stores the member, anything else raises ObjectError naming the attribute.

    Applications naturally write ``site.status = 'waitroom'``; stored as the plain string it
    would break ``repr`` and ``encode`` later, far from the assignment. A ``property`` subclass
    with a C-level getter (``attrgetter``) runs no Python frame on a read (~30 ns against ~10 ns
    for a plain slot); the unchecked ``_make`` factories and the store's loader set the private
    slot directly. Only Site, Group and Dataset have enums; the objects that exist by millions
    (Block, File, BlockReplica) have none and keep plain slots.
    """

    def __init__(self, slot: str, enum: type[E], what: str):
        def set_value(obj: Any, value: Any) -> None:
            setattr(obj, slot, check_enum(enum, value, what))

        super().__init__(attrgetter(slot), set_value)

    if TYPE_CHECKING:
        @overload
        def __get__(self, instance: None, owner: type | None = None, /) -> EnumAttribute[E]: ...

        @overload
        def __get__(self, instance: object, owner: type | None = None, /) -> E: ...

        def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...


def enum_name(enum: type[E], arg: Any) -> Any:
    """The original's ``status_name``-style helpers: a member (or its 1-based index, the
    original's integer constants) -> its value string; anything else is returned unchanged."""
    if isinstance(arg, enum):
        return arg.value
    if isinstance(arg, int) and not isinstance(arg, bool) and 1 <= arg <= len(enum):
        return list(enum)[arg - 1].value
    return arg


def enum_val(enum: type[E], arg: Any) -> Any:
    """The original's ``status_val``-style helpers: a value string (any case) or a 1-based index
    -> the member; anything else is returned unchanged."""
    if isinstance(arg, enum):
        return arg
    if isinstance(arg, str):
        for member in enum:
            if member.value.lower() == arg.lower():
                return member
        return arg
    if isinstance(arg, int) and not isinstance(arg, bool) and 1 <= arg <= len(enum):
        return list(enum)[arg - 1]
    return arg
