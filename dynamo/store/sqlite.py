"""The SQLite store: the embedded default for a single server on a fresh machine.

WAL journaling lets readers (a load, the journal listing) proceed while a
commit is written; ``synchronous=FULL`` makes a returned commit durable.

Checkpoints (copying the WAL back into the database file) do not run inside
commits: at W10 a 100k-record change set's checkpoint takes as long as the
commit itself. They run in ``maintain()``, which dynamod calls after the
client has its answer; a commit checkpoints by itself only when the WAL has
grown past ``WAL_LIMIT`` (a library user who never calls ``maintain``). Commits made
``unsynced`` (the registry's queued rows) ask for a checkpoint only every
``UNSYNCED_PER_CHECKPOINT``-th time: a checkpoint that empties the WAL makes the next commit
start it again, and that commit then syncs the WAL's new header and its directory, two
fsyncs on the way to an application's first output line.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from dynamo.errors import ConfigurationError, StoreError, StoreUnavailable
from dynamo.privatefiles import create_private, fix_mode
from dynamo.store import rows as R
from dynamo.store.sql import SQLStore, fetch_batches
from dynamo.store.statements import Outcome, Row

WAL_LIMIT = 1 << 30
UNSYNCED_PER_CHECKPOINT = 200  # an application's three registry rows: ~28 KiB of WAL; ~5.6 MiB between checkpoints
LOAD_CACHE_KIB = 2048  # page cache while loading (see SQLiteStore._loading)


def parse_sqlite_url(url: str) -> str:
    """``sqlite:///absolute/path.db`` or ``sqlite:relative/path.db`` -> path."""
    if not url.startswith("sqlite:"):
        raise ConfigurationError(f"not an SQLite URL: {url!r}")
    rest = url[len("sqlite:"):]
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):
            raise ConfigurationError(f"SQLite URL {url!r}: use sqlite:///absolute/path or sqlite:relative/path")
    if not rest:
        raise ConfigurationError(f"SQLite URL {url!r} names no file")
    return rest


class SQLiteStore(SQLStore):
    kind = "sqlite"
    SCHEMA_FILE = "sqlite.sql"

    def __init__(self, path: str | Path, *, timeout: float = 30.0, cache_mib: int = 256):
        self.path = str(path)
        self.timeout = timeout
        self.cache_kib = cache_mib * 1024
        self._conn: sqlite3.Connection | None = None
        self._checkpoint_due = False
        self._unsynced = False        # in an unsynced() block
        self._unsynced_commits = 0    # since the last checkpoint
        with self._errors():
            self._connection()

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(parse_sqlite_url(url))

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                self._private_files()
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            # The default page cache is 2 MB; a W10 commit touches pages all over a ~2 GB file.
            conn.execute(f"PRAGMA cache_size = {-self.cache_kib}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn = conn
        return self._conn

    def _private_files(self) -> None:
        """The database (users, roles, authorizations) is for the server alone: create it 0600 whatever
        the umask, and correct the mode of an existing one and of its WAL and shared-memory files.
        SQLite gives the WAL and -shm files it creates the database file's mode."""
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            try:
                create_private(path)
            except OSError:
                return  # sqlite3.connect says why, in its own terms
        for name in (self.path, f"{self.path}-wal", f"{self.path}-shm", f"{self.path}-journal"):
            fix_mode(name)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "unable to open" in text or "disk I/O" in text:
                raise StoreUnavailable(f"SQLite {self.path}: {text}") from exc
            raise StoreError(f"SQLite {self.path}: {text}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite {self.path}: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"SQLite {self.path}: {exc}") from exc

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%s", "?")

    def _run(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[Row], Outcome]:
        cur = self._connection().execute(self._sql(sql), tuple(params))
        rows = cur.fetchall() if cur.description else []
        return rows, Outcome(cur.rowcount, cur.lastrowid or None)

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._connection().executemany(self._sql(sql), rows)

    def _stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        return fetch_batches(self._connection().execute(self._sql(sql)))

    @contextmanager
    def _loading(self) -> Iterator[None]:
        """A load reads every page once: with the commit's page cache (256 MiB) it would leave that
        much memory behind, inherited by every fork and, interleaved with the image's own
        allocations, never returned (measured). A small cache reads as fast (faster: fewer pages
        to manage); the configured size is back for the commits that follow."""
        conn = self._connection()
        conn.execute(f"PRAGMA cache_size = {-LOAD_CACHE_KIB}")
        loaded = False
        try:
            yield
            loaded = True
        finally:
            if self._conn is conn:
                try:
                    conn.execute("PRAGMA shrink_memory")
                    conn.execute(f"PRAGMA cache_size = {-self.cache_kib}")
                except sqlite3.Error:
                    if loaded:
                        raise
                    # else the load's own error says more

    def _begin_read(self) -> None:
        # SQLite's read transactions would take writes; refuse them, as MariaDB's READ ONLY does
        self._execute("PRAGMA query_only = 1")
        try:
            self._execute("BEGIN DEFERRED")
        except BaseException:
            self._execute("PRAGMA query_only = 0")
            raise

    def _begin_write(self) -> None:
        self._execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._execute("COMMIT")
        if not self._unsynced:
            self._checkpoint_due = True
        else:
            self._unsynced_commits += 1
            self._checkpoint_due = self._checkpoint_due or self._unsynced_commits >= UNSYNCED_PER_CHECKPOINT
        if self.path != ":memory:" and _size(self.path + "-wal") > WAL_LIMIT:
            self.maintain()

    @contextmanager
    def unsynced(self) -> Iterator[None]:
        """``synchronous=NORMAL`` for the block (set outside a transaction: SQLite refuses to change it
        inside one). In WAL mode a commit then writes its frames to the WAL without waiting for the
        disk: a crash of the process loses nothing, and the next ``FULL`` commit's sync of the WAL
        (one file, written in order) makes these frames durable too."""
        if self._depth or self._conn is None or self.path == ":memory:":
            yield
            return
        with self._errors():
            self._execute("PRAGMA synchronous = NORMAL")
        self._unsynced = True
        try:
            yield
        finally:
            self._unsynced = False
            if self._conn is not None:
                with self._errors():
                    self._execute("PRAGMA synchronous = FULL")

    def maintain(self) -> None:
        if self._checkpoint_due and self._conn is not None:
            with self._errors():
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._checkpoint_due = False
            self._unsynced_commits = 0

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute("PRAGMA query_only = 0")

    def _upsert_sql(self, table: str, columns: Sequence[str], keys: Sequence[str],
                    updates: Sequence[str] | None = None) -> str:
        changed = [c for c in columns if c not in keys] if updates is None else updates
        assignments = ", ".join(f"{c} = excluded.{c}" for c in changed)
        conflict = f"DO UPDATE SET {assignments}" if assignments else "DO NOTHING"
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join(['%s'] * len(columns))}) "
                f"ON CONFLICT ({', '.join(keys)}) {conflict}")

    def _delete_statements(self, sql_table: str, keys: Sequence[tuple[int, ...]]) -> Iterator[SQLStore.Statement]:
        key_columns = R.PRIMARY_KEYS[sql_table]
        if len(key_columns) == 1:
            yield from super()._delete_statements(sql_table, keys)
            return
        # SQLite (3.40) answers "(a, b) IN (VALUES ...)" by scanning the whole table, once per
        # statement (EXPLAIN QUERY PLAN: SCAN dataset_replicas): at W10 that is 500k rows per 500
        # keys. One statement per key searches the primary key, and executemany runs them in C.
        where = " AND ".join(f"{k} = %s" for k in key_columns)
        yield f"DELETE FROM {sql_table} WHERE {where}", sorted(set(keys))

    def _delete_composite_sql(self, table: str, keys: Sequence[str], count: int) -> str:
        row = "(" + ",".join(["%s"] * len(keys)) + ")"
        return f"DELETE FROM {table} WHERE ({', '.join(keys)}) IN (VALUES {','.join([row] * count)})"

    def _lock_version_sql(self) -> str:
        # BEGIN IMMEDIATE already holds the database's write lock
        return "SELECT value FROM store_meta WHERE name = %s"

    def _existing_tables(self) -> set[str]:
        return {row[0] for row in self._execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # the next open replays the WAL: nothing is lost
            conn.close()


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0
