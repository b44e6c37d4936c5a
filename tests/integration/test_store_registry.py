"""The registry on real SQLite and MariaDB: every operation lands whole or not at all, new ids
are the driver's, and its errors say what they are."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dynamo.core.appstate import AppState
from dynamo.core.journal import ChangeMeta
from dynamo.errors import DynamoError, NotFound, ObjectError, StoreError, TransitionError, UnknownUser
from dynamo.store import open_store
from dynamo.store.registry import Registry
from dynamo.store.sql import SQLStore


@pytest.fixture
def registry(store_url: str) -> Iterator[Registry]:
    store = open_store(store_url)
    assert isinstance(store, SQLStore)
    yield Registry(store)
    store.close()


def refuse(store: SQLStore, event: str, table: str, when: str = "1 = 1") -> None:
    """A trigger that makes the database refuse ``event`` on ``table`` (a real failure, not a mock)."""
    if store.kind == "sqlite":
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
    refuse(registry.store, "DELETE", "app_authorizations")  # the last of delete_user's three statements
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
    refuse(store, "UPDATE", "applications", "NEW.status = 'lost'")
    with pytest.raises(StoreError, match="refused by the test"):
        registry.mark_lost("host")
    with open_store(store_url) as other:
        assert isinstance(other, SQLStore)
        seen = Registry(other)
        assert [(r.id, r.status) for r in seen.applications(active_only=True)] == \
            [(applied.id, AppState.APPLYING), (running.id, AppState.RUNNING)]
    store.execute("DROP TRIGGER refuse")
    assert registry.mark_lost("host") == 1
    done, lost = registry.application(applied.id), registry.application(running.id)
    assert done is not None and done.status == AppState.DONE and done.version == store.version()
    assert lost is not None and lost.status == AppState.LOST


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


def test_an_unsynced_queued_row_is_committed_without_waiting_for_the_disk(tmp_path: Any) -> None:
    """SQLite: ``synced=False`` commits the row with ``synchronous=NORMAL`` (WAL: no fsync), set around
    the transaction, ``FULL`` again after it; the row is committed, and it asks for no checkpoint."""
    from dynamo.store.sqlite import SQLiteStore
    store = open_store(f"sqlite:///{tmp_path}/r.db")
    assert isinstance(store, SQLiteStore)
    try:
        registry = Registry(store)
        store.maintain()  # the schema's own commits are checkpointed
        conn = store._connection()
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        record = registry.new_application(title="t", user="u", write=False, script="s.py", checksum="0" * 64,
                                          args=[], server="host", synced=False)
        conn.set_trace_callback(None)
        statements = [s.split()[0] if not s.startswith("PRAGMA") else s for s in seen]
        assert statements[:3] == ["PRAGMA synchronous = NORMAL", "BEGIN", "INSERT"], seen
        assert statements[-2:] == ["COMMIT", "PRAGMA synchronous = FULL"], seen
        assert store.query_one("PRAGMA synchronous") == (2,)  # FULL
        assert not store._checkpoint_due
        other = open_store(f"sqlite:///{tmp_path}/r.db")
        assert isinstance(other, SQLStore)
        assert Registry(other).application(record.id) is not None
        other.close()
        new_app(registry)  # an ordinary commit: synced, and it asks for a checkpoint
        assert store._checkpoint_due
    finally:
        store.close()


def test_an_unsynced_row_is_an_ordinary_commit_elsewhere(registry: Registry) -> None:
    record = registry.new_application(title="t", user="u", write=False, script="s.py", checksum="0" * 64,
                                      args=[], server="host", synced=False)
    assert registry.application(record.id) is not None
    assert record.status is AppState.QUEUED
