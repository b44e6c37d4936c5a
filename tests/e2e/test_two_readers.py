"""dynamod on a store large enough for the load's second reader (store.filesreader): the image it
serves, read by an application (a fork of dynamod, as the service user), is the image stored."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from bench.workload import generate, scaled
from dynamo.core.journal import ChangeMeta
from dynamo.store import open_store
from dynamo.store.sqlite import SECOND_READER_MIN_BYTES
from tests.e2e.conftest import Server, command

WALK = """import hashlib
from dynamo.core.executable import inventory
h = hashlib.sha256()
for name in sorted(inventory.datasets)[:40]:
    for block in sorted(inventory.datasets[name].blocks, key=lambda b: b.name):
        for f in sorted(block.files, key=lambda f: f.lfn):
            h.update(f"{f.lfn} {f.size} {f.checksum_text}\\n".encode())
print(h.hexdigest(), sum(b.files_count() for d in inventory.datasets.values() for b in d.blocks))
"""


def test_dynamod_serves_the_image_its_two_readers_loaded(server_home: Path) -> None:
    path = server_home / "inventory.db"
    image = generate(scaled(0.05), 51)
    with open_store(f"sqlite:///{path}") as store:
        store.import_image(image, ChangeMeta(title="import"))
    assert path.stat().st_size >= SECOND_READER_MIN_BYTES
    expected = hashlib.sha256()
    for name in sorted(image.datasets)[:40]:
        for block in sorted(image.datasets[name].blocks, key=lambda b: b.name):
            for f in sorted(block.files, key=lambda f: f.lfn):
                expected.update(f"{f.lfn} {f.size} {f.checksum_text}\n".encode())
    total = sum(b.files_count() for d in image.datasets.values() for b in d.blocks)
    server = Server(server_home, f"sqlite:///{path}")
    server.start(timeout=120)
    try:
        assert "(2 readers)" in server.log()
        shown = server.run(str(server.script("walk.py", WALK)))
        assert shown.code == 0, shown.err
        assert shown.out.split() == [expected.hexdigest(), str(total)]
        # A second dynamod is refused (the pid file) after it started its load's second reader (first thing,
        # before its imports): the reader ends with it, not left reading the store.
        assert not _readers(path)  # the first server's ended with its load
        refused = subprocess.run([command("dynamod"), "--config", str(server.config)], capture_output=True,
                                 text=True, timeout=60, env=server.env())
        assert refused.returncode == 1 and "another dynamod" in refused.stderr
        assert not _readers(path)
    finally:
        assert server.stop() == 0, server.output.read_text()


def _readers(store: Path) -> list[int]:
    """The load readers (``python -m dynamo.store.filesreader``) that have ``store`` open."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or b"dynamo.store.filesreader" not in (entry / "cmdline").read_bytes():
                continue
            if any(os.readlink(fd) == str(store.resolve()) for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return found
