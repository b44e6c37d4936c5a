"""Change sets apply all or nothing, and errors name the offending record."""

from __future__ import annotations

import pytest

from bench.workload import change_records, generate, scaled
from dynamo.core.changeset import apply_change_set
from dynamo.core.codec import DELETE, UPDATE, encode
from dynamo.core.export import export_records, fingerprint
from dynamo.core.ids import IdAllocator
from dynamo.core.inventory import Inventory
from dynamo.dataformat import Block, BlockReplica, Dataset, File, Group, Site
from dynamo.errors import ChangeSetError
from tests.unit.recording import PipeCapture


def fresh() -> Inventory:
    inv = Inventory()
    inv.ids = IdAllocator()
    return inv


def test_ids_are_assigned_in_order_and_never_reused() -> None:
    inv = fresh()
    apply_change_set(inv, None, [encode(UPDATE, Site("A")), encode(UPDATE, Site("B"))])
    assert (inv.sites["A"].id, inv.sites["B"].id) == (1, 2)
    apply_change_set(inv, None, [encode(DELETE, Site("B")), encode(UPDATE, Site("C"))])
    assert inv.sites["C"].id == 3
    assert inv.version == 2


def test_incoming_ids_are_ignored_unless_replaying() -> None:
    inv = fresh()
    apply_change_set(inv, None, [encode(UPDATE, Site("A", id=40))])
    assert inv.sites["A"].id == 1
    replica = fresh()
    replica.trust_ids = True
    apply_change_set(replica, None, [encode(UPDATE, Site("A", id=40))])
    assert replica.sites["A"].id == 40 and replica.ids.next_ids["site"] == 41  # type: ignore[union-attr]


def test_a_bad_record_changes_nothing_and_is_named() -> None:
    inv = generate(scaled(0.001), 3)
    before = fingerprint(inv)
    counters = dict(inv.ids.next_ids)  # type: ignore[union-attr]
    records = change_records(inv, 300, seed=5)
    records.insert(250, encode(UPDATE, Block("b", "/No/Such/DATASET")))
    with pytest.raises(ChangeSetError) as info:
        apply_change_set(inv, None, records)
    assert info.value.index == 250
    assert str(info.value).startswith("record 250 (update block dataset='/No/Such/DATASET', name='b'): "
                                      "dataset '/No/Such/DATASET' does not exist")
    assert fingerprint(inv) == before
    assert inv.ids.next_ids == counters  # type: ignore[union-attr]
    assert inv.version == 0


def test_malformed_record_is_named() -> None:
    inv = fresh()
    with pytest.raises(ChangeSetError, match=r"record 1 \(update site name='B'\): site: unknown field\(s\) x"):
        apply_change_set(inv, None, [encode(UPDATE, Site("A")),
                                     ["update", "site", {**encode(UPDATE, Site("B"))[2], "x": 1}]])
    assert inv.sites == {}


def test_block_counts_must_match_its_files() -> None:
    inv = fresh()
    records = [encode(UPDATE, Dataset("D")), encode(UPDATE, Block("b", "D", 100, 2)),
               encode(UPDATE, File("/f1", "D#b", 60))]
    with pytest.raises(ChangeSetError, match="declares num_files=2 size=100 but holds 1 files of 60 bytes"):
        apply_change_set(inv, None, records)
    assert inv.datasets == {}
    records.append(encode(UPDATE, File("/f2", "D#b", 40)))
    apply_change_set(inv, None, records)
    assert inv.datasets["D"].find_block("b").files_count() == 2


@pytest.mark.parametrize("seed", range(8))
def test_rollback_restores_the_exact_image(seed: int) -> None:
    """Random valid change sets (creations, modifications, cascading deletes) undone by a final bad record."""
    inv = generate(scaled(0.001), seed)
    before = fingerprint(inv)
    records = change_records(inv, 400, seed=seed)
    records += [encode(DELETE, Dataset(next(iter(inv.datasets)))), encode(DELETE, Site(next(iter(inv.sites)))),
                encode(DELETE, Group("group01")), encode(UPDATE, Site("NEW")), encode(DELETE, Site("NEW")),
                encode(UPDATE, Site("NEW")), ["update", "nonsense", {}]]
    with pytest.raises(ChangeSetError, match="unknown object type 'nonsense'"):
        apply_change_set(inv, None, records)
    assert fingerprint(inv) == before
    # and the same records without the bad one do apply
    apply_change_set(inv, None, records[:-1])
    assert fingerprint(inv) != before


def test_an_empty_change_set_leaves_the_version() -> None:
    inv = fresh()
    assert apply_change_set(inv, None, [encode(UPDATE, Site("A"))]) is True
    assert apply_change_set(inv, None, []) is False
    assert inv.version == 1 and list(inv.sites) == ["A"]


def test_replaying_the_journal_records_reproduces_the_image() -> None:
    inv = generate(scaled(0.001), 4)
    copy = fresh()
    copy.trust_ids = True
    apply_change_set(copy, None, list(export_records(inv)))
    assert fingerprint(copy) == fingerprint(inv)


def test_write_application_changes_round_trip_in_order() -> None:
    """What a write-enabled child records is what the server applies."""
    server = generate(scaled(0.001), 6)
    child_image = generate(scaled(0.001), 6)  # a forked child holds an identical image
    capture = PipeCapture()
    child_image.recorder = capture.recorder
    dataset = next(iter(child_image.datasets.values()))
    block = next(iter(dataset.blocks))
    child_image.update(Site("T9_NEW", "new.host"))
    child_image.update(BlockReplica(block, "T9_NEW", None, True, 1))
    child_image.delete(BlockReplica(block, "T9_NEW"))
    child_image.update(BlockReplica(block, "T9_NEW", "group02", False, 2))
    child_image.delete(Dataset(next(iter(child_image.datasets))))
    apply_change_set(server, None, capture.records())
    child_image.recorder = None
    assert fingerprint(server) == fingerprint(child_image)


@pytest.mark.parametrize("seed", range(3))
def test_journal_records_are_the_encoded_live_objects(seed: int) -> None:
    """The journal shortcut (reusing validated input records) must equal re-encoding the live objects."""
    from dynamo.core import changeset as cs_module
    from dynamo.core.journal import JournalWriter

    inv = generate(scaled(0.001), seed)
    records = change_records(inv, 500, seed=seed)
    block = next(iter(next(iter(inv.datasets.values())).blocks))
    every_file = [f.lfn for f in block.files][::-1]  # unsorted, and complete: both normalized away
    records.append(encode(UPDATE, BlockReplica(block, next(iter(inv.sites)), None, False, 3, every_file)))
    records[-1][2]["files"] = every_file
    records.append(encode(UPDATE, Site("X", id=999)))  # an id the store will not use
    expected: list[object] = []
    original = cs_module._normalized

    def checked(op: str, record: list[object], obj: object, live: object) -> list[object]:
        out = original(op, record, obj, live)  # type: ignore[arg-type]
        expected.append(encode(op, live))  # type: ignore[arg-type]
        assert out == expected[-1], (record, out, expected[-1])
        return out

    cs_module._normalized = checked  # type: ignore[assignment]
    try:
        writer = JournalWriter()
        txn = cs_module.Transaction(inv.ids)
        inv._tracker = txn
        cs_module._apply_records(inv, txn, records, writer)
    finally:
        cs_module._normalized = original
        inv._tracker = cs_module.NO_TRACKING
    assert len(expected) == len(records)


def test_prepared_records_apply_like_plain_ones() -> None:
    from dynamo.core.changeset import Prepared

    a, b = generate(scaled(0.001), 9), generate(scaled(0.001), 9)
    records = change_records(a, 300, seed=9)
    prepared = Prepared()
    prepared.extend(records[:100])
    prepared.extend(records[100:])
    apply_change_set(a, None, records)
    apply_change_set(b, None, prepared)
    assert fingerprint(a) == fingerprint(b)
    bad = Prepared()
    bad.extend([encode(UPDATE, Site("A")), ["update", "site", {"name": "B"}], encode(UPDATE, Site("C"))])
    assert len(bad) == 3 and len(bad.decoded) == 1
    with pytest.raises(ChangeSetError, match="record 1 .*missing field"):
        apply_change_set(fresh(), None, bad)


class RefusingStore:
    """Stands for a store that must not be reached."""

    def commit(self, *args: object) -> int:
        raise AssertionError("the store was written to")


def test_committing_an_inventory_without_an_id_allocator_is_refused_before_anything() -> None:
    inv = Inventory()  # no inv.ids: every new object would get id 0, one row overwriting the next
    with pytest.raises(ChangeSetError, match=r"^the inventory has no id allocator") as info:
        apply_change_set(inv, RefusingStore(), [encode(UPDATE, Site("A"))])  # type: ignore[arg-type]
    assert info.value.index is None
    assert inv.sites == {} and inv.version == 0 and not inv._tracker.active
    # without a store (an application's own image), ids simply stay 0
    apply_change_set(inv, None, [encode(UPDATE, Site("A"))])
    assert inv.sites["A"].id == 0


@pytest.mark.parametrize("seed", range(4))
def test_committed_records_applied_in_slices_give_the_validated_image(seed: int) -> None:
    """dynamod's live image takes the commit process's normalized records (apply_committed): the same image,
    ids and counters included, as the validated apply on the commit process's copy."""
    from dynamo.core.changeset import apply_committed
    from dynamo.core.journal import JournalWriter, decode_chunks

    validated, live = generate(scaled(0.001), seed), generate(scaled(0.001), seed)
    for inv in (validated, live):
        inv.ids = inv.ids or IdAllocator()
    records = change_records(validated, 400, seed=seed)
    records += [encode(UPDATE, Site("NEW")), encode(DELETE, Site("NEW"))]  # an id allocated and let go
    journal = JournalWriter()
    assert apply_change_set(validated, None, records, journal=journal)
    normalized = list(decode_chunks(journal.finish()))
    slices = list(apply_committed(live, normalized, slice_records=50))
    assert slices[-1] == len(records) and len(slices) > len(records) // 50
    assert live.ids is not None and validated.ids is not None
    live.ids.restore(validated.ids.next_ids)
    live.version = validated.version
    assert fingerprint(live) == fingerprint(validated)


@pytest.mark.parametrize("seed", range(4))
def test_a_change_applied_alongside_gives_the_validated_image_or_nothing(seed: int) -> None:
    """dynamod applies a writer's change set to its live image (LiveChange) while the commit process
    validates and commits the same records on its copy: the same image and ids; rolled back, the image
    is exactly as before."""
    from dynamo.core.changeset import LiveChange, Prepared

    validated, live = generate(scaled(0.001), seed), generate(scaled(0.001), seed)
    for inv in (validated, live):
        inv.ids = inv.ids or IdAllocator()
    before = fingerprint(live)
    records = change_records(validated, 400, seed=seed)
    records += [encode(UPDATE, Site("NEW")), encode(DELETE, Site("NEW"))]  # an id allocated and let go
    prepared = Prepared()
    prepared.extend(records)
    assert apply_change_set(validated, None, records)
    assert validated.ids is not None and live.ids is not None

    change = LiveChange(live, prepared)
    slices = list(change.steps(slice_records=50))
    assert slices[-1] == len(records) and len(slices) > len(records) // 50
    change.rollback()
    assert fingerprint(live) == before and live._tracker.active is False

    change = LiveChange(live, prepared)
    for _ in change.steps(slice_records=50):
        pass
    assert change.commit(validated.version, validated.ids.next_ids)
    assert fingerprint(live) == fingerprint(validated) and live._tracker.active is False


def test_a_change_refused_alongside_is_rolled_back() -> None:
    """A change set refused by the last check (a block's counts) after every record went into the
    live image: the image is as before."""
    from dynamo.core.changeset import LiveChange

    inv = generate(scaled(0.001), 5)
    inv.ids = inv.ids or IdAllocator()
    before = fingerprint(inv)
    block = next(b for d in inv.datasets.values() for b in d.blocks if b.has_files())
    records = change_records(inv, 200, seed=5)
    records.append(encode(UPDATE, Block(block.name, block.dataset.name, block.size + 1, block.num_files)))
    change = LiveChange(inv, records)
    with pytest.raises(ChangeSetError, match="declares num_files"):
        list(change.steps(slice_records=50))
    change.rollback()
    assert fingerprint(inv) == before and inv._tracker.active is False


def test_a_committed_record_that_does_not_apply_is_named() -> None:
    from dynamo.core.changeset import apply_committed

    inv = fresh()
    with pytest.raises(ChangeSetError, match="committed record does not apply"):
        list(apply_committed(inv, [encode(UPDATE, Block("b", "NoSuchDataset", 0, 0))]))
    assert inv._tracker.active is False and inv.trust_ids is False


def test_journal_chunks_keep_record_order_and_fit() -> None:
    """Chunks are encoded as records come: in order, each one within the byte limit (a too
    large chunk is split again), every record back as it was."""
    from dynamo.core.journal import JournalWriter, decode_chunks

    inv = generate(scaled(0.001), 3)
    records = change_records(inv, 700, seed=3)
    writer = JournalWriter(chunk_bytes=4096, chunk_records=250)
    for record in records:
        writer.add(record)
    assert writer.num_records == len(records)
    assert len(writer.chunks) >= 2  # encoded while records were still coming
    chunks = writer.finish()
    assert len(chunks) > len(records) // 250 + 1  # some were split for size
    assert all(len(chunk) <= 4096 for chunk in chunks)
    assert list(decode_chunks(chunks)) == records


def test_a_deferring_journal_writer_encodes_at_flush_in_the_same_chunks() -> None:
    """MariaDB's commit encodes the journal itself (eager=False): nothing is encoded before
    flush(), and the chunks are the ones an eager writer makes."""
    from dynamo.core.journal import JournalWriter, decode_chunks

    inv = generate(scaled(0.001), 5)
    records = change_records(inv, 600, seed=5)
    eager, deferred = JournalWriter(chunk_records=100), JournalWriter(chunk_records=100, eager=False)
    for record in records:
        eager.add(record)
        deferred.add(record)
    assert deferred.chunks == [] and deferred.num_records == len(records)
    deferred.flush()
    assert deferred.finish() == eager.finish()
    assert list(decode_chunks(deferred.chunks)) == records


def test_the_blocks_of_a_committed_inject_are_packed_in_slices() -> None:
    """The file tables of an inject's new blocks are packed between slices too (at W10 that is seconds
    of work): the loop gets a turn every BLOCKS_PER_SLICE blocks, however few records there were."""
    import json

    from dynamo.core.changeset import BLOCKS_PER_SLICE, apply_committed
    from dynamo.core.documents import parse_inject
    from dynamo.core.journal import JournalWriter, decode_chunks

    blocks = 3 * BLOCKS_PER_SLICE
    document = json.dumps({"dataset": [{"name": "/Sliced/Run/RAW", "blocks": [
        {"name": f"b{b}", "files": [{"name": f"/store/sliced/{b}/{f}.root", "size": 10} for f in range(5)]}
        for b in range(blocks)]}]})
    validated, live = fresh(), fresh()
    for inv in (validated, live):
        inv.ids = inv.ids or IdAllocator()
    journal = JournalWriter()
    assert apply_change_set(validated, None, parse_inject(document, validated).records, journal=journal)
    normalized = list(decode_chunks(journal.finish()))
    slices = list(apply_committed(live, normalized, slice_records=10**6))
    assert len(slices) >= 2 * blocks // BLOCKS_PER_SLICE  # checked, then packed, a slice per BLOCKS_PER_SLICE
    assert live.ids is not None and validated.ids is not None
    live.ids.restore(validated.ids.next_ids)
    live.version = validated.version
    assert fingerprint(live) == fingerprint(validated)
