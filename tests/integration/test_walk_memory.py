"""Copy-on-write holds: a forked read-only walk of the whole inventory stays shared.

The server forks every application from its image; a reader that writes into the pages of
the objects it reads (reference counts, caches) copies them into private memory, and sixteen
such readers cost more than the image. Here a real image is imported into a store, loaded and
frozen as the server does, and a forked child reads every dataset, block, file (name and
size), dataset replica (its size) and block replica: the private memory it dirtied must stay
under a small bound per block. One packed ``bytes`` per block (the former layout) dirtied
about 2 KB per block here, and eagerly built block replicas more; what is left is mostly the
Block and DatasetReplica objects themselves (their reference counts).
"""

from __future__ import annotations

import gc
import json
import os

from bench.walk_bench import private_dirty_kb, walk
from bench.workload import generate, scaled
from dynamo.core.journal import ChangeMeta
from dynamo.store import open_store

# private bytes the walk may dirty per block (each block here has 10 files and 5 replicas).
# Measured here (2026-12-01): 6.6 MiB in all (230 bytes a block), against this bound of 7.7 MiB;
# 9.7 MiB before the blocks' ints (id, size, file table offset), the dataset replicas' offsets
# and two of the Block's slots left the walk's way.
BYTES_PER_BLOCK = 200
SLACK = 2 << 20  # the child's first writes anywhere (stack, interpreter state, allocator pools)


def _walk_in_child(inventory: object) -> dict[str, object]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        code = 1
        try:
            before = private_dirty_kb()
            counts = walk(inventory)
            after = private_dirty_kb()
            os.write(write_fd, json.dumps({"dirty": (after - before) * 1024, "walked": counts}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return dict(json.loads(data))


def test_forked_walk_dirties_little(sqlite_url: str) -> None:
    image = generate(scaled(0.03), 5)
    with open_store(sqlite_url) as store:
        store.import_image(image, ChangeMeta(title="walk"))
    del image
    with open_store(sqlite_url, create=False) as store:
        inventory = store.load()
    gc.collect()
    gc.freeze()
    try:
        result = _walk_in_child(inventory)
    finally:
        gc.unfreeze()
    walked = result["walked"]
    assert isinstance(walked, dict)
    assert walked["blocks"] == 30_000 and walked["files"] == 300_000 and walked["blockreplicas"] == 150_000
    bound = BYTES_PER_BLOCK * walked["blocks"] + SLACK
    dirty = result["dirty"]
    assert isinstance(dirty, int)
    assert dirty <= bound, f"the walk dirtied {dirty / 2**20:.1f} MiB, bound {bound / 2**20:.1f} MiB"
