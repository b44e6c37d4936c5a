"""Store benchmark: load time, RSS after load, change-set commit time, and the driver floor.

    python -m bench.store_bench                      # W10 on SQLite and MariaDB (minutes, ~10 GB RAM)
    python -m bench.store_bench --scale 0.01         # 1 % of W10
    python -m bench.store_bench --stores sqlite --changes 10000
    python -m bench.store_bench --keep /var/tmp/bench   # prepare once, measure again later
    python -m bench.store_bench --stores sqlite --scale 5 --keep /var/tmp/w50 --no-commit \
        --replicate sqlite:////var/tmp/bench/bench-scale1-seed1.db   # W50 as 5 copies of a kept W10

For each store: generate the workload (seeded), import it into an empty
store (or, with ``--replicate URL``, write ``--copies`` copies of the store at URL into it:
``bench.replicate``, minutes instead of the generator's half hour at W50), then in fresh processes
(so RSS is the image alone):

* ``load``: ``store.load(freeze=True)`` as dynamod loads, wall and CPU time (every collection
  inside), and RSS after load;
* ``floor``: a raw driver read of the same rows with the load's connection settings (iterate,
  build nothing); ``load / floor`` is how much the object building costs over the wire
  (``--repeat N``: N of each, alternating, medians);
* ``commit``: a mixed change set of ``--changes`` records (bench.workload.MIX)
  applied to the loaded image and committed: validate + apply, then the
  database transaction, reported separately and together.

Results are printed, with issue 10's goals beside them (``bench.goals``), and written to
``bench/results/store-<time>.json``. Workers leave with ``os._exit`` once their result is out
(tearing down a W10 image took 9 s) and close their stores first.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.goals import STORE_GOALS, judge, render
from bench.workload import W10, change_records, generate, scaled

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------
# workers (run in their own process)
# ---------------------------------------------------------------------------

def worker_load(url: str) -> dict[str, Any]:
    """The load as dynamod makes it: frozen as built (``load(freeze=True)``), then the collection
    its first fork makes; every collection is inside the time."""
    from dynamo.store import open_store
    base = rss_mb()
    store: Any = open_store(url, create=False)
    t0, c0, r0 = time.perf_counter(), time.process_time(), _children_cpu()
    gc.collect()
    store.load(freeze=True)
    gc.collect()  # what dynamod's first fork does: nothing to walk when the image is frozen
    seconds, cpu, reader = time.perf_counter() - t0, time.process_time() - c0, _children_cpu() - r0
    # the CPU of the load's second reader (a process of its own, store.filesreader) is counted in
    result = {"load_s": seconds, "load_cpu_s": cpu + reader, "load_reader_cpu_s": reader,
              "load_readers": getattr(store, "load_readers", 1), "rss_mb": rss_mb(), "rss_before_mb": base,
              "counts": dict(store.loaded_counts)}
    store.close()
    return result


def worker_floor(url: str) -> dict[str, Any]:
    """The raw driver read of the load's rows, with the load's connection settings and the collector
    off as in the load: iterate, build nothing."""
    from dynamo.store import open_store
    store: Any = open_store(url, create=False)
    gc.disable()
    t0, c0 = time.perf_counter(), time.process_time()
    rows = 0
    with store._loading(), store.transaction(read_only=True):
        for _, query in store.LOAD_QUERIES:
            for _ in store._stream(query):
                rows += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    gc.enable()
    store.close()
    return {"floor_s": seconds, "floor_cpu_s": cpu, "rows": rows}


def worker_commit(url: str, changes: int, seed: int) -> dict[str, Any]:
    from dynamo.core.changeset import apply_change_set
    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store
    store: Any = open_store(url, create=False)
    inv = store.load(freeze=True)  # as the server loads
    records = change_records(inv, changes, seed)
    commit_time = 0.0
    original = store.commit

    def timed_commit(*args: Any) -> int:
        nonlocal commit_time
        t = time.perf_counter()
        try:
            return int(original(*args))
        finally:
            commit_time = time.perf_counter() - t

    store.commit = timed_commit
    t0 = time.perf_counter()
    apply_change_set(inv, store, records, ChangeMeta(user="bench", title="store_bench"))
    total = time.perf_counter() - t0
    store.close()  # SQLite: checkpoints the commit's WAL into the database (none is left behind)
    return {"records": len(records), "total_s": total, "db_commit_s": commit_time,
            "apply_s": total - commit_time}


def load_and_floor(url: str, repeat: int) -> dict[str, Any]:
    """Loads and raw floors, alternating (``repeat`` of each, each in a fresh process): medians, and
    their ratio, measured in one run."""
    loads, floors = [], []
    for _ in range(repeat):
        floors.append(run_worker(["floor", url]))
        loads.append(run_worker(["load", url]))
    r = dict(loads[0])
    r.update(floors[0])
    r["load_readers"] = max(run.get("load_readers", 1) for run in loads)
    for key, runs in (("load_s", loads), ("load_cpu_s", loads), ("load_reader_cpu_s", loads), ("rss_mb", loads),
                      ("floor_s", floors),
                      ("floor_cpu_s", floors)):
        r[key] = statistics.median(run[key] for run in runs)
    if repeat > 1:
        r["load_runs_s"] = [run["load_s"] for run in loads]
        r["floor_runs_s"] = [run["floor_s"] for run in floors]
    r["load_over_floor"] = r["load_s"] / r["floor_s"] if r["floor_s"] else None
    r["load_over_floor_cpu"] = r["load_cpu_s"] / r["floor_cpu_s"] if r["floor_cpu_s"] else None
    return r


def run_worker(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.store_bench", "--worker", *args], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------

def prepare(url: str, scale: float, seed: int, replicate_from: str | None = None, copies: int = 1) -> dict[str, Any]:
    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store
    if replicate_from is not None:
        from bench.replicate import replicate
        done = replicate(replicate_from, url, copies, progress=lambda line: print(f"   {line}", flush=True))
        return {"replicated_from": replicate_from, "copies": copies, "import_s": done["replicate_s"]}
    t0 = time.perf_counter()
    image = generate(W10 if scale == 1 else scaled(scale), seed)
    generated = time.perf_counter() - t0
    store = open_store(url)
    t0 = time.perf_counter()
    store.import_image(image, ChangeMeta(title="store_bench import"))
    imported = time.perf_counter() - t0
    store.close()
    return {"generate_s": generated, "import_s": imported}


def buffer_pool_mb(url: str) -> float:
    from dynamo.store import open_store
    store: Any = open_store(url, create=False)
    value = store.query_all("SELECT @@innodb_buffer_pool_size")[0][0]
    store.close()
    return int(value) / 2**20


def save_results(results: dict[str, Any], name: str, path: str | None) -> None:
    """Write a benchmark's results to ``path``, else to bench/results/<name>-<time>.json."""
    RESULTS.mkdir(exist_ok=True)
    target = Path(path) if path else RESULTS / f"{name}-{int(results['time'])}.json"
    target.write_text(json.dumps(results, indent=1))
    print(f"results: {target}")


def fresh_mysql_url(base: str, database: str = "dynamo_bench") -> str:
    import pymysql

    from dynamo.store.mysql import MySQLStore, parse_mysql_url
    url = f"{base.rstrip('/')}/{database}"
    params = parse_mysql_url(url)
    params.pop("database")
    conn = pymysql.connect(**params)
    conn.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
    conn.close()
    MySQLStore.create_database(url)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of W10 (default 1 = W10)")
    parser.add_argument("--changes", type=int, default=100_000, help="records in the change set")
    parser.add_argument("--stores", default="sqlite,mysql")
    parser.add_argument("--mysql", default=os.environ.get("DYNAMO_TEST_MYSQL", "mysql://root@127.0.0.1:3306"),
                        help="MariaDB server URL")
    parser.add_argument("--mysql-db", default="dynamo_bench", help="database to (re)create there")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help="loads and floors to take the median of")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the prepared stores (SQLite file in DIR; MariaDB database as named) and "
                             "reuse them when DIR says one of this scale and seed was prepared")
    parser.add_argument("--no-commit", action="store_true",
                        help="measure load and floor only (the change set would change a kept store)")
    parser.add_argument("--replicate", metavar="URL",
                        help="prepare by copying the store at URL --copies times (bench.replicate) instead of "
                             "generating; it should hold this seed's workload at scale / copies")
    parser.add_argument("--copies", type=int, help="with --replicate: how many (default: the scale, rounded)")
    parser.add_argument("--prepare-only", action="store_true", help="prepare the stores (--keep) and stop")
    args = parser.parse_args()

    if args.worker:
        kind, url, *rest = args.worker
        result = {"load": worker_load, "floor": worker_floor}[kind](url) if kind != "commit" else \
            worker_commit(url, int(rest[0]), int(rest[1]))
        print(json.dumps(result), flush=True)
        os._exit(0)  # the image's teardown would take seconds (9 s at W10), and nothing needs it

    copies = args.copies or max(1, round(args.scale))
    if args.prepare_only and not args.keep:
        parser.error("--prepare-only needs --keep (else the stores are thrown away)")
    results: dict[str, Any] = {"scale": args.scale, "changes": args.changes, "time": time.time(),
                               "loadavg_start": os.getloadavg(), "stores": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.stores.split(","):
            where = Path(args.keep) if args.keep else Path(tmp)
            where.mkdir(parents=True, exist_ok=True)
            tag = f"scale{args.scale:g}-seed{args.seed}"
            marker = where / (f"sqlite-{tag}.prepared" if kind == "sqlite" else f"mysql-{args.mysql_db}-{tag}.prepared")
            if args.keep and marker.exists():
                url = f"sqlite:///{where}/bench-{tag}.db" if kind == "sqlite" else \
                    f"{args.mysql.rstrip('/')}/{args.mysql_db}"
                print(f"== {kind}: reusing the store prepared at scale {args.scale} ({marker})", flush=True)
                r = json.loads(marker.read_text())
            else:
                marker.unlink(missing_ok=True)
                url = f"sqlite:///{where}/bench-{tag}.db" if kind == "sqlite" else \
                    fresh_mysql_url(args.mysql, args.mysql_db)
                if kind == "sqlite":
                    Path(url[len("sqlite://"):]).unlink(missing_ok=True)
                how = f" as {copies} copies of {args.replicate}" if args.replicate else ""
                print(f"== {kind}: preparing scale {args.scale}{how} ...", flush=True)
                r = prepare(url, args.scale, args.seed, args.replicate, copies)
                if args.keep:
                    marker.write_text(json.dumps(r))
            if args.prepare_only:
                print(f"   prepared in {r['import_s']:.1f} s: {url}", flush=True)
                continue
            if kind == "mysql":
                r["innodb_buffer_pool_mb"] = buffer_pool_mb(url)
            r.update(load_and_floor(url, args.repeat))
            if not args.no_commit:
                if args.keep:
                    marker.unlink()  # the change set changes the store: the next run prepares again
                r.update(run_worker(["commit", url, str(args.changes), str(args.seed + 1)]))
            r["goals"] = judge(STORE_GOALS, kind, r, args.scale)
            results["stores"][kind] = r
            print(f"   {r['counts']}" + (f", InnoDB buffer pool {r['innodb_buffer_pool_mb']:.0f} MiB"
                                            if kind == "mysql" else ""))
            readers = (f"; the load read with {r['load_readers']} processes, its second reader's CPU "
                       f"{r['load_reader_cpu_s']:.2f} s counted in" if r["load_readers"] > 1 else "")
            print(f"   load {r['load_s']:.2f} s (floor {r['floor_s']:.2f} s, one connection, ratio "
                  f"{r['load_over_floor']:.2f}; CPU {r['load_cpu_s']:.2f} s / {r['floor_cpu_s']:.2f} s = "
                  f"{r['load_over_floor_cpu']:.2f}{readers}), "
                  f"RSS {r['rss_mb']:.0f} MB; " + ("" if args.no_commit else
                  f"change set of {r['records']}: {r['total_s']:.2f} s "
                  f"(apply {r['apply_s']:.2f} s + database {r['db_commit_s']:.2f} s); ") +
                  f"import {r['import_s']:.1f} s", flush=True)
            print(render(r["goals"]), flush=True)
    if args.prepare_only:
        return
    results["loadavg_end"] = os.getloadavg()
    print(f"load average {results['loadavg_start'][0]:.2f} at the start, {results['loadavg_end'][0]:.2f} at the end")
    save_results(results, "store", args.json)


if __name__ == "__main__":
    main()
