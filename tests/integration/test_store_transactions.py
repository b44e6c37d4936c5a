"""The SQL stores' statement API and transaction(), against real SQLite and real MariaDB."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from dynamo.errors import StoreError, StoreUnavailable
from dynamo.store import open_store
from dynamo.store.mysql import MySQLStore, parse_mysql_url
from dynamo.store.sql import SQLStore
from dynamo.store.statements import Statements

ADD = "INSERT INTO users (name, dn, email) VALUES (%s, NULL, '')"


@pytest.fixture
def sql(store_url: str) -> Iterator[Statements]:
    """The statements of the database that holds ``users`` (SQLite: the registry's own file)."""
    s = open_store(store_url)
    assert isinstance(s, SQLStore)
    yield s.registry_statements()
    s.close()


def names(url: str) -> list[str]:
    """The users as another connection sees them (what was committed)."""
    with open_store(url) as other:
        assert isinstance(other, SQLStore)
        return [row[0] for row in other.registry_statements().query_all("SELECT name FROM users ORDER BY name")]


def kill(store: MySQLStore, url: str) -> None:
    """KILL the store's connection from another one, as a DBA or a failover would."""
    assert store._conn is not None
    victim = store._conn.thread_id()
    killer = pymysql.connect(**parse_mysql_url(url))
    try:
        killer.cursor().execute(f"KILL CONNECTION {victim}")
    finally:
        killer.close()


def test_statements_outside_a_transaction_commit_by_themselves(sql: Statements, store_url: str) -> None:
    outcome = sql.execute(ADD, ("a",))
    assert outcome.rowcount == 1 and outcome.lastrowid is not None
    assert names(store_url) == ["a"]
    assert sql.query_one("SELECT id FROM users WHERE name = %s", ("a",)) == (outcome.lastrowid,)
    assert sql.query_one("SELECT id FROM users WHERE name = %s", ("nobody",)) is None
    sql.executemany(ADD, [("b",), ("c",)])
    assert sql.query_all("SELECT name FROM users ORDER BY name") == [("a",), ("b",), ("c",)]
    assert sql.execute("DELETE FROM users WHERE name IN (%s, %s)", ("a", "b")).rowcount == 2


def test_a_transaction_commits_when_its_block_ends(sql: Statements, store_url: str) -> None:
    with sql.transaction():
        sql.execute(ADD, ("a",))
        sql.execute(ADD, ("b",))
        assert sql.query_all("SELECT COUNT(*) FROM users") == [(2,)]  # its own writes are visible to it
    assert names(store_url) == ["a", "b"]


def test_an_exception_rolls_back_and_goes_on_unchanged(sql: Statements, store_url: str) -> None:
    error = KeyError("the caller's own error")
    with pytest.raises(KeyError) as raised, sql.transaction():
        sql.execute(ADD, ("a",))
        raise error
    assert raised.value is error
    assert names(store_url) == []
    sql.execute(ADD, ("after",))  # the store goes on, in autocommit
    assert names(store_url) == ["after"]


def test_a_failed_statement_in_the_middle_leaves_nothing(sql: Statements, store_url: str) -> None:
    sql.execute(ADD, ("taken",))
    with pytest.raises(StoreError) as raised, sql.transaction():
        sql.execute(ADD, ("a",))
        sql.execute(ADD, ("taken",))  # UNIQUE (name): the database refuses it
        sql.execute(ADD, ("never",))
    # translated once: a StoreError for the caller, the driver's error as its cause
    assert type(raised.value) is StoreError
    assert isinstance(raised.value.__cause__, (pymysql.err.Error, __import__("sqlite3").Error))
    assert names(store_url) == ["taken"]


def test_an_inner_block_is_a_savepoint(sql: Statements, store_url: str) -> None:
    with sql.transaction():
        sql.execute(ADD, ("outer",))
        with pytest.raises(StoreError), sql.transaction():
            sql.execute(ADD, ("inner",))
            sql.execute(ADD, ("outer",))  # refused: undoes the inner block only
        with sql.transaction():
            sql.execute(ADD, ("kept",))
        assert names(store_url) == []  # nothing is committed before the outermost block ends
    assert names(store_url) == ["kept", "outer"]


def test_an_inner_error_that_goes_on_undoes_everything(sql: Statements, store_url: str) -> None:
    with pytest.raises(ZeroDivisionError), sql.transaction():
        sql.execute(ADD, ("outer",))
        with sql.transaction():
            sql.execute(ADD, ("inner",))
            print(1 / 0)
    assert names(store_url) == []
    with sql.transaction():  # and the next transaction starts from scratch
        sql.execute(ADD, ("next",))
    assert names(store_url) == ["next"]


def test_a_read_only_transaction_refuses_writes(sql: Statements, store_url: str) -> None:
    sql.execute(ADD, ("a",))
    with pytest.raises(StoreError), sql.transaction(read_only=True):
        assert sql.query_all("SELECT name FROM users") == [("a",)]
        sql.execute(ADD, ("b",))
    assert names(store_url) == ["a"]
    sql.execute(ADD, ("c",))  # writing works again afterwards (SQLite: query_only is reset)
    assert names(store_url) == ["a", "c"]


def test_a_failed_commit_rolls_back(sqlite_url: str) -> None:
    """A COMMIT the database refuses (SQLite's deferred foreign key check; InnoDB checks at
    each statement and has no such COMMIT) leaves nothing, and the store goes on."""
    store = open_store(sqlite_url)
    assert isinstance(store, SQLStore)
    sql = store.registry_statements()
    sql.execute("PRAGMA defer_foreign_keys = 1")  # until the next COMMIT or ROLLBACK
    with pytest.raises(StoreError, match="FOREIGN KEY"), sql.transaction():
        sql.execute(ADD, ("a",))
        sql.execute("INSERT INTO user_roles (user_id, role, target) VALUES (999, 'admin', 'inventory')")
    assert names(sqlite_url) == []
    assert sql.query_all("SELECT COUNT(*) FROM user_roles") == [(0,)]
    with sql.transaction():
        sql.execute(ADD, ("b",))
    assert names(sqlite_url) == ["b"]
    store.close()


@pytest.mark.mysql
def test_mysql_lastrowid_is_this_connections_under_concurrent_inserts(mysql_url: str) -> None:
    stores = [open_store(mysql_url) for _ in range(2)]
    got: dict[str, list[int]] = {"left": [], "right": []}
    start = threading.Barrier(2)

    def insert(store: Any, side: str) -> None:
        start.wait()
        for i in range(200):
            if i % 2:
                got[side].append(store.execute(ADD, (f"{side}{i}",)).lastrowid)
            else:
                with store.transaction():
                    got[side].append(store.execute(ADD, (f"{side}{i}",)).lastrowid)

    threads = [threading.Thread(target=insert, args=(s, side)) for s, side in zip(stores, got, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check = stores[0]
    assert isinstance(check, SQLStore)
    for side, ids in got.items():
        assert [check.query_one("SELECT name FROM users WHERE id = %s", (i,)) for i in ids] == \
            [(f"{side}{i}",) for i in range(200)]
    assert len(set(got["left"]) | set(got["right"])) == 400
    for s in stores:
        s.close()


@pytest.mark.mysql
def test_mysql_connection_lost_inside_a_transaction_never_autocommits_the_rest(mysql_url: str) -> None:
    """After the connection is lost, the transaction's later statements fail; they are not run on a
    new connection in autocommit (which would commit them without the ones before)."""
    store = open_store(mysql_url)
    assert isinstance(store, MySQLStore)
    with pytest.raises(StoreUnavailable), store.transaction():
        store.execute(ADD, ("a",))
        kill(store, mysql_url)
        with pytest.raises(StoreUnavailable):
            store.execute(ADD, ("b",))
        store.execute(ADD, ("c",))  # a careless caller goes on
    assert names(mysql_url) == []
    store.execute(ADD, ("after",))  # outside the transaction it reconnects by itself
    assert names(mysql_url) == ["after"]
    store.close()


@pytest.mark.mysql
def test_mysql_an_inner_block_that_cannot_be_undone_dooms_the_outer_one(mysql_url: str) -> None:
    store = open_store(mysql_url)
    assert isinstance(store, MySQLStore)
    with pytest.raises(StoreError), store.transaction():
        store.execute(ADD, ("a",))
        with pytest.raises(StoreUnavailable), store.transaction():
            kill(store, mysql_url)
            store.execute(ADD, ("b",))
        store.execute(ADD, ("c",))
    assert names(mysql_url) == []
    store.close()


@pytest.mark.mysql
def test_mysql_a_deadlock_victim_cannot_go_on_in_autocommit(mysql_url: str) -> None:
    """InnoDB rolls back the whole transaction of a deadlock's victim, savepoints included. If the
    outer block caught the inner block's error and went on, its statements would run in autocommit
    and commit one by one; they must fail instead, and nothing of the transaction may land."""
    store = open_store(mysql_url)
    assert isinstance(store, MySQLStore)
    store.executemany(ADD, [("r1",), ("r2",)])
    grant = "INSERT INTO app_authorizations (title, user, checksum, authorized_by, time) VALUES (%s, '', '', '', 0)"
    other = pymysql.connect(**parse_mysql_url(mysql_url), autocommit=False,
                            init_command="SET SESSION innodb_lock_wait_timeout = 10")
    cur = other.cursor()
    # the other transaction changes more rows, so that InnoDB picks the store's as the victim
    cur.executemany("INSERT INTO users (name, dn, email) VALUES (%s, NULL, '')", [(f"o{i}",) for i in range(20)])
    cur.execute("UPDATE users SET email = 'other' WHERE name = 'r2'")
    waiter = threading.Thread(target=cur.execute, args=("UPDATE users SET email = 'other' WHERE name = 'r1'",))
    try:
        with pytest.raises(StoreError), store.transaction():
            store.execute(grant, ("a",))
            with pytest.raises(StoreError, match="1213|[Dd]eadlock"), store.transaction():
                store.execute("UPDATE users SET email = 'store' WHERE name = 'r1'")
                waiter.start()
                deadline = time.monotonic() + 15
                while not store.query_all("SELECT 1 FROM information_schema.processlist WHERE id = %s "
                                          "AND info LIKE 'UPDATE%%'", (other.thread_id(),)):
                    assert time.monotonic() < deadline, "the other transaction never asked for r1"
                    time.sleep(0.05)
                time.sleep(0.3)  # its request for r1's lock is queued behind the store's
                store.execute("UPDATE users SET email = 'store' WHERE name = 'r2'")  # the deadlock
            store.execute(grant, ("c",))  # a careless caller goes on
    finally:
        waiter.join()
        other.commit()
        other.close()
    assert store.query_all("SELECT title FROM app_authorizations") == []
    assert len(names(mysql_url)) == 22
    store.close()
