"""The keeper protocol with a real keeper process, real MariaDB and real TLS clients."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamo.config import Config, parse_config
from dynamo.errors import StartupError, StoreError, StoreUnavailable
from dynamo.server.keeper_link import KeeperGone, KeeperLink, start
from dynamo.store import handover, open_store
from dynamo.store.mysql import MySQLStore, parse_mysql_url
from tests.e2e.conftest import pki  # noqa: F401  (the throwaway CA)


def config_for(home: Path, url: str, certs: dict[str, Path] | None = None,
               password_file: Path | None = None) -> Config:
    store: dict[str, object] = {"url": url}
    if password_file is not None:
        store["password_file"] = str(password_file)
    listen: dict[str, object] = {"socket": str(home / "s.sock"), "client_timeout": 2}
    if certs is not None:
        listen.update(tls_address="127.0.0.1:0", tls_cert=str(certs["server_cert"]),
                      tls_key=str(certs["server_key"]), tls_ca=str(certs["ca"]))
    return parse_config({"server": {"home": str(home)}, "store": store, "listen": listen}, "test")


@pytest.fixture
def keepers() -> Iterator[list[KeeperLink]]:
    started: list[KeeperLink] = []
    yield started
    for link in started:
        if not link.gone:
            link.close()


def keeper(keepers: list[KeeperLink], config: Config) -> KeeperLink:
    link = start(config)
    keepers.append(link)
    return link


@pytest.mark.mysql
def test_a_logged_in_database_socket_is_handed_over(mysql_url: str, tmp_path: Path,
                                                    keepers: list[KeeperLink]) -> None:
    link = keeper(keepers, config_for(tmp_path, mysql_url))
    fd, state = link.connect_db(10)
    conn = handover.adopt(parse_mysql_url(mysql_url), fd, state)
    with conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID(), @@session.sql_mode, @@autocommit")
        (thread, mode, autocommit), = cur.fetchall()
    assert [thread] == state["server_thread_id"]
    assert "STRICT_ALL_TABLES" in mode and autocommit == 1
    conn.close()
    # the store adopts such sockets, and asks again after losing one
    store = open_store(mysql_url, connector=lambda: link.connect_db(10))
    assert isinstance(store, MySQLStore)
    first = store._execute("SELECT CONNECTION_ID()")[0][0]
    store._discard()
    assert store._execute("SELECT CONNECTION_ID()")[0][0] != first
    store.close()


@pytest.mark.mysql
def test_a_refused_login_is_one_line_and_the_keeper_lives_on(mysql_url: str, tmp_path: Path,
                                                            keepers: list[KeeperLink]) -> None:
    wrong = tmp_path / "password"
    wrong.write_text("wrong\n")
    url = mysql_url.replace("mysql://root@", "mysql://no_such_user_dyn@")
    link = keeper(keepers, config_for(tmp_path, url, password_file=wrong))
    with pytest.raises(StoreError) as refused:
        link.connect_db(10)
    assert not isinstance(refused.value, StoreUnavailable)
    assert "Access denied" in str(refused.value) and "\n" not in str(refused.value)
    wrong.unlink()
    with pytest.raises(StoreError, match="cannot read the MySQL password file"):
        link.connect_db(10)
    assert link.close() == "exited with 0"


def test_a_dead_keeper_is_reported(tmp_path: Path, keepers: list[KeeperLink]) -> None:
    link = keeper(keepers, config_for(tmp_path, "mysql://root@127.0.0.1:1/nothing"))
    os.kill(link.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    with pytest.raises(KeeperGone):
        while time.monotonic() < deadline:
            link.accept()
            time.sleep(0.02)
    with pytest.raises(StoreUnavailable, match="no database connection"):
        link.connect_db(1)
    assert link.close() == "killed by SIGKILL"


def test_the_keeper_ends_with_the_main_process_and_ignores_sigterm(tmp_path: Path,
                                                                    keepers: list[KeeperLink]) -> None:
    link = keeper(keepers, config_for(tmp_path, "mysql://root@127.0.0.1:1/nothing"))
    time.sleep(0.2)
    os.kill(link.pid, signal.SIGTERM)  # a terminal's ^C or a group SIGTERM: the main process decides
    time.sleep(0.2)
    assert os.waitpid(link.pid, os.WNOHANG) == (0, 0)
    assert link.close() == "exited with 0"


def tls_client(certs: dict[str, Path], who: str = "alice") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    context.load_cert_chain(str(certs[who]), str(certs[f"{who}_key"]))
    return context


def arrivals(link: KeeperLink, count: int, timeout: float = 10) -> list[tuple[socket.socket, dict[str, str]]]:
    got: list[tuple[socket.socket, dict[str, str]]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += link.accept()
        time.sleep(0.01)
    return got


def test_tls_clients_arrive_identified_and_hostile_ones_cost_only_themselves(
        tmp_path: Path, keepers: list[KeeperLink], pki: dict[str, Path]) -> None:  # noqa: F811
    link = keeper(keepers, config_for(tmp_path, "mysql://root@127.0.0.1:1/nothing", certs=pki))
    name = link.listen_tls()
    port = int(name.rpartition(":")[2])
    # hostile: garbage instead of a handshake, a handshake never finished, a client without certificate
    garbage = socket.create_connection(("127.0.0.1", port))
    garbage.sendall(b"\x16\x03\x01\xff\xff" + os.urandom(3000))
    silent = socket.create_connection(("127.0.0.1", port))
    anonymous = ssl.create_default_context(cafile=str(pki["ca"]))
    with pytest.raises((ssl.SSLError, OSError)):
        with anonymous.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as s:
            s.sendall(b"x")
            s.recv(10)
    with tls_client(pki).wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                     server_hostname="localhost") as client:
        client.sendall(b"hello keeper")
        (plain, info), = arrivals(link, 1)
        assert info["dn"] == str(pki["alice_dn"])
        plain.setblocking(True)
        assert plain.recv(100) == b"hello keeper"
        big = os.urandom(3 << 20)  # more than the keeper buffers: back-pressure, nothing lost
        plain.sendall(big)
        received = bytearray()
        while len(received) < len(big):
            received += client.recv(1 << 20)
        assert bytes(received) == big
        plain.shutdown(socket.SHUT_WR)  # the main process has said everything: the client sees the end
        assert client.recv(10) == b""
        plain.close()
    assert garbage.recv(100) is not None
    time.sleep(2.5)  # client_timeout: the silent one is dropped by the keeper
    assert silent.recv(10) == b""
    assert arrivals(link, 1, timeout=0.2) == []
    assert link.close() == "exited with 0"
    garbage.close()
    silent.close()


def test_listen_errors_are_reported(tmp_path: Path, keepers: list[KeeperLink], pki: dict[str, Path]) -> None:  # noqa: F811
    broken = dict(pki, server_key=tmp_path / "missing.key")
    link = keeper(keepers, config_for(tmp_path, "mysql://root@127.0.0.1:1/nothing", certs=broken))
    with pytest.raises(StartupError, match="missing.key"):
        link.listen_tls()
    assert link.close() == "exited with 0"


def test_last_bytes_reach_tls_clients_when_the_main_process_ends(
        tmp_path: Path, keepers: list[KeeperLink], pki: dict[str, Path]) -> None:  # noqa: F811
    link = keeper(keepers, config_for(tmp_path, "mysql://root@127.0.0.1:1/nothing", certs=pki))
    port = int(link.listen_tls().rpartition(":")[2])
    with tls_client(pki).wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                     server_hostname="localhost") as client:
        client.sendall(b"bye?")
        (plain, _info), = arrivals(link, 1)
        plain.setblocking(True)
        last = os.urandom(2 << 20)
        plain.sendall(last[:1 << 20])
        sender = __import__("threading").Thread(target=plain.sendall, args=(last[1 << 20:],))
        sender.start()
        received = bytearray(client.recv(1 << 16))
        sender.join()
        plain.close()
        assert link.close() == "exited with 0"  # the keeper drained the relay before it ended
        while chunk := client.recv(1 << 20):
            received += chunk
        assert bytes(received) == last


@pytest.mark.mysql
def test_the_loads_second_reader_gets_its_connection_from_the_keeper(mysql_url: str, tmp_path: Path,
                                                                    keepers: list[KeeperLink]) -> None:
    from bench.workload import generate, scaled
    from dynamo.core.export import fingerprint
    from dynamo.core.journal import ChangeMeta
    with open_store(mysql_url) as plain:
        image = generate(scaled(0.002), 48)
        plain.import_image(image, ChangeMeta(title="import"))
    link = keeper(keepers, config_for(tmp_path, mysql_url))
    asked = []

    def connector() -> tuple[int, dict[str, object]]:
        asked.append(1)
        return link.connect_db(10)

    store = MySQLStore.from_url(mysql_url, connector=connector)
    store.second_reader_min = 0
    try:
        loaded = store.load()
        assert store.load_readers == 2 and len(asked) == 2  # this process's connection, and the reader's
        assert fingerprint(loaded) == fingerprint(image)
    finally:
        store.close()
