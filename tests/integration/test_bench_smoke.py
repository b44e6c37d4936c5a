"""Every benchmark runs once at a tiny scale, so that the scripts cannot rot.

The full-scale runs are made by hand (see docs/performance.md); here only the
shape of the output is checked, never a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MYSQL_SERVER, drop_mysql_database

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str, kind: str, tmp_path: Path, request: pytest.FixtureRequest, *extra: str) -> Any:
    """One tiny run of ``bench.<module>`` on one store; its results for that store."""
    # `python -m bench.x` would put the checkout first on sys.path, and with it its dynamo/; the
    # benchmark must run the installed package, so the checkout goes last (for bench/ alone).
    runner = (f"import runpy, sys; sys.path.append({str(ROOT)!r}); "
              f"runpy.run_module('bench.{module}', run_name='__main__', alter_sys=True)")
    args = [sys.executable, "-P", "-c", runner, "--scale", "0.0002", "--changes", "300", "--stores", kind,
            "--json", str(tmp_path / "out.json"), *extra]
    if kind == "mysql":
        database = f"dynamo_{module}_smoke_{os.getpid()}"
        args += ["--mysql", request.getfixturevalue("mysql_server"), "--mysql-db", database]
        request.addfinalizer(lambda: drop_mysql_database(f"{MYSQL_SERVER}/{database}"))
    subprocess.run(args, check=True, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return json.loads((tmp_path / "out.json").read_text())["stores"][kind]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def test_store_bench_runs(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    result = run_bench("store_bench", kind, tmp_path, request)
    assert result["counts"]["datasets"] == 20 and result["counts"]["files"] == 2000
    assert result["records"] >= 300
    for key in ("load_s", "load_cpu_s", "floor_s", "rss_mb", "total_s", "apply_s", "db_commit_s", "import_s",
                "load_over_floor"):
        assert result[key] > 0, key
    assert {g["key"] for g in result["goals"]} >= {"load_over_floor", "rss_mb"}


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def test_server_bench_runs(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    result = run_bench("server_bench", kind, tmp_path, request, "--runs", "2")
    assert result["records"] == 300
    for key in ("ready_s", "load_s", "floor_s", "rss_mb", "first_line_ms_median", "child_private_mb",
                "walk_dirty_mb", "write_exit_to_done_s", "quiet_call_ms", "busy_write_p99_ms", "busy_inject_p99_ms",
                "call_cpu_total_ms"):
        assert result[key] > 0, key
    # the walk read the whole imported image: 20 datasets of 10 blocks of 10 files, 5 replicas each
    assert (result["walk"]["files"], result["walk"]["block_replicas"]) == (2000, 1000)
    assert result["busy_write_calls"] >= 1 and result["busy_inject_calls"] >= 1
    # a call's CPU by process: at least the client's own start, and the spare it ran in
    cpu = result["call_cpu_ms"]
    assert cpu["client"] > 0 and cpu["total"] >= cpu["client"] + cpu["children"]
    assert {g["key"] for g in result["goals"]} >= {"load_s", "walk_dirty_mb", "busy_inject_p99_ms"}


def test_store_bench_keeps_and_reuses_its_store(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    keep = tmp_path / "keep"
    first = run_bench("store_bench", "sqlite", tmp_path, request, "--keep", str(keep), "--no-commit")
    assert "records" not in first and first["load_over_floor"] > 0
    database = next(keep.glob("bench-*.db"))
    made = database.stat().st_mtime_ns
    again = run_bench("store_bench", "sqlite", tmp_path, request, "--keep", str(keep), "--no-commit")
    assert again["counts"] == first["counts"] and again["import_s"] == first["import_s"]
    assert database.stat().st_mtime_ns == made  # read, not made again
    # a change set changes the store: the next run prepares a new one
    run_bench("store_bench", "sqlite", tmp_path, request, "--keep", str(keep))
    assert not list(keep.glob("*.prepared"))


def test_server_bench_measures_the_start_alone(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    result = run_bench("server_bench", "sqlite", tmp_path, request, "--start-only", "--starts", "2")
    assert len(result["start_runs_s"]) == 2 and result["load_s"] > 0 and result["floor_s"] > 0
    assert result["rss_mb"] > 0 and "first_line_ms_median" not in result
    measured = {g["key"] for g in result["goals"] if g["measured"] is not None}
    assert measured == {"load_s", "load_over_floor", "rss_mb"}


def test_web_bench_runs(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    result = run_bench("web_bench", "sqlite", tmp_path, request, "--seconds", "1", "--connections", "4")
    assert result["records"] == 300 and result["trivial_statuses"].get("200", 0) > 0
    assert set(result["trivial_statuses"]) == {"200"}, result["trivial_statuses"]
    for key in ("ready_s", "trivial_rps", "trivial_p99_ms", "busy_rps", "dataset_blockreplicas_ms",
                "site_blockreplicas_s", "site_worker_private_mb"):
        assert result[key] > 0, key
    assert result["dataset_status"] == 200 and result["site_blocks"] > 0


def test_first_line_bench_runs(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    result = run_bench("first_line_bench", "sqlite", tmp_path, request, "--runs", "2", "--pause", "0.05")
    for key in ("load_s", "rss_mb", "first_line_ms_median", "first_line_ms_max", "client_cpu_ms", "interpreter_ms",
                "interpreter_cpu_ms", "started_ms", "server_ms"):
        assert result[key] > 0, key
    assert len(result["first_line_ms"]) == 2
    assert [g["key"] for g in result["goals"]] == ["first_line_ms_median"]


def test_store_bench_prepares_by_replicating_a_kept_store(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """W50 is measured on 5 copies of a kept W10 (bench.replicate): here 2 copies of a tiny store."""
    from bench.workload import generate, scaled
    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store
    source = f"sqlite:///{tmp_path}/source.db"
    store = open_store(source)
    store.import_image(generate(scaled(0.0002), 1), ChangeMeta(title="import"))
    store.close()
    keep = tmp_path / "keep"
    result = run_bench("store_bench", "sqlite", tmp_path, request, "--scale", "0.0004", "--replicate", source,
                       "--copies", "2", "--keep", str(keep), "--no-commit")
    assert result["counts"]["datasets"] == 40 and result["counts"]["files"] == 4000
    assert result["copies"] == 2 and result["import_s"] > 0 and result["load_s"] > 0
    copies = keep / "bench-scale0.0004-seed1.db"
    assert (keep / "sqlite-scale0.0004-seed1.prepared").exists() and copies.exists()
    # dynamod starts on it
    started = run_bench("server_bench", "sqlite", tmp_path, request, "--start-only", "--store-url", f"sqlite:///{copies}")
    assert started["load_s"] > 0 and started["rss_mb"] > 0
