"""Journal encoding: a change set's normalized records as compressed chunks.

A change set's records are stored with its journal row as a sequence of
chunks, each a zlib-compressed JSON array of at most ``CHUNK_RECORDS``
records, split further if the compressed chunk exceeds ``CHUNK_BYTES``.
Chunking keeps every row well under the database's packet limit (MariaDB's
``max_allowed_packet`` is 16 MiB by default) and bounds the memory of one
encoding step, so an initial load of millions of files is journaled like any
other change set. The retention policy (what compaction removes) is
``JournalRetention`` in ``dynamo.store.base``; see docs/journal.md.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from dynamo.core.codec import Record
from dynamo.errors import CodecError

# A compressed chunk must stay well under MariaDB's default max_allowed_packet (16 MiB).
CHUNK_BYTES = 8 << 20
CHUNK_RECORDS = 20000
DEFER_RECORDS = 200000
_LEVEL = 3
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode


@dataclass(frozen=True)
class ChangeMeta:
    """Who made a change set, and with what (stored in its journal row)."""

    user: str = ""
    dn: str = ""
    title: str = ""
    checksum: str = ""
    run_id: int = 0


class JournalWriter:
    """Collects a change set's records and encodes them into compressed chunks.

    One ``json.dumps`` over a list of records runs in C, where one call per
    record would cost more than applying the record did. Encoding is deferred
    to ``finish()``, which the store runs in a thread while the database
    executes the change set's statements (the client then waits on the
    socket, with the GIL released). Only a change set of more than
    ``DEFER_RECORDS`` records is encoded progressively while it is applied, so
    that an initial load of millions of files does not hold them all.
    """

    def __init__(self, chunk_bytes: int | None = None, chunk_records: int | None = None):
        self.chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        self.chunk_records = CHUNK_RECORDS if chunk_records is None else chunk_records
        self.chunks: list[bytes] = []
        self.num_records = 0
        self._pending: list[Record] = []

    def add(self, record: Record) -> None:
        self._pending.append(record)
        self.num_records += 1
        if len(self._pending) >= DEFER_RECORDS:
            self._cut(keep_partial=True)

    def _cut(self, keep_partial: bool = False) -> None:
        pending, step = self._pending, self.chunk_records
        full = len(pending) - len(pending) % step if keep_partial else len(pending)
        for start in range(0, full, step):
            self._encode(pending[start:start + step])
        self._pending = pending[full:]

    def _encode(self, records: list[Record]) -> None:
        chunk = zlib.compress(_dumps(records).encode(), _LEVEL)
        if len(chunk) > self.chunk_bytes and len(records) > 1:
            # rare: records with very long file lists; halve until each chunk fits
            half = len(records) // 2
            self._encode(records[:half])
            self._encode(records[half:])
        else:
            self.chunks.append(chunk)

    def finish(self) -> list[bytes]:
        self._cut()
        return self.chunks


def decode_chunks(chunks: Iterable[bytes]) -> Iterator[Record]:
    for chunk in chunks:
        try:
            text = zlib.decompress(chunk).decode()
        except (zlib.error, UnicodeDecodeError) as exc:
            raise CodecError(f"corrupt journal chunk: {exc}") from exc
        try:
            records: Any = json.loads(text)
        except ValueError as exc:
            raise CodecError(f"corrupt journal chunk: {exc}") from exc
        if not isinstance(records, list):
            raise CodecError("corrupt journal chunk: not a list of records")
        yield from records
