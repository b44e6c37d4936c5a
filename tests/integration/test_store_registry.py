"""The registry on real SQLite and MariaDB: every operation lands whole or not at all, new ids
are the driver's, and its errors say what they are."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dynamo.core.appstate import AppState
from dynamo.core.journal import ChangeMeta
from dynamo.errors import DynamoError, NotFound, ObjectError, StoreError, TransitionError, UnknownUser
from dynamo.store import open_store
from dynamo.store.registry import Registry
from dynamo.store.sql import SQLStore
from dynamo.store.sqlite import SQLiteStore


def refuse(registry: Registry, event: str, table: str, when: str = "1 = 1") -> None:
    """A trigger that makes the database refuse ``event`` on ``table`` of the registry (a real failure,
    not a mock)."""
    store = registry.db
    if registry.store.kind == "sqlite":
        store.execute(f"CREATE TRIGGER refuse BEFORE {event} ON {table} WHEN {when} "
                      "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    else:
        store.execute(f"CREATE TRIGGER refuse BEFORE {event} ON {table} FOR EACH ROW BEGIN IF {when} THEN "
                      "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'; END IF; END")


def new_app(registry: Registry, title: str = "t", user: str = "u") -> Any:
    return registry.new_application(title=title, user=user, write=True, script="s.py", checksum="0" * 64,
                                    args=["-x"], server="host")


def test_users_and_roles(registry: Registry) -> None:
    registry.add_user("bob", "/CN=bob", "bob@x.org")
    registry.add_user("alice")
    registry.grant("alice", "admin", "inventory")
    registry.grant("alice", "operator", "application")
    registry.grant("alice", "admin", "inventory")  # already there: nothing changes
    assert [(u.name, sorted(u.roles)) for u in registry.users()] == \
        [("alice", [("admin", "inventory"), ("operator", "application")]), ("bob", [])]
    bob = registry.user_by_dn("/CN=bob")
    assert bob is not None and (bob.name, bob.email) == ("bob", "bob@x.org")
    changed = registry.add_user("bob", email="b@y.org")  # the DN stays when none is given
    assert (changed.dn, changed.email, changed.id) == ("/CN=bob", "b@y.org", bob.id)
    registry.revoke("alice", "admin", "inventory")
    registry.revoke("nobody", "admin", "inventory")  # no such user: nothing to take away
    alice = registry.user_by_name("alice")
    assert alice is not None and alice.roles == {("operator", "application")}
    assert registry.delete_user("bob") and not registry.delete_user("bob")
    assert registry.user_by_name("bob") is None


def test_errors_say_what_they_are(registry: Registry) -> None:
    with pytest.raises(UnknownUser, match="no user 'ghost'") as raised:
        registry.grant("ghost", "admin", "inventory")
    assert isinstance(raised.value, NotFound) and not isinstance(raised.value, StoreError)
    registry.add_user("alice")
    with pytest.raises(ObjectError, match="unknown role"):
        registry.grant("alice", "king", "inventory")
    with pytest.raises(ObjectError, match="unknown target"):
        registry.grant("alice", "admin", "castle")
    with pytest.raises(UnknownUser):
        registry.authorize("title", "c" * 64, "ghost", "alice")
    assert registry.authorizations() == []
    record = new_app(registry)
    with pytest.raises(TransitionError) as bad:
        registry.update_application(record, status=AppState.DONE)  # QUEUED -> DONE skips RUNNING
    assert isinstance(bad.value, DynamoError)
    stored = registry.application(record.id)
    assert stored is not None and stored.status == AppState.QUEUED and record.status == AppState.QUEUED


def test_authorize_replaces_and_a_refused_insert_keeps_the_old_one(registry: Registry) -> None:
    """authorize() deletes the old row and inserts the new one: if the insert is refused (a NOT NULL
    column), the old authorization must still be there (in autocommit it was lost)."""
    registry.add_user("alice")
    registry.authorize("title", "a" * 64, "", "alice")
    registry.authorize("title", "b" * 64, "", "alice")
    assert [a.checksum for a in registry.authorizations("title")] == ["b" * 64]
    with pytest.raises(StoreError):
        registry.authorize("title", None, "", "alice")  # type: ignore[arg-type]
    assert [a.checksum for a in registry.authorizations("title")] == ["b" * 64]
    assert registry.revoke_authorization("title", "someone") == 0
    assert registry.revoke_authorization("title", None) == 1
    assert registry.authorizations() == []


def test_delete_user_refused_halfway_leaves_the_user_whole(registry: Registry) -> None:
    registry.add_user("alice", "/CN=alice")
    registry.grant("alice", "admin", "inventory")
    registry.authorize("title", "a" * 64, "alice", "alice")
    refuse(registry, "DELETE", "app_authorizations")  # the last of delete_user's three statements
    with pytest.raises(StoreError, match="refused by the test"):
        registry.delete_user("alice")
    alice = registry.user_by_name("alice")
    assert alice is not None and alice.roles == {("admin", "inventory")}
    assert [a.user for a in registry.authorizations()] == ["alice"]


def test_mark_lost_refused_halfway_settles_nothing(registry: Registry, store_url: str) -> None:
    """The first record would become DONE, the second LOST; the database refuses the second:
    the first must still be APPLYING (the server settles both again at its next start)."""
    store = registry.store
    applied, running = new_app(registry), new_app(registry)
    for record in (applied, running):
        registry.update_application(record, status=AppState.RUNNING)
    registry.update_application(applied, status=AppState.APPLYING)
    inv = store.load()
    from dynamo.core.changeset import apply_change_set
    apply_change_set(inv, store, [["update", "site", {"name": "T1_X", "host": "", "storage_type": "disk",
                                                      "backend": "", "status": "ready"}]],
                     ChangeMeta(user="u", title="t", run_id=applied.id))
    refuse(registry, "UPDATE", "applications", "NEW.status = 'lost'")
    with pytest.raises(StoreError, match="refused by the test"):
        registry.mark_lost("host")
    with open_store(store_url) as other:
        assert isinstance(other, SQLStore)
        seen = Registry(other)
        assert [(r.id, r.status) for r in seen.applications(active_only=True)] == \
            [(applied.id, AppState.APPLYING), (running.id, AppState.RUNNING)]
    registry.db.execute("DROP TRIGGER refuse")
    assert registry.mark_lost("host") == 1
    done, lost = registry.application(applied.id), registry.application(running.id)
    assert done is not None and done.status == AppState.DONE and done.version == store.version()
    assert lost is not None and lost.status == AppState.LOST


def test_mark_lost_finds_a_writer_left_running_whose_change_set_is_in_the_journal(registry: Registry) -> None:
    """Its rows are written by a thread (dynamo.server.rowwriter): a server killed before its "applying"
    row was written leaves the writer "running" though its change set was committed: done, not lost.
    A read-only application left running, and a writer whose change set is not there, are lost."""
    store = registry.store
    committed, uncommitted, reader = new_app(registry), new_app(registry), new_app(registry)
    registry.update_application(reader, write=False)
    for record in (committed, uncommitted, reader):
        registry.update_application(record, status=AppState.RUNNING)
    from dynamo.core.changeset import apply_change_set
    apply_change_set(store.load(), store, [["update", "site", {"name": "T1_X", "host": "", "storage_type": "disk",
                                                               "backend": "", "status": "ready"}]],
                     ChangeMeta(user="u", title="t", run_id=committed.id))
    assert registry.mark_lost("host") == 2
    found = {r.id: r for r in registry.applications()}
    assert (found[committed.id].status, found[committed.id].version) == (AppState.DONE, store.version())
    assert found[uncommitted.id].status is AppState.LOST and found[reader.id].status is AppState.LOST


def test_new_application_ids_and_purge(registry: Registry) -> None:
    records = [new_app(registry, title=f"t{i}") for i in range(5)]
    assert [r.id for r in records] == list(range(records[0].id, records[0].id + 5))
    assert [registry.application(r.id).title for r in records] == [f"t{i}" for i in range(5)]  # type: ignore[union-attr]
    assert records[0].args == ["-x"] and records[0].status == AppState.QUEUED
    for record in records[:2]:
        registry.update_application(record, status=AppState.RUNNING)
        registry.update_application(record, status=AppState.DONE, ended=100.0)
    assert [r.id for r in registry.purge_applications(older_than=200.0)] == [r.id for r in records[:2]]
    assert [r.id for r in registry.applications()] == [r.id for r in records[2:]]


@pytest.mark.mysql
def test_mysql_new_applications_from_two_servers_get_their_own_ids(mysql_url: str) -> None:
    """Two connections (two servers sharing the registry) submit at once, as the same user: each
    gets its own record back (MAX(id) of the user's rows could return the other's)."""
    registries = []
    for _ in range(2):
        store = open_store(mysql_url)
        assert isinstance(store, SQLStore)
        registries.append(Registry(store))
    got: dict[str, list[Any]] = {"left": [], "right": []}
    start = threading.Barrier(2)

    def submit(registry: Registry, side: str) -> None:
        start.wait()
        got[side] = [new_app(registry, title=f"{side}{i}", user="same") for i in range(100)]

    threads = [threading.Thread(target=submit, args=(r, side)) for r, side in zip(registries, got, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for side, records in got.items():
        assert [r.title for r in records] == [f"{side}{i}" for i in range(100)]
    assert len({r.id for records in got.values() for r in records}) == 200
    for r in registries:
        r.store.close()


# --- SQLite: the registry in a file of its own ------------------------------------------------------

def test_sqlite_registry_rows_do_not_wait_for_a_commit(tmp_path: Path) -> None:
    """While another connection holds the inventory's write lock (the commit process committing a
    change set), the registry's rows are written at once: they have a database file of their own."""
    path = tmp_path / "inventory.db"
    store = SQLiteStore(path, timeout=0.5)
    store.create_schema()
    registry = Registry(store)
    committing = SQLiteStore(path)
    try:
        with committing.transaction():
            committing.execute("UPDATE store_meta SET value = value WHERE name = %s", ("version",))
            started = time.monotonic()
            record = new_app(registry)
            registry.update_application(record, status=AppState.RUNNING)
            registry.add_user("alice")
            assert time.monotonic() - started < 0.4
        assert registry.application(record.id) is not None
        assert Path(store.registry_path()).name == "inventory-registry.db"
        assert os.stat(store.registry_path()).st_mode & 0o777 == 0o600
    finally:
        committing.close()
        store.close()


OLD_LAYOUT = """
CREATE TABLE users (id INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL UNIQUE, dn TEXT NULL UNIQUE,
                    email TEXT NOT NULL DEFAULT '');
CREATE TABLE user_roles (user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE, role TEXT NOT NULL,
                         target TEXT NOT NULL, PRIMARY KEY (user_id, role, target)) WITHOUT ROWID;
CREATE TABLE app_authorizations (title TEXT NOT NULL, user TEXT NOT NULL, checksum TEXT NOT NULL,
                                 authorized_by TEXT NOT NULL, time REAL NOT NULL, PRIMARY KEY (title, user))
                                 WITHOUT ROWID;
CREATE TABLE applications (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, user TEXT NOT NULL,
  write_access INTEGER NOT NULL, script TEXT NOT NULL, checksum TEXT NOT NULL, args TEXT NOT NULL,
  status TEXT NOT NULL, exit_code INTEGER NULL, message TEXT NOT NULL, server TEXT NOT NULL, pid INTEGER NULL,
  work_area TEXT NOT NULL, submitted REAL NOT NULL, started REAL NULL, ended REAL NULL, version INTEGER NULL)
"""


def test_sqlite_store_of_the_old_layout_moves_its_registry(tmp_path: Path) -> None:
    """A store made when the registry's tables were in the inventory's file: their rows move to the
    registry's file at the first open (ids, and the ids of purged applications, not given again), and
    the old tables are gone."""
    path = tmp_path / "inventory.db"
    with SQLiteStore(path) as old:
        old.create_schema()
        for statement in OLD_LAYOUT.split(";"):
            old.execute(statement)
        old.execute("INSERT INTO users (id, name, dn, email) VALUES (1, 'alice', '/CN=alice', 'a@x.org')")
        old.execute("INSERT INTO user_roles VALUES (1, 'admin', 'inventory')")
        old.execute("INSERT INTO app_authorizations VALUES ('t', '', %s, 'alice', 1.0)", ("a" * 64,))
        for i in range(1, 8):
            old.execute("INSERT INTO applications (title, user, write_access, script, checksum, args, status, "
                        "message, server, work_area, submitted) VALUES (%s, 'alice', 0, 's', '', '[]', 'done', '', "
                        "'host', '', 1.0)", (f"t{i}",))
        old.execute("DELETE FROM applications WHERE id > 5")  # purged: ids 6 and 7 were given already
    with SQLiteStore(path) as store:
        store.create_schema()
        registry = Registry(store)
        alice = registry.user_by_name("alice")
        assert alice is not None and (alice.dn, alice.roles) == ("/CN=alice", {("admin", "inventory")})
        assert [(a.title, a.user) for a in registry.authorizations()] == [("t", "")]
        assert [r.title for r in registry.applications()] == [f"t{i}" for i in range(1, 6)]
        assert new_app(registry).id == 8
        assert not {"users", "user_roles", "app_authorizations", "applications"} & store._existing_tables()
    with SQLiteStore(path) as again:  # once only
        assert [r.id for r in Registry(again).applications()] == [1, 2, 3, 4, 5, 8]


def test_sqlite_registry_ids_go_on_from_the_journal(tmp_path: Path) -> None:
    """Registry rows are synced at checkpoints: an OS crash may lose the last ones. The ids of lost
    applications that the journal names (``run_id``) are not given again."""
    from dynamo.core.changeset import apply_change_set
    path = tmp_path / "inventory.db"
    with SQLiteStore(path) as store:
        store.create_schema()
        inventory = store.load()
        apply_change_set(inventory, store, [["update", "site", {"name": "T1_X", "host": "", "storage_type": "disk",
                                                                "backend": "", "status": "ready"}]],
                         ChangeMeta(user="u", title="t", run_id=41))
    with SQLiteStore(path) as store:  # a registry that never saw application 41 (lost)
        assert new_app(Registry(store)).id == 42
