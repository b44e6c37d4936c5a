"""The server log and the change log.

The server log (``dynamo`` loggers) gets one line per event, starting with its
subject (``app 42 (detox): ...``). The change log gets one line per applied
change: ``v17 app 42 (detox) alice: update blockreplica dataset=... block=... site=...``.
It is written directly (one write per change set), not through ``logging``:
a 100k-record change set must not cost 100k logging calls.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path
from typing import IO, Iterable

from dynamo.core.codec import FIELDS, Record

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
log = logging.getLogger("dynamo.server")


def setup_server_log(path: Path, level: str) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.WatchedFileHandler(path)  # reopens after logrotate moves the file
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger("dynamo")
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


class ChangeLog:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.stream: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open by dynamod

    def reopen(self) -> None:
        try:
            stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            log.error("change log %s: cannot reopen, keeping the old file: %s", self.path, exc)
            return
        self.stream.close()
        self.stream = stream

    def write(self, version: int, who: str, records: Iterable[Record]) -> None:
        """One line per change. The changes are committed already: a full disk costs log lines
        (said in the server log), never the server."""
        prefix = f"v{version} {who}: "
        lines = []
        for op, type_name, fields in records:
            key = " ".join(f"{k}={fields.get(k)!r}" for k in FIELDS[type_name][1])
            lines.append(f"{prefix}{op} {type_name} {key}\n")
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except OSError as exc:
            log.error("change log %s: %d line(s) of version %d not written: %s", self.path, len(lines), version,
                      exc)

    def close(self) -> None:
        self.stream.close()
