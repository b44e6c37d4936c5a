"""Starting a child for an application or a console (``spawn``; ``fork_child`` is also what the zygote
of ``server/zygote.py`` runs, while a committed change set goes into the live image).

Before forking it freezes the garbage collector's view of the heap
(``gc.freeze()``), so a child's collections do not write to the inherited
image and its pages stay shared (performance.md: ~21 % of the image copied
otherwise). In the child it arranges descriptors (0: /dev/null or the
console's input; 1, 2: output pipes; the change and console pipes) and closes
every other descriptor inherited from dynamod — database connections,
listening and client sockets, log files — before handing over to
``dynamo.apps.runner.child_main``.
"""

from __future__ import annotations

import codecs
import gc
import os
from collections.abc import Callable
from dataclasses import replace

from dynamo.apps.runner import ChildSpec, child_main
from dynamo.core.inventory import Inventory
from dynamo.descriptors import close_inherited
from dynamo.exitcodes import ChildExit
from dynamo.protocol import framing
from dynamo.server.children import Child, Stream
from dynamo.server.spare import Spare
from dynamo.server.system import System
from dynamo.store.registry import AppRecord


def spawn(spec: ChildSpec, inventory: Inventory, system: System, timeout: float | None,
          record: AppRecord) -> Child:
    """Fork a child running ``spec``; returns the parent's handle (pipes non-blocking)."""
    pid, fds = fork_child(spec, inventory, system.fork)
    try:
        os.setpgid(pid, pid)  # also done by the child; whichever runs first wins the race
    except OSError:
        pass
    return child_handle(spec, pid, fds, system, timeout, record)


def fork_child(spec: ChildSpec, inventory: Inventory, fork: Callable[[], int]) -> tuple[int, dict[str, int]]:
    """Fork the child; returns its pid and the parent's ends of its pipes, by kind ("out", "err",
    "changes", "control"; "input" for a console's stdin)."""
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
        pid = fork()
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
            close_inherited({0, 1, 2, change_w, control_w})
            child_main(replace(spec, change_fd=change_w if change_w >= 0 else None,
                               control_fd=control_w if control_w >= 0 else None), inventory)
        finally:
            os._exit(ChildExit.SETUP_FAILED)
    for fd in (out_w, err_w, change_w, control_w, input_r):
        if fd >= 0:
            os.close(fd)
    kinds = {"out": out_r, "err": err_r, "changes": change_r, "control": control_r, "input": input_w}
    return pid, {kind: fd for kind, fd in kinds.items() if fd >= 0}


def hand_over(spare: Spare, frame: bytes, spec: ChildSpec, system: System, timeout: float | None,
              record: AppRecord) -> Child:
    """Give a read-only application's ``spec`` to the spare (``dynamo.server.spare``), which runs it as
    the child ``spawn`` would have forked; returns the parent's handle. Raises OSError (the spare is
    gone: the caller discards it and forks)."""
    data = memoryview(frame)
    while data:  # it fits the empty pipe (SPEC_MAX): this does not wait for the spare
        data = data[os.write(spare.spec_w, data):]
    os.close(spare.spec_w)
    fds = {"out": spare.out_r, "err": spare.err_r}
    if spare.changes_r >= 0:
        fds["changes"] = spare.changes_r
    return child_handle(spec, spare.pid, fds, system, timeout, record)


def child_handle(spec: ChildSpec, pid: int, fds: dict[str, int], system: System, timeout: float | None,
                 record: AppRecord) -> Child:
    """The parent's handle on a forked child, from its pid and its pipes (``fork_child``)."""
    now = system.monotonic()
    child = Child(record=record, spec=spec, pid=pid, started=now, deadline=None if not timeout else now + timeout,
                  system=system, state_since=now, stdin_fd=fds.get("input"))
    decoder = codecs.getincrementaldecoder("utf-8")
    for kind in ("out", "err", "changes", "control"):
        fd = fds.get(kind, -1)
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
