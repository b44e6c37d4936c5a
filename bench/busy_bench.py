"""Does dynamod keep answering while it writes? A real dynamod, driven by the real commands.

    python -m bench.busy_bench                                  # W1 (--scale 0.1), SQLite and MariaDB
    python -m bench.busy_bench --old-bin /tmp/old/venv/bin      # and the same with another install (A/B)

Per store and per install, a trivial application (``print(1)``) is run again and again, one call
after the other, with the wall time of each ``dynamo`` call (client start included) recorded:

* ``before``: the server idle;
* ``inject``: while ``dynamo-inject`` sends a document of ``--files`` new files (1 M at W10, scaled
  with ``--scale``), from its start to its answer;
* ``write``: while a write application makes ``--changes`` changes (bench.workload.MIX), from the
  writer's exit (it prints its time) to the client's result: the change set sent, validated,
  committed and applied; ``write_run`` counts the whole call, the application's own run included;
* ``after``: idle again.

Reported: p50 / p99 / max and count of the trivial calls in each phase, and the inject's and the
write's own durations. p99 of a phase with fewer than 100 calls is its largest but one or its largest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import server_bench
from bench.server_bench import WRITER, Bench
from bench.store_bench import fresh_mysql_url, save_results
from bench.workload import W10, change_records, generate, scaled

TRIVIAL = "print(1)\n"


def inject_document(files: int, files_per_block: int = 100, blocks_per_dataset: int = 10) -> dict[str, Any]:
    """New datasets holding ``files`` new files in all."""
    datasets = []
    made, d = 0, 0
    while made < files:
        blocks = []
        for b in range(blocks_per_dataset):
            count = min(files_per_block, files - made)
            if count <= 0:
                break
            entries = [{"name": f"/store/data/Run2026A/BusyBench{d:06d}/RAW/v1/{b:03d}/{f:06d}-"
                                f"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.root", "size": 1000 + f}
                       for f in range(count)]
            blocks.append({"name": f"{d:06d}-{b:03d}-4b5a-6978-8796-a5b4c3d2e1f0", "files": entries})
            made += count
        datasets.append({"name": f"/BusyBench{d:06d}/Run2026A-v1/RAW", "blocks": blocks})
        d += 1
    return {"dataset": datasets}


class Caller(threading.Thread):
    """Trivial calls one after the other until stopped: (start, end) wall times of each."""

    def __init__(self, bench: Bench, script: Path, dynamo: str):
        super().__init__(daemon=True)
        self.bench, self.script, self.dynamo = bench, script, dynamo
        self.stop = threading.Event()
        self.calls: list[tuple[float, float]] = []
        self.failures = 0

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.time()
            done = subprocess.run([self.dynamo, str(self.script)], env=self.bench.env, capture_output=True,
                                  text=True, check=False)
            ended = time.time()
            if done.returncode == 0 and done.stdout == "1\n":
                self.calls.append((started, ended))
            else:
                self.failures += 1

    def within(self, start: float, end: float) -> list[float]:
        """Durations (ms) of the calls that overlapped [start, end]."""
        return [(e - s) * 1000 for s, e in self.calls if e >= start and s <= end]


def summary(times: list[float]) -> dict[str, float]:
    if not times:
        return {"n": 0}
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 1), "p99": round(p99, 1),
            "max": round(ordered[-1], 1)}


def run_delay_ms(pid: int) -> float:
    """Time ``pid``'s threads have waited for a CPU so far (/proc/PID/schedstat: ran, waited, slices)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


def idle_calls(bench: Bench, script: Path, dynamo: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        subprocess.run([dynamo, str(script)], env=bench.env, check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(bin_dir: Path, url: str, home: Path, scale: float, files: int, changes: int, idle: int,
            seed: int, calls: bool = True, log_level: str = "INFO") -> dict[str, Any]:
    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store
    image = generate(W10 if scale == 1 else scaled(scale), seed)
    store = open_store(url)
    store.import_image(image, ChangeMeta(title="busy_bench import"))
    store.close()
    records_path = home / "changes.json"
    records_path.write_text(json.dumps(change_records(image, changes, seed + 1)))
    records_path.chmod(0o644)
    del image
    document = home / "inject.json"
    document.write_text(json.dumps(inject_document(files)))
    document.chmod(0o644)
    dynamo, inject = str(bin_dir / "dynamo"), str(bin_dir / "dynamo-inject")
    # Bench finds dynamod through server_bench.command: point it at this install
    server_bench.command = lambda name: str(bin_dir / name)
    bench = Bench(home, url)
    bench.config.write_text(bench.config.read_text().replace("[server]\n", f'[server]\nlog_level = "{log_level}"\n'))
    result: dict[str, Any] = {"ready_s": round(bench.start(), 2)}
    assert bench.process is not None
    server_pid = bench.process.pid
    marks: dict[str, float] = {}
    try:
        trivial = bench.script("trivial.py", TRIVIAL)
        writer = bench.script("writer.py", WRITER)
        subprocess.run([str(bin_dir / "dynamo-exec-auth"), "--executable", str(writer), "--title", "benchwriter"],
                       env=bench.env, check=True, capture_output=True)
        result["before"] = summary(idle_calls(bench, trivial, dynamo, idle))

        caller = Caller(bench, trivial, dynamo)
        if calls:
            caller.start()
        else:
            caller.stop.set()
        time.sleep(1.0)
        waited = run_delay_ms(server_pid)
        started = time.time()
        done = subprocess.run([inject, str(document)], env=bench.env, capture_output=True, text=True, check=False)
        ended = time.time()
        if done.returncode != 0:
            raise SystemExit(f"inject failed ({done.returncode}): {done.stderr}")
        result["inject_s"] = round(ended - started, 2)
        result["inject_files"] = files
        result["inject"] = summary(caller.within(started, ended))
        result["inject_dynamod_cpu_wait_ms"] = round(run_delay_ms(server_pid) - waited)
        marks.update(inject_start=started, inject_end=ended)
        time.sleep(1.0)

        waited = run_delay_ms(server_pid)
        started = time.time()
        process = subprocess.run([dynamo, f"{writer} {records_path}", "--write-request", "--title", "benchwriter"],
                                 env=bench.env, capture_output=True, text=True, check=False)
        ended = time.time()
        if process.returncode != 0:
            raise SystemExit(f"write application failed ({process.returncode}): {process.stderr}")
        exited = float(process.stdout.strip().splitlines()[-1])
        result["write_s"] = round(ended - exited, 2)
        result["write_records"] = changes
        result["write"] = summary(caller.within(exited, ended))
        result["write_run"] = summary(caller.within(started, ended))
        result["write_run_dynamod_cpu_wait_ms"] = round(run_delay_ms(server_pid) - waited)
        marks.update(write_start=started, write_exit=exited, write_end=ended)
        caller.stop.set()
        if calls:
            caller.join()
        result["failed_calls"] = caller.failures
        (home / "calls.json").write_text(json.dumps({"marks": marks, "calls": caller.calls}))
        result["after"] = summary(idle_calls(bench, trivial, dynamo, idle))
    finally:
        bench.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--files", type=int, help="files in the inject (default 1 M x --scale: 1 M at W10)")
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--idle", type=int, default=20, help="trivial calls before and after")
    parser.add_argument("--stores", default="sqlite,mysql")
    parser.add_argument("--old-bin", help="bin directory of another install to compare with (e.g. main's)")
    parser.add_argument("--mysql", default=os.environ.get("DYNAMO_TEST_MYSQL", "mysql://root@127.0.0.1:3306"))
    parser.add_argument("--mysql-db", default="dynamo_offloop_busy")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--no-calls", action="store_true",
                        help="no trivial calls during the inject and the write: their own durations alone")
    parser.add_argument("--keep", action="store_true", help="keep the server's home (its log, and calls.json: "
                        "every call's start and end, and the phases') for a look")
    parser.add_argument("--log-level", default="INFO", help="dynamod's; DEBUG logs the loop's slow turns")
    args = parser.parse_args()
    files = args.files or int(1_000_000 * args.scale)
    installs = [("new", Path(sys.executable).parent)]
    if args.old_bin:
        installs.insert(0, ("old", Path(args.old_bin)))
    results: dict[str, Any] = {"scale": args.scale, "files": files, "changes": args.changes, "time": time.time(),
                               "calls": not args.no_calls,
                               "load": os.getloadavg(), "runs": {}}
    for kind in args.stores.split(","):
        for label, bin_dir in installs:
            home = Path(tempfile.mkdtemp(prefix="dynbusy", dir="/tmp"))
            home.chmod(0o711)
            try:
                url = f"sqlite:///{home}/inventory.db" if kind == "sqlite" else fresh_mysql_url(args.mysql,
                                                                                              args.mysql_db)
                print(f"== {kind} {label} ({bin_dir}): scale {args.scale}, inject {files} files, write "
                      f"{args.changes} records; load {os.getloadavg()[0]:.2f}", flush=True)
                r = measure(bin_dir, url, home, args.scale, files, args.changes, args.idle, args.seed,
                            calls=not args.no_calls, log_level=args.log_level)
                results["runs"][f"{kind}/{label}"] = r
                for phase in ("before", "inject", "write", "write_run", "after"):
                    print(f"   {phase:9} {r[phase]}", flush=True)
                print(f"   inject {r['inject_s']} s, write exit -> done {r['write_s']} s, ready {r['ready_s']} s, "
                      f"failed calls {r['failed_calls']}; dynamod waited for a CPU {r['inject_dynamod_cpu_wait_ms']} "
                      f"ms during the inject, {r['write_run_dynamod_cpu_wait_ms']} ms during the write", flush=True)
            finally:
                if args.keep:
                    print(f"   kept {home}", flush=True)
                else:
                    shutil.rmtree(home, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    save_results(results, "busy", args.json)


if __name__ == "__main__":
    main()
