"""A real headless browser (Debian's chromium through chromedriver, driven by Selenium) opens the
inventory pages and the statistics page of a running dynamod; what it rendered is asserted and a
screenshot of each page is saved in test-artifacts/screenshots/.

.ci/run installs chromium and chromium-driver; without them this test is skipped loudly, or fails
under CI=true. It is slow on a loaded machine: one browser session for all the pages."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import EXAMPLES, Server
from tests.e2e.test_web import inject, web_server

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"


def _browser() -> Any:
    driver_path = shutil.which("chromedriver")
    browser_path = shutil.which("chromium")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        driver_path = None
    if driver_path is None or browser_path is None:
        reason = "chromium, chromium-driver (apt) and selenium (pip) are needed for the browser test"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(f"!!! SKIPPED, NOT TESTED: {reason}")
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=options)


@pytest.fixture
def site(server_home: Path) -> Iterator[Server]:
    s = web_server(server_home)
    for name in ("mydynamo-storage-sites.json", "mydynamo-initial-data.json"):
        inject(s, (EXAMPLES / name).read_text())
    inject(s, json.dumps({"group": [{"name": "AnalysisOps"}], "dataset": [
        {"name": "/Browser/Test/RAW", "status": "valid", "blocks": [
            {"name": "b1", "files": [{"name": "/store/browser/f1.root", "size": 2 * 10**12}]}]}],
        "datasetreplica": [{"dataset": "/Browser/Test/RAW", "site": "T3_US_XYZ", "group": "AnalysisOps",
                            "blockreplicas": [{"block": "b1"}]}]}))
    yield s
    assert s.stop() == 0, s.output.read_text()


@pytest.mark.slow
def test_pages_render_in_a_browser(site: Server) -> None:
    from selenium.webdriver.common.by import By

    base = f"http://127.0.0.1:{site.web_port}"  # type: ignore[attr-defined]
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser = _browser()
    try:
        def visit(path: str, shot: str) -> None:
            browser.get(base + path)
            browser.save_screenshot(str(SHOTS / f"{shot}.png"))

        visit("/web/inventory/sites", "sites")
        assert browser.title == "Sites"
        rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == ["T2_US_XYZ", "T3_US_XYZ"]
        assert browser.find_element(By.ID, "count").text == "2 sites."

        rows[1].find_element(By.TAG_NAME, "a").click()  # a link followed, as a user would
        browser.save_screenshot(str(SHOTS / "site.png"))
        assert browser.find_element(By.TAG_NAME, "h1").text == "Site T3_US_XYZ"
        assert "/Browser/Test/RAW" in browser.find_element(By.TAG_NAME, "main").text

        visit("/web/inventory/datasets?dataset=*", "datasets")
        names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "tbody tr td:first-child a")]
        assert names == ["/Browser/Test/RAW", "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"]

        visit("/web/inventory/dataset?name=/Browser/Test/RAW", "dataset")
        assert "T3_US_XYZ" in browser.find_element(By.TAG_NAME, "main").text

        visit("/web/inventory/stats", "stats")
        assert browser.title == "Inventory statistics"
        charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) == 2
        bars = charts[0].find_elements(By.CSS_SELECTOR, "rect.bar")
        assert len(bars) == 2  # T2_US_XYZ (no group), T3_US_XYZ AnalysisOps
        # drawn to scale: 165 kB next to 2 TB is no width at all; the 2 TB bar spans the plot
        by_width = sorted(bars, key=lambda b: float(b.get_attribute("width") or 0))
        assert float(by_width[0].get_attribute("width") or 0) < 1 and by_width[1].size["width"] > 400
        assert browser.execute_script("return dynamoFormatBytes(2.5e12)") == "2.5 TB"  # the common script ran
    finally:
        browser.quit()
    for name in ("sites", "site", "datasets", "dataset", "stats"):
        assert (SHOTS / f"{name}.png").stat().st_size > 1000
