"""README's quick start, typed by the two people who run it: root with a private (0700) home, as
in a container, and an ordinary user (a throwaway account, through ``runuser``) who installs
Dynamo from a copy of this tree exactly as the README says. Both on the installed package:
root's run uses the commands ``tests/run`` installed with ``pip install .``; the user's run
makes its own virtual environment with ``python3 -m venv .venv && pip install .``.

The embedded default serves its user alone: applications run as that user (root included),
and the state directory is private to it."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, gone, wait_for
from tests.e2e.test_seed_transcript import SITES

Shell = Callable[..., subprocess.CompletedProcess[str]]
APP = "'examples/set_site_status.py T2_US_XYZ waitroom'"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def require(condition: bool, reason: str) -> None:
    """A missing prerequisite skips loudly, and fails under CI=true: CI must run these tests."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: the quick start test cannot run: {reason}")
    pytest.skip(f"!!! SKIPPED, NOT TESTED: {reason}")


def drive_readme(sh: Shell, home: Path) -> None:
    """The README's commands after the install, in its order, checked as the README shows them."""
    started = sh("dynamod --daemon")
    assert started.returncode == 0, started.stderr
    pid = (home / ".dynamo/dynamod.pid").read_text().strip()
    # the local socket, then the embedded default's web server on localhost (any free port)
    assert re.fullmatch(rf"dynamod: ready, pid {pid}, unix:{re.escape(str(home))}/\.dynamo/dynamo\.sock, "
                        r"http://127\.0\.0\.1:\d+\n", started.stdout), started.stdout
    assert (home / ".dynamo").stat().st_mode & 0o777 == 0o700  # the socket is in it: its user's alone
    for seed in ("examples/mydynamo-storage-sites.json", "examples/mydynamo-initial-data.json"):
        injected = sh(f"dynamo-inject {seed}")
        assert injected.returncode == 0, injected.stderr
    shown = sh("printf 'inventory.sites\\n' | dynamo")
    assert (shown.returncode, shown.stdout) == (0, SITES + "\n"), shown.stderr

    read_only = sh(f"dynamo {APP}")
    assert read_only.returncode == 0, read_only.stderr
    assert "read-only run: the change is discarded" in read_only.stdout
    refused = sh(f"dynamo {APP} --write-request --title set-site-status")
    assert refused.returncode == 77 and "is not authorized for write access" in refused.stderr
    authorized = sh("dynamo-exec-auth --executable examples/set_site_status.py --title set-site-status")
    assert authorized.returncode == 0, authorized.stderr
    written = sh(f"dynamo {APP} --write-request --title set-site-status")
    assert written.returncode == 0, written.stderr
    assert written.stdout == "T2_US_XYZ: ready -> waitroom\n"
    assert "1 change(s) applied: inventory version 3" in written.stderr

    pid = int((home / ".dynamo/dynamod.pid").read_text())
    assert sh("kill $(cat ~/.dynamo/dynamod.pid)").returncode == 0
    wait_for(lambda: gone(pid))
    assert not (home / ".dynamo/dynamod.pid").exists()


def kill_leftover(home: Path) -> None:
    """A failed test must not leave a daemon behind."""
    pid_file = home / ".dynamo" / "dynamod.pid"
    try:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


@pytest.fixture
def private_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="dqr", dir="/tmp"))  # mode 0700, like /root
    yield home
    kill_leftover(home)
    shutil.rmtree(home, ignore_errors=True)


def test_the_quick_start_as_root_with_a_private_home(private_home: Path) -> None:
    require(os.getuid() == 0, "needs root (the test machine's usual user)")
    assert private_home.stat().st_mode & 0o777 == 0o700
    venv_bin = Path(sys.executable).parent  # where tests/run installed Dynamo with `pip install .`
    env = {"HOME": str(private_home), "PATH": f"{venv_bin}:{SYSTEM_PATH}", "LC_ALL": "C.UTF-8"}

    def sh(line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", line], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)

    drive_readme(sh, private_home)  # applications run as root: no drop to a user who cannot reach ~/.dynamo


@pytest.fixture
def ordinary_user() -> Iterator[tuple[str, Path]]:
    """A throwaway account with a fresh 0700 home holding a copy of this tree; removed afterwards."""
    require(os.getuid() == 0, "needs root to create a throwaway user")
    require(shutil.which("useradd") is not None and shutil.which("runuser") is not None,
            "needs useradd and runuser (util-linux, passwd)")
    name = f"dynqs{os.getpid() % 100000}"
    top = Path(tempfile.mkdtemp(prefix="dqu", dir="/tmp"))
    top.chmod(0o755)
    home = top / "home"
    created = subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                              "--user-group", name], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    try:
        home.mkdir(mode=0o700)
        ignore = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", ".*_cache", "results")
        shutil.copytree(ROOT, home / "dynamo", ignore=ignore)
        entry = pwd.getpwnam(name)
        subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(home)], check=True)
        yield name, home
    finally:
        kill_leftover(home)
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.slow
def test_the_quick_start_as_an_ordinary_user(ordinary_user: tuple[str, Path]) -> None:
    name, home = ordinary_user
    python3 = shutil.which("python3", path=SYSTEM_PATH)
    require(python3 is not None, f"no python3 on {SYSTEM_PATH}")
    ok = subprocess.run(["runuser", "-u", name, "--", str(python3), "-c",
                         "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
                        cwd="/", capture_output=True)
    require(ok.returncode == 0, f"{python3} is not a Python >= 3.11 with venv that {name} may run "
                                f"(Debian: apt-get install python3-venv)")
    env = ["env", "-i", f"HOME={home}", f"PATH={SYSTEM_PATH}", "LC_ALL=C.UTF-8", f"USER={name}", f"LOGNAME={name}"]
    for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "PIP_DEFAULT_TIMEOUT"):
        if var in os.environ:  # where this machine's packages come from
            env.append(f"{var}={os.environ[var]}")

    def sh(line: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", name, "--", *env, "sh", "-c", f". .venv/bin/activate && {line}"],
                              cwd=home / "dynamo", capture_output=True, text=True, timeout=timeout)

    # README: python3 -m venv .venv && . .venv/bin/activate && pip install . && dynamod --daemon
    installed = subprocess.run(["runuser", "-u", name, "--", *env, "sh", "-c",
                                "python3 -m venv .venv && . .venv/bin/activate && pip install --quiet ."],
                               cwd=home / "dynamo", capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    drive_readme(sh, home)
