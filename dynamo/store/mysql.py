"""The MariaDB/MySQL store (PyMySQL, InnoDB, transactions): the production store."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import unquote, urlsplit

import pymysql
import pymysql.cursors
from pymysql.cursors import RE_INSERT_VALUES

from dynamo.errors import ConfigurationError, StoreError, StoreUnavailable
from dynamo.store import url_has_password  # noqa: F401 (its home was here)
from dynamo.store.filesreader import FilesReader
from dynamo.store.handover import SESSION, adopt
from dynamo.store.sql import SQLStore, fetch_batches, fetch_lists
from dynamo.store.statements import Outcome, Row, Statements

log = logging.getLogger("dynamo.store")

# client-side codes for a lost or refused connection, and server-side ones for
# a killed connection or shutdown
_CONNECTION_LOST = {2003, 2006, 2013, 2055, 1053, 1927, 4031}
# multi-row statements of about this many characters (PyMySQL's own executemany: 1 MB); far
# below max_allowed_packet (16 MiB by default) even for rows of many-byte characters
STATEMENT_BYTES = 1 << 20
# statements that may be sent again on a new connection when the old one turns out to be dead (outside
# a transaction): they read, or begin a transaction, so nothing of theirs took effect
REPEATABLE = re.compile(r"\s*(SELECT|SHOW|START TRANSACTION)\b", re.IGNORECASE)


def read_password(path: str) -> str:
    """The first line of ``path`` (only dynamod's keeper and the administrators' commands read it)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the MySQL password file {path}: {exc}") from exc


def parse_mysql_url(url: str) -> dict[str, Any]:
    """``mysql://user:password@host:port/database`` or
    ``mysql://user@localhost/database?unix_socket=/path`` -> connection parameters."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ConfigurationError(f"not a MySQL URL: {url!r}")
    database = parts.path.lstrip("/")
    if not database:
        raise ConfigurationError(f"MySQL URL {url!r} names no database")
    params: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": database,
    }
    for item in filter(None, parts.query.split("&")):
        key, _, value = item.partition("=")
        if key != "unix_socket":
            raise ConfigurationError(f"MySQL URL {url!r}: unknown option {key!r}")
        params["unix_socket"] = unquote(value)
    return params




_BLOCKS_JOIN = ("SELECT b.id, b.dataset_id, b.name, b.size, b.num_files, b.is_open, b.last_update, f.files "
                "FROM blocks b LEFT JOIN block_files f ON f.block_id = b.id")
# A load of at least this many blocks (by id range) has a second process read the blocks of the
# highest ids with their files (store.filesreader), SECOND_READER_SHARE of them, while this one
# reads the rest and builds: PyMySQL parses in Python, holding the GIL, so only a process of its
# own parses on the other core
SECOND_READER_MIN_BLOCKS = 200_000
SECOND_READER_SHARE = 0.6


class MySQLStore(SQLStore):
    kind = "mysql"
    SCHEMA_FILE = "mysql.sql"
    PIPELINED = True
    LOAD_PIPELINED = True  # see SQLStore.load
    # PyMySQL's cost is per row (and column): each block comes with its files in one row of a
    # join (the server's primary-key lookups run on its own core) rather than in two scans
    LOAD_QUERIES = tuple(q for q in SQLStore.LOAD_QUERIES if q[0] not in ("block_files", "blocks")) + (
        ("blocks_with_files", f"{_BLOCKS_JOIN} ORDER BY b.id"),)
    ENCODES_JOURNAL = True  # see SQLStore.commit

    def __init__(self, *, host: str = "127.0.0.1", port: int = 3306, user: str = "root", password: str = "",
                 database: str = "dynamo", unix_socket: str | None = None, connect_timeout: float = 10,
                 connector: Callable[[], tuple[int, dict[str, Any]]] | None = None):
        self.params: dict[str, Any] = {"host": host, "port": port, "user": user, "password": password,
                                       "database": database, "unix_socket": unix_socket,
                                       "connect_timeout": connect_timeout}
        # dynamod's store gets logged-in sockets from its keeper (a socket and PyMySQL's handshake
        # state: dynamo.store.handover) and never authenticates itself: no credential is in the
        # memory its applications inherit
        self.connector = connector
        self._conn: pymysql.connections.Connection | None = None
        self.second_reader_min: int | None = SECOND_READER_MIN_BLOCKS  # None: never
        self._split = 0  # the second reader reads the blocks above this id
        with self._errors():
            self._connection()

    @classmethod
    def from_url(cls, url: str, *, password_file: str | None = None,
                 connector: Callable[[], tuple[int, dict[str, Any]]] | None = None) -> MySQLStore:
        params = parse_mysql_url(url)
        if connector is not None:
            params["password"] = ""  # the keeper logs in, not this process
        elif password_file is not None:
            params["password"] = read_password(password_file)
        return cls(**params, connector=connector)

    def registry_connection(self) -> Statements | None:
        """A session of its own on the same database (from the keeper, as this one's)."""
        return MySQLStore(**self.params, connector=self.connector)

    @staticmethod
    def create_database(url: str) -> None:
        """CREATE DATABASE IF NOT EXISTS for the URL's database (needs the privilege)."""
        params = parse_mysql_url(url)
        database = params.pop("database")
        with MySQLStore._translate():
            conn = pymysql.connect(**params, charset="utf8mb4")
            try:
                with conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
            finally:
                conn.close()

    def __repr__(self) -> str:
        p = self.params
        where = p["unix_socket"] or f"{p['host']}:{p['port']}"
        return f"<MySQLStore {p['user']}@{where}/{p['database']}>"

    # ------------------------------------------------------------------

    def _connection(self) -> pymysql.connections.Connection:
        conn = self._conn
        if conn is None or not conn.open:
            if self._depth:
                # a new connection would run the rest of the transaction's statements in
                # autocommit, one by one, without the ones before
                raise StoreUnavailable("MySQL connection lost inside a transaction")
            if self.connector is not None:
                conn = adopt(self.params, *self.connector())
            else:
                conn = pymysql.connect(**self.params, **SESSION)
            self._conn = conn
        return conn

    @staticmethod
    @contextmanager
    def _translate() -> Iterator[None]:
        try:
            yield
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            if code in _CONNECTION_LOST:
                raise StoreUnavailable(f"MySQL connection lost or refused: {exc.args[-1]}") from exc
            raise StoreError(f"MySQL error {code}: {exc.args[-1]}") from exc
        except pymysql.err.InterfaceError as exc:
            raise StoreUnavailable(f"MySQL connection unusable: {exc}") from exc
        except pymysql.err.Error as exc:
            raise StoreError(f"MySQL error: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"MySQL connection failed: {exc}") from exc

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            with self._translate():
                yield
        except StoreUnavailable:
            # drop the broken connection; the next call reconnects
            self._discard()
            raise

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except pymysql.err.Error:
                pass

    def _run(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[Row], Outcome]:
        if self._depth == 0 and self._conn is not None and REPEATABLE.match(sql):
            try:
                return self._run_once(sql, params)
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
                if isinstance(exc, pymysql.err.OperationalError) and (exc.args[:1] or (None,))[0] not in \
                        _CONNECTION_LOST:
                    raise
                # an idle connection that died (the database restarted, or killed it): nothing of this
                # statement took effect (it only reads, or begins a transaction), so reconnect once
                # rather than refuse a request while the database is back
                log.warning("%r: the connection was lost (%s): reconnecting", self, exc)
                self._discard()
        return self._run_once(sql, params)

    def _run_once(self, sql: str, params: Sequence[Any]) -> tuple[list[Row], Outcome]:
        with self._connection().cursor() as cur:
            cur.execute(sql, params or None)
            rows = list(cur.fetchall()) if cur.description else []
            # the id this connection's INSERT got (LAST_INSERT_ID), whatever other connections do
            return rows, Outcome(cur.rowcount, cur.lastrowid or None)

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self._connection().cursor() as cur:
                cur.executemany(sql, rows)

    def _render(self, sql: str, rows: Sequence[Sequence[Any]]) -> Iterator[SQLStore.Statement]:
        """Multi-row INSERTs of ~1 MB rendered here, in the producer thread of ``_execute_all``
        (escaping needs no I/O), as PyMySQL's executemany would render them between round trips."""
        match = RE_INSERT_VALUES.match(sql)
        if match is None:
            yield sql, rows
            return
        prefix, values, postfix = match.group(1), match.group(2).rstrip(), match.group(3) or ""
        # the transaction's own connection, for its escaping rules only (no I/O here); never
        # _connection(), which would open a fresh one from this thread if that one was lost
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("MySQL connection lost during the commit")
        mogrify = conn.cursor().mogrify
        parts: list[str] = []
        size = 0
        for row in rows:
            part = mogrify(values, row)
            parts.append(part)
            size += len(part) + 1
            if size > STATEMENT_BYTES:
                yield prefix + ",".join(parts) + postfix, None
                parts, size = [], 0
        if parts:
            yield prefix + ",".join(parts) + postfix, None

    def _stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        cur = self._connection().cursor(pymysql.cursors.SSCursor)  # unbuffered: rows as they arrive
        try:
            cur.execute(sql)
        except BaseException:
            cur.close()
            raise
        return fetch_batches(cur)

    def _stream_lists(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        cur = self._connection().cursor(pymysql.cursors.SSCursor)
        try:
            cur.execute(sql)
        except BaseException:
            cur.close()
            raise
        return fetch_lists(cur, size)

    def _start_files_reader(self) -> FilesReader | None:
        """A process reading the blocks of the highest ids with their files (``store.filesreader``),
        on a connection of its own (from the keeper when there is one), for a store with at least
        ``second_reader_min`` block ids."""
        minimum = self.second_reader_min
        if minimum is None or not hasattr(os, "memfd_create"):
            return None
        with self._errors():
            low, high = self._execute("SELECT MIN(id), MAX(id) FROM blocks")[0]
        if low is None or high - low + 1 < minimum:
            return None
        self._split = split = high - int((high - low + 1) * SECOND_READER_SHARE)
        spec: dict[str, Any] = {"dialect": "mysql", "params": self.params, "socket": None, "state": None,
                                "query": f"{_BLOCKS_JOIN} WHERE b.id > %s ORDER BY b.id", "after": split}
        if self.connector is None:
            return FilesReader(spec)
        with self._errors():
            fd, state = self.connector()
        try:
            spec.update(params={k: v for k, v in self.params.items() if k != "password"}, socket=fd, state=state)
            return FilesReader(spec, fds=(fd,))
        finally:
            os.close(fd)  # the reader's copy is the session's now

    def _load_queries(self, two_readers: bool) -> list[tuple[str, str, str]]:
        """With a second reader, the blocks up to ``_split`` are read here after the other tables,
        then the reader's (its query is the fallback: ``SQLStore.load``)."""
        queries = super()._load_queries(False)
        if not two_readers:
            return queries
        split = self._split
        return [q for q in queries if q[0] != "blocks_with_files"] + [
            ("blocks_with_files", f"{_BLOCKS_JOIN} WHERE b.id <= {split:d} ORDER BY b.id", ""),
            ("", "", "blocks"), ("", "", "files"),
            ("blocks_with_files", f"{_BLOCKS_JOIN} WHERE b.id > {split:d} ORDER BY b.id", "fallback")]

    def _begin_read(self) -> None:
        self._execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")

    def _begin_write(self) -> None:
        self._execute("START TRANSACTION READ WRITE")

    def _commit(self) -> None:
        self._connection().commit()

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.open:
            try:
                conn.rollback()
            except pymysql.err.Error:
                self._discard()

    def _upsert_sql(self, table: str, columns: Sequence[str], keys: Sequence[str],
                    updates: Sequence[str] | None = None) -> str:
        changed = [c for c in columns if c not in keys] if updates is None else updates
        assignments = ", ".join(f"{c} = VALUES({c})" for c in changed)
        if not assignments:
            assignments = f"{keys[0]} = {keys[0]}"
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join(['%s'] * len(columns))}) "
                f"ON DUPLICATE KEY UPDATE {assignments}")

    def _delete_composite_sql(self, table: str, keys: Sequence[str], count: int) -> str:
        # measured slightly faster than a row-constructor IN list on InnoDB
        row = "(" + " AND ".join(f"{k} = %s" for k in keys) + ")"
        return f"DELETE FROM {table} WHERE {' OR '.join([row] * count)}"

    def _lock_version_sql(self) -> str:
        return "SELECT value FROM store_meta WHERE name = %s FOR UPDATE"

    def advice(self) -> list[str]:
        # A change set touches rows spread over whole tables (a block replica's row is its dataset
        # replica's); when the tables do not fit in the buffer pool, every commit reads and flushes
        # pages from disk. Measured at W10 (1.3 GB of tables): a 100k-record change set commits in
        # 1.5 s with a 2 GB pool and 3.2 s with the default 128 MB (docs/performance.md).
        with self._errors():
            pool = int(self._execute("SELECT @@innodb_buffer_pool_size")[0][0])
            tables = int(self._execute(
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name IN ('datasets', 'blocks', 'block_files', "
                "'dataset_replicas')")[0][0])
        if tables > pool:
            return [f"the InnoDB buffer pool ({pool >> 20} MiB) is smaller than the inventory tables "
                    f"({tables >> 20} MiB): large change sets will commit slowly; set innodb_buffer_pool_size "
                    f"to at least {((tables * 3 // 2) >> 30) + 1} GiB (docs/stores.md)"]
        return []

    def _existing_tables(self) -> set[str]:
        return {row[0] for row in self._execute("SHOW TABLES")}

    def close(self) -> None:
        self._discard()
