"""What both SQL stores share: loading, committing, importing and the journal.

Dialects (``mysql.py``, ``sqlite.py``) supply the connection, transaction
starts, streaming reads, upsert syntax and error translation. Statements and
transactions go through ``statements.py``. SQL text here is written with ``%s``
placeholders; SQLite's dialect rewrites them.
"""

from __future__ import annotations

import concurrent.futures
import gc
import itertools
import logging
import queue
import sys
import threading
import time
from abc import abstractmethod
from contextlib import contextmanager, nullcontext
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from dynamo.core.codec import Record
from dynamo.core.ids import ID_KINDS, IdAllocator
from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta, JournalWriter, decode_chunks
from dynamo.core.transaction import Transaction
from dynamo.errors import JournalPruned, SchemaError, StoreConflict, StoreError
from dynamo.store import rows as R
from dynamo.store.base import SCHEMA_VERSION, InventoryStore, JournalEntry, JournalRetention
from dynamo.store.filesreader import FilesReader
from dynamo.store.statements import Statements

log = logging.getLogger("dynamo.store")

DELETE_CHUNK = 500
LOAD_BATCH = 1000  # rows a load's fetching thread hands over at a time (LOAD_PIPELINED)
_JOURNAL_COLUMNS = "seq, time, user, dn, title, checksum, run_id, num_records, pruned"

_LOAD_QUERIES = (
    ("groups", "SELECT id, name, olevel FROM owner_groups"),
    ("sites", "SELECT id, name, host, storage_type, backend, status FROM sites"),
    ("site_options", "SELECT site_id, filename_mapping, x509proxy FROM site_options"),
    ("partitions", "SELECT id, name FROM partitions"),
    ("partition_options", "SELECT partition_id, cond, parent_id FROM partition_options"),
    ("site_partitions", "SELECT site_id, partition_id, quota FROM site_partitions"),
    ("datasets", "SELECT id, name, status, data_type, software_version, last_update, is_open FROM datasets"),
    # one row per block with its files: PyMySQL's cost is mostly per row (performance.md)
    # two scans rather than a join (an index lookup per block); the builder attaches each file
    # table to its block by id (files first: see ImageBuilder.block_files)
    # (both in id order, which the primary key gives for nothing: ImageBuilder.blocks merges them)
    ("block_files", "SELECT block_id, files FROM block_files ORDER BY block_id"),
    ("blocks", "SELECT id, dataset_id, name, size, num_files, is_open, last_update FROM blocks ORDER BY id"),
    ("dataset_replicas", "SELECT dataset_id, site_id, growing, group_id, block_replicas FROM dataset_replicas"),
)


def schema_path(name: str) -> Path:
    """Locate ``schema/<name>``: next to the package (source tree or editable
    install), else under ``<prefix>/share/dynamo/schema`` (regular install)."""
    candidates = [
        Path(__file__).resolve().parents[2] / "schema" / name,
        Path(sys.prefix) / "share" / "dynamo" / "schema" / name,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise SchemaError(f"schema file {name} not found (looked in {', '.join(str(c.parent) for c in candidates)})")


def split_statements(ddl: str) -> list[str]:
    """Statements of a DDL file: ';' ends a statement, '--' starts a comment line.
    (String literals in the schema files must therefore not contain ';'.)"""
    lines = [line for line in ddl.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def fetch_batches(cursor: Any, size: int = 20000) -> Iterator[tuple[Any, ...]]:
    """Rows of an executed query, fetched ``size`` at a time; closes the cursor."""
    try:
        fetch = cursor.fetchmany
        while True:
            batch = fetch(size)
            if not batch:
                break
            yield from batch
            # Free this batch's rows before the next is fetched: otherwise the objects built from
            # the next batch (blocks) fill the holes of these rows, among the values kept from
            # them (names), and a forked reader touching blocks dirties twice the pages.
            del batch
    finally:
        cursor.close()


class Pipeline:
    """Iterate ``items`` in a thread, handing them over in order through a short queue.

    Errors in the producer are raised to the consumer; a consumer that stops early (an
    error of its own) stops the producer, which is joined on exit either way.
    """

    _DONE = object()

    def __init__(self, items: Iterator[Any], depth: int = 4):
        self._items = items
        self._queue: queue.Queue[Any] = queue.Queue(depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._produce, name="dynamo-rows", daemon=True)

    def __enter__(self) -> Pipeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting for room
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.01)

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer
            self._error = exc
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()  # a generator's cleanup (a cursor's close) in this thread, before the join
        self._put(self._DONE)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                if self._error is not None:
                    raise self._error
                return
            yield item


def fetch_lists(cursor: Any, size: int) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of an executed query in lists of ``size``; closes the cursor."""
    try:
        while batch := cursor.fetchmany(size):
            yield list(batch)
    finally:
        cursor.close()


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class SQLStore(Statements, InventoryStore):
    """An InventoryStore on SQL, with the public statement API and ``transaction()`` of
    ``statements.py`` (which the registry uses for its tables in the same database)."""

    SCHEMA_FILE = ""
    PIPELINED = False  # see _execute_all
    LOAD_PIPELINED = False  # see load
    LOAD_QUERIES: tuple[tuple[str, str], ...] = _LOAD_QUERIES  # (ImageBuilder method, query), in order
    # the rowid of dataset_replicas after which the second reader reads the rows (SQLite: _load_queries)
    _replicas_split: int | None = None
    loaded_counts: dict[str, int] = {}  # of the last load(); replaced by each, never changed in place
    load_readers = 1  # processes that read the last load's rows (2: a second reader read block_files)

    # ------------------------------------------------------------------
    # dialect hooks (besides the statement hooks of Statements)
    # ------------------------------------------------------------------

    @abstractmethod
    def _stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        """Iterate a large result without buffering it all."""

    @abstractmethod
    def _upsert_sql(self, table: str, columns: Sequence[str], keys: Sequence[str],
                    updates: Sequence[str] | None = None) -> str:
        """Insert rows of ``columns``; a row whose ``keys`` exist updates ``updates`` (default: the
        other columns) instead."""

    @abstractmethod
    def _delete_composite_sql(self, table: str, keys: Sequence[str], count: int) -> str: ...

    @abstractmethod
    def _lock_version_sql(self) -> str:
        """Read the version row, locking it for the rest of the write transaction."""

    @abstractmethod
    def _existing_tables(self) -> set[str]: ...

    def registry_statements(self) -> Statements:
        """Where the registry's tables are (``dynamo.store.registry``): this database, unless the
        dialect keeps them apart (SQLite: a file of their own)."""
        return self

    def registry_connection(self) -> Statements | None:
        """A new connection to the registry's tables (``registry_statements``'), for a thread of its own;
        None when there is no second way to them."""
        return None

    # ------------------------------------------------------------------
    # schema
    # ------------------------------------------------------------------

    def create_schema(self) -> None:
        with self._errors():
            tables = self._existing_tables()
            if "store_meta" in tables:
                self._check_schema_version()
                # tables added within this schema version (all statements are IF NOT EXISTS)
                for statement in split_statements(schema_path(self.SCHEMA_FILE).read_text()):
                    self._execute(statement)
                return
            if tables & set(R.COLUMNS):
                raise SchemaError("the database holds inventory tables but no store_meta table; "
                                  "refusing to touch it")
            for statement in split_statements(schema_path(self.SCHEMA_FILE).read_text()):
                self._execute(statement)
            with self.transaction():
                self._executemany(self._upsert_sql("store_meta", ("name", "value"), ("name",)),
                                  [("schema_version", SCHEMA_VERSION), ("version", 0)]
                                  + [(f"next_{kind}_id", 1) for kind in ID_KINDS])

    def _check_schema_version(self) -> None:
        found = self._execute("SELECT value FROM store_meta WHERE name = %s", ("schema_version",))
        if not found:
            raise SchemaError("store_meta has no schema_version")
        if found[0][0] != SCHEMA_VERSION:
            raise SchemaError(f"store schema version is {found[0][0]}, this Dynamo needs {SCHEMA_VERSION}")

    def _meta(self) -> dict[str, int]:
        return {name: value for name, value in self._execute("SELECT name, value FROM store_meta")}

    def version(self) -> int:
        with self._errors():
            found = self._execute("SELECT value FROM store_meta WHERE name = %s", ("version",))
        if not found:
            raise SchemaError("store_meta has no version; run create_schema() first")
        return int(found[0][0])

    # ------------------------------------------------------------------
    # load
    # ------------------------------------------------------------------

    def load(self, *, freeze: bool = False) -> Inventory:
        """The whole image, built with the garbage collector off.

        With ``freeze``, the image (and whatever else is alive) joins the permanent generation
        (``gc.freeze()``) before the collector is turned back on: no collection ever walks it, and
        forks share it copy-on-write. Without, the first automatic collection after the load walks
        every object of the image once (2-3.7 s at W10, performance.md). ``loaded_counts`` holds
        the image's object counts afterwards (``Inventory.counts()`` without its walk).

        SQLite: rows are fetched in this thread. Fetching in a second one while this one builds was
        measured (a bounded queue of 2,000-row batches) and gained nothing: sqlite3 does its per-row
        work (tuples, strings) holding the GIL and releases it around every step, so the two threads
        mostly hand it back and forth. MariaDB (``LOAD_PIPELINED``): PyMySQL's parsing holds the GIL
        too, but most of a load's time is spent waiting for the server's rows, with the GIL
        released; a thread fetching them lets the building happen meanwhile (``_rows``).

        Second reader (``store.filesreader``): for a large store a process of its own, on the other
        core, reads blocks with their packed files (SQLite: all of them; MariaDB: the highest ids) in
        a read transaction of its own, while this one reads and builds the rest. It sends the blocks
        first: they are built (``ImageBuilder.blocks_columns``) while it reads their files, which are
        linked to them last (``files_read``). Its part is used only when it read the version this
        transaction sees (else this process reads that part too). ``load_readers`` says which happened.
        """
        try:
            reader = self._start_files_reader()  # first: its start overlaps the loader's first reads
        except OSError as exc:  # no process or memory file to be had: this process reads it all
            log.warning("%r: the load's second reader could not be started (%s): loading with one", self, exc)
            reader = None
        try:
            builder = R.ImageBuilder()
            was_enabled = gc.isenabled()
            gc.disable()  # millions of objects: collection passes would cost seconds (performance.md)
            try:
                with self._errors(), self._loading(), self.transaction(read_only=True):
                    meta = self._meta()
                    if meta.get("schema_version") != SCHEMA_VERSION:
                        raise SchemaError(f"store schema version {meta.get('schema_version')} is not {SCHEMA_VERSION}")
                    self.load_readers = 1
                    taken = False  # whether the second reader's part was taken from it
                    replicas_taken = False  # ... and its dataset replicas (SQLite: those after a rowid)
                    for table, query, part in self._load_queries(reader is not None):
                        if part == "blocks":  # the reader's blocks: built now, while it reads their files
                            assert reader is not None
                            read = reader.blocks(int(meta["version"]))
                            taken = read is not None  # else the store changed in between: read here
                            if read is not None:
                                builder.blocks_columns(read)
                                self.load_readers = 2
                        elif part == "files":  # ... and linked to their files
                            if taken:
                                assert reader is not None
                                builder.files_read(reader.files())
                        elif part == "replicas":  # the dataset replicas it read after the blocks
                            if taken and reader is not None and reader.reads_replicas:
                                replicas = reader.replicas()
                                replicas_taken = replicas.split == self._replicas_split
                                if replicas_taken:
                                    builder.replicas_read(replicas)
                                    builder.link_replicas()  # while the reader reads the files
                        elif part == "replicas_fallback":
                            if not replicas_taken:
                                with self._rows(query) as rows:
                                    builder.dataset_replicas(rows)
                        elif part != "fallback" or not taken:
                            with self._rows(query) as rows:
                                getattr(builder, table)(rows)
                next_ids = {kind: meta.get(f"next_{kind}_id", 1) for kind in ID_KINDS}
                inventory = builder.finish(meta["version"], next_ids)
                if freeze:
                    gc.freeze()  # the young generation is empty now: gc.enable() has nothing to walk
            finally:
                builder.release()  # the arena's memory file is closed with the load, also when it failed
                if was_enabled:
                    gc.enable()
        finally:
            if reader is not None:
                reader.close()  # reaped (killed first when the load failed before its result)
        self.loaded_counts = builder.counts()
        return inventory

    def _load_queries(self, two_readers: bool) -> list[tuple[str, str, str]]:
        """The load's steps in order: (ImageBuilder method, query, part). Part "": read here. With a second
        reader, the tables it does not read come first, then "blocks" (the reader's blocks, built from its
        columns), then "files" (their files, linked), then the reader's part as "fallback" queries: read
        here only when the reader read another version of the store. (SQLite adds "replicas", the dataset
        replicas after ``_replicas_split`` the reader read last, and their "replicas_fallback".)"""
        if not two_readers:
            return [(table, query, "") for table, query in self.LOAD_QUERIES]
        late = ("block_files", "blocks")  # read by the reader (store.filesreader: BLOCKS_QUERY, FILES_QUERY)
        return ([(table, query, "") for table, query in self.LOAD_QUERIES if table not in late]
                + [("", "", "blocks"), ("", "", "files")]
                + [(table, query, "fallback") for table, query in self.LOAD_QUERIES if table in late])

    def _start_files_reader(self) -> FilesReader | None:
        """A second reader of ``block_files`` for this load (``store.filesreader``), or None: the
        dialect's choice (``second_reader_min``: only for stores large enough to gain)."""
        return None

    def adopt_files_reader(self, reader: FilesReader) -> None:
        """A second reader started before this store was opened, for the next load: the dialect's (SQLite
        takes it); ended here by a dialect that starts its own."""
        reader.close()

    @contextmanager
    def _rows(self, query: str) -> Iterator[Iterable[tuple[Any, ...]]]:
        """The rows of one of the load's queries: streamed, and with ``LOAD_PIPELINED`` fetched by a
        thread (in batches of ``LOAD_BATCH`` rows, a few ahead), joined before this returns."""
        if not self.LOAD_PIPELINED:
            yield self._stream(query)
            return
        with Pipeline(self._stream_lists(query, LOAD_BATCH), depth=8) as batches:
            yield itertools.chain.from_iterable(batches)

    def _stream_lists(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        """A large result in lists of ``size`` rows (for LOAD_PIPELINED)."""
        rows = self._stream(sql)
        while batch := list(itertools.islice(rows, size)):
            yield batch

    @contextmanager
    def _loading(self) -> Iterator[None]:
        """Around a load, outside its transaction: a dialect may set its connection up for one long
        sequential read (and release what that read left behind)."""
        yield

    # ------------------------------------------------------------------
    # commit
    # ------------------------------------------------------------------

    def commit(self, inventory: Inventory, txn: Transaction, journal: JournalWriter, meta: ChangeMeta) -> int:
        # SQLite: the journal was encoded while the records were applied (JournalWriter): a
        # thread encoding it here took turns with sqlite3 for the GIL. MariaDB (ENCODES_JOURNAL):
        # it is encoded here, in a thread, while the server executes the statements (the driver
        # then mostly waits on its socket, with the GIL released).
        pool = concurrent.futures.ThreadPoolExecutor(1, "dynamo-journal") if self.ENCODES_JOURNAL else None
        encoded = pool.submit(journal.flush) if pool is not None else None
        try:
            with self._errors(), self.transaction():
                seq = self._next_version(inventory.version)
                self._execute_all(self._data_statements(inventory, txn))
                if encoded is not None:
                    encoded.result()
                self._write_journal(seq, meta, journal.num_records, journal.finish())
                self._write_meta(seq, inventory.ids)
        finally:
            if pool is not None:
                pool.shutdown()  # waits for the encoder, also when the commit failed
        return seq

    def _next_version(self, expected: int) -> int:
        found = self._execute(self._lock_version_sql(), ("version",))
        if not found:
            raise SchemaError("store_meta has no version; run create_schema() first")
        current = int(found[0][0])
        if current != expected:
            raise StoreConflict(f"the store is at version {current} but this image is at {expected}: "
                                "another writer committed; reload before writing")
        return current + 1

    # A statement is (sql, params): params a list of rows for executemany, or None for SQL that
    # is complete as it is (a dialect may render rows into the text ahead of time).
    Statement = tuple[str, "Sequence[Sequence[Any]] | None"]

    def _execute_all(self, statements: Iterator[SQLStore.Statement]) -> None:
        """Execute ``statements`` in order, producing them in a thread meanwhile (``PIPELINED``).

        Building rows from the image and rendering them is Python work; executing them is,
        for MariaDB, mostly waiting for the server with the GIL released. Overlapping the two
        saves ~0.2 s of a 100k-record commit. (sqlite3 holds the GIL for most of its work, so
        there a second thread only adds hand-offs: 0.1 s slower, measured.) The image does
        not change meanwhile: the caller is here, and the producer is joined before this
        returns or raises (a rollback of the image must not race with it).
        """
        with Pipeline(statements) if self.PIPELINED else nullcontext(statements) as source:
            for sql, params in source:
                if params is None:
                    self._execute(sql)
                else:
                    self._executemany(sql, params)

    def _data_statements(self, inventory: Inventory, txn: Transaction) -> Iterator[SQLStore.Statement]:
        """Deletions children first, then upserts parents first (foreign keys hold throughout)."""
        for table in reversed(R.WRITE_ORDER):
            keys = txn.deleted_rows.get(table)  # site_options, partition_options: by foreign-key cascade
            if keys:
                yield from self._delete_statements(R.TABLE_OF[table], keys)
        for table in R.WRITE_ORDER:
            source = R.WRITTEN_WITH.get(table, table)
            objects = [o for o in txn.dirty[source].values() if inventory.is_alive(source, o)]
            if not objects:
                continue
            make_row: Any = R.ROW_OF[table]
            if table == "block_files":
                rows, emptied = [], []
                for block in objects:
                    row = make_row(block)
                    if row is None:
                        emptied.append((block.id,))
                    else:
                        rows.append(row)
                if emptied:
                    yield from self._delete_statements("block_files", emptied)
            else:
                rows = [make_row(o) for o in objects]
            if rows:
                yield from self._upsert_statements(R.TABLE_OF[table], rows)
        # Dataset replicas that changed only in their block replicas: the row exists (it was loaded
        # or committed before; one created in this change set is in dirty["dataset_replicas"]),
        # so only the packed column is updated: in SQLite twice as fast as updating every column
        # (no index entry or foreign key of the group to check). Written as an upsert all the same,
        # so that a row missing against every expectation is inserted whole, not skipped.
        full = txn.dirty["dataset_replicas"]
        blobs = [o for key, o in txn.block_replicas_dirty.items()
                 if key not in full and inventory.is_alive("dataset_replicas", o)]
        if blobs:
            yield from self._upsert_statements("dataset_replicas", [R.dataset_replica_row(o) for o in blobs],
                                               ("block_replicas",))

    def _delete_statements(self, sql_table: str, keys: Sequence[tuple[int, ...]]) -> Iterator[SQLStore.Statement]:
        key_columns = R.PRIMARY_KEYS[sql_table]
        for chunk in _chunks(sorted(set(keys)), DELETE_CHUNK):  # key order, as in _upsert_statements
            if len(key_columns) == 1:
                marks = ",".join(["%s"] * len(chunk))
                yield f"DELETE FROM {sql_table} WHERE {key_columns[0]} IN ({marks})", [[k[0] for k in chunk]]
            else:
                yield (self._delete_composite_sql(sql_table, key_columns, len(chunk)),
                       [[v for k in chunk for v in k]])

    def _upsert_statements(self, sql_table: str, rows: list[tuple[Any, ...]],
                           updates: Sequence[str] | None = None) -> Iterator[SQLStore.Statement]:
        keys = R.PRIMARY_KEYS[sql_table]
        # in primary-key order: InnoDB then walks its clustered index forwards instead of
        # jumping around it (2x faster at W10 when the table exceeds the buffer pool)
        rows.sort(key=itemgetter(*range(len(keys))))
        yield from self._render(self._upsert_sql(sql_table, R.COLUMNS[sql_table], keys, updates), rows)

    def _render(self, sql: str, rows: Sequence[Sequence[Any]]) -> Iterator[SQLStore.Statement]:
        """Statements that run ``sql`` for every row (a dialect may render multi-row SQL)."""
        yield sql, rows

    def _write_journal(self, seq: int, meta: ChangeMeta, num_records: int, chunks: list[bytes]) -> None:
        self._execute(f"INSERT INTO journal ({_JOURNAL_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                      (seq, time.time(), meta.user, meta.dn, meta.title, meta.checksum, meta.run_id,
                       num_records, 0))
        for index, chunk in enumerate(chunks):
            # one statement per chunk keeps each packet far below max_allowed_packet
            self._execute("INSERT INTO journal_chunks (seq, chunk, data) VALUES (%s,%s,%s)", (seq, index, chunk))

    def _write_meta(self, seq: int, ids: IdAllocator | None) -> None:
        values = [("version", seq)]
        if ids is not None:
            values += [(f"next_{kind}_id", value) for kind, value in ids.next_ids.items()]
        self._executemany(self._upsert_sql("store_meta", ("name", "value"), ("name",)), values)

    # ------------------------------------------------------------------
    # bulk import
    # ------------------------------------------------------------------

    def import_image(self, inventory: Inventory, meta: ChangeMeta) -> int:
        if inventory.ids is None:
            raise ValueError("import_image needs an inventory with an id allocator")
        with self._errors(), self.transaction():
            seq = self._next_version(0)
            if any(self._execute(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("sites", "datasets")):
                raise StoreError("import_image needs an empty store")
            for table, rows in R.image_rows(inventory).items():
                self._bulk_insert(R.TABLE_OF[table], rows)
            self._write_journal(seq, meta, 0, [])
            self._write_meta(seq, inventory.ids)
        inventory.version = seq
        return seq

    def _bulk_insert(self, sql_table: str, rows: Iterable[tuple[Any, ...]], batch: int = 20000) -> None:
        columns = R.COLUMNS[sql_table]
        sql = f"INSERT INTO {sql_table} ({', '.join(columns)}) VALUES ({','.join(['%s'] * len(columns))})"
        pending: list[tuple[Any, ...]] = []
        for row in rows:
            pending.append(row)
            if len(pending) >= batch:
                self._executemany(sql, pending)
                pending = []
        if pending:
            self._executemany(sql, pending)

    # ------------------------------------------------------------------
    # journal
    # ------------------------------------------------------------------

    def journal_entries(self, since: int = 0, limit: int | None = None) -> list[JournalEntry]:
        sql = f"SELECT {_JOURNAL_COLUMNS} FROM journal WHERE seq > %s ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._errors():
            found = self._execute(sql, (since,))
        return [JournalEntry(int(s), float(t), u, d, ti, c, int(r), int(n), bool(p))
                for s, t, u, d, ti, c, r, n, p in found]

    def journal_records(self, seq: int) -> Iterator[Record]:
        with self._errors():
            head = self._execute("SELECT pruned FROM journal WHERE seq = %s", (seq,))
            if not head:
                raise StoreError(f"journal entry {seq} does not exist")
            if head[0][0]:
                raise JournalPruned(f"the records of journal entry {seq} were removed by compaction")
            chunks = [bytes(row[0]) for row in
                      self._execute("SELECT data FROM journal_chunks WHERE seq = %s ORDER BY chunk", (seq,))]
        return decode_chunks(chunks)

    def compact_journal(self, retention: JournalRetention, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - retention.keep_days * 86400
        with self._errors(), self.transaction():
            newest = int(self._execute(self._lock_version_sql(), ("version",))[0][0])
            protect_from = newest - retention.keep_entries + 1
            seqs = [row[0] for row in self._execute(
                "SELECT seq FROM journal WHERE pruned = 0 AND seq < %s AND time < %s",
                (protect_from, cutoff))]
            for chunk in _chunks(seqs, DELETE_CHUNK):
                marks = ",".join(["%s"] * len(chunk))
                self._execute(f"DELETE FROM journal_chunks WHERE seq IN ({marks})", list(chunk))
                self._execute(f"UPDATE journal SET pruned = 1 WHERE seq IN ({marks})", list(chunk))
        return len(seqs)
