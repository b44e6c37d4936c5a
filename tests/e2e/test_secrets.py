"""No secret is readable by an application (issue 8 §3): the MariaDB password and the TLS key stay in
dynamod's keeper, which never forks applications.

A read-only application scans its whole memory (every readable region of /proc/self/maps, read
from /proc/self/mem) for the database password and for the TLS private key (its DER, the PEM
lines that carry the private scalar, the scalar itself in both byte orders, as OpenSSL holds it
in a BIGNUM); the test then scans the main dynamod process the same way, as root. The needles
travel to the application transformed (every byte + 1) and memory is translated the same way
before searching, so the scanner's own needles are not what it finds. A control string that is
in the inventory must be found, or the scan proves nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server, wait_for

pytestmark = pytest.mark.mysql

# shared by the application and the test: scan the readable memory of a process
SCANNER = '''
def scan(pid, needles):
    """{name: found} for needles (already +1 per byte); memory translated +1 per byte before searching."""
    if pid == "self":  # after setuid an application is not dumpable (/proc/self/mem is root's): undo it
        import ctypes
        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    table = bytes((i + 1) % 256 for i in range(256))
    found = {name: False for name in needles}
    longest = max(len(n) for n in needles.values())
    scanned = 0
    with open(f"/proc/{pid}/maps") as maps:
        regions = [line.split() for line in maps]
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for fields in regions:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] == "[vvar]"):
                continue
            tail = b""
            offset = start
            while offset < end:
                size = min(8 << 20, end - offset)
                try:
                    mem.seek(offset)
                    chunk = mem.read(size)
                except (OSError, OverflowError, ValueError):
                    break
                offset += size
                scanned += len(chunk)
                data = tail + chunk.translate(table)
                for name, needle in needles.items():
                    if not found[name] and needle in data:
                        found[name] = True
                tail = data[-longest:]
                del data, chunk
    return found, scanned
'''


def plus_one(data: bytes) -> bytes:
    return bytes((b + 1) % 256 for b in data)


def key_needles(key_file: Path) -> dict[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = key_file.read_bytes()
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    body = [line for line in pem.splitlines() if line and not line.startswith(b"-----")]
    return {"key DER": der, "key PEM line 1": body[0], "key PEM line 2": body[1],
            "key scalar (big-endian)": scalar, "key scalar (little-endian)": scalar[::-1]}


@pytest.fixture
def db_user(mysql_url: str) -> Iterator[tuple[str, str, str]]:
    """A throwaway MariaDB user with a random password, granted the test database: (url, user, password)."""
    import pymysql

    from dynamo.store.mysql import parse_mysql_url

    params = parse_mysql_url(mysql_url)
    database = params.pop("database")
    user, password = f"dyn_{secrets.token_hex(4)}", secrets.token_hex(16)
    hosts = ("127.0.0.1", "localhost")
    root = pymysql.connect(**params)
    try:
        with root.cursor() as cur:
            for host in hosts:
                cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (password,))
                cur.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'{host}'")
        yield f"mysql://{user}@{params['host']}:{params['port']}/{database}", user, password
        with root.cursor() as cur:
            for host in hosts:
                cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
    finally:
        root.close()


def start_server(home: Path, url: str, pki: dict[str, Path], store_lines: str) -> Server:
    server = Server(home, url, tls=pki)
    text = server.config.read_text().replace(f'url = "{url}"\n', f'url = "{url}"\n{store_lines}')
    server.config.write_text(text)
    server.start()
    return server


def test_no_application_can_read_the_database_password_or_the_tls_key(
        db_user: tuple[str, str, str], pki: dict[str, Path], server_home: Path) -> None:
    url, _user, password = db_user
    password_file = server_home / "db.password"
    password_file.write_text(password + "\n")
    os.chmod(password_file, 0o600)
    server = start_server(server_home, url, pki, f'password_file = "{password_file}"\n')
    try:
        exercise_tls(server, pki)
        control = f"T2_SCAN_{secrets.token_hex(6)}"
        injected = server.run("-", input=json.dumps({"site": [{"name": control}]}), cmd="dynamo-inject")
        assert injected.code == 0, injected.err
        needles = {"password": password.encode(), **key_needles(pki["server_key"]), "control": control.encode()}
        shifted = json.dumps({k: plus_one(v).hex() for k, v in needles.items()})
        app = server.script("scan.py", SCANNER + (
            "import json\n"
            "from dynamo.core.executable import inventory\n"
            f"needles = {{k: bytes.fromhex(v) for k, v in {shifted}.items()}}\n"
            "assert len(inventory.sites) == 1\n"
            "found, scanned = scan('self', needles)\n"
            "print(json.dumps({'found': found, 'scanned': scanned}))\n"))
        done = server.run(str(app), timeout=300)
        assert done.code == 0, done.err
        result = json.loads(done.out)
        assert result["found"].pop("control"), "the scan did not find what is in the inventory: it proves nothing"
        assert result["scanned"] > 10 << 20
        assert not any(result["found"].values()), f"an application read secrets: {result['found']}"
        assert server.process is not None
        found, scanned = scan_process(server.process.pid, needles)
        assert found.pop("control") and scanned > 10 << 20
        assert not any(found.values()), f"dynamod's main process holds secrets: {found}"
        assert password not in server.log()
    finally:
        assert server.stop() == 0, server.output.read_text()


def exercise_tls(server: Server, pki: dict[str, Path]) -> None:
    """A TLS client served end to end: the handshake happened (in the keeper) before the scans."""
    registered = server.run("--user", "alice", "--dn", str(pki["alice_dn"]), cmd="dynamo-user-auth")
    assert registered.code == 0, registered.err
    hello = server.script("hello.py", "print('hello over TLS')\n")
    done = server.run(str(hello), "--server", f"tls://localhost:{server.tls_port}", "--cert", str(pki["alice"]),
                      "--key", str(pki["alice_key"]), "--ca", str(pki["ca"]))
    assert done.code == 0, done.err
    assert done.out == "hello over TLS\n"


def scan_process(pid: int, needles: dict[str, bytes]) -> tuple[dict[str, bool], int]:
    namespace: dict[str, Any] = {}
    exec(SCANNER, namespace)  # the same code the application ran (our own constant, not data)
    found, scanned = namespace["scan"](pid, {k: plus_one(v) for k, v in needles.items()})
    return dict(found), int(scanned)


def test_a_password_in_the_url_is_warned_about(db_user: tuple[str, str, str], pki: dict[str, Path],
                                               server_home: Path) -> None:
    url, user, password = db_user
    inline = url.replace(f"{user}@", f"{user}:{password}@")
    server = start_server(server_home, inline, pki, "")
    try:
        assert "[store] url holds a password: every application can read it" in server.log()
    finally:
        assert server.stop() == 0, server.output.read_text()


def test_a_refused_login_is_one_line(db_user: tuple[str, str, str], pki: dict[str, Path], server_home: Path) -> None:
    url, _user, _password = db_user
    wrong = server_home / "wrong.password"
    wrong.write_text("not-the-password\n")
    server = Server(server_home, url)
    text = server.config.read_text().replace(f'url = "{url}"\n', f'url = "{url}"\npassword_file = "{wrong}"\n')
    server.config.write_text(text)
    done = subprocess.run([*dynamod(), "--config", str(server.config)], capture_output=True, text=True, timeout=60,
                          env=server.env())
    assert done.returncode == 1, done.stderr
    errors = [line for line in server.log().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Access denied" in errors[0] and "Traceback" not in server.log(), server.log()
    assert not server.socket.exists()
    assert not any(p.exists() for p in [server_home / "dynamod.pid"]), "the pid file was left behind"


def dynamod() -> list[str]:
    from tests.e2e.conftest import command
    return [command("dynamod")]


def test_keeper_absent_for_sqlite_without_tls(server_home: Path) -> None:
    """Nothing to keep: the embedded-style server has no keeper process (and nothing new can fail)."""
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db")
    server.start()
    try:
        assert server.keeper() is None
        # the spares and the zygote that forks them alone (server.spare, server.zygote)
        wait_for(lambda: not server.children() and server.keeper() is None and server.spares() != [])
        assert "keeper started" not in server.log()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(server.socket))
    finally:
        assert server.stop() == 0, server.output.read_text()


def test_a_dead_keeper_stops_dynamod_cleanly(pki: dict[str, Path], server_home: Path) -> None:
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db", tls=pki)
    server.start()
    assert server.process is not None
    keeper = server.keeper()
    assert keeper is not None
    wait_for(lambda: not server.children() and server.keeper() == keeper and server.spares() != [])
    os.kill(keeper, signal.SIGKILL)
    code = server.process.wait(30)
    server.process = None
    assert code == 70
    assert f"keeper (pid {keeper}) killed by SIGKILL" in server.log()
    assert "dynamod stopped" in server.log()
    assert not server.socket.exists()
