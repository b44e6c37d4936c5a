"""Web benchmark: a real dynamod on a W10 store serving /data, the load generator beside it.

    python -m bench.web_bench                          # W10 on SQLite
    python -m bench.web_bench --scale 0.01 --seconds 5

Reports, per store:

* ``trivial_rps`` / ``trivial_p50_ms`` / ``trivial_p99_ms``: a trivial ``/data`` call
  (``/data/inventory/groups?group=none``) from ``--connections`` keep-alive connections spread
  over ``--procs`` client processes for ``--seconds``;
* the same while write change sets of ``--changes`` records commit one after another
  (``busy_*``; ``busy_503`` counts the answers "this worker's image was replaced, retry");
* ``dataset_blockreplicas_ms``: /data/inventory/blockreplicas of a 10,000-file dataset (10 blocks,
  replicas at two sites, injected first);
* ``site_blockreplicas_s`` / ``site_blockreplicas_mb``: every block replica at the busiest site,
  streamed; ``site_worker_private_mb``: the largest private memory of a worker before it, and
  ``site_worker_grew_mb`` how much it grew in the worker that served it.

``--million-site`` measures instead one listing at a site of a million block replicas (a
synthetic store: ``--site-datasets`` datasets of 10 blocks of one file, every one replicated at
one site; nothing else): ``million_*``: the replicas listed, bytes, seconds, time to the first
byte, and the serving worker's private memory before, at most during (sampled every 50 ms) and
after, with its peak resident size; beside them the response's size, which a buffered answer
would have to hold (and several times more as Python objects). The client counts the stream
as it comes and keeps none of it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.server_bench import START_TIMEOUT, Bench, command
from bench.store_bench import fresh_mysql_url, save_results
from bench.workload import W10, change_records, generate, scaled

TRIVIAL = "/data/inventory/groups?group=none"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(port: int, path: str, threads: int, seconds: float, out: Any) -> None:
    """One load-generating process: ``threads`` keep-alive connections for ``seconds``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop() -> None:
        mine: list[float] = []
        codes: dict[int, int] = {}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
                status = 0
            mine.append(time.perf_counter() - started)
            codes[status] = codes.get(status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for k, v in codes.items():
                statuses[k] = statuses.get(k, 0) + v

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((latencies, statuses))


def load(port: int, path: str, connections: int, procs: int, seconds: float) -> dict[str, Any]:
    queue: Any = multiprocessing.get_context("fork").Queue()
    per = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    clients = [multiprocessing.get_context("fork").Process(target=_client, args=(port, path, n, seconds, queue))
               for n in per if n]
    for c in clients:
        c.start()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for _ in clients:
        got, codes = queue.get()
        latencies.extend(got)
        for k, v in codes.items():
            statuses[k] = statuses.get(k, 0) + v
    for c in clients:
        c.join()
    latencies.sort()
    ok = statuses.get(200, 0)
    return {"rps": ok / seconds, "p50_ms": 1000 * statistics.median(latencies) if latencies else 0.,
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.,
            "statuses": {str(k): v for k, v in statuses.items()}}


class WebBench(Bench):
    def __init__(self, home: Path, url: str, port: int, workers: int):
        super().__init__(home, url)
        self.port = port
        with open(self.config, "a") as f:
            f.write(f'[web]\naddress = "127.0.0.1:{port}"\nworkers = {workers}\nmax_requests = 0\n')

    def wait_web(self) -> None:
        deadline = time.perf_counter() + START_TIMEOUT
        while time.perf_counter() < deadline:
            try:
                self.get("/data/server/status")
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the web server did not answer")

    def workers(self) -> list[int]:
        assert self.process is not None
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and f"\nPPid:\t{self.process.pid}\n" in (entry / "status").read_text() \
                        and b"web worker" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def get(self, path: str) -> tuple[int, bytes, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        conn.close()
        return response.status, body, elapsed


def _writer(bench: WebBench, records_path: Path, stop: threading.Event, done: list[int]) -> None:
    while not stop.is_set():
        bench.write_app(records_path)
        done[0] += 1


def _private_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty"))) / 1024
    except OSError:
        return 0.


BIG = "/Bench/TenThousandFiles/RAW"


def _busiest(image: Any) -> str:
    return str(max(image.sites.values(), key=lambda s: s.num_dataset_replicas()).name)


def _big_dataset(sites: list[str]) -> str:
    """An inject document: a dataset of 10 blocks of 1,000 files, replicated at ``sites``."""
    blocks = [{"name": f"b{b}", "files": [{"name": f"/store/bench/big/b{b}/f{i:04d}.root", "size": 2_000_000_000}
                                          for i in range(1000)]} for b in range(10)]
    return json.dumps({"dataset": [{"name": BIG, "status": "valid", "blocks": blocks}],
                       "datasetreplica": [{"dataset": BIG, "site": site,
                                           "blockreplicas": [{"block": f"b{b}"} for b in range(10)]}
                                          for site in sites]})


def measure(url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    from urllib.parse import quote

    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store
    image = generate(W10 if args.scale == 1 else scaled(args.scale), args.seed)
    site = _busiest(image)
    big = _big_dataset(sorted(image.sites)[:2])
    store = open_store(url)
    store.import_image(image, ChangeMeta(title="web_bench import"))
    store.close()
    records_path = home / "changes.json"
    records_path.write_text(json.dumps(change_records(image, args.changes, args.seed + 1)))
    records_path.chmod(0o644)
    del image
    bench = WebBench(home, url, _free_port(), args.workers)
    result: dict[str, Any] = {"ready_s": bench.start()}
    try:
        bench.wait_web()
        subprocess.run([command("dynamo-inject"), "-"], input=big, env=bench.env, check=True, capture_output=True,
                       text=True)
        quiet = load(bench.port, TRIVIAL, args.connections, args.procs, args.seconds)
        result.update({f"trivial_{k}": v for k, v in quiet.items()})
        stop, writes = threading.Event(), [0]
        writer = threading.Thread(target=_writer, args=(bench, records_path, stop, writes))
        writer.start()
        try:
            busy = load(bench.port, TRIVIAL, args.connections, args.procs, args.seconds)
        finally:
            stop.set()
            writer.join()
        result.update({f"busy_{k}": v for k, v in busy.items()})
        result["busy_writes"] = writes[0]
        result["busy_503"] = busy["statuses"].get("503", 0)
        times = []
        for _ in range(5):
            status, _, elapsed = bench.get(f"/data/inventory/blockreplicas?dataset={quote(BIG, safe='')}")
            times.append(elapsed)
        result.update(dataset_files=10_000, dataset_blockreplicas_ms=1000 * statistics.median(times),
                      dataset_status=status)
        before = {pid: _private_mb(pid) for pid in bench.workers()}
        status, body, elapsed = bench.get(f"/data/inventory/blockreplicas?node={quote(site, safe='')}")
        grown = max((_private_mb(pid) - mb for pid, mb in before.items()), default=0.)
        result.update(site_blockreplicas_s=elapsed, site_blockreplicas_mb=len(body) / 1e6,
                      site_blocks=len(json.loads(body)["data"]["block"]), site_worker_private_mb=max(before.values()),
                      site_worker_grew_mb=grown)
        result["records"] = args.changes
    finally:
        bench.stop()
    return result


def _status_kb(pid: int, key: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith(key + ":")), 0) / 1024
    except OSError:
        return 0.


MARK = b'"replica": ['


def measure_million(url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every block replica at a site of ~1M, streamed: time, bytes and the serving worker's memory."""
    from dataclasses import replace

    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store
    started = time.perf_counter()
    image = generate(replace(W10, sites=1, groups=20, datasets=args.site_datasets, blocks_per_dataset=10,
                             files_per_block=1, replicas_per_dataset=1), args.seed)
    (site,) = image.sites
    result: dict[str, Any] = {"million_site_block_replicas": sum(
        len(r.block_replicas) for r in image.sites[site].dataset_replicas())}
    store = open_store(url)
    store.import_image(image, ChangeMeta(title="web_bench million-site import"))
    store.close()
    del image
    result["million_build_s"] = time.perf_counter() - started
    bench = WebBench(home, url, _free_port(), args.workers)
    result["million_ready_s"] = bench.start()
    try:
        bench.wait_web()
        assert bench.process is not None
        result["million_dynamod_rss_mb"] = _status_kb(bench.process.pid, "VmRSS")
        before = {pid: _private_mb(pid) for pid in bench.workers()}
        peak: dict[int, float] = dict(before)
        stop = threading.Event()

        def sample() -> None:  # every worker, those that come later too (first seen: its "before")
            while not stop.wait(0.05):
                for pid in bench.workers():
                    mb = _private_mb(pid)
                    before.setdefault(pid, mb)
                    peak[pid] = max(peak.get(pid, 0.), mb)

        sampler = threading.Thread(target=sample)
        sampler.start()
        conn = http.client.HTTPConnection("127.0.0.1", bench.port, timeout=600)
        t0 = time.perf_counter()
        conn.request("GET", f"/data/inventory/blockreplicas?node={site}")
        response = conn.getresponse()
        first = None
        size = lines = 0
        tail = b""
        while True:
            chunk = response.read1(1 << 20)
            if not chunk:
                break
            if first is None:
                first = time.perf_counter() - t0
            size += len(chunk)
            lines += (tail + chunk).count(MARK)
            tail = chunk[-(len(MARK) - 1):]  # shorter than the mark: nothing in it is counted twice
        elapsed = time.perf_counter() - t0
        conn.close()
        stop.set()
        sampler.join()
        served = max(before, key=lambda pid: peak[pid] - before[pid])
        result["million_workers_seen"] = len(before)
        result.update(million_status=response.status, million_listed=lines, million_bytes_mb=size / 1e6,
                      million_s=elapsed, million_first_byte_ms=1000 * (first or 0.),
                      million_worker_private_before_mb=before[served], million_worker_private_peak_mb=peak[served],
                      million_worker_private_after_mb=_private_mb(served),
                      million_worker_hwm_mb=_status_kb(served, "VmHWM"),
                      million_dynamod_rss_after_mb=_status_kb(bench.process.pid, "VmRSS"))
    finally:
        bench.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--changes", type=int, default=1000, help="records per write change set")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--workers", type=int, default=2, help="web workers")
    parser.add_argument("--stores", default="sqlite")
    parser.add_argument("--mysql", default=os.environ.get("DYNAMO_TEST_MYSQL", "mysql://root@127.0.0.1:3306"))
    parser.add_argument("--mysql-db", default="dynamo_web_bench")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--million-site", action="store_true",
                        help="only the listing of a site of a million block replicas (a synthetic store)")
    parser.add_argument("--site-datasets", type=int, default=100_000,
                        help="datasets (of 10 blocks) at that site (--million-site)")
    args = parser.parse_args()
    results: dict[str, Any] = {"scale": args.scale, "time": time.time(), "connections": args.connections,
                               "stores": {}}
    for kind in args.stores.split(","):
        home = Path(tempfile.mkdtemp(prefix="dynw", dir="/tmp"))
        home.chmod(0o711)
        try:
            url = f"sqlite:///{home}/inventory.db" if kind == "sqlite" else fresh_mysql_url(args.mysql, args.mysql_db)
            if args.million_site:
                print(f"== {kind}: a site of {args.site_datasets * 10} block replicas ...", flush=True)
                r = measure_million(url, home, args)
                results["stores"][kind] = r
                print("   " + ", ".join(f"{k[8:]} {v:.1f}" if isinstance(v, float) else f"{k[8:]} {v}"
                                        for k, v in r.items()), flush=True)
                continue
            print(f"== {kind}: scale {args.scale} ...", flush=True)
            r = measure(url, home, args)
            results["stores"][kind] = r
            print(f"   trivial /data: {r['trivial_rps']:.0f} req/s, p50 {r['trivial_p50_ms']:.1f} ms, "
                  f"p99 {r['trivial_p99_ms']:.1f} ms; while {r['busy_writes']} writes committed: "
                  f"{r['busy_rps']:.0f} req/s, p99 {r['busy_p99_ms']:.1f} ms, {r['busy_503']} retries (503)\n"
                  f"   block replicas of a {r['dataset_files']}-file dataset: {r['dataset_blockreplicas_ms']:.0f} ms; "
                  f"all {r['site_blocks']} at one site: {r['site_blockreplicas_s']:.2f} s, "
                  f"{r['site_blockreplicas_mb']:.1f} MB; worker private {r['site_worker_private_mb']:.0f} MB, "
                  f"grew {r['site_worker_grew_mb']:.0f} MB",
                  flush=True)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    save_results(results, "web", args.json)


if __name__ == "__main__":
    main()
