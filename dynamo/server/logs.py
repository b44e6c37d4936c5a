"""The server log and the change log.

The server log (``dynamo`` loggers) gets one line per event, starting with its
subject (``app 42 (detox): ...``). The change log gets one line per applied
change: ``v17 app 42 (detox) alice: update blockreplica dataset=... block=... site=...``.
It is written directly (one write per change set), not through ``logging``:
a 100k-record change set must not cost 100k logging calls.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
from pathlib import Path
from typing import IO, Iterable

from dynamo.core.codec import FIELDS, Record
from dynamo.privatefiles import DIR_MODE, create_private, fix_mode, open_private, private_directory

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
log = logging.getLogger("dynamo.server")


class PrivateLogHandler(logging.handlers.WatchedFileHandler):
    """Reopens after logrotate moves the file (WatchedFileHandler), and creates it 0600 whatever the
    umask: the log names users and applications, and applications run as other users."""

    def _open(self) -> io.TextIOWrapper:
        return open(open_private(self.baseFilename), "a", encoding=self.encoding, errors=self.errors)


def setup_server_log(path: Path, level: str, home: Path | None = None) -> logging.Handler:
    """``home``: the server's state directory; the log's directory, when below it, is made private.
    Modes are corrected once the log is open, so that the line saying so is in it."""
    private_directory(path.parent, fix_existing=False)
    handler = PrivateLogHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger("dynamo")
    root.addHandler(handler)
    root.setLevel(level.upper())
    if _below(path.parent, home):
        fix_mode(path.parent, DIR_MODE)
    fix_mode(path)
    return handler


def _below(path: Path, home: Path | None) -> bool:
    return home is not None and path.resolve().is_relative_to(home.resolve())


class ChangeLog:
    def __init__(self, path: Path, home: Path | None = None):
        private_directory(path.parent, fix_existing=_below(path.parent, home))
        create_private(path)
        self.path = path
        self.stream: IO[str] = open(open_private(path), "a", encoding="utf-8")  # noqa: SIM115 - held open

    def reopen(self) -> None:
        try:
            stream = open(open_private(self.path), "a", encoding="utf-8")  # noqa: SIM115
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
