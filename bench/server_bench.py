"""Server benchmark: a real dynamod on a W10 store, driven by the real commands.

    python -m bench.server_bench                       # W10 on SQLite and MariaDB
    python -m bench.server_bench --scale 0.01 --stores sqlite

Reports, per store:

* ``ready_s``: dynamod start to listening (the load);
* ``first_line_ms``: from starting the ``dynamo`` command to reading the
  script's first output line (median and max over ``--runs``); this includes
  the client's own start, the fork of the image and the child's set-up;
* ``child_private_mb`` / ``gc_dirty_mb``: private dirty memory of a read-only
  child when its script starts, and how much more ``gc.collect()`` dirties;
* ``write_exit_to_done_s``: a write application makes ``--changes`` changes
  (bench.workload.MIX) and exits; time from its exit to the client holding
  the result, i.e. the change set received, validated, applied and committed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.store_bench import fresh_mysql_url, save_results
from bench.workload import W10, change_records, generate, scaled

# W10 loads in about 20 s on a quiet machine (docs/performance.md); ten times that on a loaded one is
# still a start, beyond it the benchmark would only wait on a server that hangs.
START_TIMEOUT = 300.0
FIRST_LINE = "print('first line', flush=True)\n"
MEMORY = """
import gc
def dirty():
    with open('/proc/self/smaps_rollup') as f:
        return sum(int(l.split()[1]) for l in f if l.startswith(('Private_Dirty', 'Private_Hugetlb')))
before = dirty()
gc.collect()
after = dirty()
print(before / 1024, (after - before) / 1024)
"""
WRITER = """
import json, sys, time
from dynamo.core.codec import decode
from dynamo.core.executable import inventory
with open(sys.argv[1]) as f:
    records = json.load(f)
for op, obj in map(decode, records):
    inventory.update(obj) if op == "update" else inventory.delete(obj)
print(time.time(), flush=True)
"""


def command(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


class Bench:
    def __init__(self, home: Path, url: str):
        self.home = home
        self.config = home / "dynamo.toml"
        self.socket = home / "dynamo.sock"
        self.config.write_text(f'[server]\nhome = "{home}"\n[store]\nurl = "{url}"\n'
                               f'[listen]\nsocket = "{self.socket}"\n[client]\nserver = "unix:{self.socket}"\n')
        self.env = dict(os.environ, DYNAMO_CONFIG=str(self.config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        started = time.perf_counter()
        self.process = subprocess.Popen([command("dynamod")], env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        while time.perf_counter() < started + START_TIMEOUT:
            if self.process.poll() is not None:
                raise SystemExit(f"dynamod failed; see {self.home}/log/server.log")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                return time.perf_counter() - started
            except OSError:
                time.sleep(0.02)
        self.process.kill()
        self.process.wait()
        raise SystemExit(f"dynamod did not accept connections within {START_TIMEOUT:g} s; "
                         f"see {self.home}/log/server.log")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)

    def script(self, name: str, body: str) -> Path:
        path = self.home / name
        path.write_text(body)
        path.chmod(0o644)
        return path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([command("dynamo"), *args], env=self.env, capture_output=True, text=True, check=True)

    def first_line_ms(self, path: Path) -> float:
        started = time.perf_counter()
        process = subprocess.Popen([command("dynamo"), str(path)], env=self.env, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        elapsed = (time.perf_counter() - started) * 1000
        process.wait()
        assert line == "first line\n", line
        return elapsed

    def write_app(self, records_path: Path) -> tuple[float, int]:
        script = self.script("writer.py", WRITER)
        subprocess.run([command("dynamo-exec-auth"), "--executable", str(script), "--title", "benchwriter"],
                       env=self.env, check=True, capture_output=True)
        process = subprocess.Popen([command("dynamo"), f"{script} {records_path}", "--write-request", "--title",
                                    "benchwriter"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        out, err = process.communicate()
        done = time.time()
        if process.returncode != 0:
            raise SystemExit(f"write application failed ({process.returncode}): {err}")
        return done - float(out.strip().splitlines()[-1]), process.returncode


def measure(kind: str, url: str, home: Path, scale: float, changes: int, runs: int, seed: int) -> dict[str, Any]:
    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store
    image = generate(W10 if scale == 1 else scaled(scale), seed)
    store = open_store(url)
    store.import_image(image, ChangeMeta(title="server_bench import"))
    store.close()
    records_path = home / "changes.json"
    records_path.write_text(json.dumps(change_records(image, changes, seed + 1)))
    records_path.chmod(0o644)
    del image
    bench = Bench(home, url)
    result: dict[str, Any] = {"ready_s": bench.start()}
    try:
        first = bench.script("first.py", FIRST_LINE)
        times = [bench.first_line_ms(first) for _ in range(runs)]
        result.update(first_line_ms_median=statistics.median(times), first_line_ms_max=max(times))
        memory = bench.script("memory.py", MEMORY)
        private, gc_dirty = map(float, bench.run(str(memory)).stdout.split())
        result.update(child_private_mb=private, gc_dirty_mb=gc_dirty)
        result["write_exit_to_done_s"], _ = bench.write_app(records_path)
        result["records"] = changes
    finally:
        bench.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--stores", default="sqlite,mysql")
    parser.add_argument("--mysql", default=os.environ.get("DYNAMO_TEST_MYSQL", "mysql://root@127.0.0.1:3306"))
    parser.add_argument("--mysql-db", default="dynamo_server_bench")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"scale": args.scale, "changes": args.changes, "time": time.time(), "stores": {}}
    for kind in args.stores.split(","):
        home = Path(tempfile.mkdtemp(prefix="dynb", dir="/tmp"))
        home.chmod(0o711)
        try:
            if kind == "sqlite":
                url = f"sqlite:///{home}/inventory.db"
            else:
                url = fresh_mysql_url(args.mysql, args.mysql_db)
            print(f"== {kind}: scale {args.scale} ...", flush=True)
            r = measure(kind, url, home, args.scale, args.changes, args.runs, args.seed)
            results["stores"][kind] = r
            print(f"   ready {r['ready_s']:.1f} s; first line {r['first_line_ms_median']:.0f} ms "
                  f"(max {r['first_line_ms_max']:.0f}); child private {r['child_private_mb']:.1f} MB, "
                  f"gc.collect() dirties {r['gc_dirty_mb']:.2f} MB; write of {r['records']}: "
                  f"{r['write_exit_to_done_s']:.2f} s from exit to done", flush=True)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    save_results(results, "server", args.json)


if __name__ == "__main__":
    main()
