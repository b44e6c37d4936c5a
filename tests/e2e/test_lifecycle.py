"""dynamod's life: pid file, process titles, clean stop with applications running, restart, logs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Server, command, wait_for


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def test_stop_with_running_applications_then_restart(server: Server) -> None:
    assert server.process is not None
    pid_file = server.home / "dynamod.pid"
    assert pid_file.read_text().strip() == str(server.process.pid)
    assert cmdline(server.process.pid).startswith("dynamod: main")
    sleeper = server.script("sleeper.py", "import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    stubborn = server.script("stubborn.py", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                            "print('up', flush=True)\ntime.sleep(120)\n")
    first = int(server.run("-A", str(sleeper)).out)
    second = int(server.run("-A", str(stubborn)).out)
    wait_for(lambda: len(server.children()) == 2 and all(
        "status     running" in server.run("--poll", str(i)).out for i in (first, second)))
    titles = sorted(cmdline(pid) for pid in server.children())
    assert titles == [f"dynamo: app {first} sleeper", f"dynamo: app {second} stubborn"]
    started = time.monotonic()
    assert server.stop() == 0  # the stubborn one needs SIGKILL after the grace period
    assert time.monotonic() - started < 15
    assert not pid_file.exists()
    server.start()
    for app_id in (first, second):
        assert "status     killed" in server.run("--poll", str(app_id)).out


def test_a_second_server_is_refused(server: Server) -> None:
    import subprocess
    done = subprocess.run([command("dynamod"), "--config", str(server.config)], capture_output=True, text=True,
                          timeout=60, env=server.env())
    assert done.returncode == 1 and "another dynamod" in done.stderr
    assert server.run("--list").code == 0  # the first one is unharmed


def test_sighup_reopens_the_change_log(server: Server) -> None:
    assert server.process is not None
    assert server.run("-", input='{"site": [{"name": "T1_A"}]}', cmd="dynamo-inject").code == 0
    log = server.home / "log" / "changes.log"
    log.rename(log.with_suffix(".1"))
    os.kill(server.process.pid, signal.SIGHUP)
    wait_for(lambda: log.exists())
    assert server.run("-", input='{"site": [{"name": "T1_B"}]}', cmd="dynamo-inject").code == 0
    assert "T1_B" in log.read_text() and "T1_A" not in log.read_text()


def test_interrupting_the_client_stops_the_application(server: Server) -> None:
    import subprocess
    sleeper = server.script("sleeper.py", "import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    client = subprocess.Popen([command("dynamo"), str(sleeper)], env=server.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert client.stdout is not None and client.stdout.readline() == "up\n"
    client.send_signal(signal.SIGINT)
    assert client.wait(20) == 137
    assert client.stderr is not None and "killed" in client.stderr.read()
    wait_for(lambda: not server.children())


def test_sigterm_with_a_writer_running_applies_nothing(server: Server) -> None:
    from tests.e2e.test_applications import WRITER, authorize, sites
    script = server.script("writer.py", WRITER + "import time\nprint('changes made', flush=True)\ntime.sleep(60)\n")
    authorize(server, str(script), "writer")
    app_id = int(server.run("-A", str(script), "--write-request", "--title", "writer").out)
    wait_for(lambda: "changes made" in server.run("--poll", str(app_id)).out)
    assert server.stop() == 0
    server.start()
    assert sites(server) == "[]\n"
    polled = server.run("--poll", str(app_id)).out
    assert "status     killed" in polled and "version    0" in polled


def test_every_row_handed_over_is_written_before_the_server_stops(server: Server) -> None:
    """The applications' rows are written by a thread of dynamod's (dynamo.server.rowwriter). The row of
    an application killed by SIGTERM is handed over during the stop; another connection holds the
    application's row locked, so that the thread cannot write it for 1.5 s: dynamod waits for it
    before it exits, and after the restart the record says killed, not lost."""
    import threading
    sleeper = server.script("sleeper.py", "import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    app_id = int(server.run("-A", str(sleeper)).out)
    wait_for(lambda: "status     running" in server.run("--poll", str(app_id)).out)
    url = server.config.read_text().split('url = "', 1)[1].split('"', 1)[0]
    if url.startswith("sqlite:"):
        import sqlite3
        lock: Any = sqlite3.connect(str(server.home / "inventory-registry.db"), isolation_level=None,
                                    check_same_thread=False)
        wait_for(lambda: lock.execute("SELECT status FROM applications WHERE id = ?", (app_id,)).fetchone()[0]
                 == "running")
        lock.execute("BEGIN IMMEDIATE")  # the registry's write lock
        release = lambda: lock.execute("ROLLBACK")  # noqa: E731
    else:
        import pymysql

        from dynamo.store.mysql import parse_mysql_url
        lock = pymysql.connect(**parse_mysql_url(url), autocommit=True)

        def status() -> str:
            with lock.cursor() as cur:
                cur.execute("SELECT status FROM applications WHERE id = %s", (app_id,))
                return str(cur.fetchone()[0])
        wait_for(lambda: status() == "running")
        with lock.cursor() as cur:
            cur.execute("START TRANSACTION")
            cur.execute("SELECT id FROM applications WHERE id = %s FOR UPDATE", (app_id,))  # the row's lock
        release = lock.rollback
    timer = threading.Timer(1.5, release)
    timer.start()
    try:
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started > 1.2  # it waited for the row
    finally:
        timer.join()
        lock.close()
    assert "not written" not in server.log()
    server.start()
    assert "status     killed" in server.run("--poll", str(app_id)).out
