"""Forking applications and keeping track of them (the parent side).

``spawn`` is the only fork site. Before forking it freezes the garbage
collector's view of the heap (``gc.freeze()``), so a child's collections do
not write to the inherited image and its pages stay shared (performance.md:
~21 % of the image copied otherwise). In the child it arranges descriptors
(0: /dev/null or the console's input; 1, 2: output pipes; the change and
console pipes) and closes every other descriptor inherited from dynamod —
database connections, listening and client sockets, log files — before
handing over to ``dynamo.apps.runner.child_main``.
"""

from __future__ import annotations

import codecs
import gc
import os
import signal
import time
from dataclasses import dataclass, field, replace
from typing import IO, Any

from dynamo.apps.runner import ChildSpec, child_main
from dynamo.core.changeset import Prepared
from dynamo.core.inventory import Inventory
from dynamo.protocol import framing
from dynamo.store.registry import AppRecord


@dataclass
class Stream:
    """One pipe from a child: its descriptor, what it carries, and its decoder."""

    fd: int
    kind: str                     # "out", "err", "changes" or "control"
    child: Child
    text: Any = None              # incremental UTF-8 decoder for out/err
    frames: framing.Decoder | None = None
    log: IO[str] | None = None    # the work area's _stdout / _stderr
    logged: int = 0               # characters written to log
    open: bool = True

    def fileno(self) -> int:
        return self.fd


@dataclass
class Child:
    record: AppRecord
    spec: ChildSpec
    pid: int
    started: float
    deadline: float | None
    streams: list[Stream] = field(default_factory=list)
    stdin_fd: int | None = None   # the console's input (shell only)
    stdin_pending: bytearray = field(default_factory=bytearray)  # input the console has not read yet
    stdin_eof: bool = False       # the client ended its input: close stdin_fd once pending is written
    exit_status: int | None = None  # os.waitpid status once reaped
    exited_at: float | None = None  # monotonic time it was reaped
    stop_reason: str | None = None  # "killed" or "timeout" once dynamod decided to stop it
    term_sent: float | None = None
    kill_sent: bool = False
    records: Prepared = field(default_factory=Prepared)
    commit_count: int | None = None
    change_error: str | None = None
    connection: Any = None        # the client connection streaming this child's output, if any
    dn: str = ""                  # the submitter's certificate DN (journaled with a writer's changes)

    @property
    def running(self) -> bool:
        return self.exit_status is None

    @property
    def pipes_open(self) -> bool:
        return any(s.open for s in self.streams)

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:  # the group is gone and the pid reused: fall back to the child itself
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, reason: str) -> None:
        """Begin stopping the whole process group: SIGTERM now, SIGKILL after the grace period."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.term_sent is None and self.running:
            self.term_sent = time.monotonic()
            self.signal_group(signal.SIGTERM)


def _close_inherited(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def spawn(spec: ChildSpec, inventory: Inventory, now: float, timeout: float | None,
          record: AppRecord) -> Child:
    """Fork a child running ``spec``; returns the parent's handle (pipes non-blocking)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    change_r, change_w = os.pipe() if spec.write and spec.kind == "app" else (-1, -1)
    control_r, control_w = os.pipe() if spec.kind == "shell" else (-1, -1)
    input_r, input_w = os.pipe() if spec.kind == "shell" else (-1, -1)
    # Collect first: garbage cycles left by earlier applications would otherwise join the frozen
    # generation for good. This only walks objects created since the last freeze (milliseconds).
    gc.collect()
    gc.freeze()
    try:
        pid = os.fork()
    except OSError:
        for fd in (out_r, out_w, err_r, err_w, change_r, change_w, control_r, control_w, input_r, input_w):
            if fd >= 0:
                os.close(fd)
        raise
    if pid == 0:  # the child
        try:
            os.setpgid(0, 0)
            stdin = input_r if input_r >= 0 else os.open(os.devnull, os.O_RDONLY)
            os.dup2(stdin, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            _close_inherited({0, 1, 2, change_w, control_w})
            child_main(replace(spec, change_fd=change_w if change_w >= 0 else None,
                               control_fd=control_w if control_w >= 0 else None), inventory)
        finally:
            os._exit(125)
    try:
        os.setpgid(pid, pid)  # also done by the child; whichever runs first wins the race
    except OSError:
        pass
    for fd in (out_w, err_w, change_w, control_w, input_r):
        if fd >= 0:
            os.close(fd)
    child = Child(record=record, spec=spec, pid=pid, started=now,
                  deadline=None if not timeout else now + timeout,
                  stdin_fd=input_w if input_w >= 0 else None)
    decoder = codecs.getincrementaldecoder("utf-8")
    for fd, kind in ((out_r, "out"), (err_r, "err"), (change_r, "changes"), (control_r, "control")):
        if fd < 0:
            continue
        os.set_blocking(fd, False)
        stream = Stream(fd, kind, child)
        if kind in ("out", "err"):
            stream.text = decoder(errors="replace")
        else:
            stream.frames = framing.Decoder(max_frame=64 << 20)
        child.streams.append(stream)
    return child
