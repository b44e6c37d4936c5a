"""Work areas: ``<work_area>/<id>-<random>/`` per application, and their removal when old.

The run directory belongs to the server (0711) and keeps the output logs (0600, the server's:
only their owner and admins see them, through --poll); the application gets its ``work/`` (the
current directory, 0700 and its own), so it cannot swap the logs for links to files only the
server may read, which --poll would then show. With per-application uids no application can enter
another's ``work/``; with a shared service user the random part of the name is what keeps them
apart (``<work_area>`` is not listable, and --poll shows the name to the owner and admins only).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path

from dynamo.privatefiles import create_private
from dynamo.server.identities import Identity
from dynamo.store.registry import Registry

log = logging.getLogger("dynamo.server")


class WorkAreas:
    def __init__(self, base: Path):
        self.base = base

    def prepare(self, app_id: int, script_name: str | None, script: str, identity: Identity | None) -> Path:
        """Make the run directory, its output logs and its ``work/`` (with the script, if any), owned by
        ``identity`` (None: the server's user); returns the run directory. Raises OSError."""
        run_dir = self.base / f"{app_id}-{secrets.token_hex(8)}"
        work = run_dir / "work"
        run_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chmod(run_dir, 0o711)  # whatever the umask
        for name in ("_stdout", "_stderr"):
            create_private(run_dir / name)
        work.mkdir(mode=0o700, exist_ok=True)
        os.chmod(work, 0o700)
        if script_name is not None:
            (work / script_name).write_text(script)
        if identity is not None:
            if script_name is not None:
                os.chown(work / script_name, identity.uid, identity.gid)
            os.chown(work, identity.uid, identity.gid)
        return run_dir

    @staticmethod
    def seal(work: Path) -> None:
        """The application has ended and nothing runs as its uid any more: its ``work/`` becomes the
        server's (0700), so that a later application given the same uid cannot enter it while it is
        kept (``retain_days``)."""
        try:
            os.chown(work, 0, 0)
            os.chmod(work, 0o700)
        except OSError as exc:
            log.warning("work area %s: cannot take it back from the application: %s", work, exc.strerror)

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
