"""Inventory stores. ``open_store(url)`` picks the implementation from the URL scheme:

* ``sqlite:///var/lib/dynamo/inventory.db`` (or ``sqlite:relative.db``)
* ``mysql://user:password@host:3306/dynamo`` (``?unix_socket=/path`` for a socket)
"""

from __future__ import annotations

from dynamo.errors import ConfigurationError
from dynamo.store.base import InventoryStore, JournalEntry, JournalRetention


def open_store(url: str, *, create: bool = True) -> InventoryStore:
    """Open the store at ``url``; with ``create``, make its schema if the database is empty."""
    store: InventoryStore
    if url.startswith("sqlite:"):
        from dynamo.store.sqlite import SQLiteStore
        store = SQLiteStore.from_url(url)
    elif url.startswith(("mysql:", "mariadb:")):
        from dynamo.store.mysql import MySQLStore
        store = MySQLStore.from_url(url)
    else:
        raise ConfigurationError(f"unknown store URL {url!r} (expected sqlite:... or mysql://...)")
    if create:
        try:
            store.create_schema()
        except BaseException:
            store.close()
            raise
    return store


__all__ = ["InventoryStore", "JournalEntry", "JournalRetention", "open_store"]
