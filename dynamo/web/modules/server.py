"""``/data/server/status``: the server's state, software version, inventory version and counts."""

from __future__ import annotations

import os
from typing import Any

from dynamo import __version__
from dynamo.web.modules._base import WebModule


class ServerStatus(WebModule):
    # set by the worker that serves: which generation of workers, and since when
    state = "serving"
    generation = 0
    # the image a worker serves never changes: count it once per version (it walks every block)
    _counts: tuple[int, dict[str, int]] | None = None

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        cached = ServerStatus._counts
        if cached is None or cached[0] != inventory.version:
            cached = ServerStatus._counts = (inventory.version, inventory.counts())
        return {"state": self.state, "version": __version__, "inventory_version": inventory.version,
                "generation": self.generation, "worker_pid": os.getpid(), "counts": cached[1]}


export_data = {"status": ServerStatus}
