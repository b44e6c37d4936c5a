"""The SQL stores' statement API: statements, queries and transactions.

Everything that talks to the database goes through here: the image code in
``sql.py`` and the registry alike. Driver exceptions are translated once, by the
dialect's ``_errors()``, into the ``StoreError`` tree, so no caller ever sees a
PyMySQL or sqlite3 exception. SQL text uses ``%s`` placeholders on every dialect.

Outside a transaction each statement commits by itself (autocommit): a single
statement is atomic on its own. Several statements that must land together run
in ``with store.transaction():``, which commits when the block ends normally and
rolls back when an exception leaves it (the exception goes on).

Nesting: the outermost ``transaction()`` begins and ends the database
transaction and decides its mode (read-write, or a read-only snapshot); an inner
one is a savepoint. An exception that leaves an inner block undoes that block's
statements only, so the outer block may catch it and go on, or let it go on and
lose everything. If the database ended the whole transaction meanwhile (a lost
connection, a deadlock victim), the outer block cannot go on: its statements and
its commit raise ``StoreError`` and it rolls back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from dynamo.errors import StoreError

Row = tuple[Any, ...]


class Outcome(NamedTuple):
    """What a statement did: rows it changed, and the id the database gave a row it inserted."""

    rowcount: int
    lastrowid: int | None


class Statements(ABC):
    # how many transaction() blocks are open (0: autocommit); a class default so that a
    # dialect's __init__ may run statements before anything else is set
    _depth = 0
    # why the database transaction cannot go on, once an inner block could not be undone
    _doomed: str | None = None

    # ------------------------------------------------------------------
    # dialect hooks
    # ------------------------------------------------------------------

    @abstractmethod
    def _errors(self) -> AbstractContextManager[None]:
        """Translate driver exceptions into StoreError subclasses."""

    @abstractmethod
    def _run(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[Row], Outcome]:
        """Run one statement; return its rows (empty for non-queries) and its outcome."""

    @abstractmethod
    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _begin_read(self) -> None:
        """Start a read-only transaction that sees one consistent snapshot."""

    @abstractmethod
    def _begin_write(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None:
        """End the transaction without keeping anything; never fails for a lost connection."""

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement untranslated (callers hold ``_errors()``); return its rows."""
        return self._run(sql, params)[0]

    # ------------------------------------------------------------------
    # the public statement API
    # ------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Outcome:
        """Run one statement that returns no rows."""
        self._check_usable()
        with self._errors():
            return self._run(sql, params)[1]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for every row of parameters."""
        self._check_usable()
        with self._errors():
            self._executemany(sql, rows)

    def query_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """All rows of a query."""
        self._check_usable()
        with self._errors():
            return self._run(sql, params)[0]

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or None when it has none."""
        rows = self.query_all(sql, params)
        return rows[0] if rows else None

    def _check_usable(self) -> None:
        if self._doomed is not None:
            raise StoreError(f"the transaction cannot go on: {self._doomed}")

    # ------------------------------------------------------------------
    # transactions
    # ------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[None]:
        """Commit the block's statements if it ends normally, undo them if an exception leaves it.

        ``read_only`` (outermost block only) reads one consistent snapshot and refuses writes.
        Nested blocks are savepoints (see the module's documentation).
        """
        depth = self._depth
        self._check_usable()
        with self._errors():
            if depth == 0:
                self._begin_read() if read_only else self._begin_write()
            else:
                self._execute(f"SAVEPOINT dynamo_{depth}")
        # still counted while it ends, so that MySQL does not reconnect to COMMIT on a new connection
        self._depth = depth + 1
        try:
            try:
                # not translated here: statements translate their own errors, and an error of
                # the caller's (an OSError, say) must reach it as it is
                yield
            except BaseException:
                self._undo(depth)
                raise
            self._finish(depth, read_only)
        finally:
            self._depth = depth

    def _finish(self, depth: int, read_only: bool) -> None:
        if depth > 0:
            self._check_usable()
            with self._errors():
                self._execute(f"RELEASE SAVEPOINT dynamo_{depth}")
            return
        try:
            self._check_usable()
            with self._errors():
                # a snapshot has nothing to keep; ending it with ROLLBACK also ends SQLite's
                # query_only mode in the same step
                self._rollback() if read_only else self._commit()
        except BaseException:
            self._undo(0)
            raise
        self._doomed = None

    def _undo(self, depth: int) -> None:
        if depth == 0:
            self._doomed = None
            self._rollback()
            return
        if self._doomed is not None:
            return
        try:
            with self._errors():
                self._execute(f"ROLLBACK TO SAVEPOINT dynamo_{depth}")
                self._execute(f"RELEASE SAVEPOINT dynamo_{depth}")
        except StoreError as exc:
            # The database ended the whole transaction (the savepoint is gone with it). The
            # outer blocks must not go on as if their statements were still pending: on MySQL
            # they would now run in autocommit, one by one.
            self._doomed = str(exc)
