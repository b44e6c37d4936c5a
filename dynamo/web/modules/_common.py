"""Helpers the built-in modules share: one-valued parameters, wildcards, yes/no, paging, times."""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from dynamo.web.errors import IllFormedRequest, MissingParameter

T = TypeVar("T")

MAX_PAGE = 1_000_000


def one(request: dict[str, Any], name: str, default: str | None = None) -> str | None:
    """The single value of ``name`` (a list, from a repeated key, is a bad request)."""
    value = request.get(name)
    if value is None:
        return default
    if isinstance(value, list):
        raise IllFormedRequest(name, ",".join(value), "give it once")
    return str(value)


def required(request: dict[str, Any], name: str) -> str:
    value = one(request, name)
    if value is None or value == "":
        raise MissingParameter(name)
    return value


def many(request: dict[str, Any], name: str) -> list[str] | None:
    """Values given as a list, repeated, or comma-separated (as the original's ``sites``)."""
    value = request.get(name)
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def matcher(pattern: str) -> Callable[[str], bool]:
    """The original's wildcards: a pattern with ``*`` is a shell glob, else an exact name."""
    if "*" in pattern or "?" in pattern:
        regex = re.compile(fnmatch.translate(pattern))
        return lambda name: regex.match(name) is not None
    return lambda name: name == pattern


def select(names: Iterable[str | None], pattern: str) -> list[str]:
    """Names (sorted, None skipped) that match ``pattern``."""
    match = matcher(pattern)
    return sorted(n for n in names if n is not None and match(n))


def yesno(request: dict[str, Any], name: str, default: bool = False) -> bool:
    value = one(request, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("y", "yes", "true", "1"):
        return True
    if lowered in ("n", "no", "false", "0"):
        return False
    raise IllFormedRequest(name, value, allowed=("y", "n"))


def integer(request: dict[str, Any], name: str, default: int | None = None, low: int = 0,
            high: int = 1 << 62) -> int | None:
    value = one(request, name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise IllFormedRequest(name, value, "expected an integer") from None
    if not low <= number <= high:
        raise IllFormedRequest(name, value, f"expected {low} to {high}")
    return number


def paging(request: dict[str, Any]) -> tuple[int, int | None]:
    """``offset`` and ``limit`` (None: no limit), checked before anything is listed."""
    offset = integer(request, "offset", 0) or 0
    limit = integer(request, "limit", None, 0, MAX_PAGE)
    return offset, limit


def page(items: Iterable[T], offset: int, limit: int | None) -> Iterator[T]:
    stop = None if limit is None else offset + limit
    return itertools.islice(items, offset, stop)


def crt(value: bool) -> str:
    return "y" if value else "n"
