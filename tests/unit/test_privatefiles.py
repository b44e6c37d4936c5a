"""State files are the server's alone whatever the umask, and older ones get their mode fixed."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamo.privatefiles import create_private, fix_mode, private_directory
from dynamo.server.logs import ChangeLog, setup_server_log
from dynamo.server.pidfile import PidFile
from dynamo.store.sqlite import SQLiteStore


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


def test_files_are_created_0600_under_umask_0(tmp_path: Path, no_umask: None) -> None:
    create_private(tmp_path / "a")
    private_directory(tmp_path / "d" / "e", fix_existing=False)
    pid = PidFile(tmp_path / "dynamod.pid")
    pid.acquire()
    changes = ChangeLog(tmp_path / "log" / "changes.log")
    changes.reopen()
    store = SQLiteStore(tmp_path / "inventory.db")
    try:
        store.create_schema()  # writes: the WAL and shared-memory files exist
        assert mode(tmp_path / "a") == 0o600 and mode(tmp_path / "d" / "e") == 0o700
        assert mode(tmp_path / "dynamod.pid") == 0o600 and mode(tmp_path / "log" / "changes.log") == 0o600
        assert mode(tmp_path / "log") == 0o700
        for name in ("inventory.db", "inventory.db-wal", "inventory.db-shm"):
            assert mode(tmp_path / name) == 0o600, name
    finally:
        store.close()
        changes.close()
        pid.release()


def test_existing_modes_are_fixed_and_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = tmp_path / "old.log"
    old.write_text("x")
    old.chmod(0o644)
    with caplog.at_level(logging.INFO, logger="dynamo"):
        fix_mode(old)
        fix_mode(old)  # already right: nothing said
        fix_mode(tmp_path / "missing")
    assert mode(old) == 0o600
    assert caplog.text.count("mode changed from 644 to 600") == 1


def test_only_the_servers_own_directories_are_changed(tmp_path: Path) -> None:
    mine, system = tmp_path / "home" / "log", tmp_path / "var-log"
    mine.mkdir(parents=True, mode=0o755)
    system.mkdir(mode=0o755)
    handler = setup_server_log(mine / "server.log", "INFO", home=tmp_path / "home")
    logging.getLogger("dynamo").removeHandler(handler)
    handler.close()
    private_directory(system, fix_existing=False)
    assert mode(mine) == 0o700 and mode(system) == 0o755 and mode(mine / "server.log") == 0o600


def test_an_existing_database_gets_its_mode_fixed(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "inventory.db").close()
    for name in ("inventory.db", "inventory.db-wal"):
        if (tmp_path / name).exists():
            (tmp_path / name).chmod(0o644)
    SQLiteStore(tmp_path / "inventory.db").close()
    assert mode(tmp_path / "inventory.db") == 0o600
