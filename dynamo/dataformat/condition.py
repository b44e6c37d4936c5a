"""Partition membership conditions: which block replicas belong to a partition.

The original defined partitions in a text file as ``Name: <condition>`` in its policy
language (``Default: blockreplica.owner != None``). This is the part of that language a
partition needs, parsed here without ``eval``: predicates joined by ``and``, each
``<variable> <op> <value>``:

* variables: ``blockreplica.owner`` (group name, None for the null group),
  ``blockreplica.is_custodial``, ``blockreplica.last_update``, ``block.name``,
  ``dataset.name``, ``dataset.status``, ``dataset.data_type``, ``site.name``,
  ``site.status``, ``site.storage_type``;
* operators: ``==``, ``!=`` (strings may hold ``*``/``?`` wildcards, as in the original),
  ``in``, ``notin`` (a list ``[a, b]``), ``<``, ``>``, ``<=``, ``>=``;
* values: ``None``, ``True``, ``False``, integers, quoted or bare strings, lists of those.

A condition is stored and sent as its text; it is parsed when the Partition is built, so a
bad condition fails where it was written.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Callable

from dynamo.errors import ObjectError

_VARIABLES: dict[str, Callable[[Any], Any]] = {
    "blockreplica.owner": lambda r: r.group_name,
    "blockreplica.is_custodial": lambda r: r.is_custodial,
    "blockreplica.last_update": lambda r: r.last_update,
    "block.name": lambda r: r.block_name,
    "dataset.name": lambda r: r.dataset_name,
    "dataset.status": lambda r: r.block.dataset.status.value,
    "dataset.data_type": lambda r: r.block.dataset.data_type.value,
    "site.name": lambda r: r.site_name,
    "site.status": lambda r: r.site.status.value,
    "site.storage_type": lambda r: r.site.storage_type.value,
}

_CLAUSE = re.compile(r"\s*([a-z_.]+)\s+(==|!=|<=|>=|<|>|notin|in)\s+(.+?)\s*$")
_AND = re.compile(r"\s+and\s+")


def _scalar(text: str, where: str) -> Any:
    text = text.strip()
    if text in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[text]
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if not text or any(c in text for c in "[],'\""):
        raise ObjectError(f"{where}: cannot read the value {text!r}")
    return text


def _value(text: str, where: str) -> Any:
    text = text.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise ObjectError(f"{where}: unterminated list {text!r}")
        inner = text[1:-1].strip()
        return [_scalar(item, where) for item in inner.split(",")] if inner else []
    return _scalar(text, where)


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, str) and isinstance(actual, str) and any(c in expected for c in "*?"):
        return fnmatch.fnmatchcase(actual, expected)
    return bool(actual == expected)


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "==":
        return _equal(actual, expected)
    if op == "!=":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, e) for e in expected)
    if op == "notin":
        return not any(_equal(actual, e) for e in expected)
    if actual is None:
        return False
    return bool({"<": actual < expected, ">": actual > expected, "<=": actual <= expected,
                 ">=": actual >= expected}[op])


Predicate = tuple[Callable[[Any], Any], str, Any]


class Condition:
    """A parsed condition; ``match(block_replica)`` tells membership."""

    __slots__ = ("text", "_predicates")

    def __init__(self, text: str):
        if not isinstance(text, str) or not text.strip():
            raise ObjectError(f"partition condition: expected a non-empty text, got {text!r}")
        self.text = text
        self._predicates: list[Predicate] = [self._parse(clause) for clause in _AND.split(text.strip())]

    def _parse(self, clause: str) -> Predicate:
        where = f"partition condition {self.text!r}"
        m = _CLAUSE.fullmatch(clause)
        if m is None:
            raise ObjectError(f"{where}: {clause!r} is not '<variable> <op> <value>'")
        variable, op, raw = m.groups()
        getter = _VARIABLES.get(variable)
        if getter is None:
            raise ObjectError(f"{where}: unknown variable {variable!r} (known: {', '.join(_VARIABLES)})")
        value = _value(raw, where)
        if (op in ("in", "notin")) != isinstance(value, list):
            raise ObjectError(f"{where}: {op} needs {'a list' if op in ('in', 'notin') else 'a single value'}")
        if op in ("<", ">", "<=", ">=") and not isinstance(value, int):
            raise ObjectError(f"{where}: {op} needs an integer")
        return getter, op, value

    def match(self, replica: Any) -> bool:
        return all(_compare(op, getter(replica), value) for getter, op, value in self._predicates)

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)
