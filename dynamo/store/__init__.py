"""Inventory stores. ``open_store(url)`` picks the implementation from the URL scheme:

* ``sqlite:///var/lib/dynamo/inventory.db`` (or ``sqlite:relative.db``)
* ``mysql://user:password@host:3306/dynamo`` (``?unix_socket=/path`` for a socket)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from dynamo.errors import ConfigurationError
from dynamo.store.base import InventoryStore, JournalEntry, JournalRetention


def open_store(url: str, *, create: bool = True, password_file: str | None = None,
               connector: Callable[[], tuple[int, dict[str, Any]]] | None = None) -> InventoryStore:
    """Open the store at ``url``; with ``create``, make its schema if the database is empty.
    MySQL only: ``password_file`` holds the password; ``connector`` gives logged-in sockets instead
    (dynamod's keeper: ``dynamo.store.handover``)."""
    store: InventoryStore
    if url.startswith("sqlite:"):
        from dynamo.store.sqlite import SQLiteStore
        store = SQLiteStore.from_url(url)
    elif url.startswith(("mysql:", "mariadb:")):
        from dynamo.store.mysql import MySQLStore
        store = MySQLStore.from_url(url, password_file=password_file, connector=connector)
    else:
        raise ConfigurationError(f"unknown store URL {url!r} (expected sqlite:... or mysql://...)")
    if create:
        try:
            store.create_schema()
        except BaseException:
            store.close()
            raise
    return store


def url_has_password(url: str) -> bool:
    """Whether a (MySQL) store URL carries a password. Here rather than in ``store.mysql``, so that
    dynamod asks without importing PyMySQL (tens of ms of its start) for a SQLite store."""
    return urlsplit(url).password is not None


__all__ = ["InventoryStore", "JournalEntry", "JournalRetention", "open_store", "url_has_password"]
