"""What a hostile or unlucky application or client must not be able to do to dynamod.

Each test drives a real dynamod with the real commands (or, where the point is a
client that misbehaves at the protocol level, with the shared protocol module),
and checks that the server stays up, keeps serving others, and tells the truth.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from dynamo.protocol import framing
from tests.e2e.conftest import Server, command, run_as_nobody, wait_for
from tests.e2e.test_applications import WRITER, authorize, sites

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="needs root: dynamod drops applications to a service user")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in state


def test_an_application_dying_of_a_realtime_signal_does_not_stop_the_server(server: Server) -> None:
    script = server.script("rt.py", "import os\nprint('up', flush=True)\nos.kill(os.getpid(), 40)\n")
    done = server.run(str(script))
    assert done.code == 128 + 40, done.err
    assert "killed by signal 40" in done.err  # real-time signals have no name in Python's signal.Signals
    assert server.process is not None and server.process.poll() is None
    assert server.run("--list").code == 0


def test_a_timeout_kills_the_whole_process_group(server: Server) -> None:
    script = server.script("forks.py", """
import os, time
# (os.fork rather than subprocess: as the service user, the test machine's Python may not let the
# application import modules the server has not loaded)
pid = os.fork()
if pid == 0:
    time.sleep(120)
    os._exit(0)
print(pid, flush=True)
time.sleep(120)
""")
    done = server.run(str(script), "--timeout", str(1.0 / 3600))
    assert done.code == 124, done.err
    grandchild = int(done.out.split()[0])
    wait_for(lambda: not alive(grandchild), timeout=15)


def test_a_timed_out_or_killed_writer_changes_nothing(server: Server) -> None:
    slow = server.script("slowwriter.py", WRITER + "import time\nprint('written', flush=True)\ntime.sleep(120)\n")
    authorize(server, str(slow), "slowwriter")
    done = server.run(str(slow), "--write-request", "--title", "slowwriter", "--timeout", str(1.0 / 3600))
    assert done.code == 124, done.err
    assert sites(server) == "[]\n"
    app_id = int(server.run("-A", str(slow), "--write-request", "--title", "slowwriter").out)
    wait_for(lambda: "written" in server.run("--poll", str(app_id)).out)
    assert server.run("--kill", str(app_id)).code == 0
    wait_for(lambda: "status     killed" in server.run("--poll", str(app_id)).out)
    assert sites(server) == "[]\n"
    assert server.run("-", input='{"site": [{"name": "T1_AFTER"}]}', cmd="dynamo-inject").code == 0  # slot free


def test_a_client_cannot_raise_the_servers_timeout(server_home: Path) -> None:
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db", extra="timeout = 1.5")
    server.start()
    try:
        sleeper = server.script("sleeper.py", "import time\ntime.sleep(60)\n")
        for asked in ("1", "0"):  # an hour, and "no limit": both capped by the server's 1.5 s
            started = time.monotonic()
            done = server.run(str(sleeper), "--timeout", asked)
            assert done.code == 124, done.err
            assert time.monotonic() - started < 15
        refused = server.run(str(sleeper), "--timeout", "nan")
        assert refused.code != 0 and "timeout" in refused.err
    finally:
        assert server.stop() == 0


def test_readers_run_concurrently_while_a_writer_works(server: Server) -> None:
    # Margins for a loaded machine: side by side the readers take ~3 s plus start-up, one after the
    # other they would take 9 s; the writer outlives them all.
    slow = server.script("slow.py", WRITER + "import time\nprint('writing', flush=True)\ntime.sleep(9)\n")
    authorize(server, str(slow), "slow")
    writer = subprocess.Popen([command("dynamo"), str(slow), "-W", "-t", "slow"], env=server.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline() == "read_only False\n"
    reader = server.script("nap.py", "import time\nfrom dynamo.core.executable import inventory\n"
                                     "time.sleep(3)\nprint(len(inventory.sites))\n")
    started = time.monotonic()
    readers = [subprocess.Popen([command("dynamo"), str(reader)], env=server.env(), stdout=subprocess.PIPE,
                                text=True) for _ in range(3)]
    outs = [r.communicate(timeout=30)[0] for r in readers]
    elapsed = time.monotonic() - started
    assert outs == ["0\n"] * 3  # the image as it was: the writer has not finished
    assert elapsed < 7.5, f"three 3 s readers took {elapsed:.1f} s: they did not run side by side"
    assert writer.wait(30) == 0
    assert sites(server) == "[('T1_NEW', 'third.example.org', 'mss')]\n"


def test_ctrl_c_cancels_a_queued_application(server: Server) -> None:
    slow = server.script("slow.py", WRITER + "import time\nprint('writing', flush=True)\ntime.sleep(3)\n")
    authorize(server, str(slow), "slow")
    second = server.script("second.py", WRITER.replace("T1_NEW", "T1_SECOND"))
    authorize(server, str(second), "second")
    first = subprocess.Popen([command("dynamo"), str(slow), "-W", "-t", "slow"], env=server.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.stdout is not None and first.stdout.readline() == "read_only False\n"
    queued = subprocess.Popen([command("dynamo"), str(second), "-W", "-t", "second"], env=server.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "queued    w" in server.run("--list").out)
    queued.send_signal(signal.SIGINT)
    assert queued.wait(20) == 137
    assert first.wait(30) == 0
    listing = server.run("--list", "--all").out
    assert "second" in listing and "killed" in listing
    assert sites(server) == "[('T1_NEW', 'third.example.org', 'mss')]\n"  # the cancelled one never ran


def test_a_flooding_shell_client_does_not_block_the_server(server: Server) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(server.socket))
        framing.send(sock, {"op": "shell", "tty": False})
        framing.send(sock, {"op": "stdin", "data": "import time; time.sleep(30)\n"})
        sock.settimeout(0.5)
        line = "x" * 60000 + "\n"
        try:
            for _ in range(200):  # 12 MB of console input while the console sleeps
                framing.send(sock, {"op": "stdin", "data": line})
        except (TimeoutError, OSError):
            pass  # the server may refuse more (and drop us): what matters is that it still serves others
        started = time.monotonic()
        assert server.run("--list").code == 0
        assert time.monotonic() - started < 10


def test_an_idle_connection_is_dropped(server_home: Path) -> None:
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db")
    server.config.write_text(server.config.read_text().replace("[listen]\n", "[listen]\nclient_timeout = 1.0\n"))
    server.start()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(server.socket))
            sock.settimeout(15)
            started = time.monotonic()
            data = sock.recv(65536)  # nothing sent: the server must give up on us
            assert time.monotonic() - started < 10
            assert data == b""  # dropped without a word: the log says why
    finally:
        assert server.stop() == 0


@ROOT_ONLY
def test_applications_run_as_the_service_user(server: Server) -> None:
    nobody = pwd.getpwnam("nobody")
    script = server.script("who.py", "import os\nprint(os.getuid(), os.getgid(), os.stat('.').st_uid)\n"
                                     "open('mine.txt', 'w').write('ok')\n")
    done = server.run(str(script))
    assert done.code == 0, done.err
    assert done.out.split() == [str(nobody.pw_uid), str(nobody.pw_gid), str(nobody.pw_uid)]


@ROOT_ONLY
def test_an_application_cannot_make_the_server_read_files_for_it(server: Server) -> None:
    secret = server.home / "secret.txt"
    secret.write_text("TOP SECRET\n")
    secret.chmod(0o600)
    script = server.script("swap.py", f"""
import os, time
print('hello', flush=True)
for name in ('_stdout', '_stderr', '../_stdout', '../_stderr'):
    try:
        os.unlink(name)
    except OSError:
        pass
    try:
        os.symlink({str(secret)!r}, name)
    except OSError:
        pass
time.sleep(30)
""")
    app_id = int(server.run("-A", str(script)).out)
    wait_for(lambda: "hello" in server.run("--poll", str(app_id)).out)
    time.sleep(0.5)
    polled = server.run("--poll", str(app_id)).out
    assert "TOP SECRET" not in polled
    assert "hello" in polled  # the server's own copy of the output is intact
    server.run("--kill", str(app_id))


@ROOT_ONLY
def test_only_an_administrator_may_authorize(server: Server) -> None:
    assert server.run("--user", "nobody", cmd="dynamo-user-auth").code == 0  # known, but no roles
    script = server.script("w.py", WRITER)
    script.chmod(0o644)

    refused = run_as_nobody(server, "dynamo.cli.exec_auth", "--executable", str(script), "--title", "w")
    assert refused.returncode == 77, refused.stderr
    assert "needs role 'admin' on 'application'" in refused.stderr
    assert "w " not in server.run("--list", cmd="dynamo-exec-auth").out
    other = int(server.run("-A", str(server.script("s.py", "import time\ntime.sleep(30)\n"))).out)
    denied = run_as_nobody(server, "dynamo.cli.dynamo", "--kill", str(other))
    assert denied.returncode == 77, denied.stderr
    server.run("--kill", str(other))


def test_startup_failures_are_reported_and_logged(server_home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = Server(server_home, f"sqlite:///{server_home}/inventory.db")
        server.config.write_text(server.config.read_text().replace(
            "[listen]\n", f'[listen]\ntls_address = "127.0.0.1:{port}"\ntls_cert = "/nonexistent/cert.pem"\n'
                          'tls_key = "/nonexistent/key.pem"\ntls_ca = "/nonexistent/ca.pem"\n'))
        done = subprocess.run([command("dynamod"), "--config", str(server.config)], capture_output=True,
                              text=True, timeout=60, env=server.env())
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    why = "TLS certificate /nonexistent/cert.pem with key /nonexistent/key.pem: [Errno 2] No such file or directory"
    assert f"dynamod: {why}\n" in done.stderr, done.stderr
    assert f"ERROR dynamo.server: dynamod cannot start: {why}\n" in server.log()


@ROOT_ONLY
def test_applications_cannot_find_each_others_work_areas(server: Server) -> None:
    script = server.script("look.py", """
import os, sys
print(os.getcwd().rsplit('/', 2)[-2].split('-')[0], sys.path.count(os.getcwd()))
for where in ('..', '../..'):
    try:
        os.listdir(where)
        print(where, 'listable')
    except PermissionError:
        print(where, 'hidden')
""")
    done = server.run(str(script))
    assert done.code == 0, done.err
    app_id, on_path = done.out.split("\n")[0].split()
    assert on_path == "0"  # the work area is not on sys.path
    assert done.out.split("\n")[1:3] == [".. hidden", "../.. hidden"]
    assert server.run("--poll", app_id).code == 0


def test_the_server_keeps_only_max_output_of_an_applications_output(server_home: Path) -> None:
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db", extra="max_output = 1000")
    server.start()
    try:
        script = server.script("chatty.py", "for i in range(1000):\n    print(f'line {i:04d}')\n")
        done = server.run(str(script))
        assert done.code == 0 and done.out.count("\n") == 1000  # the client gets everything
        app_id = json.loads(server.run("--list", "--all", "--json").out)[0]["id"]
        polled = server.run("--poll", str(app_id)).out
        assert "line 0000" in polled and "line 0999" not in polled
        assert "the server keeps only the first 1000 characters of this output" in polled
    finally:
        assert server.stop() == 0


@ROOT_ONLY
def test_root_is_refused_as_the_service_user(server_home: Path) -> None:
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db")
    server.config.write_text(server.config.read_text().replace("[server]\n", '[server]\nservice_user = "root"\n'))
    done = subprocess.run([command("dynamod"), "--config", str(server.config)], capture_output=True, text=True,
                          timeout=60, env=server.env())
    assert done.returncode != 0 and "service_user 'root' is root" in done.stderr
