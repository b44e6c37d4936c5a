"""Truthful outcomes (issue 8 §4): a commit whose acknowledgement is lost, a database that dropped the
server's connection, a certificate the server does not trust: the client is told what happened."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from dynamo.store.mysql import parse_mysql_url
from tests.e2e.conftest import Server


@pytest.fixture
def started(server_home: Path) -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        if server.process is not None:
            assert server.process.poll() is None, f"dynamod died:\n{server.log()[-3000:]}"
            assert server.stop() == 0


def _mysql(url: str) -> pymysql.connections.Connection:
    params = parse_mysql_url(url)
    params.pop("database", None)
    return pymysql.connect(**params, autocommit=True)


@pytest.mark.mysql
def test_the_first_request_after_the_database_dropped_the_connection_is_served(
        mysql_url: str, server_home: Path, started: list[Server]) -> None:
    server = Server(server_home, mysql_url)
    server.start()
    started.append(server)
    assert server.run("-", input='{"site": [{"name": "T1_BEFORE"}]}', cmd="dynamo-inject").code == 0
    database = parse_mysql_url(mysql_url)["database"]
    admin = _mysql(mysql_url)
    with admin.cursor() as cur:  # what a restart of MariaDB does to the server's idle connection
        cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                    (database,))
        ids = [row[0] for row in cur.fetchall()]
        assert ids, "dynamod holds no connection to its database"
        for conn_id in ids:
            cur.execute(f"KILL CONNECTION {int(conn_id)}")
    admin.close()
    after = server.run("-", input='{"site": [{"name": "T1_AFTER"}]}', cmd="dynamo-inject")
    assert after.code == 0, after.err
    assert "reconnecting" in server.log()


class LosingProxy:
    """A TCP relay to MariaDB that, once armed, forwards the COMMIT of the next change set (a
    transaction that writes the journal) and then breaks the connection without relaying MariaDB's
    answer: the acknowledgement of a commit that did happen is lost, as on a network failure."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.lost = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            mute = threading.Event()
            threading.Thread(target=self._to_client, args=(server, client, mute), daemon=True).start()
            threading.Thread(target=self._to_server, args=(client, server, mute), daemon=True).start()

    @staticmethod
    def _to_client(server: socket.socket, client: socket.socket, mute: threading.Event) -> None:
        try:
            while data := server.recv(65536):
                if not mute.is_set():
                    client.sendall(data)
        except OSError:
            pass

    def _to_server(self, client: socket.socket, server: socket.socket, mute: threading.Event) -> None:
        buffer, doomed = b"", False
        try:
            while data := client.recv(65536):
                buffer += data
                while len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[:3], "little"):
                    size = int.from_bytes(buffer[:3], "little")
                    packet, buffer = buffer[:4 + size], buffer[4 + size:]
                    query = packet[5:] if packet[4:5] == b"\x03" else b""
                    if self.armed.is_set() and query.startswith(b"INSERT INTO journal "):
                        doomed = True
                    if doomed and query.strip().upper() == b"COMMIT":
                        mute.set()  # MariaDB commits; its answer goes nowhere
                        server.sendall(packet)
                        self.armed.clear()
                        self.lost.set()
                        threading.Timer(1.0, lambda: (client.close(), server.close())).start()
                        return
                    server.sendall(packet)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.mysql
def test_a_commit_whose_acknowledgement_is_lost_is_reported_as_committed(
        mysql_url: str, server_home: Path, started: list[Server]) -> None:
    params = parse_mysql_url(mysql_url)
    if params.get("unix_socket"):
        pytest.skip("the MariaDB of the tests is reached by a socket: no TCP to relay")
    proxy = LosingProxy((params["host"], params["port"]))
    url = f"mysql://{params['user']}@127.0.0.1:{proxy.port}/{params['database']}"
    try:
        server = Server(server_home, url)
        server.start()
        started.append(server)
        assert server.run("-", input='{"site": [{"name": "T1_BEFORE"}]}', cmd="dynamo-inject").code == 0
        proxy.armed.set()
        lost = server.run("-", input='{"site": [{"name": "T1_LOST_ACK"}]}', cmd="dynamo-inject")
        assert proxy.lost.is_set()
        assert lost.code == 0, lost.err  # it was committed: saying "nothing applied" would be false
        log = server.log()
        assert "after the change set was committed as version 2" in log, log[-3000:]
        shown = server.shell("print(sorted(inventory.sites), inventory.version)\n")
        assert shown.out == "['T1_BEFORE', 'T1_LOST_ACK'] 2\n", shown.err
        assert server.run("-", input='{"site": [{"name": "T1_NEXT"}]}', cmd="dynamo-inject").code == 0
    finally:
        proxy.close()


def test_a_certificate_from_an_unknown_ca_is_refused_with_a_reason(
        pki: dict[str, Path], server_home: Path, started: list[Server]) -> None:
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db", tls=pki)
    server.start()
    started.append(server)
    done = server.run("--list", "--server", f"tls://localhost:{server.tls_port}", "--cert", str(pki["other_ca"]),
                      "--key", str(pki["other_ca"].with_suffix(".key")), "--ca", str(pki["ca"]))
    assert done.code == 69, done.err
    assert "the server refused your certificate: it is not signed by a CA the server trusts" in done.err
    log = server.log()
    assert "TLS handshake failed" in log and "from ip 127.0.0.1" in log, log[-2000:]


def test_a_refusal_reaches_a_client_that_reads_late(
        pki: dict[str, Path], server_home: Path, started: list[Server]) -> None:
    """Over TLS 1.3 a client's request follows its certificate before the server has judged it. The
    keeper must not close on those unread bytes (a reset, which can destroy the alert in the client's
    receive queue): a client slow to read (a loaded machine) still gets the reason."""
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db", tls=pki)
    server.start()
    started.append(server)
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(str(pki["other_ca"]), str(pki["other_ca"].with_suffix(".key")))
    with pytest.raises(ssl.SSLError) as refused:
        with socket.create_connection(("localhost", server.tls_port), timeout=30) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"\0\0\0\x10" + b"x" * 16)  # a request right behind the certificate
                time.sleep(1.0)  # the alert, and then the end of the connection, arrive before we read
                tls.recv(100)
    assert refused.value.reason == "TLSV1_ALERT_UNKNOWN_CA", refused.value
    # the keeper dropped the client's bytes and let it go (no relay left behind)
    assert "TLS handshake failed" in server.log()
