"""Bringing an image up to its store's version by replaying the journal.

The journal holds each change set's normalized records (full object state, ids
included), so replaying entries ``v+1 .. n`` onto an image at version ``v``
gives the image at version ``n``. dynamod needs this when a commit's outcome
is unknown (the connection broke during COMMIT, which may have happened or
not): the image rolled back, and if the store did commit, the image must catch
up before the next change set, or every later commit would be refused as a
conflict. Secondary servers will tail the journal the same way.
"""

from __future__ import annotations

from dynamo.core.changeset import apply_change_set
from dynamo.core.inventory import Inventory
from dynamo.errors import JournalPruned
from dynamo.store.base import InventoryStore


def catch_up(inventory: Inventory, store: InventoryStore) -> int:
    """Replay the journal entries the image lacks; return how many were replayed.

    Raises ``JournalPruned`` when an entry cannot be replayed (its records were
    compacted away, or it is a bulk import's snapshot point): the image must
    then be loaded again. Raises ``StoreError`` if the store fails; the image
    then holds the entries replayed so far, consistently.
    """
    target = store.version()
    replayed = 0
    while inventory.version < target:
        entries = store.journal_entries(since=inventory.version, limit=100)
        if not entries or entries[0].seq != inventory.version + 1:
            raise JournalPruned(f"the journal has no entry {inventory.version + 1}")
        for entry in entries:
            if entry.num_records == 0 and entry.seq == 1:
                # the first entry of a store filled by import_image carries no records: a snapshot
                raise JournalPruned("entry 1 is a bulk import (a snapshot point), which cannot be replayed")
            records = list(store.journal_records(entry.seq))
            inventory.trust_ids = True
            try:
                apply_change_set(inventory, None, records)
            finally:
                inventory.trust_ids = False
            inventory.version = entry.seq
            replayed += 1
    return replayed
