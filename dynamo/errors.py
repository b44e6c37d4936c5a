"""Dynamo's exception tree.

Every error Dynamo raises on purpose derives from :class:`DynamoError`. Foreign
errors (PyMySQL, sqlite3, ssl, json) are translated once, at the boundary where
they occur, with ``raise ... from``, so callers never catch driver exceptions::

    DynamoError
    ├── ObjectError            an object or value is malformed (bad name, bad enum, negative size)
    ├── InventoryError         an operation is inconsistent with the inventory (alias IntegrityError)
    │   ├── MissingReference   a referenced object (site, dataset, block, group, ...) is absent
    │   └── ProtectedObject    the object may not be changed (the null group)
    ├── CodecError             a wire/journal record cannot be decoded
    ├── ChangeSetError         a change set was refused; names the offending record
    ├── DocumentError          an inject/delete JSON document is invalid; names the place
    ├── ConfigurationError     configuration is missing or invalid
    ├── StartupError           dynamod cannot start (a port in use, an unreadable certificate, another dynamod)
    ├── ProtocolError          a peer (client or child) sent something that is not a valid frame or request
    ├── ConnectionClosed       a client connection ended (end of stream, reset, failed handshake)
    └── StoreError             the persistent store failed
        ├── StoreUnavailable   cannot connect, or the connection went away
        ├── StoreConflict      another writer committed first (version moved)
        ├── SchemaError        the database schema is missing pieces or has the wrong version
        └── JournalPruned      the requested journal entries were removed by compaction
"""

from __future__ import annotations


class DynamoError(Exception):
    """Base of all errors raised by Dynamo."""


class ObjectError(DynamoError, ValueError):
    """An object or one of its values is malformed."""


class InventoryError(DynamoError):
    """An operation is inconsistent with the current inventory."""


IntegrityError = InventoryError
"""The original Dynamo's name for an operation inconsistent with the inventory."""


class MissingReference(InventoryError):
    """A referenced object does not exist in the inventory."""


class ProtectedObject(InventoryError):
    """The object may not be modified or deleted."""


class CodecError(DynamoError, ValueError):
    """A record cannot be encoded or decoded."""


class ChangeSetError(DynamoError):
    """A change set was refused. Nothing was changed.

    ``index`` is the 0-based position of the offending record (or None when the
    error concerns the change set as a whole), ``record`` a short description.
    """

    def __init__(self, message: str, index: int | None = None, record: str | None = None):
        self.index = index
        self.record = record
        self.reason = message
        if index is None:
            text = message
        else:
            text = f"record {index} ({record}): {message}"
        super().__init__(text)


class DocumentError(DynamoError, ValueError):
    """An inject or delete document is invalid. ``path`` names the place."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)


class ConfigurationError(DynamoError):
    """The configuration is missing or invalid."""


class StartupError(DynamoError):
    """dynamod cannot start: an operating-system resource it needs is unavailable."""


class ProtocolError(DynamoError):
    """The peer sent something that is not a valid frame or request."""


class ConnectionClosed(DynamoError):
    """A client connection ended: end of stream, a reset, a failed TLS handshake, a bad frame."""


class StoreError(DynamoError):
    """The persistent store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or the connection was lost."""


class StoreConflict(StoreError):
    """Another writer changed the store since this image was loaded."""


class SchemaError(StoreError):
    """The database schema is missing or incompatible."""


class JournalPruned(StoreError):
    """Journal records older than the retention horizon were requested."""
