"""Stores facing a database that goes away, or that is not there."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pymysql
import pytest

from bench.workload import change_records, generate, scaled
from dynamo.core.changeset import apply_change_set
from dynamo.core.export import fingerprint
from dynamo.core.journal import ChangeMeta
from dynamo.errors import ConfigurationError, SchemaError, StoreUnavailable
from dynamo.store import open_store
from dynamo.store.mysql import MySQLStore, parse_mysql_url


@pytest.mark.mysql
def test_connection_killed_mid_commit(mysql_url: str) -> None:
    """A real server-side KILL between the data rows and the journal row: nothing lands, and the store recovers."""
    store = open_store(mysql_url)
    assert isinstance(store, MySQLStore)
    store.import_image(generate(scaled(0.001), 21), ChangeMeta())
    inv = store.load()
    before = fingerprint(inv)
    records = change_records(inv, 300, seed=22)
    original = store._write_journal
    params = parse_mysql_url(mysql_url)

    def kill_then_write(*args: Any) -> None:
        assert store._conn is not None
        victim = store._conn.thread_id()
        killer = pymysql.connect(**params)
        try:
            killer.cursor().execute(f"KILL CONNECTION {victim}")
        finally:
            killer.close()
        original(*args)

    store._write_journal = kill_then_write  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        apply_change_set(inv, store, records)
    assert fingerprint(inv) == before
    store._write_journal = original  # type: ignore[method-assign]
    assert fingerprint(store.load()) == before  # reconnected by itself
    apply_change_set(inv, store, records)
    assert fingerprint(open_store(mysql_url).load()) == fingerprint(inv)


@pytest.mark.mysql
def test_unreachable_mysql_is_a_clear_error(mysql_server: str) -> None:
    with pytest.raises(StoreUnavailable, match="MySQL connection lost or refused"):
        MySQLStore(host="127.0.0.1", port=1, database="x", connect_timeout=2)


@pytest.mark.mysql
def test_foreign_tables_are_not_touched(mysql_url: str) -> None:
    params = parse_mysql_url(mysql_url)
    conn = pymysql.connect(**params)
    conn.cursor().execute("CREATE TABLE sites (x INT)")
    conn.close()
    with pytest.raises(SchemaError, match="refusing to touch it"):
        open_store(mysql_url)


def test_unwritable_sqlite_location() -> None:
    with pytest.raises(StoreUnavailable):
        open_store("sqlite:///proc/no/such/dir/inventory.db")


@pytest.mark.mysql
def test_buffer_pool_advice(mysql_url: str, monkeypatch: Any) -> None:
    """The server warns when InnoDB's buffer pool is smaller than the inventory tables."""
    store = open_store(mysql_url)
    assert isinstance(store, MySQLStore)
    store.import_image(generate(scaled(0.001), 23), ChangeMeta())
    assert store.advice() == []  # a tiny inventory fits in any pool
    original = store._execute

    def small_pool(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        if "@@innodb_buffer_pool_size" in sql:
            return [(8192,)]  # what the server would report if configured far too small
        return original(sql, params)

    monkeypatch.setattr(store, "_execute", small_pool)
    advice = store.advice()
    assert len(advice) == 1 and "innodb_buffer_pool_size" in advice[0] and "(0 MiB)" in advice[0]
    store.close()


def _seeded(store: Any) -> Any:
    """A store holding a small image committed as change sets (so the journal can replay it)."""
    from dynamo.core.export import export_records
    from dynamo.core.inventory import Inventory
    source = generate(scaled(0.0005), 31)
    inv = store.load()
    assert isinstance(inv, Inventory)
    apply_change_set(inv, store, list(export_records(source)), ChangeMeta(title="seed"))
    return inv


def test_a_commit_whose_acknowledgement_is_lost_is_caught_up_from_the_journal(store: Any) -> None:
    from dynamo.store.catchup import catch_up
    inv = _seeded(store)
    records = change_records(inv, 200, seed=32)
    original = store._commit

    def commit_then_lose_the_answer() -> None:
        original()
        raise StoreUnavailable("connection lost while waiting for the COMMIT's answer")

    store._commit = commit_then_lose_the_answer
    with pytest.raises(StoreUnavailable):
        apply_change_set(inv, store, records, ChangeMeta(title="lost ack"))
    store._commit = original
    assert inv.version == store.version() - 1  # the image rolled back; the store did commit
    assert catch_up(inv, store) == 1
    assert inv.version == store.version()
    assert fingerprint(inv) == fingerprint(store.load())  # ids included
    more = change_records(inv, 50, seed=33)
    apply_change_set(inv, store, more, ChangeMeta(title="after"))  # no conflict: writing goes on
    assert fingerprint(inv) == fingerprint(store.load())


def test_catch_up_refuses_what_it_cannot_replay(store: Any) -> None:
    from dynamo.errors import JournalPruned
    from dynamo.store.base import JournalRetention
    from dynamo.store.catchup import catch_up
    stale = store.load()
    _seeded(store)
    store.compact_journal(JournalRetention(keep_days=0, keep_entries=0))
    with pytest.raises(JournalPruned):
        catch_up(stale, store)
    assert catch_up(store.load(), store) == 0  # an image loaded from the store needs nothing


def test_a_writer_the_server_died_applying_is_settled_from_the_journal(store: Any) -> None:
    from dynamo.core.appstate import AppState
    from dynamo.store.registry import Registry
    registry = Registry(store)
    inv = store.load()
    records = []
    for committed in (True, False):
        record = registry.new_application(title="w", user="u", write=True, script="w.py", checksum="0" * 64,
                                          args=[], server="host")
        registry.update_application(record, status=AppState.RUNNING)
        registry.update_application(record, status=AppState.APPLYING)
        if committed:
            apply_change_set(inv, store, [["update", "site", {"name": "T1_X", "host": "", "storage_type": "disk",
                                                              "backend": "", "status": "ready"}]],
                             ChangeMeta(user="u", title="w", run_id=record.id))
        records.append(record)
    assert registry.mark_lost("host") == 1
    done, lost = (registry.application(r.id) for r in records)
    assert done is not None and done.status == AppState.DONE and done.version == store.version()
    assert lost is not None and lost.status == AppState.LOST


def test_a_sqlite_url_naming_a_directory_is_refused_and_the_directory_left_alone(tmp_path: Path) -> None:
    """``sqlite:///`` names "/" (a benchmark run with an empty path did): the store must not make it 0600,
    which left every other user unable to run anything."""
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(ConfigurationError, match="a directory"):
        open_store(f"sqlite:///{directory}", create=False)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
