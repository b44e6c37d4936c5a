"""Inject and delete documents (the seed's JSON formats)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamo.core.changeset import apply_change_set
from dynamo.core.documents import parse_delete, parse_inject
from dynamo.core.ids import IdAllocator
from dynamo.core.inventory import Inventory
from dynamo.errors import DocumentError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SITES = (EXAMPLES / "mydynamo-storage-sites.json").read_text()
DATA = (EXAMPLES / "mydynamo-initial-data.json").read_text()
DS = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"
BLOCK = "48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848"


def seeded() -> Inventory:
    inv = Inventory()
    inv.ids = IdAllocator()
    for text in (SITES, DATA):
        apply_change_set(inv, None, parse_inject(text, inv).records)
    return inv


def test_seed_documents_give_the_seed_reprs() -> None:
    inv = seeded()
    assert repr(inv.sites["T3_US_XYZ"]) == ("Site('T3_US_XYZ','t3-storage.xyz.edu','disk',"
                                             "'srm://t3-storage.xyz.edu:8443/srm/v2/server?SFN=/mnt/hadoop/cms',"
                                             "'ready',2)")
    assert repr(inv.sites["T2_US_XYZ"]) == ("Site('T2_US_XYZ','t2-storage.xyz.edu','disk',"
                                             "'gsiftp://t2-storage.xyz.edu:2811/cms','ready',1)")
    assert repr(inv.datasets) == f"{{'{DS}': Dataset('{DS}','production','unknown','pandaf/010',1528406008,True,1)}}"
    assert repr(inv.datasets[DS].blocks) == f"set([Block('{BLOCK}','{DS}',165438,2,True,1528406008,1,False)])"


def test_counts() -> None:
    inv = Inventory()
    assert parse_inject(SITES, inv).counts == {"sites": 2}
    inv = seeded()
    assert parse_inject(DATA, inv).counts == {"datasets": 1, "blocks": 1, "files": 2, "datasetreplicas": 1,
                                              "blockreplicas": 1}


def test_existing_objects_keep_what_the_document_does_not_mention() -> None:
    inv = seeded()
    doc = {"site": [{"name": "T2_US_XYZ", "status": "morgue"}],
           "dataset": [{"name": DS, "blocks": [{"name": BLOCK, "is_open": False}]}]}
    apply_change_set(inv, None, parse_inject(doc, inv).records)
    site = inv.sites["T2_US_XYZ"]
    assert site.status == "morgue" and site.host == "t2-storage.xyz.edu"
    dataset = inv.datasets[DS]
    assert dataset.status == "production" and dataset.software_version == "pandaf/010"
    block = dataset.find_block(BLOCK)
    assert not block.is_open and block.num_files == 2 and block.size == 165438


def test_adding_files_to_an_existing_block_updates_its_counts() -> None:
    inv = seeded()
    doc = {"dataset": [{"name": DS, "blocks": [{"name": BLOCK, "files": [{"name": "/store/new.root", "size": 5,
                                                                          "adler32": "0000000a"}]}]}]}
    apply_change_set(inv, None, parse_inject(doc, inv).records)
    block = inv.datasets[DS].find_block(BLOCK)
    assert (block.num_files, block.size) == (3, 165443)
    assert block.find_file("/store/new.root").checksum_text == "adler32:0000000a"
    assert block.find_file("/store/new.root").checksum == ("0000000a", None, None)


def test_groups_partitions_and_incomplete_replicas() -> None:
    inv = seeded()
    doc = {"group": [{"name": "AnalysisOps"}],
           "partition": [{"name": "Physics", "quota": {"T2_US_XYZ": 10**13, "T3_US_XYZ": -1}}],
           "datasetreplica": [{"dataset": DS, "site": "T3_US_XYZ", "group": "AnalysisOps", "growing": True,
                               "blockreplicas": [{"block": BLOCK, "files": [
                                   "/store/user/paus/pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD/"
                                   "6C7F843A-4837-E811-93AC-14187741208F.root"]}]}]}
    parsed = parse_inject(doc, inv)
    assert parsed.counts == {"groups": 1, "partitions": 1, "quotas": 2, "datasetreplicas": 1, "blockreplicas": 1}
    apply_change_set(inv, None, parsed.records)
    replica = inv.sites["T3_US_XYZ"].find_dataset_replica(DS)
    assert replica.growing and replica.group_name == "AnalysisOps"
    block_replica = replica.find_block_replica(BLOCK)
    assert block_replica.group_name == "AnalysisOps" and block_replica.size == 57495
    assert inv.sites["T3_US_XYZ"].find_partition("Physics").quota == -1


DS0 = {"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f", "size": 1}]}]}
REPLICA = {"dataset": "d", "site": "T2_US_XYZ"}


# Each message is the start of the error's text: the place, then what is wrong there.
@pytest.mark.parametrize(("document", "message"), [
    ('{"site": [', "invalid JSON at line 1 column 11"),
    (b"\xff\xfe", "not UTF-8 text"),
    ("[]", "expected an object, got a list"),
    ({"sites": []}, "sites: unknown key (expected one of: group, site, partition, dataset, datasetreplica)"),
    ({"site": {}}, "site: expected a list, got an object"),
    ({"site": [{"host": "x"}]}, "site[0].name: missing"),
    ({"site": [{"name": 5}]}, "site[0].name: expected a string, got an integer"),
    ({"site": [{"name": "A"}, {"name": "A"}]}, "site[1].name: duplicate site 'A'"),
    ({"site": [{"name": "A", "status": "gone"}]}, "site[0]: site status: 'gone' is not one of"),
    ({"site": [{"name": "A B"}]}, "site[0]: site name: 'A B' contains whitespace"),
    ({"group": [{"name": "G"}, {"name": "G"}]}, "group[1].name: duplicate group 'G'"),
    ({"group": [{"name": "G H"}]}, "group[0].name: group name: 'G H' contains whitespace"),
    ({"group": [{"name": "G", "olevel": "Site"}]}, "group[0].olevel: group olevel: 'Site' is not one of"),
    ({"partition": [{"name": "P"}, {"name": "P"}]},
     "partition[1].name: duplicate partition 'P' (also at partition[0].name)"),
    ({"partition": [{"name": "P", "quota": {"T9": 1}}]}, "partition[0].quota.T9: unknown site 'T9'"),
    ({"dataset": [{"name": "d", "colour": 1}]}, "dataset[0].colour: unknown key"),
    ({"dataset": [DS0, DS0]}, "dataset[1].name: duplicate dataset 'd'"),
    ({"dataset": [{"name": "a#b"}]}, "dataset[0].name: dataset name: 'a#b' must not contain '#'"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b#c", "files": [{"name": "/f", "size": 1}]}]}]},
     "dataset[0].blocks[0].name: block name: 'b#c' must not contain '#'"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b"}, {"name": "c"}, {"name": "b"}]}]},
     "dataset[0].blocks[2].name: duplicate block 'b' in dataset 'd'"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f", "size": "1"}]}]}]},
     "dataset[0].blocks[0].files[0].size: expected an integer, got a string"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f"}]}]}]},
     "dataset[0].blocks[0].files[0].size: missing"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f", "size": -3}]}]}]},
     "dataset[0].blocks[0].files[0].size: must not be negative, got -3"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b", "num_files": 2, "files": [{"name": "/f", "size": 1}]}]}]},
     "dataset[0].blocks[0].num_files: 2 disagrees with the block's 1 files"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b", "size": 7, "files": [{"name": "/f", "size": 1}]}]}]},
     "dataset[0].blocks[0].size: 7 disagrees with the total size of the block's files, 1"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f", "size": 1},
                                                                   {"name": "/f", "size": 1}]}]}]},
     "dataset[0].blocks[0].files[1].name: duplicate file '/f' (also at dataset[0].blocks[0].files[0].name)"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f", "size": 1}]},
                                           {"name": "c", "files": [{"name": "/g", "size": 1},
                                                                   {"name": "/f", "size": 1}]}]}]},
     "dataset[0].blocks[1].files[1].name: duplicate file '/f' (also at dataset[0].blocks[0].files[0].name)"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f", "size": 1, "adler32": "zz"}]}]}]},
     "dataset[0].blocks[0].files[0]: checksum adler32: 'zz' is not a valid adler32 value"),
    ({"dataset": [{"name": "d", "software_version": ["a", "b"]}]},
     "dataset[0].software_version: expected a string or a list of one string"),
    ({"dataset": [DS0], "datasetreplica": [{"dataset": "d", "site": "T9"}]}, "datasetreplica[0].site: unknown site"),
    ({"datasetreplica": [{"dataset": "nope", "site": "T2_US_XYZ"}]},
     "datasetreplica[0].dataset: unknown dataset 'nope'"),
    ({"dataset": [DS0], "datasetreplica": [REPLICA, {"dataset": "d", "site": "T3_US_XYZ"}, REPLICA]},
     "datasetreplica[2]: duplicate dataset replica 'd' at site 'T2_US_XYZ' (also at datasetreplica[0])"),
    ({"dataset": [DS0], "datasetreplica": [{**REPLICA, "group": "G"}]}, "datasetreplica[0].group: unknown group 'G'"),
    ({"dataset": [DS0], "datasetreplica": [{**REPLICA, "blockreplicas": [{"block": "zz"}]}]},
     "datasetreplica[0].blockreplicas[0].block: unknown block 'zz' in dataset 'd'"),
    ({"dataset": [DS0], "datasetreplica": [{**REPLICA, "blockreplicas": [{"block": "b", "group": "G"}]}]},
     "datasetreplica[0].blockreplicas[0].group: unknown group 'G'"),
    ({"dataset": [DS0], "datasetreplica": [{**REPLICA, "blockreplicas": [{"block": "b"}, {"block": "b"}]}]},
     "datasetreplica[0].blockreplicas[1].block: duplicate block replica 'b'"),
    ({"dataset": [DS0], "datasetreplica": [{**REPLICA, "blockreplicas": [{"block": "b", "files": ["/g"]}]}]},
     "datasetreplica[0].blockreplicas[0].files[0]: file '/g' is not in block d#b"),
])
def test_bad_inject_documents(document: object, message: str) -> None:
    inv = seeded()
    with pytest.raises(DocumentError) as info:
        parse_inject(document if isinstance(document, (str, bytes)) else json.dumps(document), inv)
    assert str(info.value).startswith(message), str(info.value)


def test_the_same_file_name_in_two_datasets_is_not_a_duplicate() -> None:
    inv = seeded()
    doc = {"dataset": [DS0, {**DS0, "name": "e"}]}
    apply_change_set(inv, None, parse_inject(doc, inv).records)
    assert inv.find_block("d", "b").file_names() == inv.find_block("e", "b").file_names() == ["/f"]


def test_delete_document() -> None:
    inv = seeded()
    lfn = ("/store/user/paus/pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD/"
           "6C7F843A-4837-E811-93AC-14187741208F.root")
    parsed = parse_delete({"dataset": [{"name": DS, "blocks": [{"name": BLOCK, "files": [{"name": lfn}]}]}]}, inv)
    assert parsed.counts == {"files": 1}
    apply_change_set(inv, None, parsed.records)
    block = inv.datasets[DS].find_block(BLOCK)
    assert (block.num_files, block.size) == (1, 107943)
    parsed = parse_delete({"datasetreplica": [{"dataset": DS, "site": "T2_US_XYZ"}], "site": [{"name": "T3_US_XYZ"}]},
                          inv)
    assert parsed.counts == {"datasetreplicas": 1, "sites": 1}
    apply_change_set(inv, None, parsed.records)
    assert list(inv.sites) == ["T2_US_XYZ"] and not inv.datasets[DS].replicas
    apply_change_set(inv, None, parse_delete({"dataset": [{"name": DS}]}, inv).records)
    assert inv.datasets == {}


@pytest.mark.parametrize(("document", "message"), [
    ({"sites": []}, "sites: unknown key (expected one of: group, site, partition, dataset, datasetreplica)"),
    ({"dataset": [{"name": "nope"}]}, "dataset[0].name: unknown dataset 'nope'"),
    ({"dataset": [{"name": DS, "blocks": [{"name": "x"}]}]}, "dataset[0].blocks[0].name: unknown block 'x'"),
    ({"dataset": [{"name": DS, "blocks": [{"name": BLOCK, "files": [{"name": "/x"}]}]}]},
     "dataset[0].blocks[0].files[0].name: file '/x' is not in block"),
    ({"site": [{"name": "T9"}]}, "site[0].name: unknown site 'T9'"),
    ({"group": [{"name": "G"}]}, "group[0].name: unknown group 'G'"),
    ({"datasetreplica": [{"dataset": DS, "site": "T3_US_XYZ"}]},
     f"datasetreplica[0]: dataset '{DS}' has no replica at site 'T3_US_XYZ'"),
    ({"datasetreplica": [{"dataset": DS, "site": "T2_US_XYZ"}, {"dataset": DS, "site": "T2_US_XYZ"}]},
     f"datasetreplica[1]: duplicate dataset replica '{DS}' at site 'T2_US_XYZ' (also at datasetreplica[0])"),
    ({"site": [{"name": "T2_US_XYZ", "host": "x"}]}, "site[0].host: unknown key"),
    ({"site": [{"name": "T2_US_XYZ"}, {"name": "T2_US_XYZ"}]}, "site[1].name: duplicate site"),
])
def test_bad_delete_documents(document: object, message: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse_delete(document, seeded())
    assert str(info.value).startswith(message), str(info.value)


# --- hostile documents (issue 8): refused with a DocumentError naming the place, never another exception ----

SITE_A = {"name": "T2_A", "host": "a.example.org"}


@pytest.mark.parametrize(("text", "message"), [
    ('{"dataset": [{"name": "d", "last_update": ' + "9" * 5000 + "}]}", "integer 9999"),     # ValueError before
    ('{"dataset": [{"name": "d", "last_update": ' + "9" * 400 + "}]}", "integer 9999"),
    ("[" * 1000 + "]" * 1000, "nested more than 64 levels"),                                  # RecursionError
    ('{"site": [' + "[" * 100_000 + "]" * 100_000 + "]}", "nested more than 64 levels"),
    ('{"site": [{"name": "T2_A"}], "site": [{"name": "T2_B"}]}', "duplicate key 'site'"),    # the last won
    ('{"site": [{"name": "T2_A", "host": "a", "host": "b"}]}', "duplicate key 'host' in the object named 'T2_A'"),
    ('{"dataset": [{"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f", "size": 1, "size": 2}]}]}]}',
     "duplicate key 'size' in the object named '/f'"),
    ('{"site": [{"name": "T2_A", "host": "\\ud800"}]}', "a string holds a lone surrogate"),
    ('{"dataset": [{"name": "d", "last_update": NaN}]}', "NaN is not a number"),
    ('{"dataset": [{"name": "d", "last_update": 1e999}]}', "number 1e999 is out of range"),
])
def test_hostile_document_texts(text: str, message: str) -> None:
    inv = seeded()
    for parse in (parse_inject, parse_delete):
        with pytest.raises(DocumentError, match=message):
            parse(text, inv)


@pytest.mark.parametrize(("document", "message"), [
    # an ObjectError escaped here, where every other field's range error was caught
    ({"site": [SITE_A], "partition": [{"name": "P", "quota": {"T2_A": 2**63}}]},
     "partition[0].quota.T2_A: expected a number of bytes from -1 (unlimited) to 9223372036854775807"),
    ({"site": [SITE_A], "partition": [{"name": "P", "quota": {"T2_A": -2}}]}, "partition[0].quota.T2_A: expected"),
    ({"site": [SITE_A], "partition": [{"name": "P", "quota": {"T2_A": True}}]}, "partition[0].quota.T2_A: expected"),
    ({"dataset": [{"name": "d", "last_update": 2**63}]}, "dataset[0].last_update: must not exceed 9223372036854775807"),
    ({"dataset": [{"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f", "size": 2**63}]}]}]},
     "dataset[0].blocks[0].files[0].size: must not exceed"),
    # each file within range, their total not: the block's own check, named
    ({"dataset": [{"name": "d", "blocks": [{"name": "b", "files": [{"name": "/f", "size": 2**62},
                                                                   {"name": "/g", "size": 2**62}]}]}]},
     "dataset[0].blocks[0]: block size: 9223372036854775808 does not fit in 64 bits"),
    ({"site": [{"name": "T2_A", "host": "a\ud800"}]}, "site[0].host: not valid Unicode"),
    ({"site": [{"name": "T2_\udcff"}]}, "site[0].name: not valid Unicode"),
    ({"dataset": [DS0], "datasetreplica": [{**REPLICA, "blockreplicas": [{"block": "b", "files": ["\ud800"]}]}]},
     "datasetreplica[0].blockreplicas[0].files[0]: not valid Unicode"),
])
def test_every_value_is_range_checked_and_named(document: object, message: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse_inject(document, seeded())
    assert str(info.value).startswith(message), str(info.value)


def test_a_quota_the_object_model_refuses_is_named() -> None:
    # whatever the object model decides about a float quota, its refusal carries the place
    inv = seeded()
    doc = {"partition": [{"name": "P", "quota": {"T2_US_XYZ": 1.5}}]}
    try:
        parse_inject(doc, inv)
    except DocumentError as exc:
        assert str(exc).startswith("partition[0].quota.T2_US_XYZ: "), str(exc)
