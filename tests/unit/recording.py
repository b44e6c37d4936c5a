"""A write application's change stream in a test: the inventory's real ``PipeRecorder`` over a real
pipe, read back frame by frame as dynamod reads it. (Small change sets only: the test writes the
whole stream before reading it, so it must fit in the pipe's buffer, 64 KiB on Linux.)"""

from __future__ import annotations

import os

from dynamo.apps.recorder import PipeRecorder
from dynamo.core.codec import Record
from dynamo.protocol import framing


class PipeCapture:
    def __init__(self) -> None:
        self._read, write = os.pipe()
        self.recorder = PipeRecorder(write)

    def records(self) -> list[Record]:
        """Commit as the runner does after the script's exit 0; the records dynamod receives, in order."""
        self.recorder.commit()
        os.close(self.recorder.fd)
        records: list[Record] = []
        try:
            while (frame := framing.read_fd(self._read)) is not None:
                if "commit" in frame:
                    assert frame["commit"] == len(records)
                else:
                    records.extend(frame["records"])
        finally:
            os.close(self._read)
        return records
