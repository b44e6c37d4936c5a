"""One web worker (the child side): serve the image it was forked with until it is stale,
told to stop, or used up; then stop accepting, finish what it holds, and leave.

Forked from dynamod's loop: it resets the signal handlers dynamod installed (SIGTERM asks
it to drain, SIGINT and SIGHUP are ignored: they are dynamod's), closes every descriptor
it inherited except the listening socket and the server log, and leaves through
``os._exit`` so that nothing of dynamod's (atexit handlers, buffered files) runs twice.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from dynamo.descriptors import close_inherited
from dynamo.proctitle import set_title
from dynamo.web.app import WebApp
from dynamo.web.generations import VersionCell, WorkerSpec
from dynamo.web.link import Dynamod
from dynamo.web.modules import server as status_module
from dynamo.web.request import Limits
from dynamo.web.users import SharedUsers

log = logging.getLogger("dynamo.web")

POLL = 0.02
MEMORY_EVERY = 1.0


def private_bytes() -> int:
    """Memory of this process no longer shared with dynamod (copied or new)."""
    total = 0
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total


def _log_fds() -> set[int]:
    fds = set()
    for handler in logging.getLogger("dynamo").handlers:
        stream = getattr(handler, "stream", None)
        if stream is not None:
            try:
                fds.add(stream.fileno())
            except (OSError, ValueError):
                pass
    return fds


class _Counter:
    """Counts requests on the way into the application (the GIL makes += on one int safe enough
    for a limit; it only decides when to recycle). At ``limit`` it sets ``reached`` at once: the worker's
    loop, which checks its limits every ``POLL``, stops accepting then, not up to a ``POLL`` later (a
    fast request takes ~1 ms: 20 more requests got in, 45 instead of 25)."""

    def __init__(self, app: WebApp, limit: int = 0, reached: threading.Event | None = None):
        self.app = app
        self.count = 0
        self.limit = limit
        self.reached = reached

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.count += 1
        if self.limit and self.count >= self.limit and self.reached is not None:
            self.reached.set()
        return self.app(environ, start_response)


def _die_with_parent() -> None:
    """SIGTERM when dynamod dies, even by SIGKILL (Linux PR_SET_PDEATHSIG); the loop's parent check covers
    the moment before this was set, and systems without it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def worker_main(spec: WorkerSpec, sock: Any, cell: VersionCell, ack_fd: int, inventory: Any,
                tls: tuple[Path, Path, Path] | None, link: Any, users: SharedUsers) -> NoReturn:
    code = 70
    try:
        stop = threading.Event()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, lambda s, f: stop.set())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _die_with_parent()
        close_inherited({0, 1, 2, sock.fileno(), ack_fd, link.fileno(), *_log_fds()})
        set_title(f"dynamod: web worker (generation {spec.generation}, version {spec.version})")
        code = _serve(spec, sock, cell, ack_fd, inventory, tls, stop, Dynamod(link), users)
    except BaseException:
        log.exception("web worker %d failed", os.getpid())
    finally:
        os._exit(code)


def _serve(spec: WorkerSpec, sock: Any, cell: VersionCell, ack_fd: int, inventory: Any,
           tls: tuple[Path, Path, Path] | None, stop: threading.Event, dynamod: Dynamod, users: SharedUsers) -> int:
    from dynamo.web.server import WebServer

    version = spec.version

    config = spec.config
    status_module.ServerStatus.generation = spec.generation
    app = WebApp(spec.modules, spec.modules_config, lambda: inventory, users.get,
                 Limits(max_body=config.max_body), debug=config.debug, dynamod=dynamod)
    counted = _Counter(app, config.max_requests or 0, stop)
    server = WebServer(counted, sock, threads=config.threads, timeout=config.timeout, max_body=config.max_body,
                       tls=tls)
    server.start()
    next_memory = time.monotonic() + MEMORY_EVERY
    reason = ""
    parent = os.getppid()
    while not stop.wait(POLL):  # set by a signal, or by the counter at max_requests
        if os.getppid() != parent:  # dynamod is gone (killed): a worker must not outlive its server
            reason = "dynamod is gone"
            break
        if cell.get() != version:
            reason = f"inventory version {cell.get()} replaces {version}"
            break
        if config.max_private_memory and time.monotonic() >= next_memory:
            next_memory = time.monotonic() + MEMORY_EVERY
            if private_bytes() > config.max_private_memory:
                reason = f"holds {private_bytes() >> 20} MiB of private memory"
                break
    if not reason:
        at_limit = config.max_requests and counted.count >= config.max_requests
        reason = f"served {counted.count} requests" if at_limit else "told to stop"
    log.debug("web worker %d (generation %d): %s: draining", os.getpid(), spec.generation, reason)
    server.stop_accepting()
    try:
        os.write(ack_fd, struct.pack("i", os.getpid()))  # dynamod waits for this before it answers a writer
    except OSError:
        pass
    server.stop()
    return 0
