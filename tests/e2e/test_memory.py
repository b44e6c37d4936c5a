"""The server's memory after many writes: the image plus a bound that does not grow with their number.

A finished write application's change set must be garbage when the image is frozen again after its
commit; anything of it still reachable then (its child, its client connection, a closure) moves into
the permanent generation and stays until the maintenance collection, hours later (before the fix:
about 0.9 KB per record, 12 writes of 20k records took the server from 91 to 300 MB).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.conftest import Server
from tests.e2e.test_applications import authorize

RECORDS = 20_000
WRITER = """
import sys
from dynamo.core.executable import inventory
from dynamo.dataformat import Site
count, round = int(sys.argv[1]), sys.argv[2]
for i in range(count):
    inventory.update(Site(f"T9_MEM_{i:05d}", f"host{round}.example.org"))
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_memory_does_not_grow_with_the_number_of_writes(server_home: Path) -> None:
    server = Server(server_home, f"sqlite:///{server_home}/inventory.db")
    server.start()
    try:
        script = server.script("memwriter.py", WRITER)
        authorize(server, str(script), "memwriter")
        assert server.process is not None
        rss: dict[int, float] = {}
        for n in range(31):  # write 0 creates the sites; each later one changes all of them
            done = server.run(f"{script} {RECORDS} {n}", "--write-request", "--title", "memwriter", timeout=120)
            assert done.code == 0, done.err
            assert f"{RECORDS} change(s) applied" in done.err
            time.sleep(0.2)  # the change log and the refreeze follow the answer
            rss[n] = rss_mb(server.process.pid)
        growth = rss[30] - rss[10]
        print("server RSS (MB) after writes:", {n: round(v) for n, v in rss.items()})
        # before the fix: ~19 MB more per write here (374 MB for these 20 writes; after it: about 0)
        assert growth < 40, f"RSS grew by {growth:.0f} MB from write 10 to 30: {rss}"
        assert rss[30] < rss[1] + 60, f"RSS after 30 writes is not the image plus a bound: {rss}"
    finally:
        server.stop()
