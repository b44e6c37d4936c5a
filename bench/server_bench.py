"""Server benchmark: a real dynamod on a W10 store, driven by the real commands.

    python -m bench.server_bench                       # W10 on SQLite and MariaDB
    python -m bench.server_bench --scale 0.01 --stores sqlite
    python -m bench.server_bench --start-only --starts 3 --stores sqlite   # start to ready only

Reports, per store, with issue 10's goals beside them (``bench.goals``):

* ``load_s``: dynamod start to its ready line ("server ready" in its log): the load, every
  collection the server makes on the way, and everything else it does before it can answer;
  ``floor_s``: the raw driver read of the same rows in a fresh process, measured in the same
  run (``bench.store_bench``), and ``load_over_floor``; ``rss_mb``: dynamod's RSS when ready;
* ``first_line_ms``: from starting the ``dynamo`` command to reading the
  script's first output line (median and max over ``--runs``); this includes
  the client's own start, the fork of the image and the child's set-up;
* ``child_private_mb`` / ``gc_dirty_mb``: private dirty memory of a read-only
  child when its script starts, and how much more ``gc.collect()`` dirties;
* ``walk_dirty_mb``: how much private memory a read-only application dirties by walking
  the name and size of every file and every block replica (``WALK``), measured by the
  application itself from /proc/self/smaps_rollup before and after; ``readers16_mb`` is 16
  times that (``max_running`` = 16 such readers at once);
* ``write_exit_to_done_s``: a write application makes ``--changes`` changes
  (bench.workload.MIX) and exits; time from its exit to the client holding
  the result, i.e. the change set received, validated, applied and committed;
* ``busy_write_p99_ms`` / ``busy_inject_p99_ms``: trivial calls (``dynamo`` running a
  one-line script, start to exit) made one after another while such a write application
  applies and commits, and while an inject of ``--inject-files`` files (1 M at W10) is
  parsed, applied and committed; ``quiet_call_ms`` is the same call's median on an idle
  server.
* ``call_cpu_ms``: the CPU a quiet trivial call costs, per process, the mean of ``3 x --runs`` calls one
  after another: the client (``dynamo``), dynamod's loop, the zygote (forking the spare that replaces
  the one the call took) and dynamod's reaped children (the spare that ran the call, its exit
  included); ``call_cpu_total_ms`` their sum. Unlike a call's wall time it hardly depends on what else
  the machine runs: what a change to forking or to the image's memory saves shows here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from bench.goals import SERVER_GOALS, judge, render
from bench.store_bench import buffer_pool_mb, fresh_mysql_url, run_worker, save_results
from bench.workload import W10, change_records, generate, scaled

# W10 loads in well under 20 s on a quiet machine (docs/performance.md); ten times that on a loaded
# one is still a start, beyond it the benchmark would only wait on a server that hangs.
START_TIMEOUT = 300.0
READY = b"server ready"  # dynamod's log line once it is listening and serving
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
# A read-only application that reads the whole inventory: the name and size of every file, the site
# and size of every block replica. Its private dirty memory before and after is what copy-on-write
# costs a reader (issue 10: 1.2 GB at W10 when every read wrote a per-block object).
WALK = """
import gc, json, time
from dynamo.core.executable import inventory
def dirty():
    with open('/proc/self/smaps_rollup') as f:
        return sum(int(l.split()[1]) for l in f if l.startswith(('Private_Dirty', 'Private_Hugetlb')))
before = dirty()
started = time.perf_counter()
files = file_bytes = name_chars = replicas = replica_bytes = 0
for dataset in inventory.datasets.values():
    for block in dataset.blocks:
        for f in block.files:
            files += 1
            file_bytes += f.size
            name_chars += len(f.lfn)
        for replica in block.replicas:
            replicas += 1
            replica_bytes += replica.size
            name_chars += len(replica.site.name)
walk_s = time.perf_counter() - started
after = dirty()
gc.collect()
print(json.dumps({"files": files, "block_replicas": replicas, "file_bytes": file_bytes, "name_chars": name_chars,
                  "walk_s": walk_s, "before_mb": before / 1024, "walk_dirty_mb": (after - before) / 1024,
                  "gc_after_walk_dirty_mb": (dirty() - after) / 1024}))
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
    def __init__(self, home: Path, url: str, log_level: str = "INFO"):
        self.home = home
        self.config = home / "dynamo.toml"
        self.call_starts: list[float] = []
        self.socket = home / "dynamo.sock"
        self.config.write_text(f'[server]\nhome = "{home}"\nlog_level = "{log_level}"\n[store]\nurl = "{url}"\n'
                               f'[listen]\nsocket = "{self.socket}"\n[client]\nserver = "unix:{self.socket}"\n')
        # The commands run the installed package, as users run them: not a checkout that PYTHONPATH puts
        # first (benchmarks are run that way), where without written bytecode (PYTHONDONTWRITEBYTECODE)
        # every call would compile the client anew (~20 ms of a first line measured at load 8).
        self.env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
        self.env["DYNAMO_CONFIG"] = str(self.config)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start dynamod in the foreground; seconds until its ready line ("server ready" in its log):
        from then on it answers."""
        log_path = self.home / "log" / "server.log"
        seen = log_path.stat().st_size if log_path.exists() else 0
        started = time.perf_counter()
        self.process = subprocess.Popen([command("dynamod")], env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        tail = b""
        while time.perf_counter() < started + START_TIMEOUT:
            if self.process.poll() is not None:
                # the log's end in the message: the benchmark removes the home, and the log with it
                end = log_path.read_text(errors="replace").splitlines()[-15:] if log_path.exists() else []
                raise SystemExit("\n".join([f"dynamod failed; the end of {log_path}:", *end]))
            try:
                with open(log_path, "rb") as f:
                    f.seek(seen)
                    new = f.read()
            except FileNotFoundError:
                new = b""
            seen += len(new)
            tail = tail[-64:] + new
            if READY in tail:
                return time.perf_counter() - started
            time.sleep(0.01)
        self.process.kill()
        self.process.wait()
        raise SystemExit(f"dynamod was not ready within {START_TIMEOUT:g} s; see {log_path}")

    def rss_mb(self) -> float:
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

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

    def call_ms(self, path: Path) -> float:
        """A trivial call: ``dynamo`` running ``path``, from its start to its exit."""
        started = time.perf_counter()
        subprocess.run([command("dynamo"), str(path)], env=self.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        return (time.perf_counter() - started) * 1000

    def calls_during(self, path: Path, busy: Callable[[], Any]) -> tuple[list[float], Any]:
        """Trivial calls one after another for as long as ``busy()`` runs (in a thread); their times
        and what ``busy`` returned."""
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(busy())
            except BaseException as exc:  # handed to the caller
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        times = []
        self.call_starts = []  # when each began (time.time(): to be found in dynamod's log)
        while thread.is_alive():
            self.call_starts.append(time.time())
            times.append(self.call_ms(path))
        thread.join()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return times, outcome[0]

    def call_cpu_ms(self, path: Path, calls: int) -> dict[str, float]:
        """The mean CPU per trivial call (``path``), by process (see ``call_cpu_ms`` in the module's doc)."""
        assert self.process is not None
        pid = self.process.pid
        tick = os.sysconf("SC_CLK_TCK")

        def own(p: int) -> tuple[float, float]:  # (its own CPU, its reaped children's), in seconds
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick

        def zygotes() -> float:
            total = 0.0
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if (entry / "cmdline").read_bytes().startswith(b"dynamod: zygote"):
                        total += own(int(entry.name))[0]
                except (OSError, ValueError):
                    continue  # ended meanwhile
            return total

        time.sleep(1.0)  # what the start left (the first spares) is not the calls'
        before, zygote_before = own(pid), zygotes()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_before = usage.ru_utime + usage.ru_stime
        for _ in range(calls):
            self.call_ms(path)
        time.sleep(1.0)  # the last call's replacement spare
        after, zygote_after = own(pid), zygotes()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = {"client": usage.ru_utime + usage.ru_stime - client_before, "dynamod": after[0] - before[0],
               "zygote": zygote_after - zygote_before, "children": after[1] - before[1]}
        per_call = {name: round(seconds * 1000 / calls, 1) for name, seconds in cpu.items()}
        per_call["total"] = round(sum(per_call.values()), 1)
        return per_call

    def inject(self, document: Path) -> None:
        """``dynamo-inject`` of a file: not piped from this process, whose other thread times the calls
        (encoding and writing 127 MB to a pipe here held the GIL that thread needs)."""
        subprocess.run([command("dynamo-inject"), str(document)], env=self.env, check=True,
                       capture_output=True, text=True)

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


def p99(times: list[float]) -> float:
    """The 99th percentile by nearest rank: the largest of fewer than 100."""
    ordered = sorted(times)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


def inject_document(files: int) -> str:
    """A new dataset of ``files`` files in blocks of 1,000, as ``dynamo-inject`` takes it."""
    name = "/BenchInject/Run2026A-Busy-v1/RAW"
    blocks = []
    for b in range(0, files, 1000):
        blocks.append({"name": f"busy-{b // 1000:05d}", "files": [
            {"name": f"/store/data/Run2026A/BenchInject/RAW/Busy-v1/{b // 1000:05d}/{i:07d}-6B0F2E4C-9A1D-4C7E-B3F5-"
                     f"0D8A2C6E4F1B.root", "size": 2_000_000_000 + i}
            for i in range(b, min(b + 1000, files))]})
    return json.dumps({"dataset": [{"name": name, "status": "valid", "blocks": blocks}]})


def measure_start(url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``--start-only``: the raw floor, then ``--starts`` starts of dynamod to its ready line (medians)."""
    result: dict[str, Any] = {}
    if url.startswith("mysql"):
        result["innodb_buffer_pool_mb"] = buffer_pool_mb(url)
    result.update(run_worker(["floor", url]))
    bench = Bench(home, url)
    starts, rss = [], []
    for _ in range(args.starts):
        starts.append(bench.start())
        try:
            rss.append(bench.rss_mb())
        finally:
            bench.stop()
    result.update(load_s=statistics.median(starts), start_runs_s=starts, rss_mb=statistics.median(rss))
    result["ready_s"] = result["load_s"]
    result["load_over_floor"] = result["load_s"] / result["floor_s"] if result["floor_s"] else None
    return result


def prepare_store(url: str, args: argparse.Namespace) -> None:
    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store
    image = generate(W10 if args.scale == 1 else scaled(args.scale), args.seed)
    store = open_store(url)
    store.import_image(image, ChangeMeta(title="server_bench import"))
    store.close()


def copy_database(url: str, source: str) -> None:
    """Copy every table of the database ``source`` (bench.store_bench --keep, same scale and seed) into the
    empty database of ``url``, on the same server: faster than importing the image again."""
    import pymysql

    from dynamo.store.mysql import parse_mysql_url
    params = parse_mysql_url(url)
    target = params.pop("database")
    conn = pymysql.connect(**params, autocommit=True)
    try:
        cursor = conn.cursor()
        cursor.execute("SET foreign_key_checks = 0")  # tables in any order; the rows are the source's
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (source,))
        tables = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (target,))
        for (name,) in cursor.fetchall():  # what creating the store made: replaced by the copy
            cursor.execute(f"DROP TABLE `{target}`.`{name}`")
        for name in tables:
            cursor.execute(f"SHOW CREATE TABLE `{source}`.`{name}`")
            create = cursor.fetchone()[1]
            cursor.execute(f"USE `{target}`")
            cursor.execute(create)
            cursor.execute(f"INSERT INTO `{target}`.`{name}` SELECT * FROM `{source}`.`{name}`")
    finally:
        conn.close()


def measure(kind: str, url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    from dynamo.core.changeset import apply_change_set
    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store
    image = generate(W10 if args.scale == 1 else scaled(args.scale), args.seed)
    if args.copy_store and kind == "sqlite":  # the same image, imported before (bench.store_bench --keep)
        shutil.copyfile(args.copy_store, url[len("sqlite:///"):])
    elif args.copy_db and kind == "mysql":  # the same, on the same MariaDB server
        copy_database(url, args.copy_db)
    else:
        store = open_store(url)
        store.import_image(image, ChangeMeta(title="server_bench import"))
        store.close()
    # write change sets, each valid on the image the one before leaves behind: --writes timed ones, then the
    # busy one
    paths = []
    for n in range(args.writes + 1):
        records = change_records(image, args.changes, args.seed + 1 + n)
        if n < args.writes:
            apply_change_set(image, None, records)
        path = home / f"changes{n + 1}.json"
        path.write_text(json.dumps(records))
        path.chmod(0o644)
        paths.append(path)
        del records
    del image
    records_paths, busy_records_path = paths[:-1], paths[-1]
    phases = set(args.phases.split(","))
    inject_files = args.inject_files if args.inject_files is not None else max(1000, int(1_000_000 * args.scale))
    document = home / "inject.json"
    document.write_text(inject_document(inject_files))
    document.chmod(0o644)
    result: dict[str, Any] = {"records": args.changes, "inject_files": inject_files}
    if kind == "mysql":
        result["innodb_buffer_pool_mb"] = buffer_pool_mb(url)
    result.update(run_worker(["floor", url]))  # the raw driver floor, in this run, before dynamod holds memory
    bench = Bench(home, url, args.log_level)
    result["load_s"] = bench.start()
    result["ready_s"] = result["load_s"]  # the name of earlier runs
    result["load_over_floor"] = result["load_s"] / result["floor_s"] if result["floor_s"] else None
    try:
        result["rss_mb"] = bench.rss_mb()
        if "first" in phases:
            first_line = bench.script("first.py", FIRST_LINE)
            times = [bench.first_line_ms(first_line) for _ in range(args.runs)]
            result.update(first_line_ms_median=statistics.median(times), first_line_ms_max=max(times))
        if "walk" in phases:
            memory = bench.script("memory.py", MEMORY)
            private, gc_dirty = map(float, bench.run(str(memory)).stdout.split())
            result.update(child_private_mb=private, gc_dirty_mb=gc_dirty)
            walk = json.loads(bench.run(str(bench.script("walk.py", WALK))).stdout.strip().splitlines()[-1])
            result.update(walk=walk, walk_dirty_mb=walk["walk_dirty_mb"], readers16_mb=16 * walk["walk_dirty_mb"])
        trivial = bench.script("trivial.py", "print('ok')\n")
        if "cpu" in phases:
            result["call_cpu_ms"] = bench.call_cpu_ms(trivial, 3 * args.runs)
            result["call_cpu_total_ms"] = result["call_cpu_ms"]["total"]
        if "write" in phases:
            writes = [bench.write_app(path)[0] for path in records_paths]
            result.update(write_exit_to_done_s=statistics.median(writes), writes_s=writes)
        if "busy" in phases:
            # quiet: not in the wake of the timed writes (their records freed, the new version's zygote and its
            # first spares forked: 78-120 ms a call in the full runs of docs/performance.md's sixth round)
            time.sleep(2.0)
            result["quiet_call_ms"] = statistics.median(bench.call_ms(trivial) for _ in range(5))
            times, _ = bench.calls_during(trivial, lambda: bench.write_app(busy_records_path))
            result.update(busy_write_p99_ms=p99(times), busy_write_calls=len(times),
                          busy_write_times_ms=[round(t, 1) for t in times],
                          busy_write_starts=[round(t, 3) for t in bench.call_starts])
        if "inject" in phases:
            times, _ = bench.calls_during(trivial, lambda: bench.inject(document))
            result.update(busy_inject_p99_ms=p99(times), busy_inject_calls=len(times),
                          busy_inject_times_ms=[round(t, 1) for t in times],
                          busy_inject_starts=[round(t, 3) for t in bench.call_starts])
    finally:
        bench.stop()
    return result


PHASES = ("first", "walk", "cpu", "write", "busy", "inject")


def summary(r: dict[str, Any]) -> str:
    """One line of what was measured."""
    parts = [f"ready {r['load_s']:.2f} s (raw floor {r['floor_s']:.2f} s), RSS {r['rss_mb']:.0f} MB"]
    if "first_line_ms_median" in r:
        parts.append(f"first line {r['first_line_ms_median']:.0f} ms (max {r['first_line_ms_max']:.0f})")
    if "walk" in r:
        parts.append(f"child private {r['child_private_mb']:.1f} MB, gc.collect() dirties {r['gc_dirty_mb']:.2f} MB; "
                     f"a walk of {r['walk']['files']} files and {r['walk']['block_replicas']} block replicas "
                     f"({r['walk']['walk_s']:.1f} s) dirties {r['walk_dirty_mb']:.1f} MB")
    if "call_cpu_ms" in r:
        parts.append("CPU per quiet call " + ", ".join(f"{k} {v:.1f}" for k, v in r["call_cpu_ms"].items()) + " ms")
    if "writes_s" in r:
        parts.append(f"write of {r['records']}: {r['write_exit_to_done_s']:.2f} s from exit to done (median of "
                     + ", ".join(f"{t:.2f}" for t in r["writes_s"]) + ")")
    if "busy_write_p99_ms" in r:
        parts.append(f"trivial call {r['quiet_call_ms']:.0f} ms quiet, p99 {r['busy_write_p99_ms']:.0f} ms during a "
                     f"write ({r['busy_write_calls']} calls)")
    if "busy_inject_p99_ms" in r:
        parts.append(f"{r['busy_inject_p99_ms']:.0f} ms during an inject of {r['inject_files']} files "
                     f"({r['busy_inject_calls']} calls)")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--inject-files", type=int, help="files of the busy inject (default 1 M x scale, >= 1000)")
    parser.add_argument("--stores", default="sqlite,mysql")
    parser.add_argument("--mysql", default=os.environ.get("DYNAMO_TEST_MYSQL", "mysql://root@127.0.0.1:3306"))
    parser.add_argument("--mysql-db", default="dynamo_server_bench")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"what to measure after the start, of {','.join(PHASES)} (default: all)")
    parser.add_argument("--writes", type=int, default=1, help="write applications timed one after another "
                        "(each a new change set; the median is reported)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--keep-log", help="keep dynamod's log as KEEP_LOG.<store>.log")
    parser.add_argument("--log-level", default="INFO", help="dynamod's; DEBUG logs the loop's slow turns "
                                                            "(with --keep-log)")
    parser.add_argument("--copy-store", help="SQLite: a copy of this store file (bench.store_bench --keep, same "
                                             "scale and seed) instead of importing the image again")
    parser.add_argument("--copy-db", help="MariaDB: a copy of this database (bench.store_bench --keep, same scale "
                                          "and seed) instead of importing the image again")
    parser.add_argument("--start-only", action="store_true",
                        help="measure only the raw floor and dynamod's start to its ready line (and RSS)")
    parser.add_argument("--starts", type=int, default=1, help="with --start-only: starts to take the median of")
    parser.add_argument("--store-url", help="with --start-only: a store already holding the image (dynamod "
                                            "adds its registry rows to it) instead of a new one")
    args = parser.parse_args()
    results: dict[str, Any] = {"scale": args.scale, "changes": args.changes, "time": time.time(),
                               "loadavg_start": os.getloadavg(), "stores": {}}
    for kind in args.stores.split(","):
        home = Path(tempfile.mkdtemp(prefix="dynb", dir="/tmp"))
        home.chmod(0o711)
        try:
            if args.start_only and args.store_url:
                url = args.store_url
            elif kind == "sqlite":
                url = f"sqlite:///{home}/inventory.db"
            else:
                url = fresh_mysql_url(args.mysql, args.mysql_db)
            print(f"== {kind}: scale {args.scale} ...", flush=True)
            if args.start_only:
                if not args.store_url:
                    prepare_store(url, args)
                r = measure_start(url, home, args)
                r["goals"] = judge(SERVER_GOALS, kind, r, args.scale, args.changes)
                results["stores"][kind] = r
                runs = ", ".join(f"{t:.2f}" for t in r["start_runs_s"])
                print(f"   ready {r['load_s']:.2f} s (runs {runs}; raw floor {r['floor_s']:.2f} s, ratio "
                      f"{r['load_over_floor']:.2f}), RSS {r['rss_mb']:.0f} MB", flush=True)
                print(render(r["goals"]), flush=True)
                continue
            r = measure(kind, url, home, args)
            r["goals"] = judge(SERVER_GOALS, kind, r, args.scale, args.changes)
            results["stores"][kind] = r
            print("   " + summary(r), flush=True)
            print(render(r["goals"]), flush=True)
        finally:
            if args.keep_log:
                shutil.copy(home / "log" / "server.log", f"{args.keep_log}.{kind}.log")
            shutil.rmtree(home, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    print(f"load average {results['loadavg_start'][0]:.2f} at the start, {results['loadavg_end'][0]:.2f} at the end")
    save_results(results, "server", args.json)


if __name__ == "__main__":
    main()
