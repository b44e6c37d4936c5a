"""Build a store holding K copies of another store's inventory: W50 (5 x W10) in minutes.

    python -m bench.replicate sqlite:////work/w10/bench-scale1-seed1.db sqlite:////var/tmp/w50.db --copies 5
    python -m bench.store_bench --stores sqlite --scale 5 --keep /var/tmp/w50 --no-commit \\
        --replicate sqlite:////work/w10/bench-scale1-seed1.db --copies 5

Generating W50 (``bench.workload``) takes ~25 min and tens of GB; this reads a prepared store (W10)
and writes its rows K times, rewriting what must differ between copies. The source is only read (one
read-only transaction: a consistent snapshot); the target must be an empty store (as for
``import_image``), of either kind, whatever the source's kind.

Copy ``k`` (0 .. K-1):

* ids: datasets, blocks and files are shifted by ``k x span``, a kind's span being the source's
  next id - 1 (``store_meta``; never below the highest id of the table). So are the ids inside the
  packed columns: the file ids of ``block_files`` (``filetable.rebased``: with consecutive ids,
  version 2 stores the first alone) and, in ``dataset_replicas``, the block ids and the file ids of
  incomplete replicas (``replicatable.rebased``). A file id beyond the source's next file id is an
  error (the counter must cover every id, or copies would overlap).
* names: copy 0 keeps the source's. Copy k > 0 puts ``c<k>_`` before a dataset name's first
  component (``/Primary/Era/TIER`` -> ``/c1_Primary/Era/TIER``) and ``/c<k>`` before every LFN
  (``/store/mc/...`` -> ``/c1/store/mc/...``: the file table's common prefix grows, nothing else
  is decoded). Block names are unique within their dataset and stay.
* sites, groups and partitions (with their options and quotas) are shared: copied once.

The target ends at version 1 with one journal entry of no records, as an ``import_image`` leaves it,
and its next ids are ``K x span + 1`` (sites, groups, partitions: the source's). Rows are written one
table and one copy per transaction (SQLite: with a checkpoint after each, so the WAL stays small);
a build that fails leaves a store to delete, still at version 0.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Iterable, Iterator

from dynamo.core.ids import ID_KINDS, IdAllocator
from dynamo.core.journal import ChangeMeta
from dynamo.dataformat import filetable, replicatable
from dynamo.errors import StoreError
from dynamo.store import open_store
from dynamo.store import rows as R

SHARED = ("owner_groups", "sites", "site_options", "partitions", "partition_options", "site_partitions")
COPIED = ("datasets", "blocks", "block_files", "dataset_replicas")
_ORDER = {"datasets": " ORDER BY id", "blocks": " ORDER BY id", "block_files": " ORDER BY block_id"}

Row = tuple[Any, ...]


def dataset_name(name: str, k: int) -> str:
    """Copy ``k``'s name of dataset ``name``."""
    if k == 0:
        return name
    return f"/c{k}_{name[1:]}" if name.startswith("/") else f"c{k}_{name}"


def lfn_prefix(k: int) -> str:
    """What copy ``k`` puts before every LFN."""
    return f"/c{k}" if k else ""


def spans(source: Any) -> dict[str, int]:
    """How far each copied kind's ids are shifted per copy."""
    meta = source._meta()
    found = {}
    for kind, table in (("dataset", "datasets"), ("block", "blocks")):
        top = source._execute(f"SELECT MAX(id) FROM {table}")[0][0]
        found[kind] = max(int(meta.get(f"next_{kind}_id", 1)) - 1, int(top or 0))
    found["file"] = int(meta.get("next_file_id", 1)) - 1
    return found


def copy_rows(table: str, rows: Iterable[Row], k: int, span: dict[str, int]) -> Iterator[Row]:
    """Copy ``k`` of a copied table's rows."""
    ds, bs, fs = k * span["dataset"], k * span["block"], k * span["file"]
    if table == "datasets":
        for did, name, *rest in rows:
            yield (did + ds, dataset_name(name, k), *rest)
    elif table == "blocks":
        for bid, did, *rest in rows:
            yield (bid + bs, did + ds, *rest)
    elif table == "block_files":
        prefix, highest = lfn_prefix(k), fs + span["file"]
        for bid, files in rows:
            blob, top = filetable.rebased(files, fs, prefix)
            if top > highest:
                raise StoreError(f"block {bid} holds file id {top - fs}, beyond the source's next file id "
                                 f"({span['file'] + 1}): copies would overlap")
            yield (bid + bs, blob)
    elif table == "dataset_replicas":
        for did, site_id, growing, group_id, blob in rows:
            yield (did + ds, site_id, growing, group_id, replicatable.rebased(blob, bs, fs))
    else:
        raise ValueError(f"not a copied table: {table}")


def replicate(source_url: str, target_url: str, copies: int,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``copies`` copies of the inventory at ``source_url`` into the empty store at ``target_url``;
    the rows written per table, the spans and the time taken."""
    if copies < 1:
        raise ValueError("copies must be at least 1")
    if source_url == target_url:
        raise ValueError("the source and the target are the same store")
    say = progress or (lambda _: None)
    t0 = time.perf_counter()
    source: Any = open_store(source_url, create=False)
    target: Any = open_store(target_url)
    written: dict[str, int] = {}
    try:
        with source._errors(), source.transaction(read_only=True):
            meta = source._meta()
            span = spans(source)
            with target._errors():
                if target.version() != 0 or any(target._execute(f"SELECT COUNT(*) FROM {t}")[0][0]
                                                 for t in ("sites", "datasets")):
                    raise StoreError("replicate needs an empty target store")
                for table in SHARED + COPIED:
                    for k in range(copies if table in COPIED else 1):
                        query = f"SELECT {', '.join(R.COLUMNS[table])} FROM {table}{_ORDER.get(table, '')}"
                        rows = source._stream(query)
                        counted = _Counted(copy_rows(table, rows, k, span) if table in COPIED else rows)
                        with target.transaction():
                            target._bulk_insert(table, counted)
                        target.maintain()
                        written[table] = written.get(table, 0) + counted.n
                    say(f"{table}: {written[table]} rows ({time.perf_counter() - t0:.0f} s)")
                next_ids = {kind: int(meta.get(f"next_{kind}_id", 1)) for kind in ID_KINDS}
                next_ids.update({kind: copies * span[kind] + 1 for kind in span})
                with target.transaction():
                    seq = target._next_version(0)
                    title = f"replicate: {copies} copies of the store at version {meta.get('version')}"
                    target._write_journal(seq, ChangeMeta(title=title), 0, [])
                    target._write_meta(seq, IdAllocator(next_ids))
    finally:
        target.close()
        source.close()
    return {"copies": copies, "rows": written, "spans": span, "next_ids": next_ids, "version": seq,
            "replicate_s": time.perf_counter() - t0}


class _Counted:
    """Rows passed through, counted."""

    def __init__(self, rows: Iterable[Row]):
        self._rows = iter(rows)
        self.n = 0

    def __iter__(self) -> Iterator[Row]:
        for row in self._rows:
            self.n += 1
            yield row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="store URL to copy (read only)")
    parser.add_argument("target", help="store URL to write (created if need be; must hold no inventory)")
    parser.add_argument("--copies", type=int, default=5, help="copies of the source (default 5: W10 -> W50)")
    args = parser.parse_args()
    result = replicate(args.source, args.target, args.copies, progress=lambda line: print(line, flush=True))
    print(f"{args.copies} copies in {result['replicate_s']:.1f} s: {result['rows']}; next ids {result['next_ids']}")


if __name__ == "__main__":
    main()
