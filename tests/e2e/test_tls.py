"""TLS with a throwaway CA: users are their certificate DN; the client checks the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server


@pytest.fixture
def tls_server(pki: dict[str, Path], server_home: Path) -> Iterator[Server]:
    s = Server(server_home, f"sqlite:///{server_home}/inventory.db", tls=pki)
    s.start()
    yield s
    assert s.stop() == 0, s.output.read_text()


def tls_args(server: Server, pki: dict[str, Path], who: str = "alice", ca: str = "ca") -> list[str]:
    return ["--server", f"tls://localhost:{server.tls_port}", "--cert", str(pki[who]), "--key", str(pki[f"{who}_key"]),
            "--ca", str(pki[ca])]


def test_registered_dn_is_served(tls_server: Server, pki: dict[str, Path]) -> None:
    registered = tls_server.run("--user", "alice", "--dn", str(pki["alice_dn"]), "--role", "admin", "--target",
                                "inventory", cmd="dynamo-user-auth")
    assert registered.code == 0, registered.err
    script = tls_server.script("hello.py", "from dynamo.core.executable import inventory\n"
                                           "print('hello over TLS', len(inventory.sites))\n")
    done = tls_server.run(str(script), *tls_args(tls_server, pki))
    assert done.code == 0, done.err
    assert done.out == "hello over TLS 0\n"
    injected = tls_server.run(*tls_args(tls_server, pki), "-", input='{"site": [{"name": "T2_TLS"}]}',
                              cmd="dynamo-inject")
    assert injected.code == 0, injected.err
    listed = tls_server.run("--list", "--all", *tls_args(tls_server, pki))
    assert "alice" in listed.out
    shell = tls_server.run(*tls_args(tls_server, pki), input="print(sorted(inventory.sites))\n")
    assert shell.out == "['T2_TLS']\n"


def test_unknown_dn_is_refused(tls_server: Server, pki: dict[str, Path]) -> None:
    script = tls_server.script("hello.py", "print('should not run')\n")
    done = tls_server.run(str(script), *tls_args(tls_server, pki, who="mallory"))
    assert done.code == 77
    assert "unknown certificate DN '/C=US/O=Dynamo Test/CN=mallory'" in done.err
    assert done.out == ""


def test_role_is_required_for_inject(tls_server: Server, pki: dict[str, Path]) -> None:
    tls_server.run("--user", "alice", "--dn", str(pki["alice_dn"]), cmd="dynamo-user-auth")
    done = tls_server.run(*tls_args(tls_server, pki), "-", input='{"site": [{"name": "T2_TLS"}]}',
                          cmd="dynamo-inject")
    assert done.code == 77 and "needs role 'admin' on 'inventory'" in done.err


def test_wrong_server_certificate_is_refused(tls_server: Server, pki: dict[str, Path]) -> None:
    tls_server.run("--user", "alice", "--dn", str(pki["alice_dn"]), cmd="dynamo-user-auth")
    script = tls_server.script("hello.py", "print('should not run')\n")
    done = tls_server.run(str(script), *tls_args(tls_server, pki, ca="other_ca"))
    assert done.code == 69
    assert "the server's certificate is not trusted" in done.err
    assert done.out == ""
    assert "TLS handshake failed" in tls_server.log()  # the server saw the client abort the handshake


def test_proxy_certificate_dn_components_are_stripped() -> None:
    from dynamo.store.registry import dn_candidates
    assert dn_candidates("/C=US/O=X/CN=alice/CN=12345/CN=678") == [
        "/C=US/O=X/CN=alice/CN=12345/CN=678", "/C=US/O=X/CN=alice/CN=12345", "/C=US/O=X/CN=alice"]
