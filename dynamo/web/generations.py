"""Web workers in generations, managed from dynamod's loop (the parent side).

Each generation is ``workers`` processes forked from dynamod at one inventory version; they
serve from their copy-on-write image of that version, which nothing changes under them, and
share the one listening socket (the kernel queues connections while no worker accepts). When
a change set commits, the committer calls ``step`` *before* the writer gets its answer: the
new version goes into a shared cell, the new generation is forked, and the old workers, which
watch the cell, stop accepting and say so on a pipe; ``step`` waits for that (a fraction of a
second) and only then does the writer hear that its change is in. So a client that committed
version N and then reads gets >= N, and no request sees half a change set. What an old
worker read before it stopped accepting was sent before the writer's answer, so it may be
answered from the older image (the two were concurrent); a worker that does not stop within
a second is killed rather than waited for.

A worker is replaced after ``max_requests`` requests or ``max_private_memory`` bytes of private
memory; one that dies young is replaced no faster than once a second. Users and roles are
read from the registry at every generation and every ``USERS_TTL`` seconds, and shared with
the running workers (``dynamo.web.users``). The workers ask dynamod for what they cannot do
from their image (writes, the application registry) over the link (``dynamo.web.link``).
"""

from __future__ import annotations

import gc
import logging
import mmap
import os
import select
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamo.config import WebConfig
from dynamo.dataformat.configuration import Configuration
from dynamo.errors import ConfigurationError, StoreError
from dynamo.web.link import WebLink
from dynamo.web.loader import ModuleMap, load_modules
from dynamo.web.user import User
from dynamo.web.users import USERS_TTL, SharedUsers, registry_users

__all__ = ["WebGenerations", "registry_users", "VersionCell", "WorkerSpec"]

log = logging.getLogger("dynamo.web")

KILL_GRACE = 30.0
RESPAWN_DELAY = 1.0
STOP_ACCEPTING_WAIT = 1.0


class VersionCell:
    """One integer in memory shared with every worker forked after it was made."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, 8)

    def set(self, value: int) -> None:
        self._map[:8] = struct.pack("q", value)

    def get(self) -> int:
        return int(struct.unpack("q", self._map[:8])[0])


@dataclass
class Worker:
    pid: int
    generation: int
    started: float
    stopping_since: float | None = None


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs besides its image (the child side is dynamo.web.worker)."""

    config: WebConfig
    modules: ModuleMap
    modules_config: Configuration
    generation: int
    version: int
    users: dict[str, User]


class WebGenerations:
    def __init__(self, config: WebConfig, path: Callable[[Path], Path]):
        self.config = config
        self.path = path
        self.sock: Any = None
        self.modules = ModuleMap()
        self.modules_config = Configuration()
        self.cell = VersionCell()
        self.generation = 0
        self.version = -1
        self.workers: dict[int, Worker] = {}
        self._last_spawn = 0.0
        self._users: dict[str, User] = {}
        self.shared_users = SharedUsers()
        self._users_read = 0.0
        self.link: WebLink | None = None    # made by open(): the workers' requests to dynamod
        # the current generation's workers write one byte here when they stop accepting
        self._ack: tuple[int, int] | None = None

    # ----- start and stop, from dynamod -----

    def open(self) -> None:
        """Load the modules (an error stops dynamod, naming the module), check the TLS files, listen."""
        from dynamo.web.server import listen, web_tls_context

        config = self.config
        assert config.address is not None
        self.modules = load_modules(tuple(self.path(Path(d)) for d in config.module_dirs))
        if config.modules_config is not None:
            self.modules_config = Configuration(self.path(config.modules_config))
        if self.tls is not None:
            web_tls_context(*self.tls)  # a missing or wrong key fails the start, not every worker
        try:
            self.sock = listen(config.address)
        except OSError as exc:
            raise ConfigurationError(f"[web] cannot listen on {config.address}: {exc.strerror}") from exc
        self.link = WebLink()

    def is_worker(self, pid: int) -> bool:
        """Whether ``pid`` is one of our web workers (not yet reaped: its pid cannot have been reused)."""
        return pid in self.workers

    @property
    def tls(self) -> tuple[Path, Path, Path] | None:
        c = self.config
        if c.tls_cert is None or c.tls_key is None or c.tls_ca is None:
            return None
        return self.path(c.tls_cert), self.path(c.tls_key), self.path(c.tls_ca)

    def name(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.link is not None:
            self.link.close()
            self.link = None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM every worker, wait up to ``grace`` seconds, then SIGKILL."""
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.workers and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.02)
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGKILL)
        while self.workers:
            self.reap()
            time.sleep(0.01)
        if self._ack is not None:
            for fd in self._ack:
                os.close(fd)
            self._ack = None
        self.close()

    # ----- one step of dynamod's loop -----

    def step(self, inventory: Any, users: Callable[[], dict[str, User]]) -> None:
        self.reap()
        now = time.monotonic()
        if inventory.version != self.version:
            self._new_generation(inventory, users(), now)
        else:
            if now - self._users_read >= USERS_TTL:
                self._refresh_users(users, now)
            self._top_up(inventory, now)
        for worker in self.workers.values():
            if worker.stopping_since is not None and now - worker.stopping_since > KILL_GRACE:
                log.warning("web worker %d (generation %d) did not drain: killed", worker.pid, worker.generation)
                _signal(worker.pid, signal.SIGKILL)

    def wants_fork(self, inventory: Any) -> bool:
        """``step`` would fork a worker from ``inventory`` now (a new generation, or one short of workers)."""
        if inventory.version != self.version:
            return True
        current = sum(1 for w in self.workers.values() if w.generation == self.generation and w.stopping_since is None)
        return current < self.config.workers and time.monotonic() - self._last_spawn >= RESPAWN_DELAY

    def _refresh_users(self, users: Callable[[], dict[str, User]], now: float) -> None:
        """The registry's users and roles, to the running workers (a store failure: next time)."""
        self._users_read = now
        try:
            self._users = users()
        except StoreError as exc:
            log.warning("web: cannot read the users and roles again: %s", exc)
            return
        self.shared_users.publish(self._users)

    def reap(self) -> None:
        for pid in list(self.workers):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                worker = self.workers.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                level = logging.DEBUG if code == 0 else logging.WARNING
                log.log(level, "web worker %d (generation %d) ended with %d", pid, worker.generation, code)

    def _new_generation(self, inventory: Any, users: dict[str, User], now: float) -> None:
        self.cell.set(inventory.version)  # the old workers stop accepting
        old = [w for w in self.workers.values() if w.stopping_since is None]
        for worker in old:
            worker.stopping_since = now
        old_ack = self._ack
        self._ack = os.pipe()
        self.generation += 1
        self.version = inventory.version
        self._users = users
        self._users_read = now
        self.shared_users.publish(users)
        for _ in range(self.config.workers):
            self._spawn(inventory, now)
        if old_ack is not None:
            self._await_stopped(old_ack, old)
        for worker in old:
            _signal(worker.pid, signal.SIGTERM)
        log.info("web generation %d: %d worker(s) at inventory version %d", self.generation, self.config.workers,
                 self.version)

    def _await_stopped(self, ack: tuple[int, int], old: list[Worker]) -> None:
        """Until every old worker has stopped accepting (each writes its pid) or died; one that has
        not within STOP_ACCEPTING_WAIT is killed, requests in hand and all: it must not answer a
        client that will have heard of the commit from an older image."""
        read_end, write_end = ack
        os.close(write_end)
        waiting = {w.pid for w in old}
        deadline = time.monotonic() + STOP_ACCEPTING_WAIT
        data = b""
        try:
            while waiting:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([read_end], [], [], left)[0]:
                    break
                chunk = os.read(read_end, 4096)
                if not chunk:  # every holder of the write end is gone
                    waiting.clear()
                    break
                data += chunk
                while len(data) >= 4:
                    waiting.discard(struct.unpack("i", data[:4])[0])
                    data = data[4:]
        finally:
            os.close(read_end)
        for pid in waiting:
            log.warning("web worker %d still accepting %.1f s after a commit: killed", pid, STOP_ACCEPTING_WAIT)
            _signal(pid, signal.SIGKILL)

    def _top_up(self, inventory: Any, now: float) -> None:
        current = sum(1 for w in self.workers.values() if w.generation == self.generation and w.stopping_since is None)
        if current < self.config.workers and now - self._last_spawn >= RESPAWN_DELAY:
            self._spawn(inventory, now)

    def _spawn(self, inventory: Any, now: float) -> None:
        from dynamo.web.worker import worker_main

        spec = WorkerSpec(self.config, self.modules, self.modules_config, self.generation, self.version,
                          self._users)
        gc.collect()
        gc.freeze()  # the worker's collections must not write to the shared image
        pid = os.fork()
        if pid == 0:
            assert self._ack is not None
            assert self.link is not None
            worker_main(spec, self.sock, self.cell, self._ack[1], inventory, self.tls,  # never returns
                        self.link.worker_end, self.shared_users)
        self.workers[pid] = Worker(pid, self.generation, now)
        self._last_spawn = now


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
