"""The database goes away under a running dynamod, and comes back.

This test runs its own throwaway mariadbd (performance.md, last section), so it
can kill it: the server must stay up, say clearly that the store is
unavailable, lose nothing, and carry on once the database is back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.mysql


class MariaDB:
    def __init__(self, datadir: Path):
        self.datadir = datadir
        self.socket = datadir / "mysqld.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["mariadbd", "--user=mysql", f"--datadir={self.datadir}", "--skip-networking",
             f"--socket={self.socket}", f"--pid-file={self.datadir}/mysqld.pid", "--innodb-buffer-pool-size=64M",
             f"--log-error={self.datadir}/error.log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            if subprocess.run(["mysqladmin", f"--socket={self.socket}", "-uroot", "ping"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        pytest.fail(f"throwaway mariadbd did not start: {(self.datadir / 'error.log').read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)


@pytest.fixture
def mariadb(mysql_server: str) -> Iterator[MariaDB]:
    if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
        pytest.fail("mariadbd and mariadb-install-db are needed for this test") if os.environ.get("CI") == "true" \
            else pytest.skip("!!! SKIPPED, NOT TESTED: no mariadbd to start a throwaway server")
    top = Path(tempfile.mkdtemp(prefix="dbo", dir="/tmp"))
    top.chmod(0o755)
    datadir = top / "data"
    done = subprocess.run(["mariadb-install-db", "--user=mysql", f"--datadir={datadir}", "--skip-test-db",
                           "--auth-root-authentication-method=socket"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    db = MariaDB(datadir)
    db.start()
    subprocess.run(["mysql", f"--socket={db.socket}", "-uroot", "-e", "CREATE DATABASE dynamo"], check=True)
    yield db
    if db.process is not None and db.process.poll() is None:
        db.kill()
    shutil.rmtree(top, ignore_errors=True)


def test_database_goes_away_and_comes_back(mariadb: MariaDB, server_home: Path) -> None:
    server = Server(server_home, f"mysql://root@localhost/dynamo?unix_socket={mariadb.socket}")
    server.start()
    try:
        assert server.run("-", input='{"site": [{"name": "T1_BEFORE"}]}', cmd="dynamo-inject").code == 0
        mariadb.kill()
        down = server.run("-", input='{"site": [{"name": "T1_DURING"}]}', cmd="dynamo-inject")
        assert down.code == 69, down.err
        assert "the store is unavailable, try again later" in down.err
        assert server.process is not None and server.process.poll() is None  # still serving
        mariadb.start()
        back = server.run("-", input='{"site": [{"name": "T1_AFTER"}]}', cmd="dynamo-inject")
        assert back.code == 0, back.err
        shown = server.shell("print(sorted(inventory.sites))\n")
        assert shown.out == "['T1_AFTER', 'T1_BEFORE']\n"
    finally:
        assert server.stop() == 0
    server.start()  # and the store agrees with the image
    assert server.shell("print(sorted(inventory.sites))\n").out == "['T1_AFTER', 'T1_BEFORE']\n"
    assert server.stop() == 0
