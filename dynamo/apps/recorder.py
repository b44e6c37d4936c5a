"""The child side of a write application's change stream.

Every ``inventory.update``/``delete`` is encoded (``codec.encode``, the live
object's full state at the time of the call) and sent to dynamod over a pipe
in frames of up to ``BATCH`` records. After the script ends with exit code 0
the runner sends ``{"commit": count}``; dynamod applies nothing without it.
"""

from __future__ import annotations

from dynamo.core.codec import Record, encode
from dynamo.dataformat._base import DataObject
from dynamo.protocol import framing

BATCH = 250
"""Records per frame. dynamod decodes a frame whole, in one turn of its loop, while it serves everyone
else: 250 records take it a few milliseconds (2,000 held the loop 40-250 ms, issue 10)."""


class PipeRecorder:
    def __init__(self, fd: int, max_frame: int = framing.DEFAULT_MAX_FRAME):
        self.fd = fd
        self.max_frame = max_frame
        self.count = 0
        self._batch: list[Record] = []

    def record(self, op: str, obj: DataObject) -> None:
        self._batch.append(encode(op, obj))
        self.count += 1
        if len(self._batch) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._send(batch)

    def _send(self, batch: list[Record]) -> None:
        try:
            framing.write_fd(self.fd, {"records": batch}, self.max_frame)
        except framing.FrameTooLarge:  # only size is worth a split: any other error is the record's own
            if len(batch) == 1:
                raise
            half = len(batch) // 2  # a frame too large: split it
            self._send(batch[:half])
            self._send(batch[half:])

    def commit(self) -> None:
        self.flush()
        framing.write_fd(self.fd, {"commit": self.count}, self.max_frame)
