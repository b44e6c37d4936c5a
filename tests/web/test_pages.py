"""/web/inventory/... pages over real HTTP: what they show, escaping, paging, the SVG plots."""

from __future__ import annotations

import re
from xml.etree import ElementTree

from dynamo.dataformat import Dataset
from tests.web.conftest import Served
from tests.web.helpers import get


def page(served: Served, path: str) -> str:
    r = get(served.port, path)
    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-dynamo-inventory-version"] == "7"
    text = r.text
    assert text.startswith("<!DOCTYPE html>") and "Inventory version 7." in text
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    return text


def test_sites_page(served: Served) -> None:
    text = page(served, "/web/inventory/sites")
    assert '<p id="count">3 sites.</p>' in text
    assert '<a href="/web/inventory/site?name=T2_US_A">T2_US_A</a>' in text


def test_site_page_lists_replicas_and_quotas(served: Served) -> None:
    text = page(served, "/web/inventory/site?name=T2_US_A")
    assert "<h1>Site T2_US_A</h1>" in text
    assert "/web/inventory/dataset?name=%2FA%2FRun1%2FRAW" in text
    assert "<td>Physics</td>" in text
    assert get(served.port, "/web/inventory/site?name=T9_NONE").status == 404
    assert get(served.port, "/web/inventory/site").status == 400


def test_datasets_page_pages_and_escapes(served: Served) -> None:
    inventory = served.state["inventory"]
    for i in range(150):
        inventory.update(Dataset(f"/Many/N{i:03d}/RAW", "valid"))
    text = page(served, "/web/inventory/datasets?dataset=/Many/*")
    assert "1&ndash;100 of 150" in text and "N099" in text and "N100" not in text
    assert "offset=100" in text
    second = page(served, "/web/inventory/datasets?dataset=/Many/*&offset=100")
    assert "101&ndash;150 of 150" in second and "N149" in second
    hostile = page(served, "/web/inventory/datasets?dataset=%3Cscript%3Ealert(1)%3C/script%3E")
    assert "<script>alert(1)" not in hostile and "&lt;script&gt;alert(1)" in hostile


def test_dataset_page(served: Served) -> None:
    text = page(served, "/web/inventory/dataset?name=/A/Run1/RAW")
    assert "<h1>Dataset /A/Run1/RAW</h1>" in text
    assert "<td>2 / 2</td>" in text and "<td>1 / 2</td>" in text
    assert get(served.port, "/web/inventory/dataset?name=/none").status == 404


def test_stats_page_draws_svg(served: Served) -> None:
    text = page(served, "/web/inventory/stats")
    svgs = re.findall(r"<svg .*?</svg>", text, re.S)
    assert len(svgs) == 2
    for svg in svgs:
        ElementTree.fromstring(svg)  # well-formed
    by_site = svgs[0]
    assert "Usage per site by group name (TB)" in by_site
    assert by_site.count('class="bar"') == 3  # A: AnalysisOps; B: DataOps; C: (no group)
    assert "T2_US_A / AnalysisOps" in by_site and "(no group)" in by_site
    by_type = page(served, "/web/inventory/stats?list_by=data_type&physical=n")
    assert "Usage per site by dataset type (TB)" in by_type and "production" in by_type
    assert get(served.port, "/web/inventory/stats?list_by=bogus").status == 400
