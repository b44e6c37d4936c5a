"""Messages: what clients may send, checked before anything acts on them.

A connection carries one request (the first frame, with an ``op``), then, for
some requests, stream frames (console input, inject data). Replies carry a
``type``: ``error``, ``result``, ``accepted``, ``queued``, ``started``,
``out``, ``err``, ``prompt``, ``exit``.
"""

from __future__ import annotations

from typing import Any

from dynamo.protocol.framing import ProtocolError

# op -> {field: (accepted JSON types, required)}
REQUESTS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "run": {"script": ((str,), True), "name": ((str,), True), "args": ((list,), True), "title": ((str,), True),
            "write": ((bool,), True), "async": ((bool,), False), "timeout": ((int, float, type(None)), False)},
    "shell": {"tty": ((bool,), False)},
    "poll": {"id": ((int,), True)},
    "kill": {"id": ((int,), True)},
    "list": {"all": ((bool,), False)},
    "inject": {"delete": ((bool,), True), "size": ((int,), True)},
    "exec_auth": {"action": ((str,), True), "title": ((str, type(None)), False), "script": ((str, type(None)), False),
                  "user": ((str, type(None)), False)},
    "whoami": {},
}

STREAM: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "stdin": {"data": ((str,), True)},
    "eof": {},
    "interrupt": {},
    "data": {"text": ((str,), True)},
    "end": {},
}


def check(message: dict[str, Any], table: dict[str, dict[str, tuple[tuple[type, ...], bool]]]) -> str:
    """Validate a message against ``table``; returns its op."""
    op = message.get("op")
    spec = table.get(op) if isinstance(op, str) else None
    if spec is None:
        raise ProtocolError(f"unknown request {op!r} (expected one of: {', '.join(table)})")
    for key, value in message.items():
        if key == "op":
            continue
        if key not in spec:
            raise ProtocolError(f"{op}: unknown field {key!r}")
        types, _ = spec[key]
        if isinstance(value, bool) and bool not in types:
            raise ProtocolError(f"{op}: field {key!r} has the wrong type")
        if not isinstance(value, types):
            raise ProtocolError(f"{op}: field {key!r} has the wrong type")
    for key, (_, required) in spec.items():
        if required and key not in message:
            raise ProtocolError(f"{op}: missing field {key!r}")
    if op == "run" and not all(isinstance(a, str) for a in message["args"]):
        raise ProtocolError("run: args must be strings")
    return str(op)
