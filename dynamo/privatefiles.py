"""Files only their owner may read: the server's state (the SQLite store, its WAL, the logs, the
pid file, applications' output logs).

Applications run as other users on the same machine; a file made with the operator's umask
(often 0022) would let any of them read the users, roles and authorizations. So these files are
created with an explicit 0600 (a umask only ever removes bits) and, when they exist already,
their mode is corrected at start-up, with a log line saying so.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("dynamo")

FILE_MODE = 0o600
DIR_MODE = 0o700


def fix_mode(path: Path | str, mode: int = FILE_MODE) -> None:
    """Give an existing file or directory exactly ``mode``; log when it had another. Nothing happens
    to a path that does not exist; a file the process may not change is reported, not fatal."""
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("%s: cannot check its mode: %s", path, exc.strerror)
        return
    if current == mode:
        return
    try:
        os.chmod(path, mode)
    except OSError as exc:
        log.warning("%s: mode %o, cannot change it to %o: %s", path, current, mode, exc.strerror)
        return
    log.info("%s: mode changed from %o to %o (state readable by the server alone)", path, current, mode)


def private_directory(path: Path, fix_existing: bool) -> None:
    """Make ``path`` (and missing parents) mode 0700 for the server's state. An existing directory's
    mode is corrected only when ``fix_existing`` (it is the server's own, below its home): a
    directory such as /var/log is the system's."""
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)
    elif fix_existing:
        fix_mode(path, DIR_MODE)


def create_private(path: Path | str) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist, and correct the mode if it does."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
    os.close(fd)
    fix_mode(path)


def open_private(path: Path | str, mode: str = "a") -> int:
    """A descriptor for appending to (or, mode "w", rewriting) ``path``, created 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if mode == "w" else os.O_APPEND)
    return os.open(path, flags, FILE_MODE)
