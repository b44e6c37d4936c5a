"""The zygote: applications forked from the old version while the live image takes a new one.

Once a change set is committed, dynamod applies it to its image in slices between loop turns (see
``committer``); nothing may be forked from that image until the last slice is in. Meanwhile a
zygote, forked from dynamod just before the first slice, holds the image at the old version,
whole, copy-on-write, and forks the applications that start meanwhile: dynamod sends it the
child's spec, the zygote forks it (``fork.fork_child``, the same set-up as a direct fork) through
an intermediate process that exits at once, so that the application is re-parented to dynamod
(the child subreaper) and dynamod reaps, signals and times it like any other child; the zygote
answers with the pid and the parent's ends of the child's pipes (SCM_RIGHTS).

The zygote ends when dynamod closes its socket (the apply is done, or dynamod ended).

**Its spare.** Forking the image twice (the intermediate, then the application) on request would
hold dynamod's loop for both forks (~9 ms per GB of image each on a quiet machine, much more on a
busy one), so the zygote keeps one read-only application forked ahead, as dynamod's own spare does
(``dynamo.server.spare``): an intermediate process and its child, the spare, which waits for its
spec. A read-only application's request hands the spec to the spare and lets the intermediate exit
(the spare is then dynamod's child); the answer goes back at once, and the next spare is forked
after it. Unused, the spare ends when the zygote closes its spec pipe, and the intermediate waits
for it before it exits (nothing is left for dynamod to sweep up).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import signal
import socket
import struct
from typing import Any, NoReturn

from dynamo.apps.containment import Limits
from dynamo.apps.runner import ChildSpec
from dynamo.core.inventory import Inventory
from dynamo.exitcodes import ChildExit
from dynamo.proctitle import set_title
from dynamo.protocol import framing
from dynamo.server.children import Child
from dynamo.server.fork import child_handle, fork_child
from dynamo.server.offloop import close_channels
from dynamo.server.spare import encode_spec, wait_for_spec
from dynamo.server.system import System
from dynamo.store.registry import AppRecord

LENGTH = struct.Struct(">I")
MAX_FDS = 8


class ZygoteError(OSError):
    pass


def spec_to_json(spec: ChildSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def spec_from_json(data: dict[str, Any]) -> ChildSpec:
    return ChildSpec(**{**data, "args": tuple(data["args"]), "limits": Limits(**data["limits"])})


class Zygote:
    """dynamod's handle on a zygote."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid = pid
        self.sock = sock

    @classmethod
    def start(cls, inventory: Inventory) -> Zygote:
        ours, theirs = socket.socketpair()
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            raise
        if pid == 0:
            ours.close()
            _zygote(theirs, inventory)
        theirs.close()
        return cls(pid, ours)

    def fork_child(self, spec: ChildSpec, timeout: float = 30.0) -> tuple[int, dict[str, int]]:
        """Have the zygote fork ``spec``; its pid (now dynamod's child) and its pipes, as ``fork_child``."""
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(framing.encode({"spec": spec_to_json(spec)}, max_frame=1 << 30))
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, MAX_FDS)
            while len(data) < LENGTH.size or len(data) < LENGTH.size + LENGTH.unpack_from(data)[0]:
                more = self.sock.recv(65536)
                if not more:
                    raise ZygoteError("the zygote ended")
                data += more
        except OSError as exc:
            raise ZygoteError(f"the zygote did not fork the application: {exc}") from exc
        answer = json.loads(data[LENGTH.size:])
        if "error" in answer:
            for fd in fds:
                os.close(fd)
            raise ZygoteError(f"the zygote could not fork the application: {answer['error']}")
        return int(answer["pid"]), dict(zip(answer["kinds"], fds, strict=True))

    def close(self) -> None:
        self.sock.close()

    def reap(self, blocking: bool = False) -> bool:
        """True once the zygote has ended and is reaped."""
        try:
            pid, _ = os.waitpid(self.pid, 0 if blocking else os.WNOHANG)
        except ChildProcessError:
            return True
        return pid != 0


def spawn_via(zygote: Zygote, spec: ChildSpec, system: System, timeout: float | None, record: AppRecord) -> Child:
    """``fork.spawn``, the fork done by ``zygote``."""
    pid, fds = zygote.fork_child(spec)
    try:
        os.setpgid(pid, pid)  # also done by the child
    except OSError:
        pass
    return child_handle(spec, pid, fds, system, timeout, record)


def _zygote(sock: socket.socket, inventory: Inventory) -> NoReturn:
    ready: _Ready | None = None
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        set_title("dynamod: zygote")
        close_channels({sock.fileno()})
        sock.setblocking(True)
        ready = _prefork(inventory)
        while (message := framing.receive(sock, max_frame=1 << 30)) is not None:
            spec = spec_from_json(message["spec"])
            handed = None
            if ready is not None and spec.kind == "app" and not spec.write:
                handed, ready = _hand_out(ready, spec), None
            try:
                pid, fds = handed if handed is not None else _fork_orphan(spec, inventory)
            except OSError as exc:
                _answer(sock, {"error": str(exc)}, [])
                continue
            _answer(sock, {"pid": pid, "kinds": list(fds)}, list(fds.values()))
            for fd in fds.values():
                os.close(fd)
            if ready is None:
                ready = _prefork(inventory)
    finally:
        if ready is not None:
            _discard(ready)
        os._exit(0)


@dataclasses.dataclass
class _Ready:
    """The zygote's spare: a read-only application forked ahead, still the intermediate's child."""

    intermediate: int
    pid: int
    spec_w: int      # its spec goes here (closed unused: it ends)
    release_w: int   # b"g": the intermediate exits (the spare is handed out); closed unused: it waits for the spare
    out_r: int
    err_r: int


def _prefork(inventory: Inventory) -> _Ready | None:
    """Fork the next spare through an intermediate process that stays until it is handed out; None if
    that failed (requests are then forked on demand)."""
    pipes = [os.pipe() for _ in range(5)]
    (out_r, out_w), (err_r, err_w), (spec_r, spec_w), (release_r, release_w), (told_r, told_w) = pipes
    gc.collect()
    gc.freeze()
    try:
        intermediate = os.fork()
    except OSError:
        for fd in (fd for pair in pipes for fd in pair):
            os.close(fd)
        return None
    if intermediate == 0:
        _intermediate(inventory, out_w, err_w, spec_r, release_r, told_w)
    for fd in (out_w, err_w, spec_r, release_r, told_w):
        os.close(fd)
    with os.fdopen(told_r, "rb") as told:
        data = told.read()
    ready = _Ready(intermediate, -1, spec_w, release_w, out_r, err_r)
    if len(data) != LENGTH.size:
        _discard(ready)
        return None
    ready.pid = int(LENGTH.unpack(data)[0])
    return ready


def _intermediate(inventory: Inventory, out_w: int, err_w: int, spec_r: int, release_r: int,
                  told_w: int) -> NoReturn:
    """The intermediate process of a spare: forks it, then waits to be released."""
    code = 1
    try:
        close_channels({out_w, err_w, spec_r, release_r, told_w})
        pid = os.fork()
        if pid == 0:
            try:
                os.close(release_r)
                os.close(told_w)
                wait_for_spec(None, inventory, out_w, err_w, spec_r)
            finally:
                os._exit(ChildExit.SETUP_FAILED)
        for fd in (out_w, err_w, spec_r):
            os.close(fd)
        os.write(told_w, LENGTH.pack(pid))
        os.close(told_w)
        if not os.read(release_r, 1):  # not handed out: the spare ends on its closed spec pipe; wait for it
            os.waitpid(pid, 0)
        code = 0
    finally:
        os._exit(code)


def _hand_out(ready: _Ready, spec: ChildSpec) -> tuple[int, dict[str, int]] | None:
    """Give ``spec`` to the spare and make it dynamod's child; None if it cannot take it (the caller forks)."""
    frame = encode_spec(spec)
    try:
        if frame is None:
            raise ZygoteError("the spec does not fit the spare's pipe")
        data = memoryview(frame)
        while data:  # it fits the empty pipe (SPEC_MAX): this does not wait for the spare
            data = data[os.write(ready.spec_w, data):]
        os.write(ready.release_w, b"g")
    except OSError:  # the spare is gone (EPIPE), or the spec is too large
        _discard(ready)
        return None
    os.close(ready.spec_w)
    os.close(ready.release_w)
    # once the intermediate is reaped (it has exited), the spare has been re-parented to dynamod
    os.waitpid(ready.intermediate, 0)
    return ready.pid, {"out": ready.out_r, "err": ready.err_r}


def _discard(ready: _Ready) -> None:
    for fd in (ready.spec_w, ready.release_w, ready.out_r, ready.err_r):
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        os.waitpid(ready.intermediate, 0)
    except ChildProcessError:
        pass


def _answer(sock: socket.socket, answer: dict[str, Any], fds: list[int]) -> None:
    payload = json.dumps(answer).encode()
    socket.send_fds(sock, [LENGTH.pack(len(payload)) + payload], fds)


def _fork_orphan(spec: ChildSpec, inventory: Inventory) -> tuple[int, dict[str, int]]:
    """Fork the application (``fork_child``: its pipes are made here, in the zygote) through an
    intermediate process that exits at once: the application is dynamod's child before its pid is told."""
    return fork_child(spec, inventory, _double_fork)


def _double_fork() -> int:
    """``fork()`` for ``fork_child``: 0 in the application, its pid in the zygote."""
    told_r, told_w = os.pipe()
    intermediate = os.fork()
    if intermediate == 0:
        pid = -1
        try:
            os.close(told_r)
            pid = os.fork()
            if pid > 0:
                os.write(told_w, LENGTH.pack(pid))
        finally:
            if pid != 0:  # the intermediate ends here, whatever happened
                os._exit(0 if pid > 0 else 1)
        os.close(told_w)
        return 0  # the application goes on in fork_child
    os.close(told_w)
    with os.fdopen(told_r, "rb") as told:
        data = told.read()
    # once the intermediate is reaped (it has exited), the application has been re-parented to dynamod
    os.waitpid(intermediate, 0)
    if len(data) != LENGTH.size:
        raise ZygoteError("the intermediate process could not fork the application")
    return int(LENGTH.unpack(data)[0])
