"""A configured server whose applications could not run is refused at start-up, with one line that
says what to change: the service user cannot reach the work area, or cannot use the interpreter
(a Python or virtual environment under a directory only root may enter). And `dynamod --daemon`
that fails before its log is open says why on the terminal."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import dynamo
from tests.e2e.conftest import Server, command, gone, wait_for

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="needs root: only root drops applications to a service user")


@pytest.fixture
def private_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dpf", dir="/tmp"))  # 0700: like /root
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start(server: Server, *extra: str, python: str | None = None) -> subprocess.CompletedProcess[str]:
    args = [python, "-m", "dynamo.cli.dynamod"] if python else [command("dynamod")]
    return subprocess.run([*args, "--config", str(server.config), *extra], env=server.env(), capture_output=True,
                          text=True, timeout=60, cwd="/")


def stop(home: Path) -> None:
    pid = int((home / "dynamod.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: gone(pid))


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@ROOT_ONLY
@pytest.mark.parametrize("daemon", [False, True])
def test_a_work_area_the_service_user_cannot_reach_is_refused(private_dir: Path, daemon: bool) -> None:
    home = private_dir / "state"
    home.mkdir(mode=0o711)
    server = Server(home, f"sqlite:///{home}/inventory.db")  # as root, a configured server runs them as nobody
    done = start(server, *(["--daemon"] if daemon else []))
    assert done.returncode == 1 and done.stdout == ""
    line = one_line(done.stderr)
    assert line.startswith("dynamod: " + ("failed to start: " if daemon else "")), line
    assert f"applications run as 'nobody', who cannot reach the work area {home}/work" in line
    assert "searchable by that user (chmod o+x)" in line and "set [server] service_user" in line
    assert not (home / "dynamod.pid").exists() and list((home / "work").iterdir()) == []


@ROOT_ONLY
def test_an_interpreter_the_service_user_cannot_run_is_refused(private_dir: Path, server_home: Path) -> None:
    # the test environment, reached through a directory only root may enter (as /root/.pyenv is)
    venv = private_dir / "venv"
    venv.symlink_to(Path(sys.prefix))
    python = venv / "bin" / "python"
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db")
    done = start(server, python=str(python))
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert f"applications run as 'nobody', who cannot run the interpreter {python}" in line, line
    assert "install Dynamo with a Python every user may read" in line
    assert not (server_home / "dynamod.pid").exists()
    # the same interpreter, reachable, starts: the check does not refuse what works
    private_dir.chmod(0o755)
    started = start(server, "--daemon", python=str(python))
    assert started.returncode == 0 and started.stdout.startswith("dynamod: ready"), started.stderr
    stop(server_home)


def test_the_embedded_default_runs_applications_as_its_user_root_too_in_a_private_home(private_dir: Path) -> None:
    """No file: applications run as the invoking user, whatever it is, in a home nobody else enters."""
    home = private_dir / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
    env["DYNAMO_HOME"] = str(home)
    started = subprocess.run([command("dynamod"), "--daemon"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        script = private_dir / "who.py"
        script.write_text("import os\nprint(os.getuid(), os.getgid())\n")
        done = subprocess.run([command("dynamo"), str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (0, f"{os.getuid()} {os.getgid()}\n"), done.stderr
        assert home.stat().st_mode & 0o777 == 0o700
    finally:
        stop(home)


def test_a_daemon_that_cannot_import_its_server_says_so(private_dir: Path) -> None:
    """The installation of the original report: dynamo/appserver left out of the package."""
    broken = private_dir / "site"
    shutil.copytree(Path(dynamo.__file__).parent, broken / "dynamo", ignore=shutil.ignore_patterns("appserver"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMO_")}
    env["DYNAMO_HOME"] = str(private_dir / "state")
    code = f"import sys; sys.path.insert(0, {str(broken)!r}); from dynamo.cli.dynamod import main; main()"
    done = subprocess.run([sys.executable, "-P", "-c", code, "--daemon"], env=env, capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert done.returncode == 1
    assert one_line(done.stderr) == ("dynamod: this installation of Dynamo is incomplete (No module named "
                                     "'dynamo.appserver'): reinstall it")
