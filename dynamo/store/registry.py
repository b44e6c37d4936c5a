"""The registry: users and roles, authorized applications, application records.

It lives in the store's database (``users``, ``user_roles``,
``app_authorizations``, ``applications``) so that several servers can share
it, and it uses the store's connection: dynamod touches it only from its main
loop. Statements run in autocommit mode, one change per statement.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from dynamo.apps.states import AppState, check_transition
from dynamo.errors import StoreError
from dynamo.store.sql import SQLStore

ROLES = ("admin", "operator")
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
        self.store = store

    def _q(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        with self.store._errors():
            return self.store._execute(sql, params)

    # ------------------------------------------------------------------ users

    def _user(self, where: str, value: Any) -> User | None:
        rows = self._q(f"SELECT id, name, dn, email FROM users WHERE {where} = %s", (value,))
        if not rows:
            return None
        uid, name, dn, email = rows[0]
        roles = frozenset((r, t) for r, t in self._q("SELECT role, target FROM user_roles WHERE user_id = %s",
                                                     (uid,)))
        return User(int(uid), name, dn, email, roles)

    def user_by_name(self, name: str) -> User | None:
        return self._user("name", name)

    def user_by_dn(self, dn: str) -> User | None:
        return self._user("dn", dn)

    def users(self) -> list[User]:
        names = [row[0] for row in self._q("SELECT name FROM users ORDER BY name")]
        return [u for u in (self.user_by_name(n) for n in names) if u is not None]

    def add_user(self, name: str, dn: str | None = None, email: str = "") -> User:
        existing = self.user_by_name(name)
        if existing is None:
            self._q("INSERT INTO users (name, dn, email) VALUES (%s, %s, %s)", (name, dn, email))
        else:
            self._q("UPDATE users SET dn = %s, email = %s WHERE id = %s",
                    (dn if dn is not None else existing.dn, email or existing.email, existing.id))
        user = self.user_by_name(name)
        assert user is not None
        return user

    def delete_user(self, name: str) -> bool:
        user = self.user_by_name(name)
        if user is None:
            return False
        self._q("DELETE FROM user_roles WHERE user_id = %s", (user.id,))
        self._q("DELETE FROM users WHERE id = %s", (user.id,))
        self._q("DELETE FROM app_authorizations WHERE user = %s", (name,))
        return True

    def grant(self, name: str, role: str, target: str) -> None:
        self._check_role(role, target)
        user = self.user_by_name(name)
        if user is None:
            raise StoreError(f"no user {name!r}")
        if not user.has_role(role, target):
            self._q("INSERT INTO user_roles (user_id, role, target) VALUES (%s, %s, %s)", (user.id, role, target))

    def revoke(self, name: str, role: str, target: str) -> None:
        user = self.user_by_name(name)
        if user is not None:
            self._q("DELETE FROM user_roles WHERE user_id = %s AND role = %s AND target = %s",
                    (user.id, role, target))

    @staticmethod
    def _check_role(role: str, target: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")

    # --------------------------------------------------------- authorizations

    def authorize(self, title: str, checksum: str, user: str, by: str) -> None:
        self._q("DELETE FROM app_authorizations WHERE title = %s AND user = %s", (title, user))
        self._q("INSERT INTO app_authorizations (title, user, checksum, authorized_by, time) "
                "VALUES (%s, %s, %s, %s, %s)", (title, user, checksum, by, time.time()))

    def revoke_authorization(self, title: str, user: str | None) -> int:
        if user is None:
            found = self._q("SELECT COUNT(*) FROM app_authorizations WHERE title = %s", (title,))[0][0]
            self._q("DELETE FROM app_authorizations WHERE title = %s", (title,))
        else:
            found = self._q("SELECT COUNT(*) FROM app_authorizations WHERE title = %s AND user = %s",
                            (title, user))[0][0]
            self._q("DELETE FROM app_authorizations WHERE title = %s AND user = %s", (title, user))
        return int(found)

    def authorizations(self, title: str | None = None) -> list[Authorization]:
        sql = "SELECT title, user, checksum, authorized_by, time FROM app_authorizations"
        rows = self._q(sql + " WHERE title = %s ORDER BY title, user", (title,)) if title else \
            self._q(sql + " ORDER BY title, user")
        return [Authorization(t, u, c, b, float(tm)) for t, u, c, b, tm in rows]

    # ----------------------------------------------------------- applications

    def new_application(self, *, title: str, user: str, write: bool, script: str, checksum: str,
                        args: list[str], server: str) -> AppRecord:
        now = time.time()
        self._q("INSERT INTO applications (title, user, write_access, script, checksum, args, status, message, "
                "server, work_area, submitted) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (title, user, int(write), script, checksum, json.dumps(args), AppState.QUEUED.value, "", server,
                 "", now))
        found = self._q("SELECT MAX(id) FROM applications WHERE user = %s AND submitted = %s", (user, now))
        record = self.application(int(found[0][0]))
        assert record is not None
        return record

    def application(self, app_id: int) -> AppRecord | None:
        rows = self._q(f"SELECT {_APP_COLUMNS} FROM applications WHERE id = %s", (app_id,))
        return _record(rows[0]) if rows else None

    def applications(self, *, limit: int = 50, active_only: bool = False) -> list[AppRecord]:
        if active_only:
            rows = self._q(f"SELECT {_APP_COLUMNS} FROM applications WHERE status IN (%s, %s, %s) ORDER BY id",
                           (AppState.QUEUED.value, AppState.RUNNING.value, AppState.APPLYING.value))
        else:
            rows = self._q(f"SELECT {_APP_COLUMNS} FROM applications ORDER BY id DESC LIMIT {int(limit)}")
            rows.reverse()
        return [_record(r) for r in rows]

    def update_application(self, record: AppRecord, **changes: Any) -> None:
        """Change a record's fields; a status change must be an allowed transition."""
        status = changes.get("status")
        if status is not None:
            check_transition(record.status, AppState(status))
        for key, value in changes.items():
            setattr(record, key, AppState(value) if key == "status" else value)
        columns = {("write_access" if k == "write" else k): (v.value if isinstance(v, AppState) else v)
                   for k, v in changes.items()}
        assignments = ", ".join(f"{k} = %s" for k in columns)
        self._q(f"UPDATE applications SET {assignments} WHERE id = %s", (*columns.values(), record.id))

    def mark_lost(self, server: str) -> int:
        """Settle the applications this server left unfinished when it stopped; returns how many
        were lost. A writer that was being applied is done if the journal has its change set (the
        commit landed before the server died), and lost otherwise."""
        active = [r for r in self.applications(active_only=True) if r.server == server]
        lost = 0
        for record in active:
            committed = self._q("SELECT seq FROM journal WHERE run_id = %s", (record.id,)) \
                if record.status == AppState.APPLYING else []
            if committed:
                self.update_application(record, status=AppState.DONE, exit_code=0, ended=time.time(),
                                        version=int(committed[0][0]),
                                        message=f"applied as inventory version {committed[0][0]} before the "
                                                "server stopped")
            else:
                lost += 1
                self.update_application(record, status=AppState.LOST, ended=time.time(),
                                        message="the server stopped before the application finished")
        return lost

    def purge_applications(self, older_than: float) -> list[AppRecord]:
        rows = self._q(f"SELECT {_APP_COLUMNS} FROM applications WHERE ended IS NOT NULL AND ended < %s",
                       (older_than,))
        self._q("DELETE FROM applications WHERE ended IS NOT NULL AND ended < %s", (older_than,))
        return [_record(r) for r in rows]


def _record(row: tuple[Any, ...]) -> AppRecord:
    (aid, title, user, write, script, checksum, args, status, exit_code, message, server, pid, work_area,
     submitted, started, ended, version) = row
    return AppRecord(int(aid), title, user, bool(write), script, checksum, json.loads(args), AppState(status),
                     exit_code, message, server, pid, work_area, float(submitted),
                     None if started is None else float(started), None if ended is None else float(ended),
                     version)
