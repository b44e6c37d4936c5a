"""``/data/server/status``: the server's state, software version, inventory version and counts."""

from __future__ import annotations

import os
from typing import Any

from dynamo import __version__
from dynamo.web.modules._base import WebModule
from dynamo.web.modules._common import yesno


class ServerStatus(WebModule):
    """Counts of sites, groups, partitions and datasets; with ``full=y`` also of blocks, files and
    replicas, which walks the whole image: in a worker that copies every page it touches (the
    reference counts change), so it is asked for, not given to every status call."""

    # set by the worker that serves: which generation of workers
    state = "serving"
    generation = 0
    # the image a worker serves never changes: walk it once per version
    _counts: tuple[int, dict[str, int]] | None = None

    def run(self, caller: Any, request: dict[str, Any], inventory: Any) -> Any:
        counts = {"sites": len(inventory.sites), "groups": len(inventory.groups) - 1,
                  "partitions": len(inventory.partitions), "datasets": len(inventory.datasets)}
        if yesno(request, "full"):
            cached = ServerStatus._counts
            if cached is None or cached[0] != inventory.version:
                cached = ServerStatus._counts = (inventory.version, inventory.counts())
            counts = cached[1]
        return {"state": self.state, "version": __version__, "inventory_version": inventory.version,
                "generation": self.generation, "worker_pid": os.getpid(), "counts": counts}


export_data = {"status": ServerStatus}
