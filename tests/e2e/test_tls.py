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


def make_proxy(pki: dict[str, Path], owner: str, directory: Path) -> Path:
    """An RFC 3820 proxy certificate signed by ``owner``'s certificate, written as grid tools write
    them: proxy certificate, its key, then the owner's certificate, in one file."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    issuer = x509.load_pem_x509_certificate(pki[owner].read_bytes())
    issuer_key = serialization.load_pem_private_key(pki[f"{owner}_key"].read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([*issuer.subject, x509.NameAttribute(NameOID.COMMON_NAME, "1234567890")])
    now = datetime.datetime.now(datetime.UTC)
    # ProxyCertInfo ::= SEQUENCE { proxyPolicy SEQUENCE { policyLanguage id-ppl-inheritAll } }
    proxy_cert_info = bytes.fromhex("300c300a06082b06010505071501")
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=12))
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14"), proxy_cert_info),
                           critical=True)
            .sign(issuer_key, hashes.SHA256()))  # type: ignore[arg-type]
    path = directory / f"x509up_{owner}"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                     + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
                     + pki[owner].read_bytes())
    path.chmod(0o600)
    return path


def test_a_proxy_certificate_speaks_for_its_owner(tls_server: Server, pki: dict[str, Path]) -> None:
    tls_server.run("--user", "alice", "--dn", str(pki["alice_dn"]), cmd="dynamo-user-auth")
    proxy = make_proxy(pki, "alice", tls_server.home)
    server = ["--server", f"tls://localhost:{tls_server.tls_port}", "--ca", str(pki["ca"])]
    done = tls_server.run(str(tls_server.script("hi.py", "print('hi')\n")), *server,
                          env=tls_server.env(X509_USER_PROXY=str(proxy)))
    assert done.code == 0, done.err
    assert done.out == "hi\n"
    assert "alice" in tls_server.run("--list", "--all").out
    # mallory's proxy is mallory, however its DN looks: unknown here
    mallory = make_proxy(pki, "mallory", tls_server.home)
    refused = tls_server.run("--list", *server, env=tls_server.env(X509_USER_PROXY=str(mallory)))
    assert refused.code == 77 and "unknown certificate DN '/C=US/O=Dynamo Test/CN=mallory'" in refused.err


def test_a_dn_that_only_looks_like_a_proxy_is_not_its_prefix(tls_server: Server, pki: dict[str, Path]) -> None:
    # a certificate the CA issued to "/.../CN=alice/CN=123" is not alice's proxy
    tls_server.run("--user", "alice", "--dn", str(pki["alice_dn"]), cmd="dynamo-user-auth")
    done = tls_server.run("--list", *tls_args(tls_server, pki, who="lookalike"))
    assert done.code == 77 and "unknown certificate DN '/C=US/O=Dynamo Test/CN=alice/CN=123'" in done.err
