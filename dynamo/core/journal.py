"""Journal encoding: a change set's normalized records as compressed chunks.

A change set's records are stored with its journal row as a sequence of
chunks, each a zlib-compressed block of JSON lines (one record per line) of at
most ``CHUNK_BYTES`` uncompressed bytes. Chunking keeps every row well under
the database's packet limit (MariaDB's ``max_allowed_packet`` is 16 MiB by
default), so an initial load of millions of files is journaled like any other
change set. The retention policy (what compaction removes) is
``JournalRetention`` in ``dynamo.store.base``; see docs/journal.md.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from dynamo.core.codec import Record
from dynamo.errors import CodecError

CHUNK_BYTES = 4 << 20
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
    """Accumulates records and cuts them into compressed chunks."""

    def __init__(self, chunk_bytes: int | None = None):
        self.chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        self.chunks: list[bytes] = []
        self.num_records = 0
        self._lines: list[str] = []
        self._size = 0

    def add(self, record: Record) -> None:
        line = _dumps(record)
        self._lines.append(line)
        self._size += len(line) + 1
        self.num_records += 1
        if self._size >= self.chunk_bytes:
            self._cut()

    def _cut(self) -> None:
        if self._lines:
            self.chunks.append(zlib.compress("\n".join(self._lines).encode(), _LEVEL))
            self._lines = []
            self._size = 0

    def finish(self) -> list[bytes]:
        self._cut()
        return self.chunks


def encode_chunks(records: Iterable[Record], chunk_bytes: int | None = None) -> list[bytes]:
    writer = JournalWriter(chunk_bytes)
    for record in records:
        writer.add(record)
    return writer.finish()


def decode_chunks(chunks: Iterable[bytes]) -> Iterator[Record]:
    for chunk in chunks:
        try:
            text = zlib.decompress(chunk).decode()
        except (zlib.error, UnicodeDecodeError) as exc:
            raise CodecError(f"corrupt journal chunk: {exc}") from exc
        for line in text.split("\n"):
            try:
                record: Any = json.loads(line)
            except ValueError as exc:
                raise CodecError(f"corrupt journal record: {exc}") from exc
            yield record
