"""Fixtures of the integration tests shared by several modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynamo.store import open_store
from dynamo.store.registry import Registry
from dynamo.store.sql import SQLStore


@pytest.fixture
def registry(store_url: str) -> Iterator[Registry]:
    store = open_store(store_url)
    assert isinstance(store, SQLStore)
    yield Registry(store)
    store.close()
