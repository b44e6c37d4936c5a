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


# --- hostile frames and requests (issue 8): each is refused with ProtocolError, never another exception -----

HOSTILE_FRAMES = [
    (b"[" * 100_000 + b"]" * 100_000, "nested more than 64 levels"),       # RecursionError before
    (b'{"a":' * 1000 + b"1" + b"}" * 1000, "nested more than 64 levels"),
    (b"[" * 100_000, "nested more than 64 levels"),
    (b'{"op":"poll","id":' + b"9" * 400 + b"}", "does not fit in 64 bits"),  # an int that overflows later
    (b'{"op":"poll","id":' + b"9" * 5000 + b"}", "does not fit in 64 bits"),  # past Python's int() limit
    (b'{"op":"poll","id":9223372036854775808}', "does not fit in 64 bits"),
    (b'{"op":"run","timeout":1e400}', "out of range"),
    (b'{"op":"run","timeout":NaN}', "NaN is not a number"),
    (b'{"op":"run","timeout":-Infinity}', "Infinity is not a number"),
    (b'{"op":"stdin","data":"\\ud800"}', "lone surrogate"),                 # UnicodeEncodeError later
    (b'{"op":"stdin","data":"x\\udfffy"}', "lone surrogate"),
    (b'{"op":"stdin","data":"\xed\xa0\x80"}', "not UTF-8"),                  # an encoded surrogate
    (b'\xff\xfe{\x00"\x00}\x00', "not UTF-8"),                               # UTF-16 is not UTF-8
]


@pytest.mark.parametrize(("payload", "message"), HOSTILE_FRAMES, ids=lambda v: repr(v)[:30])
def test_hostile_frames_are_protocol_errors(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        list(Decoder().feed(frame(payload)))
    r, w = os.pipe()
    try:
        os.write(w, frame(payload)[:60000])  # a pipe's buffer holds the head of the deep ones
        os.close(w)
        w = -1
        if len(payload) < 60000:
            with pytest.raises(ProtocolError, match=message):
                framing.read_fd(r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_what_the_limits_let_through() -> None:
    nested = b"[" * 62 + b"{}" + b"]" * 62                     # 64 levels with the frame: the limit itself
    assert list(Decoder().feed(frame(b'{"a":' + nested + b"}")))
    brackets_in_strings = b'{"a":"' + b"[" * 1000 + b'\\"' + b"{" * 1000 + b'"}'
    assert list(Decoder().feed(frame(brackets_in_strings))) == [{"a": "[" * 1000 + '"' + "{" * 1000}]
    big = b'{"a":[9223372036854775807,-9223372036854775808,"' + b"7" * 40 + b'"]}'
    assert list(Decoder().feed(frame(big))) == [{"a": [2**63 - 1, -2**63, "7" * 40]}]
    pair = b'{"a":"\\ud83d\\ude00 \\\\ud800"}'            # a valid pair, and an escaped backslash
    assert list(Decoder().feed(frame(pair))) == [{"a": "\U0001f600 \\ud800"}]


def test_hiding_depth_behind_quotes_does_not_work() -> None:
    # brackets in strings are skipped, and a quote escaped inside a string does not end it
    sneaky = b'{"a":"\\\\","b":' + b'["\\"]",' * 100 + b"1" + b"]" * 100 + b"}"
    with pytest.raises(ProtocolError, match="nested more than"):
        list(Decoder().feed(frame(sneaky)))


def test_encode_refuses_what_it_cannot_send() -> None:
    with pytest.raises(ProtocolError, match="not valid Unicode"):
        framing.encode({"out": "\ud800"})
    with pytest.raises(framing.FrameTooLarge):
        framing.encode({"a": "x" * 100}, max_frame=50)


RUN = {"op": "run", "script": "print(1)", "name": "a.py", "args": [], "title": "t", "write": False}


@pytest.mark.parametrize(("message", "error"), [
    ({"op": "poll", "id": 10**30}, "'id' has the wrong type or range"),            # overflowed SQLite before
    ({"op": "kill", "id": 10**30}, "'id' has the wrong type or range"),
    ({"op": "poll", "id": 0}, "'id' has the wrong type or range"),
    ({"op": "kill", "id": -1}, "'id' has the wrong type or range"),
    ({**RUN, "timeout": 10**400}, "'timeout' has the wrong type or range"),         # OverflowError before
    ({**RUN, "timeout": float("inf")}, "'timeout' has the wrong type or range"),
    ({**RUN, "timeout": float("nan")}, "'timeout' has the wrong type or range"),
    ({**RUN, "timeout": -1}, "'timeout' has the wrong type or range"),
    ({**RUN, "name": "a\ud800.py"}, "'name' has the wrong type or range: holds NUL or a lone surrogate"),
    ({**RUN, "name": "a\x00.py"}, "'name' has the wrong type or range: holds NUL"),
    ({**RUN, "script": "print('\ud800')"}, "'script' has the wrong type or range"),
    ({**RUN, "title": "t" * 256}, "'title' has the wrong type or range: longer than 255"),
    ({**RUN, "args": ["x"] * 1025}, "'args' has the wrong type or range: more than 1024 items"),
    ({**RUN, "args": ["x" * (128 << 10 | 1)]}, "'args' has the wrong type or range: item 0: longer than"),
    ({**RUN, "args": ["\x00"]}, "'args' has the wrong type or range: item 0: holds NUL"),
    ({**RUN, "write": None}, "'write' has the wrong type or range: expected a value, not null"),
    ({"op": "inject", "delete": False, "size": 2**64}, "'size' has the wrong type or range"),
    ({"op": "inject", "delete": False, "size": -5}, "'size' has the wrong type or range"),
    ({"op": "exec_auth", "action": "grant"}, "'action' has the wrong type or range: expected one of: list, add"),
    ({"op": "exec_auth", "action": "list", "user": "a\x00b"}, "'user' has the wrong type or range"),
    ({"op": "stdin", "data": "\ud800"}, "'data' has the wrong type or range: holds a lone surrogate"),
    ({"op": ["x"] * 10_000}, r"unknown request \['x', 'x'"),                       # not echoed whole
    ({"op": "whoami", "k" * 10_000: 1}, r"whoami: unknown field 'kkkk\S*\.\.\.$"),
])
def test_every_field_is_checked_for_type_and_range(message: dict[str, object], error: str) -> None:
    table = STREAM if message.get("op") == "stdin" else REQUESTS
    with pytest.raises(ProtocolError, match=error):
        check(message, table)


def test_the_ranges_let_legitimate_requests_through() -> None:
    assert check({"op": "poll", "id": 2**63 - 1}, REQUESTS) == "poll"
    assert check({**RUN, "timeout": None}, REQUESTS) == "run"
    assert check({**RUN, "timeout": 0}, REQUESTS) == "run"
    assert check({**RUN, "args": ["-v"] * 1024, "name": "ü.py"}, REQUESTS) == "run"
    assert check({"op": "stdin", "data": "a\x00b \U0001f600"}, STREAM) == "stdin"
    assert check({"op": "exec_auth", "action": "add", "title": "t", "script": "x", "user": None}, REQUESTS)


def test_a_child_splits_only_frames_that_are_too_large() -> None:
    from dynamo.apps.recorder import PipeRecorder
    from dynamo.dataformat import Site

    r, w = os.pipe()
    try:
        recorder = PipeRecorder(w, max_frame=200)
        for i in range(4):  # four records do not fit in one 200-byte frame: they go in several
            recorder.record("update", Site(f"S{i}", host="h"))
        recorder.flush()
        os.set_blocking(r, False)
        frames = list(Decoder().feed(os.read(r, 1 << 16)))
        assert len(frames) > 1 and sum(len(f["records"]) for f in frames) == 4
        # a string that is not valid Unicode: a clear ProtocolError (before: UnicodeEncodeError), and no
        # pointless splitting of the batch down to single records first
        site = Site("S9")
        site.host = "\ud800"  # a plain attribute: an application may assign it anything
        recorder.record("update", site)
        with pytest.raises(ProtocolError, match="not valid Unicode"):
            recorder.flush()
        with pytest.raises(BlockingIOError):
            os.read(r, 1 << 16)
    finally:
        os.close(r)
        os.close(w)
