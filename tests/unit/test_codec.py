"""The JSON codec: round trips and strict decoding."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import dynamo.core.inventory as inventory_module
from dynamo.core.changeset import Prepared, apply_change_set
from dynamo.core.codec import DELETE, UPDATE, decode, describe, encode
from dynamo.core.export import fingerprint
from dynamo.core.ids import IdAllocator
from dynamo.core.inventory import Inventory
from dynamo.dataformat import Block, BlockReplica, Dataset, DatasetReplica, File, Group, Partition, Site, SitePartition
from dynamo.errors import ChangeSetError, CodecError
from tests.unit.test_dataformat import ALL_OBJECTS


@pytest.mark.parametrize("obj", [o for o in ALL_OBJECTS if getattr(o, "name", "x") is not None],
                         ids=lambda o: repr(o)[:40])
def test_update_round_trip_through_json(obj: object) -> None:
    record = json.loads(json.dumps(encode(UPDATE, obj)))  # type: ignore[arg-type]
    op, back = decode(record)
    assert op == UPDATE and back == obj and repr(back) == repr(obj)


@pytest.mark.parametrize("obj", [o for o in ALL_OBJECTS if getattr(o, "name", "x") is not None],
                         ids=lambda o: repr(o)[:40])
def test_delete_records_carry_the_key(obj: object) -> None:
    op, back = decode(json.loads(json.dumps(encode(DELETE, obj))))  # type: ignore[arg-type]
    assert op == DELETE and back.key == obj.key  # type: ignore[attr-defined]


SITE = {"name": "S", "host": "h", "storage_type": "disk", "backend": "", "status": "ready"}


@pytest.mark.parametrize(("record", "message"), [
    ("nope", "a record must be a list"),
    (["update", "site"], "a record must be a list"),
    (["upsert", "site", SITE], "unknown operation 'upsert'"),
    (["update", "planet", SITE], "unknown object type 'planet'"),
    (["update", "site", []], "fields must be an object"),
    (["update", "site", {**SITE, "colour": "red"}], "unknown field\\(s\\) colour"),
    (["update", "site", {"name": "S"}], "missing field\\(s\\) host, storage_type, backend, status"),
    (["update", "site", {**SITE, "status": "gone"}], "site status: 'gone' is not one of"),
    (["update", "site", {**SITE, "id": "7"}], "site id: expected an integer"),
    (["update", "block", {"dataset": "d", "name": "b", "size": -1, "num_files": 0, "is_open": False,
                          "last_update": 0}], "block size: must be >= 0"),
    (["update", "block", {"dataset": "d", "name": "b", "size": 1.5, "num_files": 0, "is_open": False,
                          "last_update": 0}], "block size: expected an integer"),
    (["update", "group", {"name": None, "olevel": "Block"}], "null group cannot appear"),
    (["update", "blockreplica", {"dataset": "d", "block": "b", "site": "S", "group": None,
                                 "is_custodial": False, "last_update": 0, "files": "x"}], "files: expected a list"),
    (["delete", "site", {"name": "S", "host": "h"}], "unknown field\\(s\\) host"),
])
def test_strict_decoding(record: object, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(record)


def test_describe_is_short_and_safe() -> None:
    assert describe(["update", "site", SITE]) == "update site name='S'"
    assert describe("garbage") == "'garbage'"
    assert len(describe(["x" * 500])) <= 80


# --- malformed key and reference fields -----------------------------------------------------

def base() -> Inventory:
    """One of everything, so that well-formed records resolve: S, G, P, S/P, D, D#b with /f, replicas."""
    inv = Inventory()
    inv.ids = IdAllocator()
    apply_change_set(inv, None, [encode(UPDATE, o) for o in (
        Site("S"), Group("G"), Partition("P"), SitePartition("S", "P", 5), Dataset("D"), Block("b", "D", 1, 1),
        File("/f", "D#b", 1), DatasetReplica("D", "S", False, "G"), BlockReplica("D#b", "S", "G", False, 1))])
    return inv


BR = {"dataset": "D", "block": "b", "site": "S", "group": "G", "is_custodial": False, "last_update": 0,
      "files": None}
FILE = {"dataset": "D", "block": "b", "name": "/f", "size": 1, "checksum": None}
DR = {"dataset": "D", "site": "S", "growing": False, "group": "G"}

# (record, the start of the decoding error: the type, then the field)
MALFORMED = [
    (["update", "sitepartition", {"site": 5, "partition": "P", "quota": 1}],
     "sitepartition: sitepartition site: expected a string"),
    (["update", "sitepartition", {"site": "S", "partition": None, "quota": 1}],
     "sitepartition: sitepartition partition: expected a string"),
    (["delete", "sitepartition", {"site": ["S"], "partition": "P"}], "sitepartition: sitepartition site: expected"),
    (["update", "datasetreplica", {**DR, "group": ["x"]}], "datasetreplica: datasetreplica group: expected a string"),
    (["update", "datasetreplica", {**DR, "group": 0}], "datasetreplica: datasetreplica group: expected a string"),
    (["update", "datasetreplica", {**DR, "site": {}}], "datasetreplica: datasetreplica site: expected a string"),
    (["delete", "datasetreplica", {"dataset": 1.5, "site": "S"}], "datasetreplica: datasetreplica dataset: expected"),
    (["update", "datasetreplica", {**DR, "dataset": "a#b"}], "datasetreplica: datasetreplica dataset: 'a#b' must not"),
    (["update", "blockreplica", {**BR, "site": 7}], "blockreplica: blockreplica site: expected a string"),
    (["update", "blockreplica", {**BR, "group": True}], "blockreplica: blockreplica group: expected a string"),
    (["update", "blockreplica", {**BR, "dataset": 5}], "blockreplica: blockreplica dataset: expected a string, got an"),
    (["update", "blockreplica", {**BR, "block": None}], "blockreplica: blockreplica block: expected a string, got"),
    (["update", "blockreplica", {**BR, "dataset": "D#b"}], "blockreplica: blockreplica dataset: 'D#b' must not"),
    (["update", "blockreplica", {**BR, "block": "b#c"}], "blockreplica: blockreplica block: 'b#c' must not"),
    (["delete", "blockreplica", {"dataset": "D", "block": ["b"], "site": "S"}],
     "blockreplica: blockreplica block: expected a string, got a list"),
    (["update", "blockreplica", {**BR, "files": {}}], "blockreplica: blockreplica files: expected a list or null"),
    (["update", "blockreplica", {**BR, "files": ["/f", 3]}], "blockreplica: blockreplica files[1]: expected a string"),
    (["update", "blockreplica", {**BR, "files": [["/f"]]}], "blockreplica: blockreplica files[0]: expected a string"),
    (["update", "file", {**FILE, "dataset": 5}], "file: file dataset: expected a string, got an integer"),
    (["update", "file", {**FILE, "block": False}], "file: file block: expected a string, got a boolean"),
    (["update", "file", {**FILE, "dataset": "a#b"}], "file: file dataset: 'a#b' must not contain '#'"),
    (["delete", "file", {"dataset": "D", "block": "b", "name": 5}], "file: file name: expected a string"),
    (["update", "block", {"dataset": 5, "name": "b", "size": 1, "num_files": 1, "is_open": False,
                          "last_update": 0}], "block: block dataset: expected a string"),
    (["delete", "block", {"dataset": "D", "name": None}], "block: block name: expected a string"),
    (["delete", "block", {"dataset": "D", "name": "b#c"}], "block: block name: 'b#c' must not contain '#'"),
    (["delete", "dataset", {"name": ["D"]}], "dataset: dataset name: expected a string"),
    (["delete", "dataset", {"name": "D#b"}], "dataset: dataset name: 'D#b' must not contain '#'"),
    (["update", "group", {"name": 5, "olevel": "Block"}], "group: group name: expected a string"),
    (["delete", "group", {"name": None}], "group: group name: the null group cannot appear"),
    (["delete", "site", {"name": {"name": "S"}}], "site: site name: expected a string"),
    (["update", "partition", {"name": 1}], "partition: partition name: expected a string"),
]


@pytest.mark.parametrize(("record", "message"), MALFORMED, ids=[f"{r[0]}-{r[1]}-{i}" for i, (r, _) in
                                                                 enumerate(MALFORMED)])
def test_malformed_key_and_reference_fields_are_refused_naming_the_field(record: list[object], message: str) -> None:
    with pytest.raises(CodecError) as info:
        decode(record)
    assert str(info.value).startswith(message), str(info.value)
    # and in a change set: refused, named, and nothing changed
    inv = base()
    before, counters = fingerprint(inv), dict(inv.ids.next_ids)  # type: ignore[union-attr]
    with pytest.raises(ChangeSetError) as refused:
        apply_change_set(inv, None, [encode(UPDATE, Site("NEW")), record])
    assert refused.value.index == 1 and refused.value.reason == str(info.value)
    assert fingerprint(inv) == before and inv.ids.next_ids == counters  # type: ignore[union-attr]
    assert inv.version == 1


# every field of every record type, set to every kind of JSON value
ODD_VALUES = [None, True, 0, -2, 2**64, 1.5, "", "x", "a#b", "a b", [], ["x"], [1], {}, {"name": "S"}]
GOOD = [Site("S", "h"), Group("G", "Dataset"), Partition("P"), SitePartition("S", "P", 5), Dataset("D", "valid"),
        Block("b", "D", 1, 1), File("/f", "D#b", 1, "adler32:0000000a"), DatasetReplica("D", "S", True, "G"),
        BlockReplica("D#b", "S", "G", True, 1, ["/f"])]


@pytest.mark.parametrize("op", [UPDATE, DELETE])
@pytest.mark.parametrize("obj", GOOD, ids=lambda o: o.TYPE)
def test_any_json_value_in_any_field_is_decoded_or_refused_naming_the_field(op: str, obj: Any) -> None:
    """Never an exception other than CodecError/ChangeSetError, never a changed image after one."""
    inv = base()
    template = encode(op, obj)
    for field in template[2]:
        for value in ODD_VALUES:
            record = [op, template[1], {**template[2], field: value}]
            try:
                decode(record)
            except CodecError as exc:
                assert re.search(rf"\b{field}\b", str(exc)), (record, str(exc))
            before = fingerprint(inv)
            try:
                apply_change_set(inv, None, [record])
            except ChangeSetError as exc:
                assert exc.index == 0, (record, str(exc))
                assert fingerprint(inv) == before, record
            else:
                fingerprint(inv)  # the applied image still encodes
                inv = base()


def sneaky_replica() -> DatasetReplica:
    replica = DatasetReplica("D", "S")
    replica.group = ["x"]  # type: ignore[assignment]  # a plain slot: not checked on assignment
    return replica


def test_an_unexpected_exception_in_apply_is_a_named_refusal_and_rolls_back() -> None:
    inv = base()
    before, counters = fingerprint(inv), dict(inv.ids.next_ids)  # type: ignore[union-attr]
    prepared = Prepared()
    prepared.records = [encode(UPDATE, Site("NEW")), encode(DELETE, Group("G")), ["update", "datasetreplica", DR]]
    prepared.decoded = [(UPDATE, Site("NEW")), (DELETE, Group("G")), (UPDATE, sneaky_replica())]
    with pytest.raises(ChangeSetError) as info:
        apply_change_set(inv, None, prepared)
    assert info.value.index == 2
    assert str(info.value).startswith("record 2 (update datasetreplica dataset='D', site='S'): "
                                      "unexpected AttributeError")
    assert fingerprint(inv) == before and inv.ids.next_ids == counters  # type: ignore[union-attr]
    assert inv.version == 1 and "G" in inv.groups


@pytest.mark.parametrize("error", [AttributeError, TypeError, ValueError, KeyError])
def test_an_exception_after_some_mutations_of_a_record_is_rolled_back(monkeypatch: Any,
                                                                      error: type[Exception]) -> None:
    """A handler failing half-way: the mutations it made before failing are undone too."""
    inv = base()
    before, counters = fingerprint(inv), dict(inv.ids.next_ids)  # type: ignore[union-attr]
    original = inventory_module._DELETE[Site]

    def half_way(self: Inventory, obj: Site) -> Site:
        original(self, obj)  # takes its replicas and quotas with it
        raise error("half way")

    monkeypatch.setitem(inventory_module._DELETE, Site, half_way)
    with pytest.raises(ChangeSetError, match=rf"^record 1 \(delete site name='S'\): unexpected {error.__name__}"):
        apply_change_set(inv, None, [encode(UPDATE, Dataset("NEW")), encode(DELETE, Site("S"))])
    assert fingerprint(inv) == before and inv.ids.next_ids == counters  # type: ignore[union-attr]
    assert inv.sites["S"].find_dataset_replica("D") is not None
