"""Messages: what clients may send, checked before anything acts on them.

A connection carries one request (the first frame, with an ``op``), then, for
some requests, stream frames (console input, inject data). Replies carry a
``type``: ``error``, ``result``, ``accepted``, ``queued``, ``started``,
``out``, ``err``, ``prompt``, ``exit``.

Every field of every request is declared once below with its type *and* its
range (:class:`Int`, :class:`Number`, :class:`Text`, :class:`Flag`,
:class:`TextList`): a handler only ever sees values it can use as they are —
an id SQLite can bind, a timeout ``float()`` can convert, a string that
encodes to UTF-8 and holds no NUL where the value names something.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from dynamo.protocol.framing import ProtocolError

INT64_MAX = (1 << 63) - 1
MAX_TIMEOUT = 10 * 365 * 86400.0   # seconds: more is no deadline at all (0 or null says that)
MAX_ARGS = 1024
MAX_ARG = 128 << 10                # characters per argument (Linux's MAX_ARG_STRLEN)
MAX_LIST = 10_000                  # applications in one list answer
MAX_NAME = 255                     # script names, titles, user names (the handlers narrow further)

_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL_OR_SURROGATE = re.compile("[\x00\ud800-\udfff]")


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


@dataclass(frozen=True)
class Field:
    """One field: whether it must be present and whether null is accepted; subclasses check the value."""

    required: bool = False
    nullable: bool = False

    def check(self, value: Any) -> str | None:
        """What is wrong with a non-null ``value``, or None."""
        raise NotImplementedError


@dataclass(frozen=True)
class Flag(Field):
    def check(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "expected true or false"


@dataclass(frozen=True)
class Int(Field):
    low: int = 0
    high: int = INT64_MAX

    def check(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected an integer"
        if not self.low <= value <= self.high:
            return f"expected an integer from {self.low} to {self.high}"
        return None


@dataclass(frozen=True)
class Number(Field):
    low: float = 0.0
    high: float = math.inf

    def check(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "expected a number"
        # compared as they are: int against float is exact in Python (no float() to overflow), and NaN fails
        if not self.low <= value <= self.high:
            return f"expected a number from {self.low:g} to {self.high:g}"
        return None


@dataclass(frozen=True)
class Text(Field):
    max_length: int | None = None  # None: only the frame's size bounds it
    nul: bool = False              # may hold NUL (data, not names)
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return "expected a string"
        if self.max_length is not None and len(value) > self.max_length:
            return f"longer than {self.max_length} characters"
        if (_SURROGATE if self.nul else _NUL_OR_SURROGATE).search(value):
            return "holds NUL or a lone surrogate" if not self.nul else "holds a lone surrogate"
        if self.choices and value not in self.choices:
            return f"expected one of: {', '.join(self.choices)}"
        return None


@dataclass(frozen=True)
class TextList(Field):
    item: Text = Text()
    max_items: int = MAX_ARGS

    def check(self, value: Any) -> str | None:
        if not isinstance(value, list):
            return "expected a list of strings"
        if len(value) > self.max_items:
            return f"more than {self.max_items} items"
        for index, item in enumerate(value):
            problem = self.item.check(item)
            if problem:
                return f"item {index}: {problem}"
        return None


NAME = Text(max_length=MAX_NAME)
APP_ID = Int(required=True, low=1)

REQUESTS: dict[str, dict[str, Field]] = {
    "run": {"script": Text(required=True), "name": replace(NAME, required=True),
            "args": TextList(required=True, item=Text(max_length=MAX_ARG)),
            "title": replace(NAME, required=True), "write": Flag(required=True), "async": Flag(),
            "timeout": Number(nullable=True, high=MAX_TIMEOUT)},
    "shell": {"tty": Flag()},
    "poll": {"id": APP_ID},
    "kill": {"id": APP_ID},
    "list": {"all": Flag(), "limit": Int(low=1, high=MAX_LIST), "offset": Int()},
    "inject": {"delete": Flag(required=True), "size": Int(required=True)},
    "exec_auth": {"action": Text(required=True, choices=("list", "add", "delete")),
                  "title": Text(nullable=True, max_length=MAX_NAME), "script": Text(nullable=True),
                  "user": Text(nullable=True, max_length=MAX_NAME)},
    "whoami": {},
}

STREAM: dict[str, dict[str, Field]] = {
    "stdin": {"data": Text(required=True, nul=True)},
    "eof": {},
    "interrupt": {},
    "data": {"text": Text(required=True, nul=True)},
    "end": {},
}


def check(message: dict[str, Any], table: dict[str, dict[str, Field]]) -> str:
    """Validate a message against ``table``; returns its op."""
    op = message.get("op")
    spec = table.get(op) if isinstance(op, str) else None
    if spec is None:
        raise ProtocolError(f"unknown request {_show(op)} (expected one of: {', '.join(table)})")
    for key, value in message.items():
        if key == "op":
            continue
        field = spec.get(key)
        if field is None:
            raise ProtocolError(f"{op}: unknown field {_show(key)}")
        if value is None and field.nullable:
            continue
        problem = "expected a value, not null" if value is None else field.check(value)
        if problem:
            raise ProtocolError(f"{op}: field {key!r} has the wrong type or range: {problem}")
    for key, field in spec.items():
        if field.required and key not in message:
            raise ProtocolError(f"{op}: missing field {key!r}")
    return str(op)
