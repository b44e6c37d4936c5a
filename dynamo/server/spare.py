"""The spare: the next read-only application's child, forked before it is asked for.

Forking dynamod copies its page tables, ~9 ms per GB of image on a quiet machine (several
times that on a loaded one): at W10 the largest part of the server's share of the time from
``dynamo script.py`` to the script's first output line. So while the loop has nothing better
to do it forks one child ahead of need. The spare arranges its descriptors (``/dev/null``,
its output pipes), closes everything else it inherited, and waits on a pipe for the
``ChildSpec`` of the next read-only application; with it, it runs ``child_main`` exactly as
a child forked at that moment would (privileges, limits, work area: all set from the spec).

The spare holds the image of one inventory version. It is used only while the inventory is
still that version (the same object, the same version number): after a commit it is
discarded (SIGKILL, reaped) and another is forked when the loop is idle again. It dies with
dynamod (PR_SET_PDEATHSIG) while it waits. Writers and consoles are forked on demand
(they need more pipes), and so is a reader whose spec does not fit the pipe's buffer (the
hand-over must never block the loop). Cost: one more process sharing the image (its page
tables, ~2 MB per GB, and a few MB of its own).
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import logging
import os
import signal
from collections import deque
from dataclasses import dataclass
from typing import Any

from dynamo.apps.containment import Limits
from dynamo.apps.runner import ChildSpec, child_main
from dynamo.core.inventory import Inventory
from dynamo.descriptors import close_inherited
from dynamo.exitcodes import ChildExit
from dynamo.proctitle import set_title
from dynamo.protocol import framing
from dynamo.server.system import System

log = logging.getLogger("dynamo.server")

MAX_AGE = 300.0
"""Seconds a spare waits before it is replaced: pages dynamod writes meanwhile stay behind in the
spare as copies of its own, so an old spare slowly stops sharing its image."""
SPEC_MAX = 60 << 10
"""Largest spec frame handed over (a pipe holds 64 KiB: the write never waits for the spare)."""
PR_SET_PDEATHSIG = 1


@dataclass(eq=False)
class Spare:
    pid: int
    inventory: Inventory
    version: int
    spec_w: int        # the spec goes here
    out_r: int         # the spare's stdout and stderr, as fork.spawn makes them
    err_r: int
    forked: float = 0.0  # monotonic
    changes_r: int = -1  # a writer's spare (the zygote's): its change stream

    def holds(self, inventory: Inventory) -> bool:
        """It was forked from ``inventory`` as it is now (its version)."""
        return self.inventory is inventory and self.version == inventory.version


def fork_spare(inventory: Inventory, system: System) -> Spare:
    """Fork a spare holding ``inventory`` at its current version. Raises OSError."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    spec_r, spec_w = os.pipe()
    parent = os.getpid()
    gc.collect()  # as fork.spawn does: young garbage must not join the frozen generation for good
    gc.freeze()
    try:
        pid = system.fork()
    except OSError:
        for fd in (out_r, out_w, err_r, err_w, spec_r, spec_w):
            os.close(fd)
        raise
    if pid == 0:
        try:
            wait_for_spec(parent, inventory, out_w, err_w, spec_r)
        finally:
            os._exit(ChildExit.SETUP_FAILED)
    try:
        os.setpgid(pid, pid)  # also done by the spare; whichever runs first wins the race
    except OSError:
        pass
    for fd in (out_w, err_w, spec_r):
        os.close(fd)
    return Spare(pid=pid, inventory=inventory, version=inventory.version, spec_w=spec_w, out_r=out_r, err_r=err_r,
                 forked=system.monotonic())


def wait_for_spec(parent: int | None, inventory: Inventory, out_w: int, err_w: int, spec_r: int,
                  change_w: int | None = None) -> None:
    """The spare's side: never returns. ``parent``: dynamod, whose death kills the spare; None for the
    zygote's spares (``dynamo.server.zygote``), which end when their spec
    pipe closes unused. ``change_w``: a write application's spare, and its change stream."""
    set_title("dynamo: spare" if change_w is None else "dynamo: writer spare")
    os.setpgid(0, 0)
    if parent is not None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # dynamod died before the prctl
            os._exit(0)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    close_inherited({0, 1, 2, spec_r, *(() if change_w is None else (change_w,))})
    try:
        message = framing.read_fd(spec_r, SPEC_MAX)
    except (OSError, framing.ProtocolError):
        message = None
    if message is None:  # discarded
        os._exit(0)
    os.close(spec_r)
    spec = decode_spec(message)
    if spec.write != (change_w is not None):  # dynamod hands a writer to a writer's spare only
        os._exit(ChildExit.SETUP_FAILED)
    child_main(dataclasses.replace(spec, change_fd=change_w), inventory)


def encode_spec(spec: ChildSpec) -> bytes | None:
    """The hand-over frame, or None when it would not fit the pipe."""
    try:
        frame = framing.encode(dataclasses.asdict(spec), SPEC_MAX)
    except framing.ProtocolError:  # FrameTooLarge, or text that is not valid Unicode
        return None
    return frame


def decode_spec(message: dict[str, Any]) -> ChildSpec:
    """``encode_spec``'s frame, back (JSON made the tuple a list and the limits a dict)."""
    return ChildSpec(**{**message, "args": tuple(message["args"]), "limits": Limits(**message["limits"])})


def _close(spare: Spare) -> None:
    for fd in (spare.spec_w, spare.out_r, spare.err_r, spare.changes_r):
        if fd < 0:
            continue
        try:
            os.close(fd)
        except OSError:
            pass


class Spares:
    """The spare (the next reader's), those in stock behind it (a zygote's: ``dynamo.server.zygote``), and
    the discarded ones until they are reaped."""

    def __init__(self, system: System):
        self.system = system
        self.spare: Spare | None = None
        self.stock: deque[Spare] = deque()  # the next ones, once ``spare`` is taken
        self.writer: Spare | None = None    # the next write application's (the zygote's)
        self.discarded: set[int] = set()
        self.failed = False     # a fork failed: no more spares (each would fail the same way)

    def pids(self) -> set[int]:
        """Processes of ours that are not applications (dynamod's orphan sweep must spare them)."""
        return self.discarded | {s.pid for s in (*self.stock, self.spare, self.writer) if s is not None}

    def count(self) -> int:
        return (self.spare is not None) + len(self.stock)

    def add(self, spare: Spare) -> None:
        """A spare forked elsewhere (by the zygote), of the current image."""
        if self.spare is None:
            self.spare = spare
        else:
            self.stock.append(spare)

    def take(self, spec: ChildSpec, inventory: Inventory) -> tuple[Spare, bytes] | None:
        """The spare, with its hand-over frame, when it can run ``spec`` on ``inventory``; else None."""
        if spec.kind != "app":
            return None
        if spec.write:
            return self._take_writer(spec, inventory)
        while self.spare is not None and not self.spare.holds(inventory):
            self.discard()
        spare = self.spare
        if spare is None:
            return None
        frame = encode_spec(spec)
        if frame is None:
            return None
        self.spare = self.stock.popleft() if self.stock else None
        return spare, frame

    def _take_writer(self, spec: ChildSpec, inventory: Inventory) -> tuple[Spare, bytes] | None:
        writer = self.writer
        if writer is None:
            return None
        if not writer.holds(inventory):
            self.writer = None
            self.discard(writer)
            return None
        frame = encode_spec(spec)
        if frame is None:
            return None
        self.writer = None
        return writer, frame

    def tend(self, inventory: Inventory, idle: bool) -> None:
        """Reap discarded spares; discard one of an older image (or, when ``idle``, an old one); fork a new
        one when ``idle``."""
        for pid in list(self.discarded):
            try:
                done, _ = self.system.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.discarded.discard(pid)
        for stale in [s for s in self.stock if not s.holds(inventory)]:
            self.stock.remove(stale)
            self.discard(stale)
        writer = self.writer
        if writer is not None and not writer.holds(inventory):
            self.writer = None
            self.discard(writer)
        elif writer is not None and self._gone(writer):
            self.writer = None
            _close(writer)
        spare = self.spare
        if spare is not None:
            if not spare.holds(inventory) or \
                    (idle and self.system.monotonic() > spare.forked + MAX_AGE):
                self.discard()
            elif self._gone(spare):  # reaped already: nothing to kill
                self.spare = self.stock.popleft() if self.stock else None
                _close(spare)
        if self.spare is None and idle and not self.failed:
            try:
                self.spare = fork_spare(inventory, self.system)
            except OSError as exc:
                self.failed = True
                log.error("cannot fork a spare child (applications are forked on demand): %s", exc)

    def _gone(self, spare: Spare) -> bool:
        try:
            done, _ = self.system.waitpid(spare.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        return bool(done)

    def discard(self, spare: Spare | None = None) -> None:
        """Kill ``spare`` (default: the one held); it is reaped by ``tend``."""
        if spare is None:
            spare = self.spare
            self.spare = self.stock.popleft() if self.stock else None
            if spare is None:
                return
        _close(spare)
        self.system.lowest_priority(spare.pid)
        try:
            self.system.kill(spare.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.discarded.add(spare.pid)

    def close(self) -> None:
        """At shutdown: discard the spares and reap them."""
        while self.spare is not None:
            self.discard()
        if self.writer is not None:
            writer, self.writer = self.writer, None
            self.discard(writer)
        for pid in self.discarded:
            try:
                self.system.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.discarded.clear()
