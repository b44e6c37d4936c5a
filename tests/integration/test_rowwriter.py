"""The registry's row writer on real SQLite and MariaDB: the applications' rows written from a thread
of their own, in order, seen by dynamod's answers before they are written, kept while the store is
down, flushed at the close, and taken back by the loop when the thread fails."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import pymysql
import pytest

from dynamo.core.appstate import AppState
from dynamo.errors import StoreUnavailable
from dynamo.server.ledger import Ledger
from dynamo.server.rowwriter import RowWriter
from dynamo.store.mysql import parse_mysql_url
from dynamo.store.registry import AppRecord, Registry
from dynamo.store.sql import SQLStore
from dynamo.store.statements import Statements
from tests.integration.test_store_registry import new_app, refuse


class Outage:
    """Connections to the registry made through it; ``down`` refuses new ones and breaks the open one
    (the database server's end of it is killed on MariaDB, its file closed on SQLite)."""

    def __init__(self, store: SQLStore):
        self.store = store
        self.down = False
        self.opened: list[Statements] = []

    def connect(self) -> Statements:
        if self.down:
            raise StoreUnavailable("the test's store is down")
        db = self.store.registry_connection()
        assert db is not None
        self.opened.append(db)
        return db

    def go_down(self) -> None:
        self.down = True
        db = self.opened[-1]
        if self.store.kind == "mysql":
            conn = db._conn  # type: ignore[attr-defined]
            assert conn is not None
            params = parse_mysql_url(self.store_url)
            killer = pymysql.connect(**params)
            try:
                with killer.cursor() as cur:
                    cur.execute(f"KILL {conn.thread_id()}")
            finally:
                killer.close()
            db.params["unix_socket"] = "/nonexistent/mysqld.sock"  # type: ignore[attr-defined]  # no way back
        else:
            db.close()  # type: ignore[attr-defined]
            db._connection = _refuse  # type: ignore[attr-defined]

    store_url = ""


def _refuse() -> Any:
    raise StoreUnavailable("the test's store is down")


@pytest.fixture
def outage(registry: Registry, store_url: str) -> Outage:
    found = Outage(registry.store)
    found.store_url = store_url
    return found


def writer_for(outage: Outage, retry_s: float = 0.05) -> RowWriter:
    writer = RowWriter(outage.connect, fork_gate=outage.store.kind == "sqlite", retry_s=retry_s)
    writer.start()
    return writer


def states(registry: Registry, record: AppRecord) -> AppRecord:
    found = registry.application(record.id)
    assert found is not None
    return found


def test_rows_are_written_in_order_off_the_loop(registry: Registry, outage: Outage) -> None:
    writer = writer_for(outage)
    ledger = Ledger(registry, writer=writer)
    records = [new_app(registry, title=f"t{i}") for i in range(20)]
    for rec in records:
        ledger.mark(rec, AppState.RUNNING, pid=1000 + rec.id)
    for rec in records:
        ledger.finish(rec, AppState.DONE, 0, f"done {rec.id}")
    # the record in memory moved at once; the loop did not wait for the rows
    assert all(rec.status is AppState.DONE for rec in records)
    assert writer.drain(10)
    for rec in records:
        row = states(registry, rec)
        assert (row.status, row.pid, row.message, row.exit_code) == (AppState.DONE, 1000 + rec.id, f"done {rec.id}", 0)
    assert writer.close() == []


def test_every_state_reaches_the_registry_in_order(registry: Registry, outage: Outage) -> None:
    """A trigger records each status the table takes: queued -> running -> applying -> done, in order."""
    db = registry.db
    if registry.store.kind == "sqlite":
        db.execute("CREATE TABLE seen (app INTEGER, status TEXT)")
        db.execute("CREATE TRIGGER seen_it AFTER UPDATE OF status ON applications "
                   "BEGIN INSERT INTO seen VALUES (NEW.id, NEW.status); END")
    else:
        db.execute("CREATE TABLE seen (n INT AUTO_INCREMENT PRIMARY KEY, app BIGINT, status VARCHAR(16))")
        db.execute("CREATE TRIGGER seen_it AFTER UPDATE ON applications FOR EACH ROW "
                   "INSERT INTO seen (app, status) VALUES (NEW.id, NEW.status)")
    writer = writer_for(outage)
    ledger = Ledger(registry, writer=writer)
    rec = new_app(registry)
    ledger.hold(rec, AppState.RUNNING, pid=5)
    ledger.mark(rec, AppState.APPLYING)  # writes the held one first
    ledger.finish(rec, AppState.DONE, 0, "applied", version=3)
    assert writer.drain(10)
    order = "ORDER BY rowid" if registry.store.kind == "sqlite" else "ORDER BY n"
    assert [s for (s,) in db.query_all(f"SELECT status FROM seen {order}")] == ["running", "applying", "done"]
    assert states(registry, rec).version == 3
    writer.close()


def test_answers_see_the_rows_handed_over_before_they_are_written(registry: Registry, outage: Outage) -> None:
    writer = writer_for(outage)
    ledger = Ledger(registry, writer=writer)
    rec = new_app(registry)
    outage.go_down()  # the rows cannot be written: they wait
    ledger.mark(rec, AppState.RUNNING, pid=7)
    ledger.finish(rec, AppState.FAILED, 2, "exit code 2")
    assert not writer.drain(0.3)
    assert states(registry, rec).status is AppState.QUEUED  # through the loop's connection: not yet
    shown = ledger.current(states(registry, rec))
    assert (shown.status, shown.pid, shown.exit_code) == (AppState.FAILED, 7, 2)
    other = new_app(registry)  # a record with nothing pending is the registry's
    assert ledger.current(states(registry, other)).status is AppState.QUEUED
    outage.down = False
    assert writer.drain(10)
    assert ledger.current(states(registry, rec)) == states(registry, rec)
    writer.close()


def test_the_store_down_then_up_loses_nothing(registry: Registry, outage: Outage,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "dynamo.server")
    writer = writer_for(outage)
    ledger = Ledger(registry, writer=writer)
    first, second = new_app(registry), new_app(registry)
    ledger.mark(first, AppState.RUNNING, pid=1)
    assert writer.drain(10)
    outage.go_down()
    ledger.finish(first, AppState.DONE, 0, "done while down")
    ledger.mark(second, AppState.RUNNING, pid=2)
    ledger.finish(second, AppState.KILLED, None, "killed while down")
    time.sleep(0.3)  # several tries, all refused
    assert writer.waiting() == 3 and states(registry, first).status is AppState.RUNNING
    outage.down = False
    assert writer.drain(10)
    assert (states(registry, first).status, states(registry, first).message) == (AppState.DONE, "done while down")
    assert (states(registry, second).status, states(registry, second).pid) == (AppState.KILLED, 2)
    ledger.relay_log()  # the loop logs what the thread said (every turn in dynamod)
    text = caplog.text
    assert "the registry cannot be written" in text and "3 held row(s) written" in text
    assert text.count("the registry cannot be written") == 1  # one line an outage, not one a try
    writer.close()


def test_close_flushes_every_row(registry: Registry, outage: Outage) -> None:
    writer = writer_for(outage)
    ledger = Ledger(registry, writer=writer)
    records = [new_app(registry) for _ in range(50)]
    for rec in records:
        ledger.mark(rec, AppState.RUNNING, pid=rec.id)
        ledger.finish(rec, AppState.DONE, 0, "ok")
    ledger.close()  # what the server does at SIGTERM, with rows still waiting
    assert all(states(registry, rec).status is AppState.DONE for rec in records)
    assert ledger.writer is None


def test_close_with_the_store_down_logs_every_row_it_gives_up(registry: Registry, outage: Outage,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    writer = writer_for(outage)
    ledger = Ledger(registry, writer=writer)
    rec = new_app(registry)
    outage.go_down()
    ledger.mark(rec, AppState.RUNNING, pid=3)
    started = time.monotonic()
    left = writer.close(wait=0.5)
    assert time.monotonic() - started < 5
    assert [(row.app_id, row.state) for row in left] == [(rec.id, "running")]
    assert f"app {rec.id}: its running row was not written" in caplog.text


def test_a_refused_row_is_logged_and_dropped_the_others_written(registry: Registry, outage: Outage,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    good, bad = new_app(registry), new_app(registry)
    refuse(registry, "UPDATE", "applications", f"NEW.id = {bad.id}")
    writer = writer_for(outage)
    ledger = Ledger(registry, writer=writer)
    ledger.mark(good, AppState.RUNNING, pid=1)
    ledger.mark(bad, AppState.RUNNING, pid=2)
    ledger.finish(good, AppState.DONE, 0, "ok")
    assert writer.drain(10)
    assert states(registry, good).status is AppState.DONE
    assert states(registry, bad).status is AppState.QUEUED  # refused for good: the record keeps its state
    assert bad.status is AppState.RUNNING  # in memory it moved on
    ledger.relay_log()
    assert f"app {bad.id}: cannot record that it is running" in caplog.text
    writer.close()


@pytest.mark.parametrize("then", ["close", "mark"])
def test_a_failing_thread_hands_its_rows_to_the_loop(registry: Registry, outage: Outage, then: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A bug in the thread (not a store error) ends it, loudly; the ledger writes its rows, and every
    later one, itself, and the server goes on: at the close, or at the next change."""
    rec = new_app(registry)
    calls: list[int] = []

    def connect() -> Statements:  # the first connection; the bug is in opening the next one
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("a bug in the writer")
        return outage.connect()

    writer = RowWriter(connect, retry_s=0.05)
    ledger = Ledger(registry, writer=writer)
    writer.start()
    outage.go_down()  # the writer's connection is lost: it opens another, and fails
    ledger.mark(rec, AppState.RUNNING, pid=9)
    deadline = time.monotonic() + 10
    while writer.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not writer.alive and isinstance(writer.failed, RuntimeError)
    assert states(registry, rec).status is AppState.QUEUED  # not written yet: the thread is gone
    if then == "close":
        ledger.close()  # the server stops now: the loop writes what the thread left
        assert (states(registry, rec).status, states(registry, rec).pid) == (AppState.RUNNING, 9)
    ledger.finish(rec, AppState.DONE, 0, "ok")  # the loop writes the thread's rows first, then this one
    assert ledger.writer is None
    assert (states(registry, rec).status, states(registry, rec).pid) == (AppState.DONE, 9)
    assert "the registry's row writer failed" in caplog.text and "a bug in the writer" in caplog.text


def test_a_fork_while_the_thread_writes_gives_a_child_that_can_use_sqlite(registry: Registry,
                                                                          outage: Outage) -> None:
    """dynamod forks (the commit process opens SQLite in the child) while the thread writes rows: no
    lock of SQLite's or of the writer's is inherited held by the child."""
    writer = writer_for(outage)
    records = [new_app(registry) for _ in range(40)]
    stop = threading.Event()
    path = registry.store.registry_path() if registry.store.kind == "sqlite" else None  # type: ignore[attr-defined]

    def churn() -> None:
        i = 0
        while not stop.is_set():
            writer.put(records[i % len(records)], {"message": f"m{i}"})
            i += 1
            time.sleep(0.0005)

    feeder = threading.Thread(target=churn)
    feeder.start()
    try:
        for _ in range(30):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    if path is not None:
                        import sqlite3
                        conn = sqlite3.connect(path, timeout=5)
                        conn.execute("SELECT count(*) FROM applications").fetchall()
                        conn.close()
                    code = 0
                finally:
                    os._exit(code)
            deadline = time.monotonic() + 10
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    pytest.fail("a child forked while the writer wrote hung")
                time.sleep(0.005)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        feeder.join()
    assert writer.drain(10)
    writer.close()


def test_the_thread_writes_no_log_itself(registry: Registry, outage: Outage) -> None:
    """Every line the writer has to say (an outage, the store back, a slow batch) is logged by the loop's
    thread: a thread inside a log handler while dynamod forks would leave the handler's stream locked
    in the child (CPython gh-84579)."""
    threads: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            threads.append(record.threadName)

    seen = Seen(logging.DEBUG)
    logger = logging.getLogger("dynamo.server")
    level = logger.level
    logger.addHandler(seen)
    logger.setLevel(logging.DEBUG)
    try:
        writer = writer_for(outage)
        ledger = Ledger(registry, writer=writer)
        rec = new_app(registry)
        outage.go_down()
        ledger.mark(rec, AppState.RUNNING, pid=1)
        time.sleep(0.3)  # refused: the outage's line is said
        outage.down = False
        assert writer.drain(10)
        assert not threads  # said, not logged
        ledger.relay_log()
        assert len(threads) >= 2 and set(threads) == {threading.current_thread().name}
        writer.close()
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)
