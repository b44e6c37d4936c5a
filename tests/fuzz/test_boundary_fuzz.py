"""Property-based fuzzing of the boundary, without a server: framing, messages, documents.

The one property: hostile input raises the boundary's own error (ProtocolError,
DocumentError) or is accepted as values its users can use — never any other
exception. tests/e2e/test_fuzz_server.py throws the same input at a running dynamod.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo.core.documents import parse_delete, parse_inject
from dynamo.core.ids import IdAllocator
from dynamo.core.inventory import Inventory
from dynamo.errors import DocumentError
from dynamo.protocol import framing
from dynamo.protocol.framing import Decoder, ProtocolError
from dynamo.protocol.messages import REQUESTS, STREAM, check
from tests.fuzz.budget import PROFILE, fuzz
from tests.fuzz.strategies import DOCUMENTS, document_texts, frame, json_texts, requests
from tests.unit.test_documents import seeded

_DB = sqlite3.connect(":memory:")


def _usable(value: Any) -> None:
    """What a handler does with an accepted value must work: bind it, convert it, encode it."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        _DB.execute("SELECT ?", (value,))
    elif isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, list):
        for item in value:
            _usable(item)
    else:
        raise AssertionError(f"unexpected value {value!r}")


def _decode(data: bytes, cut: int) -> list[dict[str, Any]]:
    decoder = Decoder(max_frame=1 << 20)
    return list(decoder.feed(data[:cut])) + list(decoder.feed(data[cut:]))


def test_frames_decode_or_are_protocol_errors() -> None:
    @settings(PROFILE, max_examples=150)
    @given(st.lists(json_texts(), min_size=1, max_size=3), st.integers(0, 1 << 20), st.booleans())
    def run(payloads: list[bytes], cut: int, lie: bool) -> None:
        data = b"".join(frame(p) for p in payloads)
        if lie:  # a header that does not match its payload
            data = data[:2] + bytes([data[2] ^ 1]) + data[3:]
        try:
            messages = _decode(data, cut % (len(data) + 1))
        except ProtocolError:
            return
        for message in messages:
            assert isinstance(message, dict)
            framing.encode(message, 1 << 22)  # what was accepted can be sent on again

    fuzz(run)


def test_requests_are_checked_or_refused() -> None:
    @settings(PROFILE, max_examples=200)
    @given(requests())
    def run(message: dict[str, Any]) -> None:
        for table in (REQUESTS, STREAM):
            try:
                op = check(message, table)
            except ProtocolError:
                continue
            assert op in table
            for key, value in message.items():
                _usable(value)
                if key == "timeout" and value is not None:
                    float(value)

    fuzz(run)


def test_request_frames_end_to_end_in_the_decoder() -> None:
    @settings(PROFILE, max_examples=100)
    @given(requests())
    def run(message: dict[str, Any]) -> None:
        payload = json.dumps(message, ensure_ascii=True, allow_nan=True).encode()
        try:
            (decoded,) = Decoder().feed(frame(payload))
            check(decoded, REQUESTS)
        except ProtocolError:
            pass

    fuzz(run)


def test_documents_parse_or_are_document_errors() -> None:
    inventory = seeded()

    @settings(PROFILE, max_examples=150)
    @given(st.one_of(DOCUMENTS, document_texts()), st.booleans())
    def run(document: Any, delete: bool) -> None:
        try:
            parsed = (parse_delete if delete else parse_inject)(document, inventory, *(() if delete else (0,)))
        except DocumentError:
            return
        json.dumps(parsed.records).encode("utf-8")  # a record that cannot be journaled would fail later

    fuzz(run)


def test_accepted_documents_apply_or_are_refused_whole() -> None:
    """An accepted document applies to a fresh image, or the change set is refused with nothing changed."""
    from dynamo.core.changeset import apply_change_set
    from dynamo.errors import ChangeSetError

    @settings(PROFILE, max_examples=80)
    @given(DOCUMENTS)
    def run(document: Any) -> None:
        inventory = Inventory()
        inventory.ids = IdAllocator()
        try:
            parsed = parse_inject(document, inventory, 0)
        except DocumentError:
            return
        try:
            apply_change_set(inventory, None, parsed.records)
        except ChangeSetError:
            assert not inventory.sites and not inventory.datasets

    fuzz(run)
