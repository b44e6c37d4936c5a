"""bench.replicate: a store of K copies of another, every id space shifted and every name made unique,
that loads, counts K times the source, holds each copy's contents under the shift, and takes commits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.replicate import replicate
from bench.workload import change_records, generate, scaled
from dynamo.core.changeset import apply_change_set
from dynamo.core.codec import DELETE, UPDATE, encode
from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta
from dynamo.dataformat import Block, BlockReplica, Dataset, DatasetReplica
from dynamo.errors import StoreError
from dynamo.store import open_store
from dynamo.store import rows as R

COPIES = 3


def make_source(url: str) -> None:
    """A small generated store, then changed: new datasets, deleted and added block replicas, a block
    whose file ids are no longer consecutive (its table stores each id), a replica holding some files."""
    store: Any = open_store(url)
    try:
        store.import_image(generate(scaled(0.001), 31), ChangeMeta(title="import"))
        inv = store.load()
        assert apply_change_set(inv, store, change_records(inv, 200, seed=32))
        dataset = next(iter(inv.datasets.values()))
        block = next(iter(dataset.blocks))
        lfns = block.file_names()
        site = block.replicas[0].site
        gone = block.find_file(lfns[1])
        assert gone is not None
        assert apply_change_set(inv, store, [
            encode(DELETE, gone),
            encode(UPDATE, Block(block.name, dataset.name, block.size - gone.size, len(lfns) - 1, block.is_open, 7)),
            encode(UPDATE, BlockReplica(block, site, None, True, 5, lfns[2:4]))])
        assert block._file_ids() != list(range(block._file_ids()[0], block._file_ids()[0] + len(lfns) - 1))
    finally:
        store.close()


def loaded(url: str) -> tuple[Inventory, Any]:
    store: Any = open_store(url, create=False)
    try:
        return store.load(), store
    finally:
        store.close()


def describe(inv: Inventory, copy: int = 0, spans: dict[str, int] | None = None,
             names: set[str] | None = None) -> list[Any]:
    """Every dataset (of ``names``), block, file, dataset and block replica, with ids; as copy ``copy`` of
    ``inv`` would hold them when ``spans`` is given."""
    ds = bs = fs = 0
    prefix = tag = ""
    if spans is not None and copy:
        ds, bs, fs = copy * spans["dataset"], copy * spans["block"], copy * spans["file"]
        prefix, tag = f"/c{copy}_", f"/c{copy}"

    def dname(name: str) -> str:
        return prefix + name[1:] if prefix else name

    def lfn(name: str) -> str:
        return tag + name

    out = []
    for d in sorted(inv.datasets.values(), key=lambda d: d.name):
        if names is not None and d.name not in names:
            continue
        blocks = []
        for b in sorted(d.blocks, key=lambda b: b.name):
            files = sorted((lfn(f.lfn), f.size, f.checksum_text, f.id + fs) for f in b.files)
            blocks.append((b.name, b.id + bs, b.size, b.num_files, b.is_open, b.last_update, files))
        replicas = []
        for r in sorted(d.replicas, key=lambda r: r.site_name):
            brs = sorted((br.block_name, br.group_name, br.is_custodial, br.last_update,
                          None if br.lfns is None else tuple(lfn(n) for n in br.lfns),
                          None if br.file_ids is None else tuple(i + fs for i in br.file_ids))  # type: ignore[operator]
                         for br in r.block_replicas)
            replicas.append((r.site_name, r.group_name, r.growing, brs))
        out.append((dname(d.name), d.id + ds, d.status, d.data_type, d.software_version, d.last_update, d.is_open,
                    blocks, replicas))
    return out


def check_copies(source_url: str, target_url: str) -> None:
    result = replicate(source_url, target_url, COPIES)
    original, source = loaded(source_url)
    copied, target = loaded(target_url)
    counts, expected = target.loaded_counts, source.loaded_counts
    assert counts == copied.counts()
    for kind in ("sites", "groups", "partitions"):
        assert counts[kind] == expected[kind]
    for kind in ("datasets", "blocks", "files", "datasetreplicas", "blockreplicas"):
        assert counts[kind] == COPIES * expected[kind], kind
    spans = result["spans"]
    # ids never overlap: each copy lies within its own stretch of every id space
    assert spans["dataset"] >= max(d.id for d in original.datasets.values())
    assert spans["file"] >= max(f.id for d in original.datasets.values() for b in d.blocks for f in b.files)
    reference = describe(original)
    for k in range(COPIES):
        mine = {f"/c{k}_{name[1:]}" if k else name for name in original.datasets}
        assert describe(copied, names=mine) == describe(original, k, spans), f"copy {k}"
    assert len(reference) == len(original.datasets)
    # what the loader gets besides the rows
    assert copied.version == 1 and [e.num_records for e in target.journal_entries()] == [0]
    assert copied.ids is not None and original.ids is not None
    assert {k: copied.ids.next_ids[k] for k in ("dataset", "block", "file")} == \
        {k: COPIES * spans[k] + 1 for k in ("dataset", "block", "file")}
    assert copied.ids.next_ids["site"] == original.ids.next_ids["site"]
    for kind, row in (("sites", R.site_row), ("sites", R.site_options_row), ("partitions", R.partition_row),
                      ("partitions", R.partition_options_row)):
        assert sorted(map(row, getattr(copied, kind).values())) == sorted(map(row, getattr(original, kind).values()))
    assert sorted(map(R.group_row, copied.groups.values())) == sorted(map(R.group_row, original.groups.values()))

    # a change set commits on it, and a load afterwards holds it
    store: Any = open_store(target_url, create=False)
    try:
        inv = store.load()
        records = change_records(inv, 300, seed=33)
        assert apply_change_set(inv, store, records, ChangeMeta(title="after replicate"))
        assert inv.version == 2
        again = store.load()
        assert store.loaded_counts == inv.counts() == again.counts()
        assert describe(again) == describe(inv)
    finally:
        store.close()


def test_copies_of_a_sqlite_store(store_url: str, tmp_path: Path) -> None:
    """Into either kind of store."""
    source = f"sqlite:///{tmp_path}/source.db"
    make_source(source)
    check_copies(source, store_url)


@pytest.mark.mysql
def test_copies_of_a_mariadb_store(mysql_url: str, tmp_path: Path) -> None:
    make_source(mysql_url)
    check_copies(mysql_url, f"sqlite:///{tmp_path}/copies.db")


def test_the_target_must_be_empty(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    store = open_store(source)
    store.import_image(generate(scaled(0.0002), 34), ChangeMeta(title="import"))
    store.close()
    target = f"sqlite:///{tmp_path}/target.db"
    replicate(source, target, 2)
    with pytest.raises(StoreError, match="empty target"):
        replicate(source, target, 2)
    with pytest.raises(ValueError):
        replicate(source, source, 2)


def test_a_block_without_files_and_a_replica_without_blocks(tmp_path: Path) -> None:
    """Rows the generator never makes: no block_files row, an empty block replica table."""
    source = f"sqlite:///{tmp_path}/source.db"
    store: Any = open_store(source)
    store.import_image(generate(scaled(0.0002), 35), ChangeMeta(title="import"))
    inv = store.load()
    dataset = next(iter(inv.datasets.values()))
    site = next(iter(inv.sites.values()))
    records = [encode(UPDATE, Block("empty", dataset.name, 0, 0, True, 1)),
               encode(UPDATE, Dataset("/Empty/Era-v1/AOD", "valid", "production", None, 1, False)),
               encode(UPDATE, DatasetReplica("/Empty/Era-v1/AOD", site.name, False, None))]
    assert apply_change_set(inv, store, records)
    store.close()
    check_copies(source, f"sqlite:///{tmp_path}/copies.db")
