"""The statements a commit sends find their rows by key: none scans a whole table."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamo.store import rows as R
from dynamo.store.sqlite import SQLiteStore


@pytest.mark.parametrize("table", ["dataset_replicas", "site_partitions", "blocks", "datasets"])
def test_sqlite_deletions_search_the_primary_key(tmp_path: Path, table: str) -> None:
    store = SQLiteStore(tmp_path / "plan.db")
    store.create_schema()
    width = len(R.PRIMARY_KEYS[table])
    keys = [tuple(range(i, i + width)) for i in range(1, 1200)]
    statements = list(store._delete_statements(table, keys))
    assert statements
    for sql, params in statements:
        assert params is not None
        first = params[0]
        plan = store.query_all("EXPLAIN QUERY PLAN " + sql, first)
        details = " ".join(str(row[-1]) for row in plan)
        # "SCAN 2 CONSTANT ROWS" would be the key list itself; the table must be searched
        assert f"SCAN {table}" not in details, details
        assert "SEARCH" in details, details
    store.close()


def test_sqlite_rewrites_only_the_packed_column_of_replicas_whose_block_replicas_changed(tmp_path: Path) -> None:
    from typing import Any

    from dynamo.core.changeset import apply_change_set
    from dynamo.core.codec import UPDATE, encode
    from dynamo.core.export import fingerprint
    from dynamo.dataformat import Block, BlockReplica, Dataset, DatasetReplica, Site

    store = SQLiteStore(tmp_path / "blob.db")
    store.create_schema()
    inv = store.load()
    setup = [Site("S1"), Dataset("D"), Block("b1", "D"), Block("b2", "D"), BlockReplica("D#b1", "S1", None, False, 1)]
    apply_change_set(inv, store, [encode(UPDATE, o) for o in setup])
    sent: list[str] = []
    original = store._executemany

    def capture(sql: str, rows: Any) -> None:
        sent.append(sql)
        original(sql, rows)

    store._executemany = capture  # type: ignore[method-assign]
    apply_change_set(inv, store, [encode(UPDATE, BlockReplica("D#b2", "S1", None, True, 2))])
    upserts = [sql for sql in sent if sql.startswith("INSERT INTO dataset_replicas")]
    assert len(upserts) == 1 and upserts[0].endswith("DO UPDATE SET block_replicas = excluded.block_replicas")
    sent.clear()
    apply_change_set(inv, store, [encode(UPDATE, DatasetReplica("D", "S1", True, None)),
                                  encode(UPDATE, BlockReplica("D#b2", "S1", None, False, 3))])
    upserts = [sql for sql in sent if sql.startswith("INSERT INTO dataset_replicas")]
    assert len(upserts) == 1 and "group_id = excluded.group_id" in upserts[0]
    assert fingerprint(SQLiteStore(tmp_path / "blob.db").load()) == fingerprint(inv)
    store.close()
