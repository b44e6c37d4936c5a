"""Turn a WSGI request into the ``request`` dict modules receive, treating every byte as hostile.

GET parameters come from the query string, POST ones from a form or a JSON object body; both
are merged (a key given twice becomes a list of strings). Bodies are read only up to their
declared length and a limit; anything that does not decode is a :class:`BadRequest`, never an
exception a worker would die of. A JSON body that is not an object (the original's inject
documents may be lists) is kept whole as ``input_data``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from dynamo.web.errors import BadRequest, PayloadTooLarge

Params = dict[str, str | list[str]]


@dataclass(frozen=True)
class Limits:
    max_body: int = 64 << 20
    """Bytes of a POST body (inject documents can be large)."""
    max_query: int = 64 << 10
    """Bytes of a query string."""
    max_params: int = 1000
    """GET and POST parameters together."""
    max_value: int = 64 << 10
    """Characters of one parameter value (and of a key)."""


@dataclass
class Parsed:
    params: Params
    input_data: Any = None
    """A JSON body, decoded (an object's keys also appear in ``params`` when its values are strings)."""


def _add(params: Params, key: str, value: str, limits: Limits) -> None:
    if len(key) > limits.max_value or len(value) > limits.max_value:
        raise BadRequest(f"parameter {key[:100]!r} is longer than {limits.max_value} characters")
    old = params.get(key)
    if old is None:
        if len(params) >= limits.max_params:
            raise BadRequest(f"more than {limits.max_params} parameters")
        params[key] = value
    elif isinstance(old, list):
        old.append(value)
    else:
        params[key] = [old, value]


def _form(text: str, params: Params, limits: Limits) -> None:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=limits.max_params)
    except UnicodeDecodeError:
        raise BadRequest("parameters are not UTF-8") from None
    except ValueError as exc:  # too many fields
        raise BadRequest(f"bad parameters: {exc}") from None
    for key, value in pairs:
        _add(params, key, value, limits)


def _body(environ: dict[str, Any], limits: Limits) -> bytes:
    raw = environ.get("CONTENT_LENGTH") or ""
    if not raw:
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            data = environ["wsgi.input"].read(limits.max_body + 1)
            if len(data) > limits.max_body:
                raise PayloadTooLarge(f"body larger than {limits.max_body} bytes")
            return bytes(data)
        return b""
    if not raw.isdigit():
        raise BadRequest("bad Content-Length")
    length = int(raw)
    if length > limits.max_body:
        raise PayloadTooLarge(f"body larger than {limits.max_body} bytes")
    data = environ["wsgi.input"].read(length)
    if len(data) != length:
        raise BadRequest("body shorter than its Content-Length")
    return bytes(data)


def _json_body(data: bytes, parsed: Parsed, limits: Limits) -> None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None
    parsed.input_data = value
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                _add(parsed.params, key, item, limits)
            elif isinstance(item, list) and all(isinstance(v, str) for v in item):
                for v in item:
                    _add(parsed.params, key, v, limits)


def parse(environ: dict[str, Any], limits: Limits) -> Parsed:
    query = environ.get("QUERY_STRING", "")
    if len(query) > limits.max_query:
        raise BadRequest(f"query string longer than {limits.max_query} bytes")
    parsed = Parsed({})
    # PEP 3333: QUERY_STRING is bytes carried as latin-1 characters
    try:
        query_text = query.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise BadRequest("the query string is not UTF-8") from None
    _form(query_text, parsed.params, limits)
    if environ.get("REQUEST_METHOD") != "POST":
        return parsed
    data = _body(environ, limits)
    if not data:
        return parsed
    kind = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    looks_json = data.lstrip()[:1] in (b"{", b"[")
    if kind == "application/json" or (kind != "application/x-www-form-urlencoded" and looks_json):
        _json_body(data, parsed, limits)
        return parsed
    try:
        text = data.decode("ascii")  # a URL-encoded form is ASCII; its %-escapes are UTF-8
    except UnicodeDecodeError:
        raise BadRequest("the form body is not URL-encoded") from None
    _form(text, parsed.params, limits)
    return parsed
