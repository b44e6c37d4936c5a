"""Work areas: ``<work_area>/<id>-<random>/`` per application, and their removal when old.

The run directory belongs to the server and keeps the output logs; the application gets its
``work/`` (the current directory), so it cannot swap the logs for links to files only the
server may read, which --poll would then show. The random part: ``<work_area>`` is not
listable, so applications (all running as the service user) cannot find each other's.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path

from dynamo.store.registry import Registry

log = logging.getLogger("dynamo.server")


class WorkAreas:
    def __init__(self, base: Path, uid: int | None, gid: int | None):
        self.base = base
        self.uid = uid
        self.gid = gid

    def create(self) -> None:
        # traversable (not listable) by applications running as the service user: they enter their work area
        self.base.mkdir(parents=True, exist_ok=True, mode=0o711)

    def prepare(self, app_id: int, script_name: str | None, script: str) -> Path:
        """Make the run directory and its ``work/`` (with the script, if any); returns the run directory.
        Raises OSError."""
        run_dir = self.base / f"{app_id}-{secrets.token_hex(8)}"
        work = run_dir / "work"
        run_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        work.mkdir(exist_ok=True)
        if script_name is not None:
            (work / script_name).write_text(script)
        if self.uid is not None:
            os.chown(work, self.uid, self.gid or -1)
        return run_dir

    def clean(self, registry: Registry, cutoff: float) -> int:
        """Forget finished applications older than ``cutoff`` (epoch seconds) and remove their run
        directories; returns how many. Raises StoreError."""
        old = registry.purge_applications(cutoff)
        base = self.base.resolve()
        for record in old:
            run_dir = Path(record.work_area).parent.resolve() if record.work_area else None
            if run_dir is not None and run_dir.parent == base:
                shutil.rmtree(run_dir, ignore_errors=True)
        return len(old)
