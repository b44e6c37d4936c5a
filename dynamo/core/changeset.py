"""Change sets: ordered update/delete records applied all or nothing.

Applying a change set (``apply_change_set``; docs/journal.md tells why the
image is changed first and undone on failure, rather than after the commit):

1. every record is decoded and applied to the image under a ``Transaction``,
   which validates references and values and keeps an undo log;
2. blocks whose files or counts changed are checked (``num_files`` and
   ``size`` must match the files the block holds) and repacked;
3. the store writes the touched rows and one journal row in one transaction;
4. only then is the undo log dropped. Any failure in 1-3 replays the undo
   log: the image is exactly as before, and the error names the record.

An empty change set changes nothing: no store transaction, no journal row, the
version unchanged.

The journal receives the *normalized* records: the full state of each live
object after the operation, ids included, so a replica replaying the journal
reaches the same image with the same ids.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from dynamo.core.codec import HAS_ID, UPDATE, Record, decode, describe, encode
from dynamo.core.inventory import Inventory
from dynamo.core.journal import ChangeMeta, JournalWriter
from dynamo.core.transaction import NO_TRACKING, Transaction
from dynamo.dataformat import Block, DatasetReplica
from dynamo.dataformat._base import DataObject
from dynamo.errors import ChangeSetError, CodecError, InventoryError, ObjectError

if TYPE_CHECKING:
    from dynamo.store.base import InventoryStore


class Prepared:
    """Records decoded (validated as values) ahead of applying them.

    dynamod decodes a write application's records as they stream in, while the
    application still runs, so that after it exits only the inventory apply and
    the commit remain. The first bad record is kept as the error the change set
    will be refused with.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.decoded: list[tuple[str, DataObject]] = []
        self.error: ChangeSetError | None = None

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self.records.append(record)
            if self.error is None:
                try:
                    self.decoded.append(decode(record))
                except CodecError as exc:
                    self.error = ChangeSetError(str(exc), len(self.records) - 1, describe(record))

    def __len__(self) -> int:
        return len(self.records)


def _normalized(op: str, record: Record, obj: DataObject, live: Any) -> Record:
    """The journal's form of an applied record: ``encode(op, live)``.

    An update copies every value of the (decoded, validated) record onto the
    live object, so the record itself plus the assigned id *is* that form, and
    reusing it saves re-encoding the object. The exception is a block
    replica's file list, which the inventory normalizes (sorted; a list of
    every file means complete).
    """
    type_name = record[1]
    if op == UPDATE and (type_name != "blockreplica" or _same_files(record[2]["files"], live.lfns)):
        if type_name not in HAS_ID:
            return record  # nobody changes a record once given; the journal only encodes it
        fields = record[2]
        if fields.get("id") != live.id:
            fields = dict(fields)
            fields["id"] = live.id
            return [op, type_name, fields]
        return record
    return encode(op, live)


def _same_files(given: list[str] | None, held: tuple[str, ...] | None) -> bool:
    return given is None if held is None else given is not None and tuple(given) == held


def _decoded(records: Iterable[Record] | Prepared) -> Iterator[tuple[Record, tuple[str, DataObject] | None]]:
    if isinstance(records, Prepared):
        if records.error is not None:
            raise records.error
        return zip(records.records, records.decoded, strict=True)
    return ((record, None) for record in records)


def _apply_records(inventory: Inventory, txn: Transaction, records: Iterable[Record] | Prepared,
                   journal: JournalWriter) -> None:
    update, delete, add, normalized = inventory.update, inventory.delete, journal.add, _normalized
    for index, (record, decoded) in enumerate(_decoded(records)):
        txn.record_index = index
        try:
            op, obj = decode(record) if decoded is None else decoded
            add(normalized(op, record, obj, update(obj) if op == UPDATE else delete(obj)))
        except (CodecError, ObjectError, InventoryError) as exc:
            raise ChangeSetError(str(exc), index, describe(record)) from exc
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            # A value that slipped past every check (a bug, but one record's): the change set is
            # refused like any bad one, naming the record, instead of an unnamed exception taking
            # the server's main loop down. apply_change_set rolls back on any exception.
            raise ChangeSetError(f"unexpected {type(exc).__name__}: {exc}", index, describe(record)) from exc


def _check_blocks(inventory: Inventory, txn: Transaction) -> None:
    """Blocks with files must have matching counts; repack the touched ones."""
    for block, index in txn.blocks_to_check.values():
        _check_block(inventory, block, index)
    for block in txn.dirty["block_files"].values():
        assert isinstance(block, Block)
        block._pack()


def _check_block(inventory: Inventory, block: Block, index: int) -> None:
    if not inventory.is_alive("blocks", block):
        return
    if block.has_files():
        count, size = block.files_count(), block.files_size()
        if (count, size) != (block.num_files, block.size):
            raise ChangeSetError(
                f"block {block.full_name()} declares num_files={block.num_files} size={block.size} "
                f"but holds {count} files of {size} bytes", index, f"last change to block {block.full_name()}")


def _restore_unpacked(replica: DatasetReplica, members: dict[str, Any]) -> None:
    replica._packed = None
    replica._block_replicas = members


def _repack_replicas(inventory: Inventory, txn: Transaction, undoable: bool) -> None:
    """Pack the block replicas the change set unpacked or created again (as the store writes
    them), so that the server's memory does not grow with use. ``undoable``: before the
    commit, with an undo entry each (the undo log refers to the unpacked dicts)."""
    for _ in _repack_replicas_sliced(inventory, txn, undoable, 0):
        pass


REPLICAS_PER_SLICE = 50


def _repack_replicas_sliced(inventory: Inventory, txn: Transaction, undoable: bool, applied: int) -> Iterator[int]:
    """``_repack_replicas``, yielding (``applied``) after every ``REPLICAS_PER_SLICE`` dataset replicas."""
    replicas = {**txn.unpacked_replicas, **txn.dirty["dataset_replicas"]}
    for n, replica in enumerate(replicas.values(), 1):
        members = replica._block_replicas
        if members is None or not inventory.is_alive("dataset_replicas", replica):
            continue
        replica._repack()
        if undoable and replica._block_replicas is None:
            txn.push((_restore_unpacked, replica, members))
        if n % REPLICAS_PER_SLICE == 0:
            yield applied


def apply_change_set(inventory: Inventory, store: InventoryStore | None, records: Iterable[Record] | Prepared,
                     meta: ChangeMeta | None = None, journal: JournalWriter | None = None,
                     hold: list[Any] | None = None) -> bool:
    """Validate, persist (when ``store`` is given) and apply a change set, all or nothing.

    Returns True when the change set was committed: ``inventory.version`` is
    then the store's new version. An empty change set (no records) changes
    nothing and returns False: no journal entry, no store transaction, the
    version unchanged. Raises ``ChangeSetError`` for a bad record,
    ``StoreError`` if the store fails; in both cases nothing changed.
    ``journal``, if given, collects the normalized records (dynamod's commit
    process sends its chunks back to the server, which applies them).
    ``hold``, if given, receives the transaction instead of its undo log being
    dropped (a process about to exit need not spend the time freeing it).
    """
    if inventory._tracker.active:
        raise RuntimeError("a change set is already being applied to this inventory")
    if inventory.recorder is not None:
        raise RuntimeError("apply_change_set runs on the server's inventory, which records nothing")
    if store is not None and inventory.ids is None:
        # Without an allocator every new object gets id 0, and the store, which keys its rows by
        # id, would overwrite one row with the next. A stored image comes from store.load().
        raise ChangeSetError("the inventory has no id allocator (inventory.ids is None), so it cannot "
                             "commit to a store; load it with store.load()")
    txn = Transaction(inventory.ids)
    if journal is None:
        journal = JournalWriter(eager=store is None or not store.ENCODES_JOURNAL)
    inventory._tracker = txn
    # Collection passes over the young objects a change set allocates (undo
    # entries, records) cost 25-50 % of the apply time; nothing here needs the
    # cycle collector before the change set is done.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _apply_records(inventory, txn, records, journal)
        txn.record_index = -1
        # Records are only known once iterated (they may be a generator); without any, nothing was touched.
        changed = journal.num_records > 0
        if changed:
            _check_blocks(inventory, txn)
            _repack_replicas(inventory, txn, undoable=True)
            if store is not None:
                inventory.version = store.commit(inventory, txn, journal, meta or ChangeMeta())
            else:
                inventory.version += 1
    except BaseException:
        txn.rollback()
        _repack_replicas(inventory, txn, undoable=False)
        raise
    finally:
        inventory._tracker = NO_TRACKING
        if gc_was_enabled:
            gc.enable()
    if hold is not None:
        hold.append(txn)
    else:
        txn.release()
    return changed


# ---------------------------------------------------------------------------
# a change set applied to dynamod's live image while the commit process commits it
# ---------------------------------------------------------------------------

WAITING = -1   # LiveChange.steps: every record so far is applied, and more may come (not sealed)


class LiveChange:
    """A writer's change set going into dynamod's live image, in slices, *while* the commit process
    (forked at this very version, holding the same records) validates and commits it.

    Both processes run the same code on the same image with the same records, so they reach the
    same image and assign the same ids; dynamod needs nothing back from the commit process but its
    outcome. Everything done here is under an undo log, as in ``apply_change_set``: when the commit
    process refuses the change set, fails or dies, ``rollback`` makes the image exactly as before.
    Once the commit process says committed, ``commit`` keeps the change (and checks that the ids
    agree with the store's). Between two slices the image is half-changed: nobody may read or fork it.

    Unless ``sealed``, the records are still coming (a ``Prepared`` that grows while the application
    runs): ``steps`` applies what there is and yields ``WAITING`` when it has caught up; ``seal`` says
    there will be no more, and the blocks are then checked and the replicas packed.
    """

    def __init__(self, inventory: Inventory, records: list[Record] | Prepared, sealed: bool = True):
        if inventory._tracker.active:
            raise RuntimeError("a change set is already being applied to this inventory")
        self.inventory = inventory
        self.records = records
        self.txn = Transaction(inventory.ids)
        self.num_records = 0
        self.applied = 0          # records applied so far
        self.sealed = sealed
        self.open = True
        inventory._tracker = self.txn

    def seal(self) -> None:
        self.sealed = True

    @property
    def caught_up(self) -> bool:
        """Everything that came is applied, and more may come: nothing to do until it does."""
        if self.sealed:
            return False
        records = self.records
        if isinstance(records, Prepared):
            return self.applied >= len(records.decoded) and records.error is None
        return self.applied >= len(records)

    def steps(self, slice_records: int = 250) -> Iterator[int]:
        """Apply the records, yielding after every ``slice_records`` (and ``WAITING`` whenever it has
        caught up with records still coming); then check and repack the blocks. Raises
        ``ChangeSetError`` as ``apply_change_set`` would (the caller rolls back)."""
        inventory, txn, records = self.inventory, self.txn, self.records
        update, delete = inventory.update, inventory.delete
        prepared = records if isinstance(records, Prepared) else None
        plain = prepared.records if prepared is not None else records
        assert isinstance(plain, list)
        index = 0
        while True:
            available = len(prepared.decoded) if prepared is not None else len(plain)
            while index < available:
                record = plain[index]
                txn.record_index = index
                try:
                    op, obj = prepared.decoded[index] if prepared is not None else decode(record)
                    update(obj) if op == UPDATE else delete(obj)
                except (CodecError, ObjectError, InventoryError) as exc:
                    raise ChangeSetError(str(exc), index, describe(record)) from exc
                except (TypeError, AttributeError, ValueError, KeyError) as exc:
                    raise ChangeSetError(f"unexpected {type(exc).__name__}: {exc}", index, describe(record)) from exc
                index += 1
                self.applied = index
                if index % slice_records == 0:
                    yield index
            if prepared is not None and prepared.error is not None:
                raise prepared.error  # the first record that could not be decoded: the change set is refused
            if self.sealed:
                break
            yield WAITING
        txn.record_index = -1
        self.num_records = index
        if self.num_records:  # in slices too: packing the touched blocks and replicas takes long at W10
            yield from _check_blocks_sliced(inventory, txn, self.num_records)
            yield self.num_records
            yield from _repack_replicas_sliced(inventory, txn, True, self.num_records)
        yield self.num_records

    def rollback(self) -> None:
        """Undo everything applied so far: the image is exactly as before."""
        if self.open:
            self.open = False
            try:
                self.txn.rollback()
                _repack_replicas(self.inventory, self.txn, undoable=False)
            finally:
                self.inventory._tracker = NO_TRACKING

    def commit(self, version: int, next_ids: dict[str, int]) -> bool:
        """The store committed the change set as ``version``: keep it. False if the ids this image
        assigned are not the store's (a bug: the caller must load the image again)."""
        inventory = self.inventory
        self.open = False
        inventory._tracker = NO_TRACKING
        self.txn.release()
        inventory.version = version
        ids = inventory.ids
        if ids is None:
            return True
        agree = ids.next_ids == next_ids
        ids.restore(next_ids)
        return agree


# ---------------------------------------------------------------------------
# a change set the store has committed already (dynamod's live image)
# ---------------------------------------------------------------------------

def apply_committed(inventory: Inventory, records: Iterable[Record], slice_records: int = 2000) -> Iterator[int]:
    """Apply *normalized* records that the store has committed (journal records, ids included),
    yielding the count applied after every ``slice_records`` so the caller may do other work in between.

    The records were validated by the same apply code on a copy of this very image (dynamod's commit
    process, at this version), so nothing is undone here: no undo log, and the image is half-changed
    between two slices (nobody may read or fork it then). A record that fails all the same raises
    ``ChangeSetError``; the image is then inconsistent and must be loaded again. The caller sets the
    version and the id counters once the last slice is done.
    """
    if inventory._tracker.active:
        raise RuntimeError("a change set is already being applied to this inventory")
    txn = Transaction(None)
    txn.push = NO_TRACKING.push  # no undo log: the store has these changes already
    update, delete = inventory.update, inventory.delete
    inventory._tracker = txn
    inventory.trust_ids = True
    index = -1
    try:
        for index, record in enumerate(records):
            txn.record_index = index
            try:
                op, obj = decode(record)
                update(obj) if op == UPDATE else delete(obj)
            except (CodecError, ObjectError, InventoryError, TypeError, AttributeError, ValueError,
                    KeyError) as exc:
                raise ChangeSetError(f"committed record does not apply: {type(exc).__name__}: {exc}", index,
                                     describe(record)) from exc
            if index % slice_records == slice_records - 1:
                yield index + 1
        txn.record_index = -1
        yield from _check_blocks_sliced(inventory, txn, index + 1)
    finally:
        inventory._tracker = NO_TRACKING
        inventory.trust_ids = False
    yield index + 1


BLOCKS_PER_SLICE = 10


def _check_blocks_sliced(inventory: Inventory, txn: Transaction, applied: int) -> Iterator[int]:
    """``_check_blocks``, yielding (``applied``) after every ``BLOCKS_PER_SLICE`` blocks: packing the
    file tables of an inject's new blocks takes seconds at W10, and the loop serves between slices."""
    for n, (block, index) in enumerate(list(txn.blocks_to_check.values()), 1):
        _check_block(inventory, block, index)
        if n % BLOCKS_PER_SLICE == 0:
            yield applied
    for n, block in enumerate(list(txn.dirty["block_files"].values()), 1):
        assert isinstance(block, Block)
        block._pack()
        if n % BLOCKS_PER_SLICE == 0:
            yield applied
