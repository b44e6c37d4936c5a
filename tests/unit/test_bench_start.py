"""The server benchmark gives up on a dynamod that never becomes ready, instead of waiting forever."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bench import server_bench


def test_a_server_that_never_listens_ends_the_benchmark(tmp_path: Path, monkeypatch: Any) -> None:
    # a "dynamod" that runs but never becomes ready (the old loop waited until it exited: 5 s here)
    hung = tmp_path / "dynamod"
    hung.write_text("#!/bin/sh\nexec sleep 5\n")
    hung.chmod(0o755)
    monkeypatch.setattr(server_bench, "command", lambda name: str(hung))
    monkeypatch.setattr(server_bench, "START_TIMEOUT", 0.5)
    bench = server_bench.Bench(tmp_path, f"sqlite:///{tmp_path}/inventory.db")
    started = time.monotonic()
    with pytest.raises(SystemExit, match="dynamod was not ready within 0.5 s"):
        bench.start()
    assert time.monotonic() - started < 4
    assert bench.process is not None and bench.process.returncode is not None  # killed, not left behind
