"""The original Dynamo's names (issue 9), one group of tests per name; values as its code computes them."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from dynamo.core import executable
from dynamo.core.codec import DELETE, UPDATE, decode, encode
from dynamo.core.ids import IdAllocator
from dynamo.core.inventory import Inventory
from dynamo.dataformat import (
    Block,
    BlockReplica,
    Condition,
    Configuration,
    ConfigurationError,
    Dataset,
    DatasetReplica,
    File,
    FileNameMapping,
    Group,
    IntegrityError,
    ObjectError,
    Partition,
    Site,
    SitePartition,
)
from dynamo.errors import InventoryError, MissingReference, ProtectedObject


def build() -> Inventory:
    """Site S1 (quotas in Physics and Ops under All), groups A and B, dataset D with block b1
    (files 1, 2, 3 of 10, 20, 30 bytes) complete at S1 owned by A, and b2 (one file) owned by B."""
    inv = Inventory()
    inv.ids = IdAllocator()
    inv.update(Site("S1", "h1", backend="root://h1/"))
    for name in ("A", "B"):
        inv.update(Group(name))
    inv.update(Partition("All"))
    inv.update(Partition("Physics", condition="blockreplica.owner == A", parent="All"))
    inv.update(Partition("Ops", condition="blockreplica.owner == B", parent="All"))
    inv.update(SitePartition("S1", "Physics", 100))
    inv.update(SitePartition("S1", "Ops", 50))
    inv.update(Dataset("D", "valid"))
    inv.update(Block("b1", "D", 60, 3))
    for i in (1, 2, 3):
        inv.update(File(f"/D/b1/{i}", "D#b1", 10 * i))
    inv.update(Block("b2", "D", 5, 1))
    inv.update(File("/D/b2/1", "D#b2", 5))
    inv.update(BlockReplica("D#b1", "S1", "A"))
    inv.update(BlockReplica("D#b2", "S1", "B"))
    return inv


# --- Configuration ----------------------------------------------------------

def test_configuration_attribute_access_nesting_and_environment(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("DYN_TEST_HOST", "db.example.org")
    config = Configuration({"store": {"url": "mysql://$(DYN_TEST_HOST)/dynamo", "hosts": [{"a": 1}]}}, debug=True)
    assert config.store.url == "mysql://db.example.org/dynamo" and config.debug is True
    assert isinstance(config.store.hosts[0], Configuration) and config.store.hosts[0].a == 1
    config.extra = 5
    assert config["extra"] == 5 and config.get("missing", 7) == 7 and config.get("missing") is None
    with pytest.raises(AttributeError, match="missing"):
        _ = config.missing
    clone = config.clone()
    clone.store.url = "other"
    assert config.store.url == "mysql://db.example.org/dynamo"
    assert repr(Configuration({"a": 1})) == '{"a": 1}'
    (tmp_path / "c.json").write_text('{"web": {"port": 8080}}')
    (tmp_path / "c.toml").write_text('[web]\nport = 8081\n')
    assert Configuration(str(tmp_path / "c.json")).web.port == 8080
    assert Configuration(tmp_path / "c.toml").web.port == 8081
    assert Configuration(io.StringIO('{"x": [1, 2]}')).x == [1, 2]


def test_configuration_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="DYN_TEST_UNSET_VARIABLE"):
        Configuration({"a": "$(DYN_TEST_UNSET_VARIABLE)"})
    (tmp_path / "bad.toml").write_text("[web\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        Configuration(str(tmp_path / "bad.toml"))
    with pytest.raises(ConfigurationError, match="cannot read"):
        Configuration(str(tmp_path / "absent.json"))


# --- constants and name helpers ------------------------------------------------

def test_site_constants_and_default_status() -> None:
    site = Site("X")
    assert site.status == Site.STAT_UNKNOWN and Site.status_name(site.status) == "unknown"
    assert Site.status_name(1) == "ready" and Site.storage_type_name(Site.TYPE_MSS) == "mss"
    assert Site.status_val("WAITROOM") is Site.STAT_WAITROOM and Site.status_name("nonsense") == "nonsense"
    site.status = Site.STAT_MORGUE
    assert site.status == "morgue"


def test_dataset_constants_and_attr() -> None:
    dataset = Dataset("D", Dataset.STAT_PRODUCTION, Dataset.TYPE_TEST)
    assert Dataset.status_name(dataset.status) == "production" and Dataset.data_type_name(dataset.data_type) == "test"
    assert Dataset.status_name(7) == "ignored" and Dataset.data_type_val("production") is Dataset.TYPE_PRODUCTION
    assert Dataset.format_software_version("CMSSW_9_4_0") == "CMSSW_9_4_0"
    dataset.attr["locked"] = True
    assert dataset.attr == {"locked": True}
    assert "attr" not in str(encode(UPDATE, dataset))  # transient, as in the original


def test_group_null_group_and_errors() -> None:
    inv = Inventory()
    assert inv.groups == {None: Group.null_group} and Group.olevel_name(Group.OL_DATASET) == "Dataset"
    assert IntegrityError is InventoryError and issubclass(MissingReference, IntegrityError)
    with pytest.raises(IntegrityError):
        inv.delete(Site("nowhere"))


# --- site partitions, quotas, occupancy -------------------------------------------

def test_site_partitions_keyed_by_partition_and_by_name() -> None:
    inv = build()
    site, physics = inv.sites["S1"], inv.partitions["Physics"]
    assert site.partitions[physics] is site.partitions["Physics"] and physics in site.partitions
    assert {p.name for p in site.partitions} == {"Physics", "Ops"} and len(site.partitions) == 2
    default = site.partitions[inv.partitions["All"]]  # never stored: the original's default quota 0 ...
    assert default.quota == 150  # ... but a superpartition's quota is its subpartitions' sum
    with pytest.raises(KeyError):
        _ = site.partitions["All"]


def test_integral_float_quotas_are_bytes_fractional_ones_are_refused() -> None:
    assert SitePartition("S", "P", 999 * 1.e12).quota == 999_000_000_000_000
    with pytest.raises(ObjectError, match="0.5 is not a whole number of bytes"):
        SitePartition("S", "P", 0.5)
    sp = SitePartition("S", "P")
    with pytest.raises(ObjectError, match="whole number"):
        sp.quota = 1.25
    sp.quota = 2.0
    assert sp.quota == 2 and type(sp.quota) is int


def test_set_quota_and_occupancy_fraction_follow_the_original() -> None:
    inv = build()
    site = inv.sites["S1"]
    with pytest.raises(IntegrityError, match="superpartition"):
        site.partitions[inv.partitions["All"]].set_quota(10)
    with pytest.raises(IntegrityError, match="Infinite quota"):
        site.partitions["Physics"].set_quota(-1)
    assert site.partitions["Physics"].occupancy_fraction() == 60 / 100
    assert site.partitions["Ops"].occupancy_fraction() == 5 / 50
    assert site.partitions[inv.partitions["All"]].occupancy_fraction() == 65 / 150
    assert SitePartition(site, inv.partitions["Physics"], 0).occupancy_fraction() == sys.float_info.max
    assert SitePartition(site, inv.partitions["Physics"], -1).occupancy_fraction() == 0.0
    replica = site.find_dataset_replica("D")
    assert site.partitions["Physics"].replicas() == {replica: {replica.find_block_replica("b1")}}


def test_partition_tree_is_kept_by_the_inventory() -> None:
    inv = build()
    everything = inv.partitions["All"]
    assert [p.name for p in everything.subpartitions or ()] == ["Physics", "Ops"]
    assert inv.partitions["Ops"].parent is everything and everything.parent is None
    with pytest.raises(ProtectedObject, match="subpartitions"):
        inv.delete(Partition("All"))
    with pytest.raises(ObjectError, match="cycle"):
        inv.update(Partition("All", parent="Ops"))
    inv.delete(Partition("Ops"))
    assert [p.name for p in everything.subpartitions or ()] == ["Physics"]
    assert Partition("Q", "blockreplica.owner == A", 4).condition == "blockreplica.owner == A"  # original's form


def test_conditions_parse_without_eval_and_match() -> None:
    inv = build()
    b1 = inv.sites["S1"].find_dataset_replica("D").find_block_replica("b1")
    assert Condition("blockreplica.owner in [A, C] and site.name == S*").match(b1)
    assert not Condition("blockreplica.owner != None and dataset.status == deleted").match(b1)
    assert Condition("blockreplica.last_update >= 0").match(b1)
    for bad, message in (("owner == A", "unknown variable"), ("site.name in S1", "needs a list"),
                         ("site.name ==", "not '<variable> <op> <value>'"),
                         ("blockreplica.last_update < x", "needs an integer"), ("", "non-empty")):
        with pytest.raises(ObjectError, match=message):
            Condition(bad)


# --- blocks, dataset replicas, block replica files ----------------------------

def test_block_names_as_the_original() -> None:
    block = Block("b1", "D")
    assert block.full_name() == "D#b1" and block.real_name() == "b1"
    assert Block.from_full_name("D#b1") == ("D", "b1") and Block.to_full_name("D", "b1") == "D#b1"
    assert Block.to_internal_name("b1") == "b1" == Block.to_real_name("b1")
    with pytest.raises(ObjectError):
        Block.from_full_name("no-hash")


def test_dataset_replica_size_is_a_method() -> None:
    inv = build()
    inv.update(BlockReplica("D#b1", "S1", "A", False, 0, ["/D/b1/1"]))
    replica = inv.sites["S1"].find_dataset_replica("D")
    assert replica.size() == 10 + 5 and replica.size(physical=False) == 60 + 5 and replica.is_last_copy()
    assert not replica.is_partial() and not replica.is_full() and replica.last_block_created() == 0
    inv.update(Block("b3", "D"))
    assert not replica.is_partial()  # b1 is incomplete here
    inv.update(BlockReplica("D#b1", "S1", "A"))
    assert replica.is_partial()
    dataset = inv.datasets["D"]
    assert {f.lfn for f in dataset.files} == {"/D/b1/1", "/D/b1/2", "/D/b1/3", "/D/b2/1"}
    assert dataset.find_file("/D/b2/1").size == 5 and dataset.find_file("/x") is None  # type: ignore[union-attr]


def test_block_replica_original_constructor_forms() -> None:
    inv = build()
    block = inv.datasets["D"].find_block("b1")
    ids = {f.lfn: f.id for f in block.files}
    full = BlockReplica(block, "S1", "A", False, -1, 5)  # six positional: (..., size, last_update)
    assert full.lfns is None and full.last_update == 5
    by_ids = BlockReplica(block, "S1", "A", False, 30, 0, [ids["/D/b1/1"], "/D/b1/2"])
    assert by_ids.lfns == ("/D/b1/1", "/D/b1/2") and by_ids.file_ids == (ids["/D/b1/1"], ids["/D/b1/2"])
    assert BlockReplica("D#b1", "S1", "A", size=0).lfns == ()
    with pytest.raises(ObjectError, match="needs a block inside an inventory"):
        BlockReplica("D#b1", "S1", "A", False, 10, 0, [3])
    with pytest.raises(ObjectError, match="no file with id"):
        BlockReplica(block, "S1", "A", False, 10, 0, [99999])


def test_block_replica_file_api() -> None:
    inv = build()
    block = inv.datasets["D"].find_block("b1")
    replica = block.find_replica("S1")
    f1, f2, f3 = sorted(block.files, key=lambda f: f.lfn)
    assert replica.file_ids is None and replica.files() == set(block.files) and replica.has_file(f2)
    assert replica.delete_file(f1, full_deletion=True) and replica.is_complete()
    assert replica.delete_file(f1) and replica.lfns == ("/D/b1/2", "/D/b1/3")
    assert replica.file_ids == (f2.id, f3.id) and replica.files() == {f2, f3}
    assert not replica.has_file(f1) and not replica.delete_file(f1)
    replica.add_file(f1)
    assert replica.is_complete()
    other = File("/D/b2/1", "D#b2", 5)
    with pytest.raises(ObjectError, match="not a file of D#b1"):
        replica.add_file(other)
    assert not replica.has_file(other)


# --- files, sites -------------------------------------------------------------

def test_file_checksum_is_the_original_tuple() -> None:
    assert File.checksum_algorithms == ("adler32", "cksum", "md5")
    f = File("/f", "D#b", 1, ("0a1b2c3d", None, None))
    assert f.checksum == ("0a1b2c3d", None, None) and f.checksum_text == "adler32:0a1b2c3d"
    f.checksum = {"cksum": "123"}
    assert f.checksum == (None, "123", None)
    assert File("/g", "D#b", 1, "adler32:0a1b2c3d").checksum[0] == "0a1b2c3d" and File("/h").checksum == (None,) * 3
    with pytest.raises(ObjectError, match="expected 3 values"):
        File("/f", "D#b", 1, ("0a1b2c3d",))


def test_filename_mapping_and_to_pfn() -> None:
    mapping = {"srm": [[("/store/(.*)", "/mnt/hadoop/cms/store/{0}"), ("/mnt/(.*)", "srm://se/{0}")]],
               "xrootd": [[("/store/user/(.*)", "root://user/{0}")], [("/store/(.*)", "root://all/{0}")]]}
    site = Site("S", "h", "disk", "gsiftp://se/", "ready", 0, "/tmp/x509", filename_mapping=mapping)
    assert site.to_pfn("/store/a.root", "srm") == "srm://se/hadoop/cms/store/a.root"
    assert site.to_pfn("/store/user/u/a.root", "xrootd") == "root://user/u/a.root"
    assert site.to_pfn("/store/a.root", "xrootd") == "root://all/a.root"
    assert site.to_pfn("/other/a.root", "xrootd") is None and site.to_pfn("/store/a", "gfal") is None
    assert site.to_pfn("/store/a.root") == "gsiftp://se//store/a.root"  # no protocol: backend + LFN
    assert Site("T", backend="gsiftp://t/").to_pfn("/store/a", "srm") == "gsiftp://t//store/a"  # no rules
    assert isinstance(site.filename_mapping["srm"], Site.FileNameMapping) and site.x509proxy == "/tmp/x509"
    assert Site.FileNameMapping is FileNameMapping
    original_form = Site("S", "h", "disk", "gsiftp://se/", "ready", mapping, "/tmp/x509", 3)
    assert original_form == site and original_form.id == 3
    for bad in ({"srm": "nope"}, {"srm": [[("(", "x")]]}, {"srm": [[("a",)]]}):
        with pytest.raises(ObjectError, match="filename_mapping"):
            Site("S", filename_mapping=bad)


def test_new_attributes_travel_through_the_codec() -> None:
    site = Site("S", filename_mapping={"srm": [[("/(.*)", "srm://x/{0}")]]}, x509proxy="/p")
    again = decode(encode(UPDATE, site))[1]
    assert again == site and again.to_pfn("/a", "srm") == "srm://x/a"
    partition = Partition("P", condition="site.name == S", parent="All")
    assert decode(encode(UPDATE, partition))[1] == partition
    old_record = ["update", "site", {"name": "S", "host": "", "storage_type": "disk", "backend": "", "status": "ready"}]
    assert decode(old_record)[1].filename_mapping == {}  # records written before these fields
    assert decode(["delete", "partition", {"name": "P"}])[0] == DELETE


# --- inventory API ------------------------------------------------------------

class _Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, Any]] = []

    def record(self, op: str, obj: Any) -> None:
        self.records.append((op, repr(obj)))


def test_register_update_make_object_find_file() -> None:
    inv = build()
    inv.recorder = recorder = _Recorder()
    site = inv.sites["S1"]
    site.status = Site.STAT_WAITROOM
    inv.register_update(site)
    assert recorder.records == [("update", repr(site))]
    block = inv.datasets["D"].find_block("b1")
    assert inv.make_object(repr(block)) == block and inv.make_object("df." + repr(site)) == site
    for bad in ("__import__('os').system('true')", "Site(open('x'))", "Site(", "Other('x')"):
        with pytest.raises(ObjectError, match="make_object"):
            inv.make_object(bad)
    found = inv.find_file("/D/b1/2")
    assert found is not None and found.block is block and found.size == 20
    assert inv.find_file("/nowhere") is None


def test_embed_into_unlink_from_unlink(monkeypatch: Any) -> None:
    inv = build()
    live, changed = Site("S2", "h2").embed_into(inv, check=True)
    assert live is inv.sites["S2"] and changed
    assert Site("S2", "h2").embed_into(inv, check=True) == (live, False)
    assert DatasetReplica("D", "S2").unlink_from(inv) is None
    assert Site("S2").unlink_from(inv) is live and "S2" not in inv.sites
    monkeypatch.setattr(executable, "inventory", inv)
    inv.datasets["D"].find_block("b2").find_replica("S1").unlink()
    assert inv.sites["S1"].find_dataset_replica("D").find_block_replica("b2") is None


def test_authorized_and_make_standard_logger(capsys: Any) -> None:
    assert executable.authorized is False and executable.read_only is True
    logger = executable.make_standard_logger("info")
    try:
        logging.getLogger("dyn.test").info("hello %s", "there")
        logging.getLogger("dyn.test").error("bad")
        out, err = capsys.readouterr()
        assert ":INFO:dyn.test: hello there" in out and ":ERROR:dyn.test: bad" in err and "hello" not in err
    finally:
        for handler in logger.handlers[-2:]:
            logger.removeHandler(handler)
        logger.setLevel(logging.WARNING)
    with pytest.raises(ValueError, match="unknown level"):
        executable.make_standard_logger("loud")


def test_injecting_a_site_or_partition_again_keeps_the_original_settings() -> None:
    from dynamo.core.changeset import apply_change_set
    from dynamo.core.documents import parse_inject

    inv = build()
    site = inv.sites["S1"]
    site.filename_mapping = {"srm": [[("/(.*)", "srm://x/{0}")]]}
    site.x509proxy = "/p"
    doc = {"site": [{"name": "S1", "host": "new-host"}], "partition": [{"name": "Ops"}]}
    apply_change_set(inv, None, parse_inject(doc, inv).records)
    assert site.host == "new-host" and site.x509proxy == "/p" and site.to_pfn("/a", "srm") == "srm://x/a"
    assert inv.partitions["Ops"].condition == "blockreplica.owner == B" and inv.partitions["Ops"].parent_name == "All"
