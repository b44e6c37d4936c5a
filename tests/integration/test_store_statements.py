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
