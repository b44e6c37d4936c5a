"""The web server inside a running dynamod: module directories, version stamps after commits,
worker generations and recycling, HTTPS identities, a read during a large change set."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, cmdline_of, free_port, wait_for
from tests.web.helpers import PACKAGE_IMPL, PACKAGE_INIT, TEST_MODULE, Reply, get


def web_server(home: Path, tls: dict[str, Path] | None = None, **settings: object) -> Server:
    modules = home / "webmodules"
    (modules / "sitepkg").mkdir(parents=True)
    (modules / "testmod.py").write_text(TEST_MODULE)
    (modules / "sitepkg" / "__init__.py").write_text(PACKAGE_INIT)
    (modules / "sitepkg" / "impl.py").write_text(PACKAGE_IMPL)
    (home / "webmodules.json").write_text(json.dumps({"echo": {"greeting": "from the config"}}))
    port = free_port()
    lines = ["[web]", f'address = "127.0.0.1:{port}"', f'module_dirs = ["{modules}"]',
             'modules_config = "webmodules.json"', "workers = 2", "threads = 4"]
    if tls:
        lines += [f'tls_cert = "{tls["server_cert"]}"', f'tls_key = "{tls["server_key"]}"', f'tls_ca = "{tls["ca"]}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    s = Server(home, f"sqlite:///{home}/inventory.db", extra="\n".join(lines))
    s.web_port = port  # type: ignore[attr-defined]
    s.start()
    if not tls:
        wait_for(lambda: _answers(port))
    return s


def _answers(port: int) -> bool:
    try:
        return get(port, "/data/server/status").status == 200
    except OSError:
        return False


@pytest.fixture
def web(server_home: Path) -> Iterator[Server]:
    s = web_server(server_home, max_requests=25)
    yield s
    assert s.stop() == 0, s.output.read_text()


def inject(server: Server, document: str) -> None:
    done = server.run("-", input=document, cmd="dynamo-inject")
    assert done.code == 0, done.err


def workers(server: Server) -> list[int]:
    return [pid for pid in server.children() if "web worker" in cmdline_of(pid)]


def test_modules_from_an_extra_directory_with_their_configuration(web: Server) -> None:
    port = web.web_port  # type: ignore[attr-defined]
    r = get(port, "/data/testmod/echo?x=1&x=2")
    assert r.status == 200 and r.json["data"]["config"] == "from the config"
    assert r.json["data"]["request"] == {"x": ["1", "2"]} and r.json["data"]["caller"] == [None, None, 0]
    assert get(port, "/data/sitepkg/hello").json["data"] == "hello from a package"
    assert get(port, "/data/sitepkg/not_mapped").status == 404
    assert get(port, "/web/testmod/page").status == 200
    assert get(port, "/data/testmod/fail").status == 500
    assert f"http://127.0.0.1:{port}" in web.log()  # the ready line names the web address


def test_a_read_after_a_committed_write_sees_it(web: Server) -> None:
    port = web.web_port  # type: ignore[attr-defined]
    before = get(port, "/data/inventory/nodes")
    assert before.json["data"] == {"node": []}
    for i in range(5):
        inject(web, json.dumps({"site": [{"name": f"T2_WEB_{i}", "host": f"h{i}.example.org"}]}))
        after = get(port, "/data/inventory/nodes")
        assert after.status == 200, after.body
        assert [n["name"] for n in after.json["data"]["node"]][-1] == f"T2_WEB_{i}"
        assert after.json["inventory_version"] == before.json["inventory_version"] + i + 1
        assert after.headers["x-dynamo-inventory-version"] == str(after.json["inventory_version"])
    wait_for(lambda: len(workers(web)) == 2)  # the old generations drained


def test_workers_are_recycled_after_max_requests(web: Server) -> None:
    port = web.web_port  # type: ignore[attr-defined]
    first = set(workers(web))
    pids = {get(port, "/data/server/status").json["data"]["worker_pid"] for _ in range(80)}
    assert pids - first, "no new worker served after 80 requests with max_requests 25"
    wait_for(lambda: len(workers(web)) == 2)


def test_examples_through_the_data_service(web: Server) -> None:
    port = web.web_port  # type: ignore[attr-defined]
    examples = Path(__file__).resolve().parents[2] / "examples"
    for name in ("mydynamo-storage-sites.json", "mydynamo-initial-data.json"):
        inject(web, (examples / name).read_text())
    blocks = get(port, "/data/inventory/blockreplicas?dataset=pandaf/*").json["data"]["block"]
    assert [(b["files"], [r["node"] for r in b["replica"]]) for b in blocks] == [(2, ["T2_US_XYZ"])]
    status = get(port, "/data/server/status?full=y").json["data"]
    assert status["counts"]["files"] == 2 and status["inventory_version"] == 2
    page = get(port, "/web/inventory/stats")
    assert page.status == 200 and "T2_US_XYZ" in page.text


def test_reads_during_a_large_change_set_see_one_version(web: Server) -> None:
    """While a change set of 20,000 files commits, every read is answered, from the old image or from
    the new one: its file count always matches its version."""
    port = web.web_port  # type: ignore[attr-defined]
    inject(web, json.dumps({"site": [{"name": "T2_BIG"}]}))
    files = [{"name": f"/store/big/f{i:06d}.root", "size": 1000} for i in range(20000)]
    doc = json.dumps({"dataset": [{"name": "/Big/Set/RAW", "blocks": [
        {"name": f"blk{b}", "files": files[b * 1000:(b + 1) * 1000]} for b in range(20)]}]})
    seen: list[tuple[int, int]] = []
    bad: list[Reply] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            r = get(port, "/data/server/status?full=y")
            if r.status == 200:
                seen.append((r.json["inventory_version"], r.json["data"]["counts"]["files"]))
            else:
                bad.append(r)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        inject(web, doc)
        wait_for(lambda: any(v == 2 for v, _ in seen), timeout=30)
    finally:
        done.set()
        reader.join(30)
    assert not bad, bad[0].body
    assert set(seen) <= {(1, 0), (2, 20000)}, sorted(set(seen))
    assert (2, 20000) in seen


def test_dynamod_without_a_web_section_serves_no_http(server_home: Path) -> None:
    s = Server(server_home, f"sqlite:///{server_home}/inventory.db")
    s.start()
    try:
        assert not workers(s) and "http://" not in s.log()
    finally:
        assert s.stop() == 0


# --- HTTPS: callers are their certificates --------------------------------------------------

def https(pki: dict[str, Path], who: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if who is not None:
        context.load_cert_chain(pki[who], pki[f"{who}_key"])
    return context


@pytest.fixture
def tls_web(server_home: Path, pki: dict[str, Path]) -> Iterator[Server]:
    s = web_server(server_home, tls=pki)
    port = s.web_port  # type: ignore[attr-defined]

    def up() -> bool:
        try:
            return get(port, "/data/server/status", context=https(pki, None)).status == 403
        except OSError:
            return False

    wait_for(up)
    yield s
    assert s.stop() == 0, s.output.read_text()


def test_https_identifies_registered_users(tls_web: Server, pki: dict[str, Path]) -> None:
    port = tls_web.web_port  # type: ignore[attr-defined]
    registered = tls_web.run("--user", "alice", "--dn", str(pki["alice_dn"]), "--role", "admin", "--target",
                             "inventory", cmd="dynamo-user-auth")
    assert registered.code == 0, registered.err
    inject(tls_web, '{"site": [{"name": "T2_TLS"}]}')  # a new generation reads the users again
    r = get(port, "/data/testmod/echo", context=https(pki, "alice"))
    assert r.status == 200, r.body
    assert r.json["data"]["caller"][:2] == ["alice", "/C=US/O=Dynamo Test/CN=alice"]
    assert get(port, "/data/testmod/admin", context=https(pki, "alice")).json["data"] == "ok"
    for who in ("mallory", "lookalike", None):
        refused = get(port, "/data/testmod/echo", context=https(pki, who))
        assert refused.status == 403 and refused.json["result"] == "AuthFailed", who
    assert "Unknown user" in get(port, "/data/testmod/echo", context=https(pki, "mallory")).json["message"]



def test_https_rfc3820_proxy_speaks_for_its_owner(tls_web: Server, pki: dict[str, Path]) -> None:
    from tests.e2e.test_tls import make_proxy

    port = tls_web.web_port  # type: ignore[attr-defined]
    tls_web.run("--user", "alice", "--dn", str(pki["alice_dn"]), cmd="dynamo-user-auth")
    inject(tls_web, '{"site": [{"name": "T2_TLS"}]}')  # a new generation reads the users again
    for owner, status in (("alice", 200), ("mallory", 403)):
        context = ssl.create_default_context(cafile=str(pki["ca"]))
        context.load_cert_chain(make_proxy(pki, owner, tls_web.home))
        r = get(port, "/data/testmod/echo", context=context)
        assert r.status == status, r.body
        if status == 200:
            assert r.json["data"]["caller"][:2] == ["alice", "/C=US/O=Dynamo Test/CN=alice"]


def test_a_web_worker_lost_while_a_writers_records_go_into_the_image(web: Server) -> None:
    """A writer's records go into the live image as it runs (web workers are not forked from a half-changed
    image); a web worker dies meanwhile: the image is rolled back to whole, a worker is forked from it, the web
    answers, and the writer's change set goes in after its end."""
    import os
    import signal
    import subprocess

    from tests.e2e.conftest import command
    from tests.e2e.test_applications import authorize
    from tests.e2e.test_offloop import PAUSING_WRITER

    writer = web.script("pausing.py", PAUSING_WRITER)
    authorize(web, str(writer), "pausingwriter")
    go = web.home / "go-web"
    app = subprocess.Popen([command("dynamo"), f"{writer} {go} ok", "--write-request", "--title", "pausingwriter"],
                           env=web.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert app.stdout is not None and app.stdout.readline() == "first half\n"
    wait_for(lambda: "its records go into the image as they come" in web.log())
    before = set(workers(web))
    os.kill(min(before), signal.SIGKILL)
    wait_for(lambda: "the web server needs a worker" in web.log(), timeout=30)
    wait_for(lambda: len(set(workers(web)) - before) >= 1, timeout=30)
    assert _answers(web.web_port)  # type: ignore[attr-defined]
    go.touch()
    out, err = app.communicate(timeout=120)
    assert app.returncode == 0, err
    reply = get(web.web_port, "/data/server/status")  # type: ignore[attr-defined]
    assert reply.status == 200
