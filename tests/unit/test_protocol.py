"""Framing and messages, against a corpus of valid and invalid frames."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from dynamo.protocol import framing
from dynamo.protocol.framing import Decoder, ProtocolError
from dynamo.protocol.messages import REQUESTS, STREAM, check


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


VALID = [
    ({"op": "whoami"}, b'{"op":"whoami"}'),
    ({"op": "poll", "id": 7}, b'{"op": "poll", "id": 7}'),
    ({"text": "h\u00e9llo \u2603"}, '{"text": "h\u00e9llo \u2603"}'.encode()),
    ({"nested": {"a": [1, 2, None]}}, b'{"nested":{"a":[1,2,null]}}'),
]

INVALID = [
    (struct.pack(">I", 0), "empty frame"),
    (frame(b"[1, 2]"), "not an object"),
    (frame(b'"just a string"'), "not an object"),
    (frame(b"{not json"), "invalid JSON"),
    (frame(b'{"a": "\xff\xfe"}'), "not UTF-8 text"),
    (struct.pack(">I", 1 << 30), "exceeds the limit"),
]


@pytest.mark.parametrize(("message", "payload"), VALID)
def test_valid_frames_decode_whole_and_byte_by_byte(message: dict[str, object], payload: bytes) -> None:
    data = frame(payload) * 3
    assert list(Decoder().feed(data)) == [message] * 3
    decoder = Decoder()
    out = []
    for i in range(len(data)):
        out.extend(decoder.feed(data[i:i + 1]))
    assert out == [message] * 3 and decoder.pending == 0


@pytest.mark.parametrize(("data", "message"), INVALID)
def test_invalid_frames_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        list(Decoder(max_frame=1 << 20).feed(data))


def test_encode_enforces_the_limit() -> None:
    assert framing.encode({"a": 1}) == frame(b'{"a":1}')
    with pytest.raises(ProtocolError, match="exceeds"):
        framing.encode({"a": "x" * 100}, max_frame=50)


def test_blocking_helpers_over_a_socket_and_a_pipe() -> None:
    a, b = socket.socketpair()
    framing.send(a, {"op": "poll", "id": 1})
    assert framing.receive(b) == {"op": "poll", "id": 1}
    a.sendall(frame(b'{"x":1}')[:5])
    a.close()
    with pytest.raises(ProtocolError, match="in the middle of a frame"):
        framing.receive(b)
    assert framing.receive(b) is None  # nothing more: clean end
    r, w = os.pipe()
    framing.write_fd(w, {"records": [["update", "site", {"name": "S"}]]})
    os.close(w)
    assert framing.read_fd(r) == {"records": [["update", "site", {"name": "S"}]]}
    assert framing.read_fd(r) is None
    os.close(r)


@pytest.mark.parametrize(("message", "error"), [
    ({"op": "launch"}, "unknown request 'launch'"),
    ({"id": 3}, "unknown request None"),
    ({"op": "poll"}, "poll: missing field 'id'"),
    ({"op": "poll", "id": "3"}, "poll: field 'id' has the wrong type"),
    ({"op": "poll", "id": True}, "poll: field 'id' has the wrong type"),
    ({"op": "poll", "id": 3, "extra": 1}, "poll: unknown field 'extra'"),
    ({"op": "run", "script": "", "name": "x.py", "args": [1], "title": "t", "write": False},
     "field .args. has the wrong type or range: item 0: expected a string"),
    ({"op": "run", "script": "", "name": "x.py", "args": [], "title": "t", "write": "no"}, "'write' has the wrong"),
])
def test_requests_are_checked(message: dict[str, object], error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        check(message, REQUESTS)


def test_good_requests_and_stream_frames() -> None:
    assert check({"op": "run", "script": "print(1)", "name": "a.py", "args": ["-v"], "title": "a", "write": True,
                  "async": False, "timeout": 3.5}, REQUESTS) == "run"
    assert check({"op": "stdin", "data": "x\n"}, STREAM) == "stdin"
    with pytest.raises(ProtocolError):
        check({"op": "run"}, STREAM)
