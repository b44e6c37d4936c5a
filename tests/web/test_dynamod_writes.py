"""Through a running dynamod, over real HTTPS: inject and delete over HTTP (authorized, unauthorized, bad
bodies: nothing changed), the application registry (owners and administrators see output), users and
roles that count on the web without a commit, and the web workers' link to dynamod (only workers may
speak for a caller)."""

from __future__ import annotations

import json
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, wait_for
from tests.e2e.test_web import https, web_server
from tests.web.helpers import Reply, get

ALICE = "/C=US/O=Dynamo Test/CN=alice"        # registered as root's DN: an administrator
MALLORY = "/C=US/O=Dynamo Test/CN=mallory"    # registered, no role
CAROL = "/C=US/O=Dynamo Test/CN=alice/CN=123"  # the "lookalike" certificate: admin on application only


def user_auth(server: Server, *args: str) -> None:
    done = server.run(*args, cmd="dynamo-user-auth")
    assert done.code == 0, done.err


@pytest.fixture
def site(server_home: Path, pki: dict[str, Path]) -> Iterator[Server]:
    s = web_server(server_home, tls=pki)
    user_auth(s, "--user", "root", "--dn", ALICE)
    user_auth(s, "--user", "mallory", "--dn", MALLORY)
    user_auth(s, "--user", "carol", "--dn", CAROL, "--role", "admin", "--target", "application")
    port = s.web_port  # type: ignore[attr-defined]
    # no commit since: the workers learn of the users within the refresh interval
    wait_for(lambda: _status(port, https(pki, "alice")) == 200, timeout=30)
    wait_for(lambda: _status(port, https(pki, "lookalike")) == 200, timeout=30)
    yield s
    assert s.stop() == 0, s.output.read_text()


def _status(port: int, context: ssl.SSLContext) -> int:
    try:
        return get(port, "/data/server/status", context=context).status
    except OSError:
        return 0


def post(port: int, path: str, document: object | bytes, context: ssl.SSLContext | None) -> Reply:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return get(port, path, "POST", body, {"Content-Type": "application/json"}, context=context)


def state(port: int, context: ssl.SSLContext) -> tuple[int, list[str]]:
    """The inventory version a read sees, and the sites."""
    r = get(port, "/data/inventory/nodes", context=context)
    assert r.status == 200, r.body
    return r.json["inventory_version"], [n["name"] for n in r.json["data"]["node"]]


# --- inject and delete ----------------------------------------------------------------------------

def test_inject_and_delete_over_https_apply_through_dynamod(site: Server, pki: dict[str, Path]) -> None:
    port, alice = site.web_port, https(pki, "alice")  # type: ignore[attr-defined]
    before, _ = state(port, alice)
    r = post(port, "/data/inventory/injectsync", {"site": [{"name": "T2_HTTP", "host": "h.example.org"}],
                                                 "group": [{"name": "WebOps"}]}, alice)
    assert r.status == 200, r.body
    assert r.json["result"] == "OK" and r.json["message"] == "Data is injected."
    assert r.json["data"] == {"sites": 1, "groups": 1}
    committed = r.json["inventory_version"]
    assert committed == before + 1 and r.headers["x-dynamo-inventory-version"] == str(committed)
    version, sites = state(port, alice)  # a read after the write: its version or newer, and the site
    assert version >= committed and "T2_HTTP" in sites
    # the original's asynchronous name applies it too (here every write is committed before the answer)
    files = [{"name": f"/store/web/f{i}.root", "size": 100 + i} for i in range(3)]
    r = post(port, "/data/inventory/inject", {"dataset": [{"name": "/Web/Set/RAW",
                                                           "blocks": [{"name": "b1", "files": files}]}]}, alice)
    assert r.status == 200, r.body
    assert r.json["data"] == {"datasets": 1, "blocks": 1, "files": 3}
    assert r.json["inventory_version"] == committed + 1
    listed = get(port, "/data/inventory/files?dataset=/Web/Set/RAW", context=alice)
    assert listed.json["inventory_version"] >= committed + 1 and len(listed.json["data"]["file"]) == 3
    # delete and deletesync
    r = post(port, "/data/inventory/deletesync", {"site": [{"name": "T2_HTTP"}]}, alice)
    assert r.status == 200, r.body
    assert r.json["message"] == "Data is deleted." and r.json["data"] == {"sites": 1}
    assert r.json["inventory_version"] == committed + 2
    version, sites = state(port, alice)
    assert version >= committed + 2 and "T2_HTTP" not in sites
    r = post(port, "/data/inventory/delete", {"dataset": [{"name": "/Web/Set/RAW"}]}, alice)
    assert r.status == 200 and r.json["data"] == {"datasets": 1}, r.body
    assert "by root" in site.log()  # the journal and the log name the HTTP caller, not the web worker


def test_unauthorized_writes_are_403_and_change_nothing(site: Server, pki: dict[str, Path]) -> None:
    port, alice = site.web_port, https(pki, "alice")  # type: ignore[attr-defined]
    before = state(port, alice)
    document = {"site": [{"name": "T2_NOT_ALLOWED"}]}
    for who in ("mallory", "lookalike", None):
        for command in ("inject", "injectsync", "delete", "deletesync"):
            r = post(port, f"/data/inventory/{command}", document, https(pki, who))
            assert r.status == 403 and r.json["result"] == "AuthFailed", (who, command, r.body)
    assert state(port, alice) == before


def test_plain_http_writes_are_403(server_home: Path) -> None:
    s = web_server(server_home)
    try:
        port = s.web_port  # type: ignore[attr-defined]
        before = get(port, "/data/inventory/nodes").json
        for command in ("inject", "injectsync", "delete", "deletesync"):
            r = post(port, f"/data/inventory/{command}", {"site": [{"name": "T2_ANON"}]}, None)
            assert r.status == 403 and r.json["result"] == "AuthFailed", r.body
        assert get(port, "/data/inventory/nodes").json == before
        assert get(port, "/data/applications/list").status == 403
    finally:
        assert s.stop() == 0, s.output.read_text()


@pytest.mark.parametrize(("command", "body", "why"), [
    ("injectsync", b'{"site": [{"name": "T2_X"', "not valid JSON"),
    ("injectsync", b'{"site": [{"name": "T2_X", "colour": "red"}]}', "colour"),
    ("inject", b'{"sites": [{"name": "T2_X"}]}', "sites"),
    ("inject", b'[{"name": "T2_X"}]', "must be a JSON object"),
    ("injectsync", b'{"site": [{"name": "T2_X", "host": 5}]}', "host"),
    ("deletesync", b'{"site": [{"name": "T2_NOT_THERE"}]}', "T2_NOT_THERE"),
    ("delete", b'{"dataset": [{"name": "/No/Such/SET"}]}', "/No/Such/SET"),
])
def test_bad_bodies_are_400_and_change_nothing(site: Server, pki: dict[str, Path], command: str,
                                              body: bytes, why: str) -> None:
    port, alice = site.web_port, https(pki, "alice")  # type: ignore[attr-defined]
    before = state(port, alice)
    r = post(port, f"/data/inventory/{command}", body, alice)
    assert r.status == 400 and r.json["result"] == "BadRequest", r.body
    assert why in r.json["message"]
    assert state(port, alice) == before


def test_writes_need_post(site: Server, pki: dict[str, Path]) -> None:
    r = get(site.web_port, "/data/inventory/injectsync?site=x", context=https(pki, "alice"))  # type: ignore[attr-defined]
    assert r.status == 405


# --- applications ---------------------------------------------------------------------------------

def test_applications_list_and_output_for_owner_and_admins(site: Server, pki: dict[str, Path]) -> None:
    port = site.web_port  # type: ignore[attr-defined]
    script = site.script("hello.py", "import sys\nprint('secret output', sys.argv[1:])\n")
    ids = []
    for i in range(3):
        done = site.run(f"{script} {i}")
        assert done.code == 0, done.err
    for who in ("alice", "lookalike", "mallory"):
        r = get(port, "/data/applications/list?all=y", context=https(pki, who))
        assert r.status == 200, (who, r.body)
        rows = r.json["data"]["application"]
        assert len(rows) == 3
        ids = [row["id"] for row in rows]
        assert all(row["user"] == "root" for row in rows)
        # the owner and an administrator see a row whole, anybody else its status line
        assert all(("args" in row) == (who != "mallory") for row in rows), who
    # paging: newest first by pages, oldest first within a page
    page = get(port, "/data/applications/list?all=y&limit=2", context=https(pki, "alice")).json["data"]
    assert [row["id"] for row in page["application"]] == ids[-2:]
    older = get(port, "/data/applications/list?all=y&limit=2&offset=2", context=https(pki, "alice")).json["data"]
    assert [row["id"] for row in older["application"]] == ids[-3:-2]
    for who in ("alice", "lookalike"):
        r = get(port, f"/data/applications/output?id={ids[-1]}", context=https(pki, who))
        assert r.status == 200, (who, r.body)
        assert "secret output ['2']" in r.json["data"]["stdout"] and r.json["data"]["user"] == "root"
        assert "work_area" not in r.json["data"]
    refused = get(port, f"/data/applications/output?id={ids[-1]}", context=https(pki, "mallory"))
    assert refused.status == 403 and "secret" not in refused.text
    assert get(port, "/data/applications/output?id=999999", context=https(pki, "alice")).status == 404
    assert get(port, "/data/applications/output", context=https(pki, "alice")).status == 400
    assert get(port, "/data/applications/output?id=x", context=https(pki, "alice")).status == 400


# --- users and roles count without a commit ------------------------------------------------------

def test_roles_granted_and_revoked_count_on_the_web_without_a_commit(site: Server,
                                                                      pki: dict[str, Path]) -> None:
    port, mallory = site.web_port, https(pki, "mallory")  # type: ignore[attr-defined]
    version = state(port, https(pki, "alice"))[0]
    assert get(port, "/data/testmod/admin", context=mallory).status == 403
    user_auth(site, "--user", "mallory", "--role", "admin", "--target", "inventory")
    wait_for(lambda: get(port, "/data/testmod/admin", context=mallory).status == 200, timeout=20)
    user_auth(site, "--user", "mallory", "--role", "admin", "--target", "inventory", "--revoke")
    wait_for(lambda: get(port, "/data/testmod/admin", context=mallory).status == 403, timeout=20)
    user_auth(site, "--user", "mallory", "--delete")
    wait_for(lambda: get(port, "/data/testmod/echo", context=mallory).status == 403, timeout=20)
    assert state(port, https(pki, "alice"))[0] == version  # no commit, no new generation did it


# --- the link: only web workers speak for a caller -----------------------------------------------

def test_the_link_takes_connections_from_web_workers_only() -> None:
    from dynamo.web.link import Dynamod, WebLink

    link = WebLink()
    try:
        # this process is no web worker: what it sends is dropped, with the descriptor it passed
        Dynamod(link.worker_end).connect(ALICE, "127.0.0.1").close()
        assert list(link.accept(lambda pid: False)) == []
        # a forked "worker": the kernel names the sender, whatever the message says
        pid = os.fork()
        if pid == 0:
            try:
                Dynamod(link.worker_end).connect(ALICE, "10.0.0.1").sendall(b"hello")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        arrived = list(link.accept(lambda sender: sender == pid))
        assert [(a.dn, a.peer, a.sender) for a in arrived] == [(ALICE, "ip 10.0.0.1", pid)]
        arrived[0].sock.setblocking(True)
        assert arrived[0].sock.recv(5) == b"hello"
        arrived[0].sock.close()
        # from the parent, claiming to be a worker's: refused
        Dynamod(link.worker_end).connect(MALLORY, "127.0.0.1").close()
        assert list(link.accept(lambda sender: sender == pid)) == []
    finally:
        link.close()


def test_a_native_client_cannot_name_another_identity(site: Server, pki: dict[str, Path]) -> None:
    """No request field names who a connection speaks for: a local client that tries is refused."""
    from dynamo.protocol import framing

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(site.socket))
        framing.send(s, {"op": "inject", "delete": False, "size": 2, "dn": MALLORY})
        reply = framing.receive(s)
    assert reply is not None and reply["type"] == "error" and "unknown field" in reply["message"]


def test_applications_hold_no_end_of_the_link(site: Server) -> None:
    script = site.script("fds.py", """
import os, socket
found = 0
for name in os.listdir("/proc/self/fd"):
    try:
        s = socket.socket(fileno=os.dup(int(name)))
    except OSError:
        continue
    found += s.family == socket.AF_UNIX and s.type == socket.SOCK_SEQPACKET
    s.close()
print("seqpacket", found)
""")
    done = site.run(str(script))
    assert done.code == 0, done.err
    assert done.out == "seqpacket 0\n"
