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
    args = parser.parse_args()
    results: dict[str, Any] = {"scale": args.scale, "time": time.time(), "connections": args.connections,
                               "stores": {}}
    for kind in args.stores.split(","):
        home = Path(tempfile.mkdtemp(prefix="dynw", dir="/tmp"))
        home.chmod(0o711)
        try:
            url = f"sqlite:///{home}/inventory.db" if kind == "sqlite" else fresh_mysql_url(args.mysql, args.mysql_db)
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
