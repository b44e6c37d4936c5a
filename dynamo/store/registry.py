"""The registry: users and roles, authorized applications, application records.

Its tables (``users``, ``user_roles``, ``app_authorizations``, ``applications``)
are where ``store.registry_statements()`` says: MariaDB's in the store's database
(several servers share it), SQLite's in a database file of their own beside the
inventory's, so that a registry row never waits for the inventory's write lock
while a change set is committed (docs/stores.md). It uses them through the public
statement API: dynamod touches it from its main loop, and writes the applications' changes of
state from a thread on a connection of its own (``SQLStore.registry_connection``; ``dynamo.server.rowwriter``).
Every operation is atomic: one statement, or several in one ``transaction()``, so an operation that
fails halfway (a lost connection, a refused row) leaves nothing behind.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from dynamo.core.appstate import AppState, check_transition
from dynamo.errors import ObjectError, UnknownUser
from dynamo.store.sql import SQLStore
from dynamo.store.statements import Row, Statements

ROLES = ("admin", "operator")
ACTIVE = (AppState.QUEUED, AppState.RUNNING, AppState.APPLYING)  # what ``applications(active_only=True)`` lists
TARGETS = ("inventory", "application")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    dn: str | None
    email: str
    roles: frozenset[tuple[str, str]]

    def has_role(self, role: str, target: str) -> bool:
        return (role, target) in self.roles


@dataclass(frozen=True)
class Authorization:
    title: str
    user: str  # '' = any user
    checksum: str
    authorized_by: str
    time: float


@dataclass
class AppRecord:
    id: int
    title: str
    user: str
    write: bool
    script: str
    checksum: str
    args: list[str]
    status: AppState
    exit_code: int | None
    message: str
    server: str
    pid: int | None
    work_area: str
    submitted: float
    started: float | None
    ended: float | None
    version: int | None

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["status"] = self.status.value
        return d


_APP_COLUMNS = ("id, title, user, write_access, script, checksum, args, status, exit_code, message, server, pid, "
                "work_area, submitted, started, ended, version")


class Registry:
    def __init__(self, store: SQLStore):
        self.store = store                        # the inventory's (its journal)
        self.db: Statements = store.registry_statements()  # the registry's tables

    # ------------------------------------------------------------------ users

    def _users(self, where: str, params: tuple[Any, ...]) -> list[User]:
        """Users and their roles in one statement (one snapshot, one round trip)."""
        rows = self.db.query_all(
            "SELECT u.id, u.name, u.dn, u.email, r.role, r.target FROM users u "
            f"LEFT JOIN user_roles r ON r.user_id = u.id {where} ORDER BY u.name", params)
        found: dict[int, tuple[Row, set[tuple[str, str]]]] = {}
        for uid, name, dn, email, role, target in rows:
            _, roles = found.setdefault(int(uid), ((uid, name, dn, email), set()))
            if role is not None:
                roles.add((role, target))
        return [User(int(u[0]), u[1], u[2], u[3], frozenset(roles)) for u, roles in found.values()]

    def user_by_name(self, name: str) -> User | None:
        found = self._users("WHERE u.name = %s", (name,))
        return found[0] if found else None

    def user_by_dn(self, dn: str) -> User | None:
        found = self._users("WHERE u.dn = %s", (dn,))
        return found[0] if found else None

    def users(self) -> list[User]:
        return self._users("", ())

    def _existing(self, name: str) -> User:
        user = self.user_by_name(name)
        if user is None:
            raise UnknownUser(f"no user {name!r}")
        return user

    def add_user(self, name: str, dn: str | None = None, email: str = "") -> User:
        """Add a user, or change an existing user's DN and e-mail (those given)."""
        with self.db.transaction():
            existing = self.user_by_name(name)
            if existing is None:
                self.db.execute("INSERT INTO users (name, dn, email) VALUES (%s, %s, %s)", (name, dn, email))
            else:
                self.db.execute("UPDATE users SET dn = %s, email = %s WHERE id = %s",
                                   (dn if dn is not None else existing.dn, email or existing.email, existing.id))
            return self._existing(name)

    def delete_user(self, name: str) -> bool:
        with self.db.transaction():
            user = self.user_by_name(name)
            if user is None:
                return False
            self.db.execute("DELETE FROM user_roles WHERE user_id = %s", (user.id,))
            self.db.execute("DELETE FROM users WHERE id = %s", (user.id,))
            self.db.execute("DELETE FROM app_authorizations WHERE user = %s", (name,))
        return True

    def grant(self, name: str, role: str, target: str) -> None:
        """Give a user a role on a target; ``UnknownUser`` if there is no such user."""
        self._check_role(role, target)
        with self.db.transaction():
            user = self._existing(name)
            if not user.has_role(role, target):
                self.db.execute("INSERT INTO user_roles (user_id, role, target) VALUES (%s, %s, %s)",
                                   (user.id, role, target))

    def revoke(self, name: str, role: str, target: str) -> None:
        self.db.execute("DELETE FROM user_roles WHERE user_id = (SELECT id FROM users WHERE name = %s) "
                           "AND role = %s AND target = %s", (name, role, target))

    @staticmethod
    def _check_role(role: str, target: str) -> None:
        if role not in ROLES:
            raise ObjectError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
        if target not in TARGETS:
            raise ObjectError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")

    # --------------------------------------------------------- authorizations

    def authorize(self, title: str, checksum: str, user: str, by: str) -> None:
        """Authorize ``checksum`` for ``title`` and ``user`` ('' = any user), replacing an earlier
        authorization; ``UnknownUser`` if ``user`` is not registered (checked in the same
        transaction: ``dynamo-user-auth`` may delete users meanwhile, from another process)."""
        with self.db.transaction():
            if user:
                self._existing(user)
            self.db.execute("DELETE FROM app_authorizations WHERE title = %s AND user = %s", (title, user))
            self.db.execute("INSERT INTO app_authorizations (title, user, checksum, authorized_by, time) "
                               "VALUES (%s, %s, %s, %s, %s)", (title, user, checksum, by, time.time()))

    def revoke_authorization(self, title: str, user: str | None) -> int:
        """Remove the authorizations of ``title`` (for ``user`` only, if given); return how many."""
        if user is None:
            done = self.db.execute("DELETE FROM app_authorizations WHERE title = %s", (title,))
        else:
            done = self.db.execute("DELETE FROM app_authorizations WHERE title = %s AND user = %s",
                                      (title, user))
        return done.rowcount

    def authorizations(self, title: str | None = None) -> list[Authorization]:
        sql = "SELECT title, user, checksum, authorized_by, time FROM app_authorizations"
        rows = self.db.query_all(sql + " WHERE title = %s ORDER BY title, user", (title,)) if title else \
            self.db.query_all(sql + " ORDER BY title, user")
        return [Authorization(t, u, c, b, float(tm)) for t, u, c, b, tm in rows]

    # ----------------------------------------------------------- applications

    def new_application(self, *, title: str, user: str, write: bool, script: str, checksum: str,
                        args: list[str], server: str) -> AppRecord:
        with self.db.transaction():
            done = self.db.execute(
                "INSERT INTO applications (title, user, write_access, script, checksum, args, status, message, "
                "server, work_area, submitted) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (title, user, int(write), script, checksum, json.dumps(args), AppState.QUEUED.value, "", server,
                 "", time.time()))
            record = self.application(done.lastrowid) if done.lastrowid is not None else None
        assert record is not None, "the database gave the new application no id"
        return record

    def application(self, app_id: int) -> AppRecord | None:
        row = self.db.query_one(f"SELECT {_APP_COLUMNS} FROM applications WHERE id = %s", (app_id,))
        return _record(row) if row is not None else None

    def applications(self, *, limit: int = 50, active_only: bool = False, offset: int = 0) -> list[AppRecord]:
        """The active ones (all, oldest first), or the ``limit`` newest after skipping ``offset`` newer ones
        (oldest first within the page)."""
        if active_only:
            rows = self.db.query_all(
                f"SELECT {_APP_COLUMNS} FROM applications WHERE status IN (%s, %s, %s) ORDER BY id",
                tuple(state.value for state in ACTIVE))
        else:
            rows = self.db.query_all(f"SELECT {_APP_COLUMNS} FROM applications ORDER BY id DESC "
                                        f"LIMIT {int(limit)} OFFSET {int(offset)}")
            rows.reverse()
        return [_record(r) for r in rows]

    def update_application(self, record: AppRecord, **changes: Any) -> None:
        """Change a record's fields; a status change must be an allowed transition (else
        ``TransitionError``, and nothing changes).

        The record in memory changes even when the store then fails: dynamod goes on with
        the application, and its next update (which writes every field it names) catches
        the store up."""
        change_record(record, changes)
        self.db.execute(*application_update(record.id, changes))

    def mark_lost(self, server: str) -> int:
        """Settle the applications this server left unfinished when it stopped; returns how many
        were lost. A writer that was running or being applied is done if the journal has its change set (the
        commit landed before the server died), and lost otherwise. All or none are settled."""
        with self.db.transaction():
            active = [r for r in self.applications(active_only=True) if r.server == server]
            lost = 0
            for record in active:
                # a writer's rows are written by a thread (dynamo.server.rowwriter): one that died with
                # its "applying" row not yet written may have committed while its row says "running"
                committed = self.store.query_one("SELECT seq FROM journal WHERE run_id = %s", (record.id,)) \
                    if record.write and record.status in (AppState.RUNNING, AppState.APPLYING) else None
                if committed is not None:
                    self.update_application(record, status=AppState.DONE, exit_code=0, ended=time.time(),
                                            version=int(committed[0]),
                                            message=f"applied as inventory version {committed[0]} before the "
                                                    "server stopped")
                else:
                    lost += 1
                    self.update_application(record, status=AppState.LOST, ended=time.time(),
                                            message="the server stopped before the application finished")
        return lost

    def purge_applications(self, older_than: float) -> list[AppRecord]:
        """Remove the records of applications that ended before ``older_than``; return them."""
        with self.db.transaction():
            rows = self.db.query_all(
                f"SELECT {_APP_COLUMNS} FROM applications WHERE ended IS NOT NULL AND ended < %s", (older_than,))
            self.db.execute("DELETE FROM applications WHERE ended IS NOT NULL AND ended < %s", (older_than,))
        return [_record(r) for r in rows]


def change_record(record: AppRecord, changes: dict[str, Any]) -> None:
    """Make ``changes`` to the record in memory; a status change must be an allowed transition (else
    ``TransitionError``, and nothing changes)."""
    status = changes.get("status")
    if status is not None:
        check_transition(record.status, AppState(status))
    for key, value in changes.items():
        setattr(record, key, AppState(value) if key == "status" else value)


def application_update(app_id: int, changes: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The statement that writes ``changes`` (field names of ``AppRecord``) to an application's row."""
    columns = {("write_access" if k == "write" else k): (v.value if isinstance(v, AppState) else v)
               for k, v in changes.items()}
    assignments = ", ".join(f"{k} = %s" for k in columns)
    return f"UPDATE applications SET {assignments} WHERE id = %s", (*columns.values(), app_id)


def _record(row: tuple[Any, ...]) -> AppRecord:
    (aid, title, user, write, script, checksum, args, status, exit_code, message, server, pid, work_area,
     submitted, started, ended, version) = row
    return AppRecord(int(aid), title, user, bool(write), script, checksum, json.loads(args), AppState(status),
                     exit_code, message, server, pid, work_area, float(submitted),
                     None if started is None else float(started), None if ended is None else float(ended),
                     version)
