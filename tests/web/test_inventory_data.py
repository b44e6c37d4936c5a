"""/data/inventory/...: the original's commands with its parameters and response shapes, its
faults fixed, and ours (files, datasetreplicas, filters, paging, streaming); /data/server/status."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import Served
from tests.web.helpers import get


def data(served: Served, path: str) -> Any:
    r = get(served.port, path)
    assert r.status == 200, r.body
    assert r.json["result"] == "OK" and r.json["inventory_version"] == 7
    return r.json["data"]


def test_datasets_by_name_and_wildcard(served: Served) -> None:
    one = data(served, "/data/inventory/datasets?dataset=/A/Run1/RAW")
    assert one == [{"name": "/A/Run1/RAW", "size": 6000, "num_files": 4, "status": "valid", "type": "production"}]
    assert [d["name"] for d in data(served, "/data/inventory/datasets?dataset=/A/*")] == ["/A/Run1/RAW", "/A/Run2/AOD"]
    assert data(served, "/data/inventory/datasets?dataset=/nothing") == []
    assert len(data(served, "/data/inventory/datasets")) == 3
    assert [d["name"] for d in data(served, "/data/inventory/datasets?dataset=*&offset=1&limit=1")] == ["/A/Run2/AOD"]


def test_groups_with_and_without_pattern(served: Served) -> None:
    assert data(served, "/data/inventory/groups") == [{"name": "(no group)"}, {"name": "AnalysisOps"},
                                                      {"name": "DataOps"}]
    # the original raised TypeError on the null group's None key for any pattern
    assert data(served, "/data/inventory/groups?group=*Ops") == [{"name": "AnalysisOps"}, {"name": "DataOps"}]
    assert data(served, "/data/inventory/groups?group=DataOps") == [{"name": "DataOps"}]


def test_sites_with_partitions_and_totals(served: Served) -> None:
    sites = data(served, "/data/inventory/sites?site=T2_*")
    assert [s["name"] for s in sites] == ["T2_US_A", "T2_US_B"]
    a = sites[0]
    assert a["host"] == "a.example.org" and a["storage_type"] == "disk"
    assert a["partitions"] == [{"name": "Physics", "type": "basic", "quota": 1.0, "usage": 0.0,
                                "projected_usage": 0.0}] or a["partitions"][0]["quota"] == 1.0
    assert a["total_quota"] == 1.0
    assert [s["name"] for s in data(served, "/data/inventory/sites?site=T1_DE_C,T2_US_B")] == ["T1_DE_C", "T2_US_B"]
    assert data(served, "/data/inventory/sites?site=T2_US_A&partition=None")[0]["partitions"] == []


def test_nodes_without_node_lists_every_site(served: Served) -> None:
    # the original raised NameError (an unbound variable) without "node"
    nodes = data(served, "/data/inventory/nodes")["node"]
    assert [n["name"] for n in nodes] == ["T1_DE_C", "T2_US_A", "T2_US_B"]
    assert nodes[0] == {"kind": "mss", "se": "c.example.org", "technology": "", "name": "T1_DE_C",
                        "id": nodes[0]["id"]}
    assert [n["name"] for n in data(served, "/data/inventory/nodes?node=T2*")["node"]] == ["T2_US_A", "T2_US_B"]


def test_lfn2pfn(served: Served) -> None:
    lfn = "/store/A/Run1/RAW/b1/1.root"
    got = data(served, f"/data/inventory/lfn2pfn?protocol=xrootd&node=T2_US_A&lfn={lfn}")["mapping"]
    assert got == [{"protocol": "xrootd", "custodial": None, "destination": None, "space_token": None,
                    "node": "T2_US_A", "lfn": lfn, "pfn": "root://a.example.org//data/store/A/Run1/RAW/b1/1.root"}]
    assert data(served, "/data/inventory/lfn2pfn?protocol=xrootd&node=T2_US_A") == {"mapping": []}


def test_blockreplicas_shapes_and_filters(served: Served) -> None:
    blocks = data(served, "/data/inventory/blockreplicas?dataset=/A/Run1/RAW")["block"]
    assert [b["name"] for b in blocks] == ["/A/Run1/RAW#b1", "/A/Run1/RAW#b2"]
    b1 = blocks[0]
    assert {k: b1[k] for k in ("files", "bytes", "is_open")} == {"files": 2, "bytes": 3000, "is_open": "n"}
    assert [r["node"] for r in b1["replica"]] == ["T2_US_A", "T2_US_B"]
    assert b1["replica"][0] == {"bytes": 3000, "node": "T2_US_A", "files": 2, "node_id": b1["replica"][0]["node_id"],
                                "se": "a.example.org", "complete": "y", "time_create": 500, "time_update": 500,
                                "group": "AnalysisOps", "custodial": "n", "subscribed": "y"}
    incomplete = data(served, "/data/inventory/blockreplicas?dataset=/A/*&complete=n")["block"]
    assert [(b["name"], b["replica"][0]["bytes"]) for b in incomplete] == [("/A/Run1/RAW#b2", 1000)]
    by_group = data(served, "/data/inventory/blockreplicas?dataset=/A/Run1/RAW&group=DataOps")["block"]
    assert [[r["node"] for r in b["replica"]] for b in by_group] == [["T2_US_B"]]
    since = data(served, "/data/inventory/blockreplicas?dataset=*&update_since=650")["block"]
    assert [(b["name"], [r["node"] for r in b["replica"]]) for b in since] == [
        ("/A/Run1/RAW#b1", ["T2_US_B"]), ("/B/Run1/RAW#b1", ["T1_DE_C"])]
    # the original's create_since raised NameError
    assert data(served, "/data/inventory/blockreplicas?dataset=*&create_since=650")["block"] == since
    assert data(served, "/data/inventory/blockreplicas?block=/A/Run1/RAW%23b*&node=T2_US_B")["block"][0]["name"] \
        == "/A/Run1/RAW#b1"
    null = data(served, "/data/inventory/blockreplicas?node=T1_DE_C")["block"]
    assert [(b["name"], b["replica"][0]["group"], b["replica"][0]["subscribed"]) for b in null] == [
        ("/B/Run1/RAW#b1", None, "n")]
    assert data(served, "/data/inventory/blockreplicas") == {"block": []}


def test_data_lists_files_per_replica(served: Served) -> None:
    dbs = data(served, "/data/inventory/data?block=/A/Run1/RAW%23b2")["dbs"]
    block = dbs[0]["dataset"][0]["block"][0]
    assert dbs[0]["dataset"][0]["name"] == "/A/Run1/RAW" and block["name"] == "/A/Run1/RAW#b2"
    assert [(f["node"], f["lfn"], f["checksum"]) for f in block["file"]] == [
        ("T2_US_A", "/store/A/Run1/RAW/b2/1.root", "adler32:0a0b0c0d")]
    # the original answered with another block (the last one it looked at) for a missing one
    assert data(served, "/data/inventory/data?block=/A/Run1/RAW%23nope") == {"dbs": []}
    assert data(served, "/data/inventory/data?block=/nope%23b1") == {"dbs": []}


def test_files_and_datasetreplicas(served: Served) -> None:
    files = data(served, "/data/inventory/files?dataset=/A/Run1/RAW")["file"]
    assert [f["name"] for f in files] == [f"/store/A/Run1/RAW/{b}/{n}.root" for b in ("b1", "b2") for n in (1, 2)]
    at_a = data(served, "/data/inventory/files?dataset=/A/Run1/RAW&node=T2_US_A")["file"]
    assert len(at_a) == 3
    assert len(data(served, "/data/inventory/files?block=/A/Run1/RAW%23b1&limit=1")["file"]) == 1
    replicas = data(served, "/data/inventory/datasetreplicas?dataset=/A/Run1/RAW")["datasetreplica"]
    assert [(r["node"], r["complete"], r["size"], r["blocks"]) for r in replicas] == [
        ("T2_US_A", "n", 4000, 2), ("T2_US_B", "y", 3000, 1)]
    assert [r["dataset"] for r in data(served, "/data/inventory/datasetreplicas?node=T1_*")["datasetreplica"]] == [
        "/B/Run1/RAW"]


@pytest.mark.parametrize("path", [
    "/data/inventory/blockreplicas?block=noseparator",
    "/data/inventory/blockreplicas?dataset=x&complete=maybe",
    "/data/inventory/blockreplicas?dataset=x&update_since=yesterday",
    "/data/inventory/datasets?dataset=a&dataset=b",
    "/data/inventory/datasets?limit=-1",
    "/data/inventory/files",
    "/data/inventory/datasetreplicas",
    "/data/inventory/stats/size?list_by=nonsense",
    "/data/inventory/stats/size?site=(a%2B)%2B",
    "/data/inventory/stats/size?site=%5B",
])
def test_bad_parameters_are_400(served: Served, path: str) -> None:
    r = get(served.port, path)
    assert r.status == 400, r.body
    assert r.json["result"] == "BadRequest"


def test_missing_objects_are_404(served: Served) -> None:
    assert get(served.port, "/data/inventory/files?dataset=/nope").status == 404
    assert get(served.port, "/data/inventory/files?dataset=/A/Run1/RAW&node=T9_NOPE").status == 404


def test_stats(served: Served) -> None:
    size = data(served, "/data/inventory/stats/size?list_by=site&physical=y")
    assert size["statistic"] == "size"
    assert {c["key"]: round(c["size"] * 1e12) for c in size["content"]} == {
        "T2_US_A": 4000, "T2_US_B": 3000, "T1_DE_C": 3000}
    projected = data(served, "/data/inventory/stats/size?list_by=site")  # the original's default
    assert {c["key"]: round(c["size"] * 1e12) for c in projected["content"]}["T2_US_A"] == 6000
    rep = data(served, "/data/inventory/stats/replication?list_by=group")
    # the original filed every group's count under the last group's key
    assert {c["key"]: c["mean"] for c in rep["content"]} == {"AnalysisOps": 1.0, "DataOps": 1.0, None: 1.0}
    usage = data(served, "/data/inventory/stats/usage?list_by=group&site=T2_US_.*")
    assert [c["site"] for c in usage["content"]] == ["T2_US_A", "T2_US_B"]
    assert usage["keys"] == ["AnalysisOps", "DataOps"]
    only = data(served, "/data/inventory/stats/size?list_by=dataset&dataset_status=valid&site=T2_US_A")
    # as in the original, a dataset that passes its own constraints is listed even with nothing there
    assert [(c["key"], round(c["size"] * 1e12)) for c in only["content"]] == [("/A/Run1/RAW", 6000),
                                                                             ("/B/Run1/RAW", 0)]


def test_server_status(served: Served) -> None:
    status = data(served, "/data/server/status")
    assert status["state"] == "serving" and status["inventory_version"] == 7
    assert status["counts"] == {"sites": 3, "groups": 2, "partitions": 1, "datasets": 3}  # no walk of the image
    full = data(served, "/data/server/status?full=y")["counts"]
    assert full["datasets"] == 3 and full["blockreplicas"] == 4 and full["files"] == 12


def test_large_listing_streams(served: Served) -> None:
    from dynamo.dataformat import Dataset

    inventory = served.state["inventory"]
    for i in range(3000):
        inventory.update(Dataset(f"/Big/N{i:05d}/RAW", "valid"))
    r = get(served.port, "/data/inventory/datasets?dataset=/Big/*")
    assert r.status == 200 and "content-length" not in r.headers  # written as produced
    assert len(r.json["data"]) == 3000
    assert r.json["data"][-1]["name"] == "/Big/N02999/RAW"
