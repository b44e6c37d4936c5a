"""The first output line alone, and its parts: a real dynamod on a store of the workload, the real
``dynamo`` command (issue 10: at most 40 ms, median, at W10).

    python -m bench.first_line_bench --scale 0.1 --stores sqlite --runs 30

``bench.server_bench`` measures the first line among everything else (and builds write change sets
first); this one imports the image, starts dynamod and measures, per store, medians over ``--runs``:

* ``first_line_ms``: from starting ``dynamo script.py`` to reading the script's first output line
  (as ``bench.server_bench``; ``first_line_ms_max`` beside it);
* ``client_cpu_ms``: the command's own CPU time (user + system) per call, whole (it exits after
  the line); ``interpreter_ms`` / ``interpreter_cpu_ms``: ``python -c pass`` with the same
  interpreter, the floor of any Python command;
* ``server_ms``: the request written on a connected Unix socket to the first output frame
  received: the server's share (the registry's row, the hand-over to the spare child, the
  child's set-up, the relay); ``started_ms``: to the ``started`` reply.

The calls are spaced by ``--pause`` seconds, as a user's are: dynamod tends its spare child
between them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.goals import SERVER_GOALS, judge, render
from bench.server_bench import FIRST_LINE, Bench, command
from bench.store_bench import fresh_mysql_url, save_results
from bench.workload import W10, generate, scaled


def children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def timed_call(argv: list[str], env: dict[str, str], first: bool) -> tuple[float, float]:
    """Wall time to the first output line (``first``) or to the exit, and the process's CPU time (ms)."""
    cpu = children_cpu_ms()
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline() if first else ""
    elapsed = (time.perf_counter() - started) * 1000
    process.communicate()
    if not first:
        elapsed = (time.perf_counter() - started) * 1000
    if first and line != "first line\n":
        raise SystemExit(f"unexpected first line {line!r}")
    return elapsed, children_cpu_ms() - cpu


def server_ms(socket_path: Path, script: str) -> tuple[float, float]:
    """The request, written on a connected socket, to the ``started`` reply and to the first output frame."""
    from dynamo.protocol import framing
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(socket_path))
        request = framing.encode({"op": "run", "script": script, "name": "first.py", "args": [], "title": "first",
                                  "write": False, "async": False, "timeout": None})
        started = time.perf_counter()
        sock.sendall(request)
        to_started = to_output = 0.0
        while True:
            message = framing.receive(sock)
            if message is None:
                raise SystemExit("the server closed the connection")
            if message.get("type") == "started":
                to_started = (time.perf_counter() - started) * 1000
            elif message.get("type") == "out" and not to_output:
                to_output = (time.perf_counter() - started) * 1000
            elif message.get("type") == "exit":
                return to_started, to_output
            elif message.get("type") == "error":
                raise SystemExit(f"refused: {message}")


def measure(kind: str, url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store
    image = generate(W10 if args.scale == 1 else scaled(args.scale), args.seed)
    store = open_store(url)
    store.import_image(image, ChangeMeta(title="first_line_bench import"))
    store.close()
    del image
    bench = Bench(home, url)
    result: dict[str, Any] = {"load_s": bench.start()}
    try:
        result["rss_mb"] = bench.rss_mb()
        script = bench.script("first.py", FIRST_LINE)
        dynamo = [command("dynamo"), str(script)]
        bare = [sys.executable, "-c", "pass"]
        first, client_cpu, interpreter, interpreter_cpu, to_started, to_output = [], [], [], [], [], []
        for _ in range(args.runs):  # interleaved: each kind sees the same moments of the machine's load
            time.sleep(args.pause)
            wall, cpu = timed_call(dynamo, bench.env, first=True)
            first.append(wall)
            client_cpu.append(cpu)
            time.sleep(args.pause)
            started, output = server_ms(bench.socket, FIRST_LINE)
            to_started.append(started)
            to_output.append(output)
            wall, cpu = timed_call(bare, bench.env, first=False)
            interpreter.append(wall)
            interpreter_cpu.append(cpu)
        result.update(first_line_ms_median=statistics.median(first), first_line_ms_max=max(first),
                      first_line_ms_min=min(first), client_cpu_ms=statistics.median(client_cpu),
                      interpreter_ms=statistics.median(interpreter),
                      interpreter_cpu_ms=statistics.median(interpreter_cpu),
                      started_ms=statistics.median(to_started), server_ms=statistics.median(to_output),
                      server_ms_max=max(to_output), first_line_ms=first, server_ms_all=to_output)
    finally:
        bench.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between two calls (default 0.3)")
    parser.add_argument("--stores", default="sqlite,mysql")
    parser.add_argument("--mysql", default=os.environ.get("DYNAMO_TEST_MYSQL", "mysql://root@127.0.0.1:3306"))
    parser.add_argument("--mysql-db", default="dynamo_first_line_bench")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--changes", type=int, default=0, help="ignored (the smoke test passes it to every bench)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"scale": args.scale, "runs": args.runs, "time": time.time(),
                               "loadavg_start": os.getloadavg(), "stores": {}}
    for kind in args.stores.split(","):
        home = Path(tempfile.mkdtemp(prefix="dynf", dir="/tmp"))
        home.chmod(0o711)
        try:
            url = f"sqlite:///{home}/inventory.db" if kind == "sqlite" else fresh_mysql_url(args.mysql, args.mysql_db)
            print(f"== {kind}: scale {args.scale} ...", flush=True)
            r = measure(kind, url, home, args)
            r["goals"] = [g for g in judge(SERVER_GOALS, kind, r, args.scale) if g["key"] == "first_line_ms_median"]
            results["stores"][kind] = r
            print(f"   ready {r['load_s']:.1f} s, RSS {r['rss_mb']:.0f} MB; "
                  f"first line {r['first_line_ms_median']:.1f} ms "
                  f"(min {r['first_line_ms_min']:.1f}, max {r['first_line_ms_max']:.1f}); client CPU "
                  f"{r['client_cpu_ms']:.1f} ms (bare interpreter: {r['interpreter_cpu_ms']:.1f} ms CPU, "
                  f"{r['interpreter_ms']:.1f} ms wall); server: {r['server_ms']:.1f} ms to the first output frame "
                  f"(max {r['server_ms_max']:.1f}), {r['started_ms']:.1f} ms to 'started'", flush=True)
            print(render(r["goals"]), flush=True)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    print(f"load average {results['loadavg_start'][0]:.2f} at the start, {results['loadavg_end'][0]:.2f} at the end")
    save_results(results, "first_line", args.json)


if __name__ == "__main__":
    main()
