"""Hypothesis strategies for hostile input: JSON texts, frames, requests and inject/delete documents.

The values lean towards the edges issue 8 found: integers around and far past
64 bits, non-finite floats, lone surrogates, NUL, deep nesting, duplicate keys,
brackets and quotes inside strings, bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from hypothesis import strategies as st

from dynamo.protocol.messages import REQUESTS, STREAM

EDGE_INTS = st.sampled_from([0, 1, -1, -2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64,
                             10**30, 10**400, -(10**400)])
INTS = st.one_of(st.integers(-5, 100), st.integers(), EDGE_INTS)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from(["\ud800", "\udfff", "\x00", "[", "{", '"', "\\", "a", "#", " ", "\U0001f600"]),
            max_size=30),
    st.sampled_from(["", "T2_US_XYZ", "T3_US_XYZ", "x" * 300, "a\x00b", "\ud800", "whoami", "run"]),
)
LEAVES = st.one_of(st.none(), st.booleans(), INTS, FLOATS, HOSTILE_TEXT)
JSON_VALUES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(HOSTILE_TEXT, inner, max_size=4)),
                           max_leaves=20)

# fragments spliced into otherwise sensible JSON text
FRAGMENTS = st.sampled_from([
    "[" * 100_000, "[" * 70 + "]" * 70, "{\"a\":" * 1000 + "1" + "}" * 1000, "9" * 400, "9" * 5000, "1e400", "-1e999",
    "NaN", "Infinity", "-Infinity", '"\\ud800"', '"\\udc00\\ud800"', '"\\\\ud800"', '"\\u0000"', "\"]]]]\"", ",", ":",
    "}", "]", '"', "\\", "9223372036854775808", "-9223372036854775809", "0.1e-99999",
])


def dumps(value: Any) -> str:
    """JSON text for any value the strategies make: lone surrogates become \\ud800 escapes, NaN stays NaN."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


@st.composite
def spliced(draw: st.DrawFn, base: st.SearchStrategy[Any] = JSON_VALUES) -> str:
    text = dumps(draw(base))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(FRAGMENTS) + text[at:]
    return text


def json_texts(base: st.SearchStrategy[Any] = JSON_VALUES) -> st.SearchStrategy[bytes]:
    """Payloads: valid JSON, JSON with hostile fragments spliced in, and arbitrary bytes."""
    return st.one_of(st.builds(lambda v: dumps(v).encode(), base),
                     st.builds(lambda t: t.encode("utf-8", "surrogatepass"), spliced(base)),
                     st.binary(max_size=200),
                     st.sampled_from([b"\xed\xa0\x80", b'{"a":"\xed\xa0\x80"}', b"\xff\xfe{}", b"{}\x00"]))


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


OPS = sorted(REQUESTS) + sorted(STREAM)
VALID_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "script": st.sampled_from(["print(1)", "pass", "import sys\nprint(sys.argv)"]),
    "name": st.sampled_from(["a.py", "fuzz.py"]), "args": st.lists(st.sampled_from(["-v", "x"]), max_size=3),
    "title": st.sampled_from(["fuzz", "t"]), "write": st.booleans(), "async": st.booleans(),
    "timeout": st.one_of(st.none(), st.floats(0, 30)), "tty": st.booleans(), "id": st.integers(1, 1000),
    "all": st.booleans(), "delete": st.booleans(), "size": st.integers(0, 1000),
    "action": st.sampled_from(["list", "delete"]), "user": st.none(), "data": st.text(max_size=10),
    "text": st.text(max_size=10),
}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request or stream frame: a known op with its fields, each either plausible or hostile."""
    op = draw(st.one_of(st.sampled_from(OPS), HOSTILE_TEXT, JSON_VALUES))
    message: dict[str, Any] = {"op": op}
    spec = (REQUESTS.get(op) or STREAM.get(op) or {}) if isinstance(op, str) else {}
    for key in spec:
        choice = draw(st.integers(0, 5))
        if choice == 0:
            continue
        message[key] = draw(LEAVES if choice == 1 else JSON_VALUES if choice == 2 else
                            VALID_VALUES.get(key, LEAVES))
    if draw(st.integers(0, 9)) == 0:
        message[draw(HOSTILE_TEXT)] = draw(LEAVES)
    return message


# --- documents ----------------------------------------------------------------------------------

NAMES = st.one_of(st.sampled_from(["T2_US_XYZ", "T3_US_XYZ", "T2_FUZZ", "G", "P", "d/a/b", "b1", "/f1", "/f2"]),
                  HOSTILE_TEXT)
NUMBERS = st.one_of(st.integers(-2, 10), INTS, FLOATS, st.booleans(), st.none())
SCALARS = st.one_of(NAMES, NUMBERS)


def _obj(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=optional)


FILES = _obj({"name": NAMES}, {"size": NUMBERS, "adler32": SCALARS})
BLOCKS = _obj({"name": NAMES}, {"is_open": SCALARS, "last_update": NUMBERS, "num_files": NUMBERS, "size": NUMBERS,
                                "files": st.lists(FILES, max_size=3)})
DOCUMENT_PARTS: dict[str, st.SearchStrategy[Any]] = {
    "group": st.lists(_obj({"name": NAMES}, {"olevel": st.one_of(st.sampled_from(["Block", "Dataset"]), SCALARS)}),
                      max_size=2),
    "site": st.lists(_obj({"name": NAMES}, {"host": SCALARS, "status": st.one_of(st.just("ready"), SCALARS)}),
                     max_size=2),
    "partition": st.lists(_obj({"name": NAMES}, {"quota": st.dictionaries(NAMES, NUMBERS, max_size=2)}), max_size=2),
    "dataset": st.lists(_obj({"name": NAMES}, {"status": SCALARS, "last_update": NUMBERS,
                                              "software_version": st.one_of(SCALARS, st.lists(SCALARS, max_size=2)),
                                              "blocks": st.lists(BLOCKS, max_size=2)}), max_size=2),
    "datasetreplica": st.lists(_obj({"dataset": NAMES, "site": NAMES},
                                    {"group": SCALARS, "growing": SCALARS,
                                     "blockreplicas": st.lists(_obj({"block": NAMES},
                                                                    {"files": st.lists(SCALARS, max_size=2)}),
                                                               max_size=2)}), max_size=2),
}
DOCUMENTS = st.one_of(st.fixed_dictionaries({}, optional=DOCUMENT_PARTS), JSON_VALUES)


@st.composite
def document_texts(draw: st.DrawFn) -> str:
    """A document as text: plain, with a fragment spliced in, or with a key given twice."""
    how = draw(st.integers(0, 3))
    if how == 0:
        return draw(spliced(DOCUMENTS))
    document = draw(DOCUMENTS)
    text = dumps(document)
    if how == 1 and isinstance(document, dict) and document:
        key = draw(st.sampled_from(sorted(document)))
        return text[:-1] + f", {json.dumps(key)}: {dumps(document[key])}}}"
    return text
