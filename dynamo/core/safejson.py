"""JSON decoding for bytes that come from outside: depth, numbers and strings bounded.

Every frame a client or a child sends and every inject document passes through
:func:`loads`. The standard decoder alone lets three kinds of hostile input
through as exceptions no caller expects, or as values that fail much later:

- deep nesting: the C scanner recurses once per level and raises
  ``RecursionError`` near 1,000 levels, and a value a few hundred levels deep
  that it did accept can still exhaust the stack of whatever walks or
  re-encodes it later. :func:`_depth_ok` measures the nesting *before*
  decoding, without recursion, so the limit is the same wherever it is called;
- numbers: a 400-digit integer decodes, then overflows a float conversion or a
  database binding; ``1e400`` decodes to ``inf`` and ``NaN`` is accepted. Integers
  must fit in 64 signed bits and floats must be finite;
- strings: ``"\\ud800"`` decodes to a ``str`` that cannot be encoded again, and
  ``json.loads(bytes)`` decodes UTF-8-encoded surrogates too ('surrogatepass').
  Bytes are decoded as strict UTF-8 here, and lone surrogate escapes refused.

The checks are arranged so that typical frames pay almost nothing: the depth scan
is skipped when the text holds fewer brackets than the limit, and the exact
integer and surrogate checks run only when a cheap search finds a candidate
(a run of 19 digits, a ``\\ud`` escape). Measured numbers: docs/server.md.

The module imports neither ``json`` nor ``re`` nor ``typing`` unless it must: the ``dynamo``
command decodes its replies here, and those three cost it more than its whole request
(docs/performance.md, "First line"). A text is decoded by the standard library's C scanner
(``_json``, what ``json.JSONDecoder`` itself runs), set up as ``json.JSONDecoder`` sets it up;
anything that does not decode cleanly there is decoded again by ``json.JSONDecoder``, whose
exception says what is wrong.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    import json
    from collections.abc import Callable
    from typing import Any

MAX_DEPTH = 64
INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1

# digits to "0", everything else to a space: a run of 19 digits is then one substring search away
# (a regular expression for the same run takes ten times the decoder's own time on a 16 MiB frame)
_DIGIT_RUNS = bytes.maketrans(bytes(range(256)), bytes(48 if 48 <= b <= 57 else 32 for b in range(256)))
_LONG_RUN = b"0" * 19
_QUOTED = rb'"[^"]*"'  # compiled when needed (rarely): see _depth_ok
# every byte but the brackets and the quote: what the depth scan deletes
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_SQUARE = bytes.maketrans(b"{}", b"[]")


class JSONRefused(ValueError):
    """The text is not JSON, or exceeds one of the limits; the message says which."""


def _refuse_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONRefused(f"number {_short(text)} is out of range")
    return value


def _int64(text: str) -> int:
    # a length check first: int() of thousands of digits is where the cost is
    if len(text.lstrip("-")) > 19 or not INT_MIN <= (value := int(text)) <= INT_MAX:
        raise JSONRefused(f"integer {_short(text)} does not fit in 64 bits")
    return value


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                name = obj.get("name")
                where = f" in the object named {_short(name)!r}" if isinstance(name, str) else ""
                raise JSONRefused(f"duplicate key {_short(key)!r}{where}")
            seen.add(key)
    return obj


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class _Settings:
    """The attributes of a ``json.JSONDecoder(parse_float=_finite_float, parse_constant=_refuse_constant,
    ...)`` that its scanner reads."""

    def __init__(self, parse_int: Callable[[str], int] | None, pairs: Callable[..., Any] | None):
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = pairs
        self.parse_float = _finite_float
        self.parse_int = parse_int or int
        self.parse_constant = _refuse_constant
        self.memo: dict[str, str] = {}

    def decoder(self) -> json.JSONDecoder:
        import json
        return json.JSONDecoder(parse_float=self.parse_float, parse_int=self.parse_int,
                                parse_constant=self.parse_constant, object_pairs_hook=self.object_pairs_hook)


# (exact integers, unique keys) -> the decoder's settings
_SETTINGS = {(ints, unique): _Settings(_int64 if ints else None, _unique_pairs if unique else None)
             for ints in (False, True) for unique in (False, True)}


def _scanners() -> dict[tuple[bool, bool], Callable[[str, int], tuple[Any, int]]]:
    try:
        from _json import make_scanner
    except ImportError:  # not CPython: json.JSONDecoder for every text
        return {}
    make: Any = make_scanner  # its stub wants a JSONDecoder; it reads the attributes of _Settings
    return {key: make(settings) for key, settings in _SETTINGS.items()}


_SCANNERS = _scanners()
_DECODERS: dict[tuple[bool, bool], json.JSONDecoder] = {}
_WHITESPACE = " \t\n\r"


def _decode(text: str, key: tuple[bool, bool]) -> Any:
    """``json.JSONDecoder(...).decode(text)`` with the settings ``key`` names: the C scanner alone when the
    text decodes cleanly (no ``json`` import), else the decoder, for its exception."""
    scan = _SCANNERS.get(key)
    if scan is not None and text[:1] not in _WHITESPACE:
        try:
            value, end = scan(text, 0)
        except JSONRefused:
            raise
        except (StopIteration, ValueError, SystemError, RecursionError, OverflowError):
            pass  # the decoder below says what is wrong (the scanner needs json.decoder to say it)
        else:
            if end == len(text) or not text[end:].strip(_WHITESPACE):
                return value
    decoder = _DECODERS.get(key)
    if decoder is None:
        decoder = _DECODERS[key] = _SETTINGS[key].decoder()
    return decoder.decode(text)


def _depth_ok(raw: bytes, limit: int) -> bool:
    """Whether the nesting of the JSON text ``raw`` stays within ``limit`` levels (brackets in strings ignored).

    UTF-8 never uses ASCII bytes inside a multi-byte character, so the scan works on bytes. Escaped
    backslashes and quotes are removed first (in that order, so that ``\\\\"`` stays a closing quote);
    then only quotes and brackets are kept. Two adjacent quotes hold no bracket between them whichever
    string they belong to, so removing them keeps the brackets and the pairing of the rest; what
    remains quoted holds brackets inside strings (rare) and goes by a regular expression. Each pass
    of ``replace("[]", "")`` then removes one level.
    """
    if len(raw) < 1 << 16 and raw.count(b"[") + raw.count(b"{") <= limit:  # a typical request or reply
        return True
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in structure:
        import re
        structure = re.sub(_QUOTED, b"", structure)
    structure = structure.translate(_SQUARE)
    for passes in range(limit + 1):
        shorter = structure.replace(b"[]", b"")
        if len(shorter) == len(structure):
            # balanced (empty), or unbalanced: then no deeper than the passes so far plus every bracket
            # left open, and within that the decoder can be trusted to say where the text is wrong
            return passes + len(structure) <= limit
        structure = shorter
    return False


def loads(data: bytes | str, max_depth: int = MAX_DEPTH, unique_keys: bool = False) -> Any:
    """Decode one JSON text under the limits above; :class:`JSONRefused` says what is wrong."""
    try:
        if isinstance(data, str):
            text, raw = data, data.encode("utf-8")
        else:
            text, raw = data.decode("utf-8"), data
    except UnicodeError as exc:  # bytes that are not UTF-8, or a str holding a surrogate
        raise JSONRefused(f"not UTF-8 text: {exc}") from exc
    if not _depth_ok(raw, max_depth):
        raise JSONRefused(f"nested more than {max_depth} levels deep (or its brackets do not pair up)")
    exact_ints = _LONG_RUN in raw.translate(_DIGIT_RUNS)
    try:
        value = _decode(text, (exact_ints, unique_keys))
    except JSONRefused:
        raise
    except ValueError as exc:
        import json  # imported already: only json.JSONDecoder raises here
        if isinstance(exc, json.JSONDecodeError):
            raise JSONRefused(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
        raise JSONRefused(f"cannot decode: {type(exc).__name__}: {exc}") from exc
    except (RecursionError, OverflowError) as exc:  # none expected: still a refusal, never a crash
        raise JSONRefused(f"cannot decode: {type(exc).__name__}: {exc}") from exc
    if b"\\" in raw and (b"\\ud" in raw or b"\\uD" in raw):  # one byte is found much faster than three
        _check_strings(value)
    return value


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates (a valid pair was combined into one character by the decoder)."""
    import json
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JSONRefused(f"a string holds a lone surrogate ({exc.object[exc.start:exc.end]!r}): "
                          "not valid Unicode") from exc
