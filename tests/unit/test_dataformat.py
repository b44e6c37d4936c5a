"""The object model: seed reprs, round trips, value equality, validation."""

from __future__ import annotations

from typing import Any

import pytest

import dynamo.dataformat as df
from dynamo.dataformat import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    File,
    Group,
    Partition,
    Site,
    SitePartition,
)
from dynamo.dataformat.file import format_checksums, parse_checksums
from dynamo.errors import ObjectError

DS = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"
BLOCK = "48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848"
SEED_SITE = ("Site('T3_US_XYZ','t3-storage.xyz.edu','disk',"
             "'srm://t3-storage.xyz.edu:8443/srm/v2/server?SFN=/mnt/hadoop/cms','ready',2)")
SEED_DATASET = f"Dataset('{DS}','production','unknown','pandaf/010',1528406008,True,1)"
SEED_BLOCK = f"Block('{BLOCK}','{DS}',165438,2,True,1528406008,1,False)"


def evaluate(text: str) -> object:
    # Evaluating reprs is exactly what this test is about; the namespace is only our classes.
    return eval(text, {"__builtins__": {"set": set}}, vars(df))  # noqa: S307


@pytest.mark.parametrize("text", [SEED_SITE, SEED_DATASET, SEED_BLOCK])
def test_seed_reprs_evaluate_back_to_the_same_text(text: str) -> None:
    assert repr(evaluate(text)) == text


def test_seed_site_values() -> None:
    site = Site("T3_US_XYZ", "t3-storage.xyz.edu", "disk",
                "srm://t3-storage.xyz.edu:8443/srm/v2/server?SFN=/mnt/hadoop/cms", "ready", 2)
    assert repr(site) == SEED_SITE
    assert site.storage_type is df.StorageType.DISK and site.status is df.SiteStatus.READY


ALL_OBJECTS = [
    Site("T2_X", "host.example", "mss", "root://x/", "waitroom", 7),
    Group("AnalysisOps", "Dataset", 3),
    Group(None),
    Partition("Physics", 4),
    SitePartition("T2_X", "Physics", 10**13),
    SitePartition("T2_X", "Physics", -1),
    Dataset("/A/B/RAW", "valid", "production", "CMSSW_10", 1540000000, False, 17),
    Dataset("/A/B/RAW"),
    Block("b1", "/A/B/RAW", 100, 3, False, 5, 9),
    File("/store/a.root", "/A/B/RAW#b1", 42, "adler32:0a0b0c0d,md5:" + "f" * 32, 11),
    File("/store/a.root", "/A/B/RAW#b1"),
    DatasetReplica("/A/B/RAW", "T2_X", True, "AnalysisOps"),
    DatasetReplica("/A/B/RAW", "T2_X"),
    BlockReplica("/A/B/RAW#b1", "T2_X", "AnalysisOps", True, 99, ["/store/b.root", "/store/a.root"]),
    BlockReplica("/A/B/RAW#b1", "T2_X"),
]


@pytest.mark.parametrize("obj", ALL_OBJECTS, ids=lambda o: repr(o)[:40])
def test_every_repr_evaluates_to_an_equal_object(obj: object) -> None:
    clone = evaluate(repr(obj))
    assert clone == obj
    assert hash(clone) == hash(obj)
    assert repr(clone) == repr(obj)


def test_other_reprs_follow_the_seed_style() -> None:
    assert repr(Group(None)) == "Group(None,'Block',0)"
    assert repr(Partition("Physics", 4)) == "Partition('Physics',4)"
    assert repr(SitePartition("S", "P", 5)) == "SitePartition('S','P',5)"
    assert repr(DatasetReplica("d", "S", True, "g")) == "DatasetReplica('d','S',True,'g')"
    assert repr(BlockReplica("d#b", "S", "g", False, 3, ["/b", "/a"])) == \
        "BlockReplica('d#b','S','g',False,3,('/a', '/b'))"
    assert repr(File("/a", "d#b", 5, None, 2)) == "File('/a','d#b',5,None,2)"


def test_equality_is_by_value_and_hash_by_key() -> None:
    a = Site("S", "h1", id=1)
    b = Site("S", "h1", id=2)
    c = Site("S", "h2", id=1)
    assert a == b  # the database id is bookkeeping, not value
    assert a != c and hash(a) == hash(c)
    assert len({a, b}) == 1
    c.host = "h1"
    assert a == c
    assert Site("S") != Group("S")


def test_keys_are_read_only() -> None:
    site = Site("S")
    with pytest.raises(AttributeError):
        site.name = "T"  # type: ignore[misc]


def test_objects_have_no_instance_dict() -> None:
    for obj in ALL_OBJECTS:
        assert not hasattr(obj, "__dict__"), type(obj).__name__


@pytest.mark.parametrize(("factory", "message"), [
    (lambda: Site(""), "site name: must not be empty"),
    (lambda: Site("a b"), "whitespace"),
    (lambda: Site("S", storage_type="floppy"), "site storage_type: 'floppy' is not one of"),
    (lambda: Site("S", status="gone"), "site status"),
    (lambda: Dataset("d", status="bogus"), "dataset status"),
    (lambda: Dataset("d", last_update=-1), "dataset last_update: must be >= 0"),
    (lambda: Dataset("d", is_open=1), "dataset is_open: expected true or false"),  # type: ignore[arg-type]
    (lambda: Block("b", "d", size=-5), "block size: must be >= 0"),
    (lambda: Block("b", "d", size=True), "block size: expected an integer"),
    (lambda: Block("b#c", "d"), "must not contain '#'"),
    (lambda: File("/a", "no-hash"), "expected 'dataset#block'"),
    (lambda: File("/a", "d#b", checksum="crc:1"), "unknown algorithm"),
    (lambda: BlockReplica("d#b", "S", files="/a"), "expected a list of file names"),
    (lambda: SitePartition("S", "P", -2), "must be >= -1"),
    (lambda: Group("g", "Site"), "group olevel"),
])
def test_bad_values_raise_clear_errors(factory: object, message: str) -> None:
    with pytest.raises(ObjectError, match=message.replace("(", r"\(").replace("'", "'")):
        factory()  # type: ignore[operator]


def test_site_translates_lfn_by_attaching_it_to_the_backend() -> None:
    site = Site("T2_US_XYZ", backend="gsiftp://t2-storage.xyz.edu:2811/cms")
    assert site.to_pfn("/store/user/a.root") == "gsiftp://t2-storage.xyz.edu:2811/cms/store/user/a.root"


def test_checksums_canonical_form() -> None:
    text = format_checksums({"md5": "0" * 32, "adler32": "0a0b0c0d"})
    assert text == "adler32:0a0b0c0d,md5:" + "0" * 32
    assert parse_checksums(text) == {"adler32": "0a0b0c0d", "md5": "0" * 32}
    with pytest.raises(ObjectError):
        parse_checksums("md5:" + "0" * 32 + ",adler32:0a0b0c0d")  # not sorted
    with pytest.raises(ObjectError):
        format_checksums({"adler32": "xyz"})


def test_detached_replica_has_no_size() -> None:
    with pytest.raises(TypeError, match="inside an inventory"):
        _ = BlockReplica("d#b", "S").size


# --- enum attributes coerce on assignment ---------------------------------------------------

ENUM_ATTRIBUTES = [
    (lambda: Site("T2_X", "h", "disk", "root://x/", "ready", 3), "status", "waitroom", df.SiteStatus.WAITROOM),
    (lambda: Site("T2_X", "h", "disk", "root://x/", "ready", 3), "storage_type", "mss", df.StorageType.MSS),
    (lambda: Dataset("/A/B/RAW", "valid", "production", "v1", 5, True, 2), "status", "deprecated",
     df.DatasetStatus.DEPRECATED),
    (lambda: Dataset("/A/B/RAW", "valid", "production", "v1", 5, True, 2), "data_type", "test", df.DataType.TEST),
    (lambda: Group("AnalysisOps", "Block", 4), "olevel", "Dataset", df.OwnershipLevel.DATASET),
]


@pytest.mark.parametrize(("factory", "attr", "text", "member"), ENUM_ATTRIBUTES,
                         ids=[f"{type(f()).__name__}.{a}" for f, a, _, _ in ENUM_ATTRIBUTES])
def test_enum_attribute_assigned_a_value_string_holds_the_member(factory: Any, attr: str, text: str,
                                                                  member: object) -> None:
    from dynamo.core.codec import UPDATE, decode, encode

    obj = factory()
    setattr(obj, attr, text)  # what an application naturally writes
    assert getattr(obj, attr) is member
    clone = evaluate(repr(obj))
    assert clone == obj and repr(clone) == repr(obj)
    record = encode(UPDATE, obj)
    assert record[2][attr] == text
    assert decode(record)[1] == obj
    setattr(obj, attr, member)  # a member is taken as it is
    assert getattr(obj, attr) is member


@pytest.mark.parametrize(("factory", "attr", "text", "member"), ENUM_ATTRIBUTES,
                         ids=[f"{type(f()).__name__}.{a}" for f, a, _, _ in ENUM_ATTRIBUTES])
def test_enum_attribute_refuses_a_bad_value_and_keeps_the_old_one(factory: Any, attr: str, text: str,
                                                                  member: object) -> None:
    obj = factory()
    before = getattr(obj, attr)
    what = f"{obj.TYPE} {attr}"
    for bad in ("bogus", "WAITROOM", None, 3, [text]):
        with pytest.raises(ObjectError, match=f"^{what}: .* is not one of"):
            setattr(obj, attr, bad)
        assert getattr(obj, attr) is before


def test_enum_attributes_keep_copy_snapshot_restore_and_equality_working() -> None:
    a = Site("S", "h", "disk", "", "ready", 1)
    b = Site("S", "h", "mss", "", "morgue", 2)
    a.copy_from(b)
    assert a == b and a.storage_type is df.StorageType.MSS and a.status is df.SiteStatus.MORGUE
    saved = a.snapshot()
    a.status = "ready"
    assert a != b
    a.restore(saved)
    assert a == b and a.status is df.SiteStatus.MORGUE
    d = Dataset("D", "valid")
    d.status = "invalid"
    assert d == Dataset("D", "invalid")
    made = Dataset._make("D", df.DatasetStatus.INVALID, df.DataType.UNKNOWN, None, 0, True, 0)
    assert made == d and made.status is df.DatasetStatus.INVALID
    assert not hasattr(d, "__dict__") and not hasattr(a, "__dict__")


def test_enum_assigned_on_a_live_object_travels_through_a_change_set() -> None:
    from dynamo.core.changeset import apply_change_set
    from dynamo.core.inventory import Inventory
    from tests.unit.recording import PipeCapture

    server, child = Inventory(), Inventory()
    for inv in (server, child):
        inv.update(Site("S"))
        inv.update(Dataset("D"))
    capture = PipeCapture()
    child.recorder = capture.recorder
    site, dataset = child.sites["S"], child.datasets["D"]
    site.status = "waitroom"
    dataset.status = "production"
    child.update(site)
    child.update(dataset)
    apply_change_set(server, None, capture.records())
    assert server.sites["S"].status is df.SiteStatus.WAITROOM
    assert server.datasets["D"].status is df.DatasetStatus.PRODUCTION


# --- names and references -------------------------------------------------------------------

@pytest.mark.parametrize(("factory", "message"), [
    (lambda: Dataset("a#b"), "dataset name: 'a#b' must not contain '#'"),
    (lambda: Block("b#c", "d"), "block name: 'b#c' must not contain '#'"),
    (lambda: Block("b", "a#d"), "block dataset: 'a#d' must not contain '#'"),
    (lambda: DatasetReplica("a#d", "S"), "datasetreplica dataset: 'a#d' must not contain '#'"),
    (lambda: File("/f", "a#b#c"), "block reference 'a#b#c': expected 'dataset#block'"),
    (lambda: BlockReplica("a#b#c", "S"), "block reference 'a#b#c': expected 'dataset#block'"),
    (lambda: SitePartition(5, "P"), "sitepartition site: expected a string or a Site, got int"),
    (lambda: SitePartition("S", None), "sitepartition partition: expected a string or a Partition, got NoneType"),
    (lambda: Block("b", 5), "block dataset: expected a string or a Dataset, got int"),
    (lambda: File("/f", 5), "file block: expected a string, None or a Block, got int"),
    (lambda: File("/f", Dataset("D")), "file block: expected a string, None or a Block, got Dataset"),
    (lambda: DatasetReplica(["D"], "S"), "datasetreplica dataset: expected a string or a Dataset, got list"),
    (lambda: DatasetReplica("D", Group("S")), "datasetreplica site: expected a string or a Site, got Group"),
    (lambda: DatasetReplica("D", "S", group=["x"]),
     "datasetreplica group: expected a string, None or a Group, got list"),
    (lambda: BlockReplica("d#b", 7), "blockreplica site: expected a string or a Site, got int"),
    (lambda: BlockReplica("d#b", "S", 5), "blockreplica group: expected a string, None or a Group, got int"),
    (lambda: BlockReplica(5, "S"), "blockreplica block: expected a string or a Block, got int"),
])
def test_bad_names_and_references_are_refused_naming_the_attribute(factory: Any, message: str) -> None:
    with pytest.raises(ObjectError) as info:
        factory()
    assert str(info.value).startswith(message), str(info.value)


def test_live_objects_are_accepted_as_references() -> None:
    site, dataset, group = Site("S"), Dataset("D"), Group("G")
    block = Block("b", dataset)
    assert DatasetReplica(dataset, site, False, group).key == ("D", "S")
    assert BlockReplica(block, site, None).key == ("D", "b", "S")
    assert File("/f", block).block_full_name == "D#b"
    assert SitePartition(site, Partition("P")).key == ("S", "P")
