"""The reading side of inject/delete documents: limited JSON, and a typed view of one object with its path.

Every value a document gives is checked here for its JSON type *and* its range
before the object model sees it, and every error the object model may still
raise while an object is built (:func:`make`) becomes a :class:`DocumentError`
naming the place: a document can be refused, never crash its reader.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from dynamo.core import safejson
from dynamo.core.codec import json_kind as kind
from dynamo.errors import DocumentError

INT64_MAX = safejson.INT_MAX
_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json(text: str | bytes) -> Any:
    """Parse a document: nesting, numbers and strings bounded, and no key twice in one object (the
    standard decoder keeps the last, so a second ``"site"`` list would silently drop the first)."""
    try:
        return safejson.loads(text, unique_keys=True)
    except safejson.JSONRefused as exc:
        raise DocumentError("", str(exc)) from exc


def make(path: str, factory: Any, *args: Any, **kwargs: Any) -> Any:
    """Construct an object; any value error it raises becomes a DocumentError at ``path``.

    ObjectError is the object model's own; ValueError, OverflowError and TypeError are caught too, so
    that a check the object model adds later (or a value no check foresaw) still names its place.
    """
    try:
        return factory(*args, **kwargs)
    except (ValueError, ArithmeticError, TypeError) as exc:
        raise DocumentError(path, str(exc)) from exc


def checked_string(path: str, value: Any) -> str:
    """``value`` if it is a string that can be stored (valid Unicode), else a DocumentError."""
    if not isinstance(value, str):
        raise DocumentError(path, f"expected a string, got {kind(value)}")
    if _SURROGATE.search(value):
        raise DocumentError(path, "not valid Unicode (a lone surrogate)")
    return value


class Node:
    """One JSON object of a document, with its path (``dataset[0].blocks[1]``) and its allowed keys."""

    def __init__(self, path: str, value: Any, allowed: tuple[str, ...]):
        if not isinstance(value, dict):
            raise DocumentError(path, f"expected an object, got {kind(value)}")
        self.path = path
        self.value = value
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise DocumentError(self.at(unknown[0]), f"unknown key (expected one of: {', '.join(allowed)})")

    def at(self, key: str) -> str:
        # the document itself has the empty path: its keys are named bare ("sites", not ".sites")
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.value

    def name(self, key: str = "name") -> str:
        if key not in self.value:
            raise DocumentError(self.at(key), "missing")
        value = checked_string(self.at(key), self.value[key])
        if not value:
            raise DocumentError(self.at(key), "must not be empty")
        return value

    def string(self, key: str, default: Any) -> Any:
        if key not in self.value:
            return default
        return checked_string(self.at(key), self.value[key])

    def optional_string(self, key: str, default: Any) -> Any:
        if self.value.get(key, "") is None:
            return None
        return self.string(key, default)

    def integer(self, key: str, default: Any, required: bool = False, minimum: int = 0) -> Any:
        if key not in self.value:
            if required:
                raise DocumentError(self.at(key), "missing")
            return default
        return checked_integer(self.at(key), self.value[key], minimum)

    def boolean(self, key: str, default: Any) -> Any:
        value = self.value.get(key, default)
        if key in self.value and not isinstance(value, bool):
            raise DocumentError(self.at(key), f"expected true or false, got {kind(value)}")
        return value

    def items(self, key: str, allowed: tuple[str, ...]) -> Iterator[Node]:
        for path, value in self.elements(key):
            yield Node(path, value, allowed)

    def elements(self, key: str) -> Iterator[tuple[str, Any]]:
        values = self.value.get(key, [])
        if not isinstance(values, list):
            raise DocumentError(self.at(key), f"expected a list, got {kind(values)}")
        for index, value in enumerate(values):
            yield f"{self.at(key)}[{index}]", value


def checked_integer(path: str, value: Any, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """An integer in ``[minimum, maximum]`` (by default what a store column holds), else a DocumentError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DocumentError(path, f"expected an integer, got {kind(value)}")
    if value < minimum:
        raise DocumentError(path, f"must not be {'negative' if minimum == 0 else f'below {minimum}'}, got {value}")
    if value > maximum:
        raise DocumentError(path, f"must not exceed {maximum}, got {value}")
    return value


def top(document: Any, allowed: tuple[str, ...]) -> Node:
    return Node("", document, allowed)


def items(root: Node, key: str, allowed: tuple[str, ...]) -> Iterator[Node]:
    values = root.value.get(key, [])
    if not isinstance(values, list):
        raise DocumentError(key, f"expected a list, got {kind(values)}")
    for index, value in enumerate(values):
        yield Node(f"{key}[{index}]", value, allowed)


class Seen:
    """Duplicate detection: the first place each name was defined."""

    def __init__(self, what: str):
        self.what = what
        self.places: dict[Any, str] = {}

    def check(self, key: Any, path: str, label: str | None = None) -> None:
        first = self.places.get(key)
        if first is not None:
            raise DocumentError(path, f"duplicate {self.what} {label or repr(key)} (also at {first})")
        self.places[key] = path
