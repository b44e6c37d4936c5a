"""README's quick start, as a new user types it: no configuration file, `dynamod --daemon`,
the seed's "Adding Content" walk-through and a write application, then a stop by pid file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import EXAMPLES, ROOT, command, gone, wait_for
from tests.e2e.test_seed_transcript import BLOCKS, DS, SITES


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dq", dir="/tmp"))  # short: Unix socket paths are limited
    path.chmod(0o711)
    yield path / "state"
    pid_file = path / "state" / "dynamod.pid"
    if pid_file.exists():  # a failed test must not leave a daemon behind
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass
    shutil.rmtree(path, ignore_errors=True)


def run(home: Path, *args: str, cmd: str = "dynamo", input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DYNAMO_CONFIG", "DYNAMO_SERVER")}
    env["DYNAMO_HOME"] = str(home)
    return subprocess.run([command(cmd), *args], env=env, capture_output=True, text=True, input=input, timeout=60,
                          cwd=ROOT)


def test_the_readme_quick_start(home: Path) -> None:
    started = run(home, "--daemon", cmd="dynamod")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("dynamod: ready, pid ") and f"unix:{home}/dynamo.sock" in started.stdout
    pid = int((home / "dynamod.pid").read_text())
    assert run(home, str(EXAMPLES / "mydynamo-storage-sites.json"), cmd="dynamo-inject").returncode == 0
    assert run(home, "examples/mydynamo-initial-data.json", cmd="dynamo-inject").returncode == 0
    shown = run(home, input=f"inventory.sites\ninventory.datasets['{DS}'].blocks\n")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [SITES, BLOCKS]

    app = "examples/set_site_status.py T2_US_XYZ waitroom"
    read_only = run(home, app)
    assert read_only.returncode == 0 and "read-only run: the change is discarded" in read_only.stdout
    refused = run(home, app, "--write-request", "--title", "set-site-status")
    assert refused.returncode == 77 and "is not authorized for write access" in refused.stderr
    authorized = run(home, "--executable", "examples/set_site_status.py", "--title", "set-site-status",
                     cmd="dynamo-exec-auth")
    assert authorized.returncode == 0, authorized.stderr
    written = run(home, app, "--write-request", "--title", "set-site-status")
    assert written.returncode == 0, written.stderr
    assert written.stdout == "T2_US_XYZ: ready -> waitroom\n"
    assert "1 change(s) applied: inventory version 3" in written.stderr
    assert run(home, input="print(inventory.sites['T2_US_XYZ'].status)\n").stdout == "waitroom\n"

    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: gone(pid))
    assert not (home / "dynamod.pid").exists()
    assert (home / "inventory.db").exists()


def test_the_commands_run_from_a_source_checkout() -> None:
    import sys
    for name in ("dynamod", "dynamo", "dynamo-inject", "dynamo-exec-auth", "dynamo-user-auth"):
        done = subprocess.run([sys.executable, str(ROOT / "bin" / name), "--help"], capture_output=True, text=True,
                              timeout=60, cwd="/")
        assert done.returncode == 0, (name, done.stderr)
        assert done.stdout.startswith(f"usage: {name} "), (name, done.stdout[:80])


STATUS = "print([line for line in open('/proc/self/status') if line.startswith(('NoNewPrivs', 'Uid'))])\n"


def test_applications_of_the_servers_own_uid_gain_no_privileges(home: Path, tmp_path: Path) -> None:
    """The embedded default runs applications as the server's uid, with no privilege drop: no setuid
    program they run may raise them above it (PR_SET_NO_NEW_PRIVS), in a reader (from the spare),
    a writer and the shell (forked on demand)."""
    started = run(home, "--daemon", cmd="dynamod")
    assert started.returncode == 0, started.stderr
    script = tmp_path / "status.py"
    script.write_text(STATUS)
    uid = f"Uid:\\t{os.getuid()}\\t"
    try:
        reader = run(home, str(script))
        assert reader.returncode == 0 and "'NoNewPrivs:\\t1\\n'" in reader.stdout and uid in reader.stdout, reader
        assert run(home, "--executable", str(script), "--title", "status", cmd="dynamo-exec-auth").returncode == 0
        writer = run(home, str(script), "--write-request", "--title", "status")
        assert writer.returncode == 0 and "'NoNewPrivs:\\t1\\n'" in writer.stdout, writer
        shell = run(home, input=STATUS)
        assert shell.returncode == 0 and "'NoNewPrivs:\\t1\\n'" in shell.stdout, shell
    finally:
        os.kill(int((home / "dynamod.pid").read_text()), signal.SIGTERM)
        wait_for(lambda: not (home / "dynamod.pid").exists())
