"""MariaDB: the pages a large commit is about to write, read into the buffer pool a little ahead of it.

A change set's rows are spread over the tables at random (a 100k-record write at W10 touches ~20k
pages of 16 KiB over ~1.3 GB of tables). When the buffer pool is smaller than that (MariaDB's
default is 128 MiB), every row written waits for one random page read, one at a time: ~85 us each
on this machine's disk, 2-3 s of a W10 commit. Several reads at once overlap (four: ~40 us each).

So while the commit's connection executes one multi-row statement, a few connections of our own
(autocommit, consistent reads, no locks) read the primary-key and unique-key pages of the rows of the
next one (``SELECT COUNT(*) ... WHERE key IN (...)``). They never run more than ``LEAD`` statements
ahead of the writer (the pool must still hold the pages when the writer comes) and skip what the
writer has reached. Prefetching is only ever an optimization: a connection that fails stops
prefetching, silently; the commit is the commit's connection's alone.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import pymysql

log = logging.getLogger("dynamo.store")

CONNECTIONS = 3          # reads at once besides the writer's own
KEYS_PER_READ = 400      # keys of one prefetching SELECT
LEAD = 2                 # statements ahead of the writer at most
MIN_RECORDS = 5000       # smaller change sets are not worth the connections

# The keys whose pages an upsert of the table reads: the clustered index (its first column is enough:
# a dataset's replicas are contiguous), and unique secondary keys a new row is checked against.
KEYS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "datasets": (("id", None), ("name", "name")),
    "blocks": (("id", None), ("dataset_id", "dataset_name")),
    "block_files": (("block_id", None),),
    "dataset_replicas": (("dataset_id", None),),   # (not its site_id index: a site's range is ~25k entries)
}


class Prefetcher:
    """Threads, each on a connection of its own, reading ahead of a commit's statements."""

    def __init__(self, connections: Sequence[pymysql.connections.Connection]):
        self.position = -1                     # the statement the writer executes now
        self.submitted = 0                     # statements seen so far (their index)
        self.reads = 0
        self._jobs: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self._room = threading.Condition()
        self._threads = [threading.Thread(target=self._work, args=(conn,), name=f"dynamo-prefetch-{n}", daemon=True)
                         for n, conn in enumerate(connections)]
        for thread in self._threads:
            thread.start()

    @property
    def active(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def statement(self, table: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                  escape: Any) -> None:
        """The producer is about to hand over the next statement (rows of ``table``, or None for one that
        writes nothing worth reading ahead); waits while it would be more than ``LEAD`` ahead."""
        index = self.submitted
        self.submitted += 1
        keys = KEYS.get(table or "")
        if not keys or not self.active:
            return
        with self._room:
            self._room.wait_for(lambda: index - self.position <= LEAD or not self.active, timeout=5.0)
        rows = list(rows)
        for column, index_name in keys:
            try:
                at = list(columns).index(column)
            except ValueError:
                continue
            values = sorted({row[at] for row in rows})
            hint = f" FORCE INDEX (`{index_name}`)" if index_name else ""
            for start in range(0, len(values), KEYS_PER_READ):
                chunk = ",".join(escape(v) for v in values[start:start + KEYS_PER_READ])
                self._jobs.put((index, f"SELECT COUNT(*) FROM `{table}`{hint} WHERE `{column}` IN ({chunk})"))

    def writing(self) -> None:
        """The writer takes its next statement."""
        with self._room:
            self.position += 1
            self._room.notify_all()

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        with self._room:
            self.position = 1 << 62  # what is still queued is skipped
            self._room.notify_all()
        for thread in self._threads:
            thread.join(10.0)

    def _work(self, conn: pymysql.connections.Connection) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                index, sql = job
                if index <= self.position:
                    continue  # the writer is there already
                cur = conn.cursor()
                cur.execute(sql)
                cur.fetchall()
                self.reads += 1
        except (pymysql.Error, OSError) as exc:
            log.debug("prefetching stopped: %s", exc)
        finally:
            with self._room:
                self._room.notify_all()
            try:
                conn.close()
            except (pymysql.Error, OSError):
                pass
