"""The InventoryStore interface.

A store persists the image and the journal. Implementations: MariaDB/MySQL
(``mysql.py``, production, and the only one for several servers) and SQLite
(``sqlite.py``, the embedded default). Both pass ``tests/integration/test_store_conformance.py``.

Contract:

* ``load()`` returns a complete Inventory (with its id allocator and version)
  read in one consistent snapshot.
* ``commit(inventory, txn, journal, meta)`` writes the rows a transaction
  touched and one journal row in **one** database transaction and returns the
  new version (the journal sequence number). It fails with ``StoreConflict``
  if the store's version is no longer the image's (another writer).
* ``import_image(inventory, meta)`` writes a whole image into an empty store
  (bulk path for migrations and benchmarks); it is journaled as an entry
  without records, which marks a snapshot point.
* Journal entries stay until ``compact_journal`` removes their records
  according to a ``JournalRetention``; the header row (who, what, when, how
  many records) is kept for the audit trail.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from dynamo.core.codec import Record

if TYPE_CHECKING:
    from dynamo.core.inventory import Inventory
    from dynamo.core.journal import ChangeMeta, JournalWriter
    from dynamo.core.transaction import Transaction

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    time: float
    user: str
    dn: str
    title: str
    checksum: str
    run_id: int
    num_records: int
    pruned: bool


@dataclass(frozen=True)
class JournalRetention:
    """What ``compact_journal`` may remove.

    The records of an entry are removed once the entry is older than
    ``keep_days`` **and** not among the newest ``keep_entries`` entries. Header
    rows are never removed. Readers asking for removed records get
    ``JournalPruned`` and must start again from a snapshot (a full load).
    """

    keep_days: float = 30.0
    keep_entries: int = 10000

    def __post_init__(self) -> None:
        if self.keep_days < 0 or self.keep_entries < 0:
            raise ValueError("journal retention values must not be negative")


class InventoryStore(ABC):
    kind: str = "abstract"
    # Whether commit() encodes the journal's records itself (overlapping that with waiting for
    # its database) rather than having them encoded while the change set is applied.
    ENCODES_JOURNAL = False

    @abstractmethod
    def create_schema(self) -> None:
        """Create the tables on an empty database; verify the schema version otherwise."""

    @abstractmethod
    def load(self, *, freeze: bool = False) -> Inventory:
        """The whole image, with ``ids`` and ``version`` set; with ``freeze``, moved to the garbage
        collector's permanent generation as built (``gc.freeze()``: never walked by a collection)."""

    @abstractmethod
    def version(self) -> int:
        """The sequence number of the newest journal entry (0 for an empty store)."""

    @abstractmethod
    def commit(self, inventory: Inventory, txn: Transaction, journal: JournalWriter, meta: ChangeMeta) -> int:
        """Persist a transaction and its journal entry atomically; return the new version."""

    @abstractmethod
    def import_image(self, inventory: Inventory, meta: ChangeMeta) -> int:
        """Write a complete image into an empty store; return the new version."""

    @abstractmethod
    def journal_entries(self, since: int = 0, limit: int | None = None) -> list[JournalEntry]:
        """Entries with ``seq > since`` in order."""

    @abstractmethod
    def journal_records(self, seq: int) -> Iterator[Record]:
        """The normalized records of entry ``seq``; ``JournalPruned`` if compacted away."""

    @abstractmethod
    def compact_journal(self, retention: JournalRetention, now: float | None = None) -> int:
        """Remove records per ``retention``; return how many entries were pruned."""

    def maintain(self) -> None:  # noqa: B027 - optional hook; most stores have nothing to do
        """Deferrable housekeeping after commits (the server calls it once its replies are sent)."""

    def advice(self) -> list[str]:
        """Settings of the database that will make this store slow, in words an operator can act on
        (the server logs them after loading)."""
        return []

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> InventoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
