"""The zygote: a process holding the image at one version, that forks applications for dynamod so that
dynamod's loop never forks the image for a reader.

Forking dynamod copies its page tables (~9 ms per GB of image on a quiet machine, several times that on
a busy one), and every client waits for the loop's turn in progress. So dynamod forks the image once
per version, the zygote, and asks it for what it would otherwise fork itself:

* **spares** (``dynamo.server.spare``): dynamod sends ``{"spare": 1}`` without waiting; the zygote
  forks the spare as dynamod's child (``dynamo.server.sibling``: ``clone(CLONE_PARENT)``, one copy of
  the page tables; where that is not available, through an intermediate process that exits at once,
  the spare then re-parented to dynamod, the child subreaper), which reaps, signals and times it like
  any child, and announces it
  on its reply socket with the parent's ends of its pipes (SCM_RIGHTS): ``{"spare": pid}``. The
  announcement is an event of dynamod's loop like any other; the next read-only application is handed
  to the spare with a write to its spec pipe. Until a spare asked for is announced, dynamod's orphan
  sweep leaves be the unknown children started since it was asked for (the spare is one of them for a
  moment: ``asks``).
* **children on request** (``fork_child``, synchronous): a writer's or a console's, or a reader's
  whose spec does not fit a spare's pipe, while the live image is half-way through a change set.

While a change set goes into the live image, the zygote still holds the old version whole: the
applications that start meanwhile see it (the spare of each version is what they start in). Once
the image is whole at a new version, dynamod retires the zygote (``retire``: it ends when it has
read its last request, after announcing what it forked) and forks the next one at a quiet moment.

The zygote runs at a lower priority than dynamod and the applications (``ZYGOTE_NICE``, when each
child can raise its own back: ``can_restore_priority``): its forks are for the calls to come and
must not take CPU from the call being served; each child it forks is back at dynamod's priority
before it runs anything. dynamod alone sets the zygote's priority (``hurry``): back up to its own
while a call waits for what the zygote forks (no spare left in stock, or a child on request), until
the zygote has answered every request it has; it is not the zygote that notices, since it reads a
request only once it has forked the one before, slowly, at the lower priority, on a busy machine.

The zygote's requests come on a stream socket (a spec can be large); its answers go out on a
sequenced-packet socket, one message and its descriptors a packet, never merged or split.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import json
import os
import resource
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

from dynamo.apps.containment import Limits, boot_ticks
from dynamo.apps.runner import ChildSpec
from dynamo.core.inventory import Inventory
from dynamo.proctitle import set_title
from dynamo.protocol import framing
from dynamo.server import sibling
from dynamo.server.children import Child
from dynamo.server.fork import child_handle, fork_child
from dynamo.server.offloop import close_channels
from dynamo.server.spare import wait_for_spec
from dynamo.server.system import REAL, System
from dynamo.store.registry import AppRecord

LENGTH = struct.Struct(">I")
MAX_FDS = 8
MAX_ANSWER = 4096
ASK = framing.encode({"spare": 1})
ASK_WRITER = framing.encode({"spare": 1, "write": True})
ZYGOTE_NICE = 5
"""The zygote's nice value above dynamod's (the commit process's: ``offloop.COMMIT_NICE``)."""
CAP_SYS_NICE = 23


class ZygoteError(OSError):
    pass


def spec_to_json(spec: ChildSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def spec_from_json(data: dict[str, Any]) -> ChildSpec:
    return ChildSpec(**{**data, "args": tuple(data["args"]), "limits": Limits(**data["limits"])})


@dataclasses.dataclass
class Arrival:
    """What the zygote announced: a spare (``spare`` True) or the child asked for; its pid and pipes by kind,
    or the error that kept it from forking."""

    spare: bool
    pid: int = -1
    fds: dict[str, int] = dataclasses.field(default_factory=dict)
    error: str = ""
    fork_ms: float = 0.0   # how long the zygote took to fork it
    asked: float = 0.0     # when (monotonic) it was asked for


class Zygote:
    """dynamod's handle on a zygote (its loop waits for ``fileno``: the answers)."""

    def __init__(self, pid: int, req: socket.socket, rep: socket.socket, inventory: Inventory, forked: float,
                 base: int | None = None):
        self.pid = pid
        self.req = req            # requests go here (stream)
        self.rep = rep            # answers come from here (packets, with descriptors)
        self.inventory = inventory
        self.version = inventory.version
        self.forked = forked      # monotonic
        # when each spare not yet announced was asked for (boot_ticks), and whether for a writer; answered in order
        # and when (monotonic)
        self.asks: deque[tuple[int, bool, float]] = deque()
        self.arrived: deque[Arrival] = deque()  # spares announced while a synchronous request waited
        self.retiring = False     # told to end (it announces what it forked before)
        self.ended = False        # its answers reached their end: it is gone, or going
        # dynamod's priority (the zygote's children's), when the zygote runs ZYGOTE_NICE lower; None: at dynamod's
        self.base = base
        self.hurried = False      # at dynamod's priority for now (``hurry``)

    @classmethod
    def start(cls, inventory: Inventory, now: float) -> Zygote:
        """Fork a zygote of ``inventory`` at its current version. Raises OSError."""
        req_ours, req_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        rep_ours, rep_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        base = os.getpriority(os.PRIO_PROCESS, 0)
        lowered = can_restore_priority(base)
        gc.freeze()  # as before any fork (the caller collected): what is alive is shared, never walked again
        try:
            pid = os.fork()
        except OSError:
            for sock in (req_ours, req_theirs, rep_ours, rep_theirs):
                sock.close()
            raise
        if pid == 0:
            req_ours.close()
            rep_ours.close()
            _zygote(req_theirs, rep_theirs, inventory, base if lowered else None)
        req_theirs.close()
        rep_theirs.close()
        req_ours.setblocking(False)
        rep_ours.setblocking(False)
        zygote = cls(pid, req_ours, rep_ours, inventory, now, base if lowered else None)
        zygote._set_priority(False)
        return zygote

    def fileno(self) -> int:
        return self.rep.fileno()

    @property
    def asked(self) -> int:
        """Readers' spares asked for, not yet announced."""
        return sum(1 for _, write, _ in self.asks if not write)

    @property
    def asked_writer(self) -> bool:
        """A writer's spare was asked for, not yet announced."""
        return any(write for _, write, _ in self.asks)

    @property
    def asked_since(self) -> float:
        """When (monotonic) the oldest spare not yet announced was asked for (0 if none is)."""
        return self.asks[0][2] if self.asks else 0.0

    def holds(self, inventory: Inventory) -> bool:
        """It can fork ``inventory`` as it is now (or, while a change set goes into it, as it was)."""
        return not self.retiring and not self.ended and inventory is self.inventory and \
            inventory.version == self.version

    def hurry(self) -> None:
        """A call waits for what the zygote forks: it runs at dynamod's priority until it has answered
        every request it has (``receive``)."""
        if not self.hurried and not self.ended:
            self._set_priority(True)

    def _set_priority(self, hurried: bool) -> None:
        self.hurried = hurried
        if self.base is None:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, self.pid, self.base if hurried else min(19, self.base + ZYGOTE_NICE))
        except OSError:
            pass  # it is gone (its end is read from its socket)

    def ask_spare(self, now: float, write: bool = False) -> bool:
        """Ask for one more spare (``write``: a write application's), without waiting; False if the zygote
        cannot be asked (it is retired). A call that will wait for it: ``hurry``."""
        if self.retiring or self.ended:
            return False
        ask = ASK_WRITER if write else ASK
        # the time of the ask is taken before it is sent: the spare may be forked, and be our child, before
        # this thread runs again (the orphan sweep spares the children started since: ``spared_since``)
        asked = boot_ticks()
        try:
            sent = self.req.send(ask)
        except BlockingIOError:  # its requests pile up: it is busy enough
            return False
        except OSError:
            self.retire()
            return False
        if sent != len(ask):  # a part of a frame: the stream cannot be trusted any more
            self.retire()
            return False
        self.asks.append((asked, write, now))
        return True

    def read(self) -> list[Arrival]:
        """What arrived (the loop calls this when the reply socket is readable; it does not wait)."""
        arrivals = list(self.arrived)
        self.arrived.clear()
        while not self.ended:
            try:
                arrival = self.receive()
            except BlockingIOError:
                break
            if arrival is None:
                break
            arrivals.append(arrival)
        return arrivals

    def receive(self) -> Arrival | None:
        """One answer; None at the end (the zygote is gone: ``ended``)."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.rep, MAX_ANSWER, MAX_FDS)
        except (BlockingIOError, InterruptedError, TimeoutError):  # nothing yet (or, waiting: not in time)
            raise BlockingIOError from None
        except OSError:
            data, fds = b"", []
        if not data:
            for fd in fds:
                os.close(fd)
            self.ended = True
            self.asks.clear()
            return None
        try:
            answer = json.loads(data)
            arrival = Arrival(spare="spare" in answer, pid=int(answer.get("pid", -1)),
                              fds=dict(zip(answer.get("kinds", ()), fds, strict=True)),
                              error=str(answer.get("error", "")), fork_ms=float(answer.get("ms", 0.0)))
        except (ValueError, TypeError):  # not from our zygote's code: end it
            for fd in fds:
                os.close(fd)
            self.retire()
            self.ended = True
            self.asks.clear()
            return None
        if arrival.spare and self.asks:
            arrival.asked = self.asks.popleft()[2]
        if self.hurried and not self.asks:
            self._set_priority(False)  # nothing more asked: no call waits for it any more
        return arrival

    def fork_child(self, spec: ChildSpec, timeout: float = 30.0) -> tuple[int, dict[str, int]]:
        """Have the zygote fork ``spec`` now (this waits); its pid (dynamod's child) and its pipes, as
        ``fork.fork_child``. Spares announced meanwhile wait in ``arrived``. Raises ZygoteError."""
        if self.retiring or self.ended:
            raise ZygoteError("the zygote is retired")
        deadline = time.monotonic() + timeout
        self.hurry()  # dynamod waits for it
        try:
            self.req.settimeout(timeout)
            try:
                self.req.sendall(framing.encode({"spec": spec_to_json(spec)}, max_frame=1 << 30))
            finally:
                self.req.setblocking(False)
            try:
                while True:
                    self.rep.settimeout(max(0.001, deadline - time.monotonic()))
                    arrival = self.receive()
                    if arrival is None:
                        raise ZygoteError("the zygote ended")
                    if not arrival.spare:
                        break
                    self.arrived.append(arrival)
            finally:
                self.rep.setblocking(False)
        except BlockingIOError as exc:  # the timeout (the socket's, as _receive turns it)
            self.retire()
            raise ZygoteError("the zygote did not answer in time") from exc
        except ZygoteError:
            raise
        except (OSError, framing.ProtocolError) as exc:
            self.retire()
            raise ZygoteError(f"the zygote did not fork the application: {exc}") from exc
        if arrival.error:
            raise ZygoteError(f"the zygote could not fork the application: {arrival.error}")
        return arrival.pid, arrival.fds

    def retire(self) -> None:
        """No more requests: it ends once it has answered those it has (its answers are still read)."""
        if not self.retiring:
            self.retiring = True
            try:
                self.req.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.retire()
        self.req.close()
        self.rep.close()
        self.ended = True
        self.asks.clear()

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


def discard(arrival: Arrival) -> None:
    """An announced child nobody will use (a spare of a version that is gone): its pipes closed, it ends
    (a spare on its closed spec pipe; killed all the same); reaped by the caller or the orphan sweep."""
    for fd in arrival.fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    if arrival.pid > 0:
        REAL.lowest_priority(arrival.pid)
        try:
            os.kill(arrival.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- the zygote's side ---------------------------------------------------------------------------


def _zygote(req: socket.socket, rep: socket.socket, inventory: Inventory, base: int | None) -> NoReturn:
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        set_title(f"dynamod: zygote (version {inventory.version})")
        close_channels({req.fileno(), rep.fileno()})
        forker = Forker(base)
        req.setblocking(True)
        rep.setblocking(True)
        while (message := framing.receive(req, max_frame=1 << 30)) is not None:
            spare = "spare" in message
            started = time.monotonic()
            try:
                if spare:
                    pid, fds = _fork_spare(inventory, bool(message.get("write")), forker.fork)
                else:
                    pid, fds = _fork_orphan(spec_from_json(message["spec"]), inventory, forker.fork)
            except OSError as exc:
                _answer(rep, {"error": str(exc), **({"spare": True} if spare else {})}, [])
                continue
            try:
                _answer(rep, {"pid": pid, "kinds": list(fds), "ms": round((time.monotonic() - started) * 1000, 1),
                              **({"spare": True} if spare else {})}, list(fds.values()))
            finally:
                for fd in fds.values():
                    os.close(fd)
    except (OSError, framing.ProtocolError):
        pass  # dynamod is gone, or spoke nonsense: the zygote ends (what it forked ends on its closed pipes)
    finally:
        os._exit(0)


def _answer(sock: socket.socket, answer: dict[str, Any], fds: list[int]) -> None:
    socket.send_fds(sock, [json.dumps(answer).encode()], fds)


class Forker:
    """How a zygote forks dynamod's children (``fork``: 0 in the child, which is back at dynamod's priority
    ``base`` when the zygote may run lower; its pid in the zygote, dynamod's child by then). dynamod sets the
    zygote's own priority (``Zygote.hurry``)."""

    def __init__(self, base: int | None) -> None:
        self.clone: Callable[[], int] = sibling.fork_sibling if sibling.available() else _double_fork
        self.base = base

    def fork(self) -> int:
        try:
            pid = self.clone()
        except OSError as exc:
            if self.clone is _double_fork or exc.errno not in (errno.EPERM, errno.EINVAL, errno.ENOSYS):
                raise
            self.clone = _double_fork  # clone(CLONE_PARENT) refused here (a seccomp filter?): the old way
            pid = self.clone()
        if pid == 0 and self.base is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, self.base)
            except OSError:
                pass  # can_restore_priority said it could: the child runs a little lower then
        return pid


def can_restore_priority(base: int) -> bool:
    """A process of ours may go back to nice ``base`` after lowering its priority (CAP_SYS_NICE, or a
    high enough RLIMIT_NICE)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:") and int(line.split()[1], 16) >> CAP_SYS_NICE & 1:
                    return True
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return soft == resource.RLIM_INFINITY or soft >= 20 - base


def _fork_spare(inventory: Inventory, write: bool, fork: Callable[[], int]) -> tuple[int, dict[str, int]]:
    """A spare (``dynamo.server.spare.wait_for_spec``), dynamod's child by the time this returns; its pid
    and the parent's ends of its pipes: "spec" (its spec goes there; closed unused: it ends), "out", "err"
    and, for a write application's spare, "changes"."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    spec_r, spec_w = os.pipe()
    change_r, change_w = os.pipe() if write else (-1, -1)
    gc.collect()
    gc.freeze()
    try:
        pid = fork()
    except OSError:
        for fd in (out_r, out_w, err_r, err_w, spec_r, spec_w, change_r, change_w):
            if fd >= 0:
                os.close(fd)
        raise
    if pid == 0:
        try:
            wait_for_spec(None, inventory, out_w, err_w, spec_r, change_w if write else None)
        finally:
            os._exit(1)
    for fd in (out_w, err_w, spec_r, change_w):
        if fd >= 0:
            os.close(fd)
    fds = {"spec": spec_w, "out": out_r, "err": err_r}
    if write:
        fds["changes"] = change_r
    return pid, fds


def _fork_orphan(spec: ChildSpec, inventory: Inventory, fork: Callable[[], int]) -> tuple[int, dict[str, int]]:
    """Fork the application (``fork_child``: its pipes are made here, in the zygote) as dynamod's child
    (``Forker``): it is before its pid is told."""
    return fork_child(spec, inventory, fork)


def _double_fork() -> int:
    """``fork()`` through an intermediate process that exits at once: 0 in the new process, its pid in the
    zygote (by then re-parented to dynamod, the subreaper)."""
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
        return 0
    os.close(told_w)
    with os.fdopen(told_r, "rb") as told:
        data = told.read()
    # once the intermediate is reaped (it has exited), the new process has been re-parented to dynamod
    os.waitpid(intermediate, 0)
    if len(data) != LENGTH.size:
        raise ZygoteError("the intermediate process could not fork")
    return int(LENGTH.unpack(data)[0])
