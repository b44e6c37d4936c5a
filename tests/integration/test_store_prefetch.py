"""MariaDB: a large commit reads the pages it will write ahead of its statements, on connections of its
own (dynamo.store.prefetch); what it commits is the same with or without them."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest

from bench.workload import change_records, generate, scaled
from dynamo.core.changeset import apply_change_set
from dynamo.core.codec import encode
from dynamo.core.journal import ChangeMeta
from dynamo.store import open_store
from dynamo.store.mysql import MySQLStore

pytestmark = pytest.mark.mysql


def _image_rows(inventory: Any) -> list[Any]:
    rows = []
    for dataset in inventory.datasets.values():
        rows.append(encode("update", dataset))
        for block in dataset.blocks:
            rows.append((block.full_name(), block.num_files, block.size, sorted(f.lfn for f in block.files)))
        for replica in dataset.replicas:
            rows.append((replica.site.name, dataset.name, sorted(r.block.name for r in replica.block_replicas)))
    return sorted(map(repr, rows))


def _commit_large_change_set(url: str, store: MySQLStore) -> tuple[Any, int]:
    image = generate(scaled(0.002), seed=3)
    store.import_image(image, ChangeMeta(title="import"))
    loaded = store.load()
    records = change_records(loaded, 8000, seed=4)
    assert apply_change_set(loaded, store, records, ChangeMeta(title="large"))
    return loaded, len(records)


def test_a_large_commit_reads_ahead_and_commits_what_it_applied(mysql_url: str) -> None:
    store = open_store(mysql_url)
    assert isinstance(store, MySQLStore)
    try:
        applied, _ = _commit_large_change_set(mysql_url, store)
        assert store.prefetch_reads > 0
    finally:
        store.close()
    with open_store(mysql_url, create=False) as again:
        assert _image_rows(again.load()) == _image_rows(applied)


def test_prefetching_that_fails_costs_nothing_but_its_reads(mysql_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(mysql_url)
    assert isinstance(store, MySQLStore)

    def broken() -> list[pymysql.connections.Connection]:
        conn = pymysql.connect(**store.params)
        conn.close()  # every read on it fails at once
        return [conn]

    monkeypatch.setattr(store, "_prefetch_connections", broken)
    try:
        applied, _ = _commit_large_change_set(mysql_url, store)
        assert store.prefetch_reads == 0
    finally:
        store.close()
    with open_store(mysql_url, create=False) as again:
        assert _image_rows(again.load()) == _image_rows(applied)
