"""Applications are isolated from each other and from the server's state (issue 8 §3).

A real dynamod run as root with ``[applications] uid_range``: each application runs as a uid of
its own, cannot signal, trace or enter another's work area, and leaves nothing running when it
ends; --poll shows another user's output to no one but its owner and administrators; the state
files are the server's alone, whatever its umask.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import stat
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, command, run_as_nobody, wait_for

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root: applications run as other uids")

# A range per test: a process one test failed to kill would make the next server refuse to start.
RANGES = {"isolation": "61184-61203", "escape": "61204-61223", "shutdown": "61224-61243"}


@pytest.fixture
def uid_server(server_home: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server running each application as a uid of its own, from the range named by the parameter."""
    name = request.param
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db",
                    extra=f'uid_range = "{RANGES[name]}"\nmax_running = 4')
    server.start()
    yield server
    if server.process is not None:
        assert server.stop() == 0, server.output.read_text()


def processes_of(uids: Iterable[int]) -> list[int]:
    """Live processes with a real, effective, saved or filesystem uid in ``uids`` (read from /proc,
    independently of the server's own scan)."""
    wanted, found = set(uids), []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if status and "\nState:\tZ" not in status and wanted & set(map(int, field(status, "Uid:").split())):
            found.append(int(entry.name))
    return found


def field(polled: str, key: str) -> str:
    found = re.search(rf"^{key}\s+(.*)$", polled, re.M)
    assert found, polled
    return found.group(1).strip()


def in_range(uid: int, name: str) -> bool:
    low, high = RANGES[name].split("-")
    return int(low) <= uid <= int(high)


ATTACK = """
import ctypes, os, signal, sys
victim, work, db = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print("uid", os.getuid())

def attempt(name, action):
    try:
        action()
        print(name, "done")
    except OSError as exc:
        print(name, "refused", exc.errno)

attempt("sigstop", lambda: os.kill(victim, signal.SIGSTOP))
attempt("list", lambda: os.listdir(work))
attempt("write", lambda: open(os.path.join(work, "planted.py"), "w").write("x"))
attempt("database", lambda: open(db, "rb").read(16))
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
attached = libc.ptrace(16, victim, None, None)  # PTRACE_ATTACH
print("ptrace", "done" if attached == 0 else "refused", ctypes.get_errno())
"""


@pytest.mark.parametrize("uid_server", ["isolation"], indirect=True)
def test_applications_of_different_users_cannot_reach_each_other(uid_server: Server) -> None:
    server = uid_server
    victim = server.script("victim.py", "import os, time\nprint('secret output', os.getuid(), flush=True)\n"
                                        "time.sleep(60)\n")
    victim_id = int(server.run("-A", str(victim)).out)
    wait_for(lambda: "secret output" in server.run("--poll", str(victim_id)).out)
    polled = server.run("--poll", str(victim_id)).out  # root: an administrator sees everything
    pid, work = int(field(polled, "pid")), field(polled, "work_area")
    victim_uid = int(field(Path(f"/proc/{pid}/status").read_text(), "Uid:").split()[0])
    assert os.stat(f"/proc/{pid}/status").st_uid == 0  # not dumpable: its /proc files are root's
    assert in_range(victim_uid, "isolation") and stat.S_IMODE(os.stat(work).st_mode) == 0o700

    assert server.run("--user", "nobody", cmd="dynamo-user-auth").code == 0  # registered, no roles
    attack = server.script("attack.py", ATTACK)
    attack.chmod(0o644)
    done = run_as_nobody(server, "dynamo.cli.dynamo", f"{attack} {pid} {work} {server.home / 'inventory.db'}")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert in_range(int(lines["uid"]), "isolation") and int(lines["uid"]) != victim_uid
    for what in ("sigstop", "list", "write", "database", "ptrace"):
        assert lines[what].startswith("refused"), (what, done.stdout)
    assert "\nState:\tS" in Path(f"/proc/{pid}/status").read_text()  # not stopped
    assert not (Path(work) / "planted.py").exists()

    # another user's --poll and --list: the status line, not the output, pid or work area
    other = run_as_nobody(server, "dynamo.cli.dynamo", "--poll", str(victim_id))
    assert other.returncode == 0, other.stderr
    assert "running" in other.stdout
    assert "secret output" not in other.stdout and work not in other.stdout and str(pid) not in other.stdout
    listed = run_as_nobody(server, "dynamo.cli.dynamo", "--list", "--json")
    assert listed.returncode == 0 and str(victim_id) in listed.stdout and work not in listed.stdout
    assert server.run("--kill", str(victim_id)).code == 0


def test_another_users_output_and_work_area_are_hidden_in_every_mode(server: Server) -> None:
    """With the shared service user too: the random work area name and the output are the owner's."""
    script = server.script("quiet.py", "import time\nprint('private words', flush=True)\ntime.sleep(60)\n")
    app_id = int(server.run("-A", f"{script} an-argument").out)
    wait_for(lambda: "private words" in server.run("--poll", str(app_id)).out)
    work = field(server.run("--poll", str(app_id)).out, "work_area")
    assert server.run("--user", "nobody", cmd="dynamo-user-auth").code == 0
    polled = run_as_nobody(server, "dynamo.cli.dynamo", "--poll", str(app_id), "--json")
    assert polled.returncode == 0, polled.stderr
    assert '"status": "running"' in polled.stdout
    for hidden in ("private words", work, "an-argument", '"pid"'):
        assert hidden not in polled.stdout, hidden
    listed = run_as_nobody(server, "dynamo.cli.dynamo", "--list", "--json")
    assert str(app_id) in listed.stdout and work not in listed.stdout and "an-argument" not in listed.stdout
    assert server.run("--kill", str(app_id)).code == 0


ESCAPE = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
report = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:  # in a session of its own, ignoring SIGTERM, its output closed
        for fd in (0, 1, 2):
            os.close(fd)
        os.write(report[1], b"%d\\n" % os.getpid())
        time.sleep(300)
        os._exit(0)
    os._exit(0)
print(os.getuid(), os.read(report[0], 64).decode().strip(), flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("uid_server", ["escape"], indirect=True)
def test_nothing_of_an_application_survives_its_end(uid_server: Server) -> None:
    server = uid_server
    script = server.script("escape.py", ESCAPE)
    done = server.run(str(script), "--timeout", str(1.0 / 3600))
    assert done.code == 124, done.err
    uid, escaped = map(int, done.out.split())
    assert in_range(uid, "escape")
    assert not processes_of((uid,)), "a process of the application's uid outlived it"
    assert "zombie" in _state(escaped) or not Path(f"/proc/{escaped}").exists()
    work = Path(json.loads(server.run("--list", "--all", "--json").out)[0]["work_area"])
    owner = os.stat(work)
    assert (owner.st_uid, stat.S_IMODE(owner.st_mode)) == (0, 0o700)  # the next holder of the uid cannot enter it


@pytest.mark.parametrize("uid_server", ["shutdown"], indirect=True)
def test_nothing_of_an_application_survives_the_servers_stop(uid_server: Server) -> None:
    server = uid_server
    script = server.script("escape.py", ESCAPE)
    app_id = int(server.run("-A", str(script)).out)
    wait_for(lambda: "stdout" in server.run("--poll", str(app_id)).out)
    uid = int(server.run("--poll", str(app_id)).out.split("--- stdout (end) ---")[1].split()[0])
    assert processes_of((uid,))
    assert server.stop() == 0
    low, high = RANGES["shutdown"].split("-")
    assert not processes_of(range(int(low), int(high) + 1))


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"


def test_the_state_is_readable_by_the_server_alone(server_home: Path) -> None:
    """With umask 0 (the worst an operator's environment can give), and a log left world-readable by
    an older version: every state file is 0600 and an application cannot open the store."""
    (server_home / "log").mkdir(mode=0o755)
    old_log = server_home / "log" / "server.log"
    old_log.write_text("an older line\n")
    old_log.chmod(0o644)
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db")
    server.start(umask=0)
    try:
        assert server.run("-", input='{"site": [{"name": "T1_MODES"}]}', cmd="dynamo-inject").code == 0
        script = server.script("peek.py", f"""
import os
print('hello')
for path in {[str(server_home / n) for n in ("inventory.db", "inventory.db-wal", "inventory-registry.db",
                                            "inventory-registry.db-wal", "log/server.log")]!r}:
    try:
        open(path, 'rb').read(1)
        print(path, 'read')
    except OSError:
        print(path, 'refused')
""")
        done = server.run(str(script))
        assert done.code == 0, done.err
        assert " read" not in done.out and done.out.count("refused") == 5, done.out
        run_dir = next((server_home / "work").glob("*-*"))
        files = [server_home / name for name in ("inventory.db", "inventory.db-wal", "inventory.db-shm",
                                                 "inventory-registry.db", "inventory-registry.db-wal",
                                                 "inventory-registry.db-shm", "log/server.log", "log/changes.log",
                                                 "dynamod.pid")]
        files += [run_dir / "_stdout", run_dir / "_stderr"]
        modes = {str(path): stat.S_IMODE(os.stat(path).st_mode) for path in files}
        assert modes == dict.fromkeys(modes, 0o600)
        assert stat.S_IMODE(os.stat(server_home / "log").st_mode) == 0o700
        wait_for(lambda: "mode changed from 644 to 600" in server.log())
    finally:
        assert server.stop() == 0


def test_a_uid_range_holding_a_user_is_refused(server_home: Path) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db",
                    extra=f'uid_range = "{nobody - 20}-{nobody}"\nmax_running = 4')
    done = subprocess.run([command("dynamod"), "--config", str(server.config)], capture_output=True, text=True,
                          timeout=60, env=server.env())
    assert done.returncode != 0
    assert f"uid {nobody} belongs to user 'nobody'" in done.stderr and "Traceback" not in done.stderr
