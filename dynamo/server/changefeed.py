"""A writer's change stream, fed to its commit process while the application still runs.

A write application sends its records to dynamod over its change stream (``dynamo.apps.recorder``)
as it makes them. dynamod decodes them (``Prepared``) and, from the writer's start, forwards the
very bytes it read to the writer's commit process (``Feed``), which applies each record to its
copy of the image as it comes (``StreamedRecords``, the record source of ``apply_change_set``). When
the application exits 0 dynamod *seals* the feed with the number of records it took; only then
does the commit process finish the change set (block checks, the store's transaction). So at the
writer's exit little is left to do but the commit itself.

Both ends read the bytes with the same framing and the same rules as dynamod's own reader
(``dynamo.server.pipes``: records frames until the ``commit`` frame, nothing after it), and the
seal carries dynamod's count: if the two ever disagreed the change set is refused, nothing
applied. A feed closed without a seal (the application failed, was killed, or the server stops)
ends the commit process without a word: it has not touched the store.

The feed is a pipe of frames ``>IB`` (length, kind) then the payload: ``R`` bytes of the change
stream, as read; ``E`` the seal, JSON ``{"records": N}``. Both ends are dynamod's code; the
bytes inside ``R`` are the application's, and are decoded as hostile.
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Iterator
from typing import Any

from dynamo.core.codec import Record
from dynamo.errors import ChangeSetError, ProtocolError
from dynamo.protocol import framing

HEAD = struct.Struct(">IB")
RAW, SEAL = ord("R"), ord("E")
PIPE_SIZE = 1 << 20
STREAM_MAX_FRAME = 64 << 20   # as dynamod's reader of the change stream (dynamo.server.fork)


class Abandoned(Exception):
    """The feed closed without a seal: the application did not commit; nothing is to be done."""


def _frame(kind: int, payload: bytes) -> bytes:
    return HEAD.pack(len(payload), kind) + payload


class Feed:
    """dynamod's end: what is to go to the commit process, written as the pipe takes it (never blocking
    the loop; ``pending`` says whether the loop should come back soon)."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)
        try:
            import fcntl
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        self.outbox = bytearray()
        self.sealed = False
        self.closed = False

    @property
    def pending(self) -> bool:
        return not self.closed and bool(self.outbox)

    def push(self, data: bytes) -> None:
        """Bytes read from the application's change stream, in order."""
        if self.closed or self.sealed:
            return
        self.outbox += _frame(RAW, data)
        self.flush()

    def seal(self, records: int) -> None:
        """The application exited 0 having sent ``records`` records: the commit process may commit."""
        if self.closed or self.sealed:
            return
        self.sealed = True
        self.outbox += _frame(SEAL, json.dumps({"records": records}).encode())
        self.flush()

    def flush(self) -> None:
        """Write what the pipe takes now; once sealed and all written, close it."""
        outbox = self.outbox
        while outbox and not self.closed:
            try:
                written = os.write(self.fd, outbox)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the commit process has gone: its end (status or none) tells the rest
                outbox.clear()
                self.close()
                return
            del outbox[:written]
        if self.sealed and not outbox:
            self.close()

    def close(self) -> None:
        """No more: an unsealed feed so closed abandons the change set."""
        if not self.closed:
            self.closed = True
            self.outbox = bytearray()
            os.close(self.fd)


class StreamedRecords:
    """The commit process's end: the application's records, yielded as they arrive (blocking on the
    feed), as dynamod took them; ends at the seal. Iterate once."""

    def __init__(self, fd: int, max_frame: int = STREAM_MAX_FRAME):
        self.fd = fd
        self.decoder = framing.Decoder(max_frame)
        self.records: list[Record] = []   # what was yielded (the change log's lines once committed)
        self.sealed = False
        self.committed = False           # the application's commit frame was seen: nothing after it counts
        self._buffer = bytearray()
        self.waited = 0.0                # seconds spent waiting for the feed (for the status)
        self.sealed_at = 0.0             # monotonic: when the seal came

    def _frames(self) -> Iterator[tuple[int, bytes]]:
        buffer = self._buffer
        while True:
            while len(buffer) >= HEAD.size:
                length, kind = HEAD.unpack_from(buffer)
                end = HEAD.size + length
                if len(buffer) < end:
                    break
                payload = bytes(buffer[HEAD.size:end])
                del buffer[:end]
                yield kind, payload
            started = time.monotonic()
            try:
                data = os.read(self.fd, PIPE_SIZE)
            except InterruptedError:
                continue
            finally:
                self.waited += time.monotonic() - started
            if not data:
                raise Abandoned("the change stream ended without a seal")
            buffer += data

    def __iter__(self) -> Iterator[Record]:
        for kind, payload in self._frames():
            if kind == SEAL:
                self.sealed = True
                self.sealed_at = time.monotonic()
                expected = _seal_count(payload)
                if expected != len(self.records):
                    raise ChangeSetError(f"the server took {expected} records from the application's change "
                                         f"stream and its commit process {len(self.records)}: refused (a bug)",
                                         -1, "the change stream")
                return
            if kind != RAW:
                raise ChangeSetError(f"unexpected frame {kind} in the change feed (a bug)", -1, "the change stream")
            try:
                frames = list(self.decoder.feed(payload))
            except ProtocolError as exc:
                # dynamod's reader fails on the same bytes and stops the application: no seal will come
                raise ChangeSetError(f"malformed change stream: {exc}", len(self.records),
                                     "the change stream") from exc
            for frame in frames:
                records = frame.get("records")
                if isinstance(records, list) and not self.committed:
                    for record in records:
                        self.records.append(record)
                        yield record
                elif isinstance(frame.get("commit"), int) and not self.committed:
                    self.committed = True
                # anything else: dynamod stops the application, and the feed is closed unsealed

    def drain(self) -> None:
        """After a refusal: read the feed to its seal (the application may still be running: the refusal
        is said when it has exited 0), or raise ``Abandoned`` at its end."""
        if self.sealed:
            return
        for kind, _payload in self._frames():
            if kind == SEAL:
                self.sealed = True
                return


def _seal_count(payload: bytes) -> int:
    try:
        value: Any = json.loads(payload)
        count = value["records"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ChangeSetError(f"malformed seal in the change feed: {exc}", -1, "the change stream") from exc
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ChangeSetError("malformed seal in the change feed", -1, "the change stream")
    return count
