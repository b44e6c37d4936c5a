"""Walk benchmark: what a forked read-only application costs the machine.

    python -m bench.walk_bench --db /tmp/w1.db --scale 0.1       # build the store once (W1), then measure
    python -m bench.walk_bench --db /tmp/w1.db --runs 3          # measure again (the store exists)

Each run is a fresh process that loads the image from the store (``load_s``, RSS after the
load; ``rss_trimmed_mb``: after closing the store and ``malloc_trim``, i.e. without SQLite's
page cache, the image alone), freezes it as the server does (``gc.freeze()``), then forks a child that walks the
whole inventory through the public object API: every dataset, block, file (name and size),
dataset replica (its size) and block replica (its size, group, completeness); a second child walks as
the server benchmark's application does (``walk_by_block``: each block's files, then its
replicas through ``block.replicas``: ``block_walk_dirty_mb``). Each child
reports the private memory it dirtied (``Private_Dirty`` of /proc/self/smaps_rollup, before
and after the walk): what copy-on-write failed to share. Medians over ``--runs`` are printed
and written as JSON (``--json``).

The code measured is the ``dynamo`` package importable from the current directory first
(``python -m`` puts it on ``sys.path``): run it from another checkout to compare versions.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.store_bench import rss_mb


def private_dirty_kb() -> int:
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    return 0


def walk(inventory: Any) -> dict[str, int]:
    """Read everything a reporting application reads; counts of what was seen."""
    n = {"datasets": 0, "blocks": 0, "files": 0, "file_bytes": 0, "name_chars": 0, "datasetreplicas": 0,
         "replica_bytes": 0, "blockreplicas": 0, "incomplete": 0, "group_chars": 0}
    for dataset in inventory.datasets.values():
        n["datasets"] += 1
        for block in dataset.blocks:
            n["blocks"] += 1
            for f in block.files:
                n["files"] += 1
                n["file_bytes"] += f.size
                n["name_chars"] += len(f.lfn)
    for site in inventory.sites.values():
        for replica in site.dataset_replicas():
            n["datasetreplicas"] += 1
            n["replica_bytes"] += replica.size()
            for block_replica in replica.block_replicas:
                n["blockreplicas"] += 1
                n["incomplete"] += not block_replica.is_complete()
                n["group_chars"] += len(block_replica.group_name or "")
    return n


def walk_by_block(inventory: Any) -> dict[str, int]:
    """The server benchmark's walk (``bench.server_bench.WALK``): every file, then each block's
    replicas through ``block.replicas`` (found by block, sized by block replica)."""
    n = {"files": 0, "file_bytes": 0, "name_chars": 0, "blockreplicas": 0, "replica_bytes": 0}
    for dataset in inventory.datasets.values():
        for block in dataset.blocks:
            for f in block.files:
                n["files"] += 1
                n["file_bytes"] += f.size
                n["name_chars"] += len(f.lfn)
            for replica in block.replicas:
                n["blockreplicas"] += 1
                n["replica_bytes"] += replica.size
                n["name_chars"] += len(replica.site.name)
    return n


def _walk_in_child(how: Any, inventory: Any) -> dict[str, Any]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the reader
        os.close(read_fd)
        code = 1
        try:
            before = private_dirty_kb()
            t = time.perf_counter()
            counts = how(inventory)
            walk_s = time.perf_counter() - t
            after = private_dirty_kb()
            os.write(write_fd, json.dumps({"dirty_mb": (after - before) / 1024, "s": walk_s,
                                           "walked": counts}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        child = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return dict(child)


def worker(url: str) -> dict[str, Any]:
    import dynamo
    from dynamo.store import open_store

    store = open_store(url, create=False)
    t0 = time.perf_counter()
    inventory = store.load()
    load_s = time.perf_counter() - t0
    rss = rss_mb()
    store.close()
    gc.collect()
    gc.freeze()
    # the image alone: the store's page cache, freed by close(), given back to the system
    ctypes.CDLL(None).malloc_trim(0)
    rss_trimmed = rss_mb()
    by_site = _walk_in_child(walk, inventory)
    by_block = _walk_in_child(walk_by_block, inventory)
    child = {"walk_dirty_mb": by_site["dirty_mb"], "walk_s": by_site["s"], "walked": by_site["walked"],
             "block_walk_dirty_mb": by_block["dirty_mb"], "block_walk_s": by_block["s"]}
    return {"code": dynamo.__file__, "load_s": load_s, "rss_mb": rss, "rss_trimmed_mb": rss_trimmed, **child}


def prepare(url: str, scale: float, seed: int) -> None:
    from bench.workload import W10, generate, scaled
    from dynamo.core.journal import ChangeMeta
    from dynamo.store import open_store

    image = generate(W10 if scale == 1 else scaled(scale), seed)
    store = open_store(url)
    store.import_image(image, ChangeMeta(title="walk_bench import"))
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="SQLite file of the store (built when missing; required)")
    parser.add_argument("--scale", type=float, default=0.1, help="fraction of W10 when building (default W1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    if not args.db:
        parser.error("--db is required")
    url = f"sqlite:///{Path(args.db).resolve()}"
    if not Path(args.db).exists():
        print(f"building {args.db} at scale {args.scale} ...", flush=True)
        prepare(url, args.scale, args.seed)
    runs = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-m", "bench.walk_bench", "--worker", url], check=True,
                             capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    keys = ("load_s", "rss_mb", "rss_trimmed_mb", "walk_dirty_mb", "walk_s", "block_walk_dirty_mb", "block_walk_s")
    result = {"code": runs[0]["code"], "walked": runs[0]["walked"], "runs": runs,
              "median": {k: statistics.median(r[k] for r in runs) for k in keys},
              "loadavg": os.getloadavg()}
    print("median: " + ", ".join(f"{k} {v:.2f}" for k, v in result["median"].items())
          + f"; load average {result['loadavg'][0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
