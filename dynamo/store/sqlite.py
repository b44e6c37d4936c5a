"""The SQLite store: the embedded default for a single server on a fresh machine.

WAL journaling lets readers (a load, the journal listing) proceed while a
commit is written; ``synchronous=FULL`` makes a returned commit durable.

Checkpoints (copying the WAL back into the database file) do not run inside
commits: at W10 a 100k-record change set's checkpoint takes as long as the
commit itself. They run in ``maintain()``, which dynamod calls after the
client has its answer; a commit checkpoints by itself only when the WAL has
grown past ``WAL_LIMIT`` (a library user who never calls ``maintain``).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from dynamo.errors import ConfigurationError, StoreError, StoreUnavailable
from dynamo.privatefiles import create_private, fix_mode
from dynamo.store import rows as R
from dynamo.store.filesreader import ROWIDS_QUERY, FilesReader, replicas_split
from dynamo.store.sql import SQLStore, fetch_batches, schema_path, split_statements
from dynamo.store.statements import Outcome, Row, Statements

WAL_LIMIT = 1 << 30
LOAD_CACHE_KIB = 2048  # page cache while loading (see SQLiteStore._loading)
# a load of a database file at least this large reads block_files in a second process
# (store.filesreader): starting it costs ~0.1 s of the other core, a W1 load is ~0.5 s
SECOND_READER_MIN_BYTES = 32 << 20
# with a second reader, the share of block_files (by block id) the loader reads itself: the reader
# reads all blocks and the rest of their files, the loader the other tables and these. 0: the reader
# sends the blocks before it reads their files, and the loader builds them meanwhile (0.4 when it
# did not: docs/performance.md, "fourth round: load4"; the shares swept in "fifth round: load5")
LOADER_FILES_SHARE = 0.0
# the share of dataset_replicas' rows (by rowid) the second reader reads after the blocks (the loader reads
# the others before it builds the reader's blocks): once the reader kept no names of its own, the loader
# was the longer of the two by ~0.5 s of CPU at W10 (docs/performance.md, "seventh round": 0.25 measured
# best of 0, 0.25 and 0.5; at 0.5 the loader waits for the reader's files)
READER_REPLICAS_SHARE = 0.25
REGISTRY_SCHEMA_FILE = "sqlite-registry.sql"
REGISTRY_TABLES = ("users", "user_roles", "app_authorizations", "applications")  # in the order rows are copied


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


class SQLiteFile(Statements):
    """One SQLite database file and its connection: the statement API (``statements.py``) on it.

    ``synchronous``: FULL makes each commit durable (an fsync of the WAL); NORMAL (the registry's)
    survives a crash of the process but syncs the WAL only at checkpoints."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0, cache_mib: int = 256,
                 synchronous: str = "FULL"):
        self.path = str(path)
        self.timeout = timeout
        self.cache_kib = cache_mib * 1024
        self.synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._checkpoint_due = False
        with self._errors():
            self._connection()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                self._private_files()
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
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
        if path.is_dir():  # sqlite:/// names "/": its mode is not ours to make 0600 (nothing could run)
            raise ConfigurationError(f"SQLite {self.path}: a directory, not a database file")
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
        self._checkpoint_due = True
        if self.path != ":memory:" and _size(self.path + "-wal") > WAL_LIMIT:
            self.maintain()

    def maintain(self) -> None:
        if self._checkpoint_due and self._conn is not None:
            with self._errors():
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._checkpoint_due = False

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute("PRAGMA query_only = 0")

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


class SQLiteStore(SQLiteFile, SQLStore):
    kind = "sqlite"
    SCHEMA_FILE = "sqlite.sql"

    def __init__(self, path: str | Path, *, timeout: float = 30.0, cache_mib: int = 256):
        self._registry: SQLiteFile | None = None
        self.second_reader_min: int | None = SECOND_READER_MIN_BYTES
        self._files_split = 0  # block_files up to this block id are read by the loader (see _load_queries)
        self._early_reader: FilesReader | None = None  # started before the store was opened (adopt_files_reader)
        super().__init__(path, timeout=timeout, cache_mib=cache_mib)

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(parse_sqlite_url(url))

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    def _stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        return fetch_batches(self._connection().execute(self._sql(sql)))

    @contextmanager
    def _rows(self, query: str) -> Iterator[Iterable[tuple[Any, ...]]]:
        """The rows of one of the load's queries, straight from the cursor: sqlite3 makes each row in C as
        it is iterated, and the builder takes them a batch at a time (``itertools.islice``). Through
        ``fetch_batches`` (``_stream``: a generator resumed for every row) dataset_replicas and datasets
        took ~0.1 s more at W10 (docs/performance.md, "sixth round: load6")."""
        cursor = self._connection().execute(self._sql(query))
        try:
            yield cursor
        finally:
            cursor.close()

    def adopt_files_reader(self, reader: FilesReader) -> None:
        """A second reader started before this store was opened (``start_files_reader``: dynamod starts it
        first thing), for the next load to take if it reads this file; ended by ``close`` if none does."""
        if self._early_reader is not None:
            self._early_reader.close()
        self._early_reader = reader

    def _start_files_reader(self) -> FilesReader | None:
        """A process reading blocks and block_files on the other core (``store.filesreader``), for a
        database file of at least ``second_reader_min`` bytes (None: never) on a system with memory
        files: the one adopted (``adopt_files_reader``) when it reads what this load would have it read."""
        early, self._early_reader = self._early_reader, None
        limit = self.second_reader_min
        if limit is None or self.path == ":memory:" or not hasattr(os, "memfd_create") or _size(self.path) < limit:
            if early is not None:
                early.close()
            return None
        self._files_split = 0
        if LOADER_FILES_SHARE > 0:
            # two subqueries: SQLite looks MIN and MAX up in the index only when each is a query of its own
            # (together, they scan the table: 0.2 s and the whole table in the page cache at W10)
            try:
                low, high = self._execute("SELECT (SELECT MIN(block_id) FROM block_files), "
                                          "(SELECT MAX(block_id) FROM block_files)")[0]
            except BaseException:
                if early is not None:
                    early.close()
                raise
            self._files_split = int(low + (high - low) * LOADER_FILES_SHARE) if low is not None else 0
        spec = _reader_spec(self.path, self._files_split)
        if early is not None:
            if early.spec == spec:
                return early
            early.close()
        return FilesReader(spec)

    def _load_queries(self, two_readers: bool) -> list[tuple[str, str, str]]:
        """With a second reader, the file tables of the blocks up to ``_files_split`` are read here, after
        the reader's blocks were built (while the reader reads the other file tables); the reader's
        part of ``block_files`` is those above (also when this process reads it instead)."""
        queries = self._replicas_queries(super()._load_queries(two_readers), two_readers)
        split = self._files_split
        if not two_readers or split <= 0:
            return queries
        ours = ("block_files", f"SELECT block_id, files FROM block_files WHERE block_id <= {split:d} ORDER BY block_id",
                "")
        theirs = f"SELECT block_id, files FROM block_files WHERE block_id > {split:d} ORDER BY block_id"
        out: list[tuple[str, str, str]] = []
        for table, query, part in queries:
            if part == "files":
                out.append(ours)
            out.append((table, theirs if table == "block_files" and part == "fallback" else query, part))
        return out

    def _replicas_queries(self, queries: list[tuple[str, str, str]], two_readers: bool) -> list[tuple[str, str, str]]:
        """With a second reader reading a share of the dataset replicas (``READER_REPLICAS_SHARE``): the rows up
        to ``_replicas_split`` (a rowid, from this transaction's snapshot) read here, then, after the reader's
        blocks and before their files, the others it read ("replicas"), or read here last ("replicas_fallback")
        when it saw another version."""
        self._replicas_split = None
        if not two_readers or READER_REPLICAS_SHARE <= 0:
            return queries
        low, high = self._execute(ROWIDS_QUERY)[0]
        split = self._replicas_split = replicas_split(low, high, READER_REPLICAS_SHARE)
        out: list[tuple[str, str, str]] = []
        late: list[tuple[str, str, str]] = []
        for table, query, part in queries:
            if table == "dataset_replicas" and part == "":
                out.append((table, f"{query} WHERE rowid <= {split:d} ORDER BY rowid", ""))
                late.append((table, f"{query} WHERE rowid > {split:d} ORDER BY rowid", "replicas_fallback"))
                continue
            if part == "files":
                out.append(("", "", "replicas"))
            out.append((table, query, part))
        return out + late

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

    # --- the registry's own file ----------------------------------------------------------

    def registry_path(self) -> str:
        """``inventory.db`` -> ``inventory-registry.db`` (``:memory:`` stays in memory)."""
        if self.path == ":memory:":
            return self.path
        path = Path(self.path)
        return str(path.with_name(f"{path.stem}-registry{path.suffix}"))

    def registry_statements(self) -> Statements:
        """The registry's tables live in a database file of their own (``registry_path``): its own
        write lock, so that a registry row never waits for a change set being committed (by the
        commit process, on this file), and its own WAL, synced at checkpoints (``synchronous =
        NORMAL``) rather than at each row: a row survives a crash of the process that wrote it at
        once, and an OS crash or power cut once its file was checkpointed (docs/stores.md)."""
        if self._registry is None:
            registry = SQLiteFile(self.registry_path(), timeout=self.timeout, cache_mib=2, synchronous="NORMAL")
            try:
                with registry._errors():
                    for statement in split_statements(schema_path(REGISTRY_SCHEMA_FILE).read_text()):
                        registry._execute(statement)
                self._migrate_registry(registry)
                self._floor_application_ids(registry)
            except BaseException:
                registry.close()
                raise
            self._registry = registry
        return self._registry

    def registry_connection(self) -> Statements | None:
        """Another connection to the registry's file (made by ``registry_statements``), as it opens it."""
        if self.path == ":memory:":
            return None
        self.registry_statements()  # the file exists and is up to date
        return SQLiteFile(self.registry_path(), timeout=self.timeout, cache_mib=2, synchronous="NORMAL")

    def _migrate_registry(self, registry: SQLiteFile) -> None:
        """A store made before the registry had its own file holds the registry's tables: copy their
        rows over (once: ``registry_meta`` says so, in the same transaction), then drop them here."""
        with self._errors():
            old = [t for t in REGISTRY_TABLES if t in self._existing_tables()]
        if not old:
            return
        done = registry.query_one("SELECT value FROM registry_meta WHERE name = %s", ("migrated",))
        if done is None:
            with registry._errors():
                registry._execute("ATTACH DATABASE ? AS inventory", (self.path,))
            try:
                with registry.transaction():
                    for table in REGISTRY_TABLES:  # users before the roles that refer to them
                        if table in old:
                            registry.execute(f"INSERT INTO main.{table} SELECT * FROM inventory.{table}")
                    if "applications" in old:  # ids of purged rows are not given again either
                        seq = registry.query_one("SELECT seq FROM inventory.sqlite_sequence WHERE name = %s",
                                                 ("applications",))
                        _raise_sequence(registry, int(seq[0]) if seq is not None else 0)
                    registry.execute("INSERT INTO registry_meta (name, value) VALUES (%s, %s)", ("migrated", 1))
            finally:
                with registry._errors():
                    registry._execute("DETACH DATABASE inventory")
        with self.transaction():
            for table in reversed(REGISTRY_TABLES):  # the roles before the users they refer to
                if table in old:
                    self.execute(f"DROP TABLE {table}")

    def _floor_application_ids(self, registry: SQLiteFile) -> None:
        """Application ids go on from the highest the journal names (``run_id``): rows written since the
        registry's last checkpoint may be lost to an OS crash, and their ids must not be given again to
        other applications (the journal would name the wrong one)."""
        with self._errors():
            tables = self._existing_tables()
            found = self._execute("SELECT MAX(run_id) FROM journal") if "journal" in tables else []
        highest = int(found[0][0]) if found and found[0][0] is not None else 0
        if highest > 0:
            with registry.transaction():
                _raise_sequence(registry, highest)

    def maintain(self) -> None:
        super().maintain()
        if self._registry is not None:
            self._registry.maintain()

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

    def close(self) -> None:
        early, self._early_reader = self._early_reader, None
        if early is not None:
            early.close()
        registry, self._registry = self._registry, None
        if registry is not None:
            registry.close()
        super().close()


def start_files_reader(url: str, minimum: int = SECOND_READER_MIN_BYTES) -> FilesReader | None:
    """The second reader of the next load of the store at ``url`` (a SQLite URL), started now: dynamod starts
    it first thing, before its own imports and setup, so that the reader is under way on the other core
    meanwhile (``SQLiteStore.adopt_files_reader``). None when the load would not have one (a file smaller
    than ``minimum`` bytes, no memory files, a loader's share of the file tables)."""
    path = parse_sqlite_url(url)
    if path == ":memory:" or not hasattr(os, "memfd_create") or LOADER_FILES_SHARE > 0:
        return None
    if _size(path) < minimum:
        return None
    return FilesReader(_reader_spec(path, 0))


def _reader_spec(path: str, after: int) -> dict[str, Any]:
    """What a second reader of the SQLite file at ``path`` reads: the blocks, the file tables of the blocks
    above ``after``, then the last ``READER_REPLICAS_SHARE`` of the dataset replicas (``filesreader.main``)."""
    return {"dialect": "sqlite", "path": str(Path(path).resolve()), "after": after,
            "replicas_share": READER_REPLICAS_SHARE}


def _raise_sequence(registry: SQLiteFile, floor: int) -> None:
    """The next application id is above ``floor`` (AUTOINCREMENT's counter, in ``sqlite_sequence``)."""
    if floor <= 0:
        return
    row = registry.query_one("SELECT seq FROM main.sqlite_sequence WHERE name = %s", ("applications",))
    if row is None:
        registry.execute("INSERT INTO main.sqlite_sequence (name, seq) VALUES (%s, %s)", ("applications", floor))
    elif int(row[0]) < floor:
        registry.execute("UPDATE main.sqlite_sequence SET seq = %s WHERE name = %s", (floor, "applications"))


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0
