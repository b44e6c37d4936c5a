"""Before dynamod serves anyone: its state directories, and, when applications run as another
user, proof that this user can actually run one.

Applications are forks of the server, so they start with everything the server had imported,
but they import the rest (``uuid``, ``ctypes``, a module of Dynamo's not loaded yet) as the
service user, and they work in a directory under the server's work area. A Python built in a
home only root may enter (``/root/.pyenv``), or a work area under such a home, lets the server
start and every application fail later with a traceback. So the check runs the interpreter as
that user, in a work area made exactly as an application's is, and refuses to start with one
line that says what to change.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import dynamo
from dynamo.config import Config
from dynamo.errors import StartupError

# Run as the service user by the server's interpreter. Exit codes tell the server what failed.
_PROBE = """
import os, sys, sysconfig
try:
    os.chdir(sys.argv[2])  # as an application does, after it became the service user
except OSError as exc:
    print(exc.strerror); sys.exit(6)
for key in ("stdlib", "platstdlib", "purelib", "platlib"):
    path = sysconfig.get_paths()[key]
    if os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK):
        print(f"cannot read {path}"); sys.exit(3)
sys.path.insert(0, sys.argv[1])  # Dynamo from where the server has it (site-packages or a checkout)
try:
    import uuid, ctypes, decimal, json, sqlite3, dynamo, dynamo.apps
except ImportError as exc:
    print(f"import {exc.name or '?'} fails: {exc}"); sys.exit(4)
try:
    with open("probe", "w") as f:
        f.write("ok")
except OSError as exc:
    print(f"cannot write in its work area: {exc.strerror}"); sys.exit(5)
"""


def prepare(config: Config, uid: int | None, gid: int | None) -> None:
    """Make the state directory and the work area; when applications run as ``uid``, check that
    they can (see the module's docstring). Raises StartupError with one line."""
    home = config.server.home
    work_area = config.path(config.applications.work_area)
    if config.single_user:
        # serves its user alone: nobody else reaches the socket, the store or the work areas
        _make(home, 0o700)
        home.chmod(0o700)
        _make(work_area, 0o700)
    else:
        # traversable (not listable) by applications running as the service user: they enter their work area
        _make(home, 0o711)
        _make(work_area, 0o711)
    if uid is not None:
        check_service_user(work_area, uid, gid if gid is not None else -1)


def _make(path: Path, mode: int) -> None:
    """A directory of this mode, whatever the umask, if it does not exist yet (an existing one is the
    operator's, and the check below says if it does not do)."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)


def check_service_user(work_area: Path, uid: int, gid: int) -> None:
    """Run the interpreter as ``uid``/``gid`` in a work area made as an application's is."""
    user = _user_name(uid)
    run_dir = work_area / f"preflight-{secrets.token_hex(8)}"
    work = run_dir / "work"
    try:
        run_dir.mkdir(mode=0o711)
        work.mkdir()
        os.chown(work, uid, gid)
        problem = _probe(work, uid, gid)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if problem is None:
        return
    what, fix = problem
    raise StartupError(f"applications run as {user!r}, who {what}: {fix}, or set [server] service_user to a "
                       f"user who can")


def _probe(work: Path, uid: int, gid: int) -> tuple[str, str] | None:
    """None if ``uid`` can run an application in ``work``, else (what fails, what to change)."""
    python = sys.executable
    package_dir = str(Path(dynamo.__file__).resolve().parents[1])
    try:
        done = subprocess.run([python, "-I", "-c", _PROBE, package_dir, str(work)], check=False, cwd="/",
                              user=uid, group=gid, extra_groups=[], capture_output=True, text=True, timeout=60,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"})
    except PermissionError:
        return f"cannot run the interpreter {python}", _python_fix(python)
    except OSError as exc:
        return f"cannot run the interpreter {python} ({exc.strerror})", _python_fix(python)
    except subprocess.TimeoutExpired:
        return f"could not start the interpreter {python} within 60 s", _python_fix(python)
    if done.returncode == 0:
        return None
    why = (done.stdout.strip() or done.stderr.strip() or f"exit code {done.returncode}").splitlines()[-1]
    if done.returncode == 6:
        return f"cannot reach the work area {work.parent.parent} ({why})", _reach_fix(work.parent.parent)
    if done.returncode == 5:
        return why, _reach_fix(work.parent.parent)
    return f"cannot use the interpreter {python} ({why})", _python_fix(python)


def _reach_fix(work_area: Path) -> str:
    return (f"make every directory above {work_area} searchable by that user (chmod o+x), or move "
            f"[server] home (or [applications] work_area) out of a private directory")


def _python_fix(python: str) -> str:
    return (f"install Dynamo with a Python every user may read (for example /usr/bin/python3 -m venv outside a "
            f"private home; {python} resolves to {os.path.realpath(python)})")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
