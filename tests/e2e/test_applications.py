"""Applications: read-only and write, authorization, failures, timeouts, kill, poll, async, concurrency."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.conftest import Server, run_as_nobody, wait_for
from tests.e2e.test_seed_transcript import inject_seed

WRITER = """
import sys
from dynamo.core.executable import inventory, read_only
from dynamo.dataformat import Site, Group
print("read_only", read_only)
inventory.update(Site("T1_NEW", "first.example.org"))
inventory.update(Group("DataOps"))
inventory.delete(Site("T1_NEW"))
inventory.update(Site("T1_NEW", "second.example.org"))
inventory.update(Site("T1_NEW", "third.example.org", "mss"))
"""


def sites(server: Server) -> str:
    return server.shell("print(sorted((s.name, s.host, s.storage_type.value) for s in inventory.sites.values()))\n").out


def authorize(server: Server, path: str, title: str, *extra: str) -> None:
    done = server.run("--executable", path, "--title", title, *extra, cmd="dynamo-exec-auth")
    assert done.code == 0, done.err


def test_read_only_application(server: Server) -> None:
    inject_seed(server)
    script = server.script("ro.py", """
import sys
from dynamo.core.executable import inventory, read_only
from dynamo.dataformat import Site
assert __name__ == "__main__"
print("argv", sys.argv[1:], "read_only", read_only)
inventory.update(Site("T9_LOCAL"))
inventory.delete(Site("T2_US_XYZ"))
print(sorted(inventory.sites))
print("a warning", file=sys.stderr)
""")
    done = server.run(f"{script} one 'two words'")
    assert done.code == 0, done.err
    assert done.out == "argv ['one', 'two words'] read_only True\n['T3_US_XYZ', 'T9_LOCAL']\n"
    assert done.err == "a warning\n"
    assert "('T2_US_XYZ'" in sites(server) and "T9_LOCAL" not in sites(server)  # thrown away


def test_exit_codes_and_exceptions(server: Server) -> None:
    assert server.run(str(server.script("e3.py", "import sys; sys.exit(3)"))).code == 3
    crashed = server.run(str(server.script("boom.py", "def f():\n    raise ValueError('boom')\nf()\n")))
    assert crashed.code == 1
    assert "ValueError: boom" in crashed.err and "boom.py" in crashed.err and "runner.py" not in crashed.err


def test_write_authorization_flow(server: Server) -> None:
    script = server.script("writer.py", WRITER)
    refused = server.run(str(script), "--write-request", "--title", "writer")
    assert refused.code == 77 and "'writer' is not authorized for write access" in refused.err
    authorize(server, str(script), "writer")
    done = server.run(str(script), "--write-request", "--title", "writer")
    assert done.code == 0, done.err
    assert done.out == "read_only False\n"
    assert "5 change(s) applied: inventory version 1" in done.err
    # applied in call order: deleted, then re-created, then modified
    assert sites(server) == "[('T1_NEW', 'third.example.org', 'mss')]\n"
    assert server.shell("print(inventory.sites['T1_NEW'].id, sorted(inventory.groups, key=str))\n").out == \
        "2 ['DataOps', None]\n"
    changes = (server.home / "log" / "changes.log").read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in changes] == [
        "update site name='T1_NEW'", "update group name='DataOps'", "delete site name='T1_NEW'",
        "update site name='T1_NEW'", "update site name='T1_NEW'"]
    # the script changes: refused before it runs
    script.write_text(WRITER + "\n# an edit\n")
    changed = server.run(str(script), "--write-request", "--title", "writer")
    assert changed.code == 77 and "the script has changed since it was authorized as 'writer'" in changed.err
    assert changed.out == ""
    # authorized for another user only
    other = server.run("--user", "nobody-registered", "--executable", str(script), "--title", "writer2",
                       cmd="dynamo-exec-auth")
    assert other.code == 1 and "no user 'nobody-registered'" in other.err
    server.run("--user", "bob", cmd="dynamo-user-auth")
    authorize(server, str(script), "writer2", "--user", "bob")
    not_mine = server.run(str(script), "--write-request", "--title", "writer2")
    assert not_mine.code == 77 and "'writer2' is authorized for user bob only" in not_mine.err
    listed = server.run("--list", cmd="dynamo-exec-auth")
    assert "writer " in listed.out and "bob" in listed.out
    assert server.run("--delete", "--title", "writer", cmd="dynamo-exec-auth").code == 0
    assert server.run(str(script), "--write-request", "--title", "writer").code == 77


def test_failed_or_killed_writers_change_nothing(server: Server) -> None:
    for name, tail, code in (("fails.py", "raise SystemExit(1)", 1),
                             ("dies.py", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137),
                             ("raises.py", "raise RuntimeError('no')", 1)):
        script = server.script(name, WRITER + tail + "\n")
        authorize(server, str(script), name.replace(".py", ""))
        done = server.run(str(script), "--write-request", "--title", name.replace(".py", ""))
        assert done.code == code, (name, done.err)
        assert "nothing applied" in done.err or "killed" in done.err
    assert sites(server) == "[]\n"
    listing = server.run("--list", "--all", "--json").out
    assert listing.count('"status": "failed"') == 3
    assert "killed by signal SIGKILL; nothing applied" in listing


def test_refused_change_set(server: Server) -> None:
    script = server.script("bad.py", """
from dynamo.core.executable import inventory
from dynamo.dataformat import Site, Block, Dataset
inventory.update(Site("T1_OK"))
inventory.update(Dataset("/A/B/C"))
inventory.update(Block("b1", "/A/B/C", 100, 2))   # declares 2 files, has none listed... fine
from dynamo.dataformat import File
inventory.update(File("/store/a.root", "/A/B/C#b1", 10))  # ...but now holds 1 file of 10 bytes
""")
    authorize(server, str(script), "bad")
    done = server.run(str(script), "--write-request", "--title", "bad")
    assert done.code == 65
    assert "changes refused, nothing applied" in done.err and "declares num_files=2 size=100" in done.err
    assert sites(server) == "[]\n"


def test_timeout_kill_poll_async(server: Server) -> None:
    sleeper = server.script("sleeper.py", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    started = time.monotonic()
    timed_out = server.run(str(sleeper), "--timeout", str(1.5 / 3600))
    assert timed_out.code == 124 and "timeout" in timed_out.err
    assert timed_out.out == "sleeping\n"
    assert time.monotonic() - started < 20
    app_id = int(server.run("--asynchronous", str(sleeper)).out.strip())

    def polled(*expected: str) -> bool:
        out = server.run("--poll", str(app_id)).out
        return all(text in out for text in expected)

    wait_for(lambda: polled("status     running", "sleeping"))  # its output while it runs, too
    assert f"{app_id}  running" in server.run("--list").out
    killed = server.run("--kill", str(app_id))
    assert killed.code == 0 and "stopping" in killed.out
    wait_for(lambda: polled("status     killed"))
    assert server.run("--poll", "99999").code == 1
    app_id = int(server.run("-A", str(server.script("quick.py", "print('done quickly')\n"))).out)
    wait_for(lambda: polled("status     done", "done quickly"))


def test_readers_run_while_a_writer_works_and_writers_queue(server: Server) -> None:
    import subprocess
    slow = server.script("slow.py", WRITER.replace("T1_NEW", "T1_SLOW") + "import time; time.sleep(3)\n")
    authorize(server, str(slow), "slow")
    second = server.script("second.py", WRITER.replace("T1_NEW", "T1_SECOND"))
    authorize(server, str(second), "second")
    from tests.e2e.conftest import command
    writer = subprocess.Popen([command("dynamo"), str(slow), "-W", "-t", "slow"], env=server.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "running   w" in server.run("--list").out)
    queued = subprocess.Popen([command("dynamo"), str(second), "-W", "-t", "second"], env=server.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    reader = server.script("reader.py", "from dynamo.core.executable import inventory\n"
                                        "print(sorted(inventory.sites))\n")
    started = time.monotonic()
    results = [server.run(str(reader)) for _ in range(3)]
    assert time.monotonic() - started < 2.5  # not waiting for the writer
    assert all(r.code == 0 and r.out == "[]\n" for r in results), results
    assert writer.wait(30) == 0 and queued.wait(30) == 0
    assert "queued: waiting for the current writer" in queued.stderr.read()
    assert sites(server) == ("[('T1_SECOND', 'third.example.org', 'mss'), "
                             "('T1_SLOW', 'third.example.org', 'mss')]\n")


NICE = "import os\nprint(os.nice(0))\n"


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_writers_run_at_a_lower_priority_than_readers(server: Server) -> None:
    """``[applications] write_nice`` (default 5): a writer is a batch job the calls served meanwhile come
    before; a reader runs at dynamod's priority (the zygote's spares are raised back to it)."""
    assert server.process is not None
    base = _nice(server.process.pid)
    reader = server.run(str(server.script("reader_nice.py", NICE)))
    assert reader.code == 0 and int(reader.out) == base, reader
    writer = server.script("writer_nice.py", NICE)
    authorize(server, str(writer), "nice")
    written = server.run(str(writer), "-W", "-t", "nice")
    assert written.code == 0 and int(written.out.splitlines()[0]) == min(19, base + 5), written
    again = server.run(str(server.script("reader_nice2.py", NICE)))  # the next reader is not lowered
    assert again.code == 0 and int(again.out) == base, again


def test_unknown_local_user_is_refused(server: Server) -> None:
    done = run_as_nobody(server, "dynamo.cli.dynamo", "--list")
    assert done.returncode == 77, done.stderr
    assert "unknown local user 'nobody'" in done.stderr
