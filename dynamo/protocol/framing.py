"""Frames: a 4-byte big-endian length, then that many bytes of UTF-8 JSON (an object).

One module for both ends (dynamod, the command-line clients, the pipes between
dynamod and its children). Every frame is size-limited; a zero-length frame,
an oversized one, bytes that are not UTF-8 JSON, or JSON that is not an object
raise :class:`ProtocolError`, and the connection is dropped.

Payloads are decoded by :func:`dynamo.core.safejson.loads`: nesting, integers
(64 bits), floats (finite) and strings (no lone surrogates) are bounded before
anything acts on them, so the only exception a hostile frame can raise here is
:class:`ProtocolError` — from a client or from a child's pipe alike.

No ``json``, ``socket``, ``struct`` or ``typing`` at import: the ``dynamo`` command frames
its request and reads its replies here, and its start counts in the time to an application's
first output line. Messages are encoded by the standard library's C encoder (``_json``), set
up as ``json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)``
sets it up (the same bytes).
"""

from __future__ import annotations

import os

from dynamo.core import safejson
from dynamo.errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket
    from collections.abc import Callable, Iterator
    from typing import Any

HEADER_SIZE = 4  # the length: 4 bytes, big-endian
DEFAULT_MAX_FRAME = 16 << 20
__all__ = ["DEFAULT_MAX_FRAME", "Decoder", "FrameTooLarge", "ProtocolError", "encode", "receive", "send"]


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def _encoder() -> Callable[[dict[str, Any]], str]:
    try:
        from _json import encode_basestring, make_encoder
    except ImportError:  # not CPython
        import json
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
    # json.JSONEncoder.iterencode's arguments: markers (None: no circular check), default, the string
    # encoder (ensure_ascii=False), indent, the separators, sort_keys, skipkeys, allow_nan
    encode = make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False, True)
    return lambda message: "".join(encode(message, 0))


_dumps = _encoder()


class FrameTooLarge(ProtocolError):
    """A frame exceeds the size limit (a sender may split what it sends and try again)."""


def encode(message: dict[str, Any], max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    try:
        payload = _dumps(message).encode()
    except UnicodeEncodeError as exc:  # a str with a lone surrogate: no UTF-8 for it, so no frame
        raise ProtocolError(f"cannot send a string that is not valid Unicode: {exc}") from exc
    except (TypeError, ValueError, RecursionError) as exc:  # not JSON-able (nor circular, nor too deep)
        raise ProtocolError(f"cannot send this message as JSON: {exc}") from exc
    if len(payload) > max_frame:
        raise FrameTooLarge(f"frame of {len(payload)} bytes exceeds the limit of {max_frame}")
    return len(payload).to_bytes(HEADER_SIZE, "big") + payload


def _parse(payload: bytes) -> dict[str, Any]:
    try:
        message = safejson.loads(payload)
    except safejson.JSONRefused as exc:
        raise ProtocolError(f"frame refused: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"frame holds {type(message).__name__}, not an object")
    return message


def _check_length(length: int, max_frame: int) -> None:
    if length == 0:
        raise ProtocolError("empty frame")
    if length > max_frame:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {max_frame}")


class Decoder:
    """Incremental decoding for non-blocking readers: ``feed(data)`` yields whole messages."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= HEADER_SIZE:
            length = int.from_bytes(buffer[:HEADER_SIZE], "big")
            _check_length(length, self.max_frame)
            end = HEADER_SIZE + length
            if len(buffer) < end:
                break
            payload = bytes(buffer[HEADER_SIZE:end])
            del buffer[:end]
            yield _parse(payload)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)


# --- blocking helpers (clients, children) -------------------------------------------

def send(sock: socket, message: dict[str, Any], max_frame: int = DEFAULT_MAX_FRAME) -> None:
    sock.sendall(encode(message, max_frame))


def _read_exact(read: Any, count: int) -> bytes | None:
    chunks: list[bytes] = []
    while count:
        chunk = read(count)
        if not chunk:
            if chunks:
                raise ProtocolError("connection closed in the middle of a frame")
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def receive(sock: socket, max_frame: int = DEFAULT_MAX_FRAME) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream."""
    head = _read_exact(sock.recv, HEADER_SIZE)
    if head is None:
        return None
    length = int.from_bytes(head, "big")
    _check_length(length, max_frame)
    payload = _read_exact(sock.recv, length)
    if payload is None:
        raise ProtocolError("connection closed in the middle of a frame")
    return _parse(payload)


def write_fd(fd: int, message: dict[str, Any], max_frame: int = DEFAULT_MAX_FRAME) -> None:
    """Write one frame to a pipe (blocking, complete)."""
    data = memoryview(encode(message, max_frame))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def read_fd(fd: int, max_frame: int = DEFAULT_MAX_FRAME) -> dict[str, Any] | None:
    """Read one frame from a pipe (blocking); None at end of file."""
    head = _read_exact(lambda n: os.read(fd, n), HEADER_SIZE)
    if head is None:
        return None
    length = int.from_bytes(head, "big")
    _check_length(length, max_frame)
    payload = _read_exact(lambda n: os.read(fd, n), length)
    if payload is None:
        raise ProtocolError("pipe closed in the middle of a frame")
    return _parse(payload)
