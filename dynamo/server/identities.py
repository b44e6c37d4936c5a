"""Who an application runs as, and making sure nothing of it is left when it ends.

Three modes (docs/server.md, "Isolation of applications"):

- **same user** (the embedded default, or dynamod not run as root): applications run as the
  user who started dynamod. ``acquire`` gives None: no privilege drop.
- **service user** (a configured dynamod run as root, no ``[applications] uid_range``): every
  application runs as ``[server] service_user``. They share that identity, so they can signal
  and enter each other; the weaker mode.
- **per-application uids** (``[applications] uid_range`` as root): each application gets a uid
  of the range nobody else uses (as systemd's dynamic users), its work area is its own, and when
  it ends every process of that uid is killed; the uid is handed out again only once nothing
  runs as it any more.

Processes are found in /proc (``Uid:`` of their status: real, effective, saved or filesystem uid)
and killed through a pidfd, so a pid reused between the scan and the signal is never hit.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dynamo.config import Config, parse_uid_range
from dynamo.errors import ConfigurationError, StartupError

log = logging.getLogger("dynamo.server")

KILL_ROUNDS = 20          # scans and kills before a uid that still has processes is set aside
KILL_PAUSE = 0.01         # seconds between rounds (SIGKILL takes effect asynchronously)


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    own: bool = False     # a uid of its own: everything of it is killed when the application ends


class NoIdentity(Exception):
    """Every uid of the range is in use (or still has processes that would not die)."""


Scan = Callable[[Iterable[int]], dict[int, int]]


def processes_of(uids: Iterable[int]) -> dict[int, int]:
    """Live (not zombie) processes any of whose uids is in ``uids``: {pid: uid}."""
    wanted = set(uids)
    found: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except OSError:
            continue  # gone meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith(("Z", "X")):
            continue
        for uid in (int(u) for u in fields.get("Uid", "").split()):
            if uid in wanted:
                found[int(name)] = uid
                break
    return found


def kill_pid(pid: int) -> None:
    """SIGKILL ``pid`` through a pidfd (it names one process for good, unlike a pid)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)


def kill_everything_of(uid: int, scan: Scan = processes_of, kill: Callable[[int], None] = kill_pid) -> bool:
    """Kill every process of ``uid`` until none is left; True if none is. A process that forks while
    being killed is found in the next round; the rounds end when a scan finds nothing."""
    for attempt in range(KILL_ROUNDS):
        pids = scan((uid,))
        if not pids:
            return True
        for pid in pids:
            kill(pid)
        if attempt:
            time.sleep(KILL_PAUSE)
    return not scan((uid,))


class Identities:
    """Hands out the identity each application runs as (see the module's docstring)."""

    def __init__(self, shared: Identity | None = None, pool: range | None = None, gid: int | None = None,
                 scan: Scan = processes_of, kill: Callable[[int], None] = kill_pid):
        self.shared = shared
        self.pool = pool
        self.gid = gid                       # the group of per-application uids; None: the uid's number
        self.scan = scan
        self.kill = kill
        self.free: deque[int] = deque(pool or ())
        self.in_use: set[int] = set()
        self.draining: set[int] = set()      # released, but processes of it would not die yet

    @property
    def per_application(self) -> bool:
        return self.pool is not None

    def probe(self) -> Identity | None:
        """An identity as applications will have, for the start-up check that they can run."""
        if self.pool is not None:
            uid = self.pool[0]
            return Identity(uid, uid if self.gid is None else self.gid, own=True)
        return self.shared

    def check(self) -> None:
        """At start-up: no process runs as a uid of the range (another service's dynamic users, or
        applications of a dynamod that was killed). Raises StartupError with one line."""
        if self.pool is None:
            return
        busy = self.scan(self.pool)
        if busy:
            pids = sorted(busy)
            raise StartupError(f"[applications] uid_range: uid {busy[pids[0]]} runs processes (pid "
                               f"{', '.join(map(str, pids[:5]))}{', ...' if len(pids) > 5 else ''}): the range "
                               "must be for dynamod's applications alone (stop them or choose another range)")

    def acquire(self) -> Identity | None:
        """The identity for a new application: None (dynamod's own user), the shared service user,
        or a free uid of the range. Raises NoIdentity when the range has none free."""
        if self.pool is None:
            return self.shared
        self._retry_draining()
        if not self.free:
            raise NoIdentity(f"all {len(self.pool)} uids of [applications] uid_range are in use"
                             + (f" ({len(self.draining)} still have processes)" if self.draining else ""))
        uid = self.free.popleft()
        self.in_use.add(uid)
        return Identity(uid, uid if self.gid is None else self.gid, own=True)

    def release(self, identity: Identity | None) -> None:
        """The application has ended: kill whatever still runs as its uid; the uid is free once
        nothing does."""
        if identity is None or not identity.own or identity.uid not in self.in_use:
            return
        self.in_use.discard(identity.uid)
        if kill_everything_of(identity.uid, self.scan, self.kill):
            self.free.append(identity.uid)
        else:
            log.warning("uid %d: processes survive SIGKILL (uninterruptible?); not handed out until they end",
                        identity.uid)
            self.draining.add(identity.uid)

    def _retry_draining(self) -> None:
        for uid in list(self.draining):
            if kill_everything_of(uid, self.scan, self.kill):
                self.draining.discard(uid)
                self.free.append(uid)

    def close(self) -> None:
        """At shutdown, after the applications ended: nothing of any uid handed out survives."""
        for uid in sorted(self.in_use | self.draining):
            if not kill_everything_of(uid, self.scan, self.kill):
                log.warning("uid %d: processes survive SIGKILL at shutdown", uid)
        self.free.extend(sorted(self.in_use | self.draining))
        self.in_use.clear()
        self.draining.clear()


def for_config(config: Config) -> Identities:
    """The mode ``config`` asks for, with its identities checked against the users and groups of
    the system. Raises ConfigurationError with one line."""
    apps = config.applications
    if os.getuid() != 0 or config.single_user:  # the embedded default runs applications as its user
        if apps.uid_range and not config.single_user:
            log.warning("[applications] uid_range: ignored, dynamod does not run as root")
        return Identities()
    if apps.uid_range:
        pool = parse_uid_range(apps.uid_range)
        gid = _group(apps.group) if apps.group else None
        _check_unused(pool, check_groups=gid is None)
        return Identities(pool=pool, gid=gid)
    return Identities(shared=_service_user(config.server.service_user))


def _check_unused(pool: range, check_groups: bool) -> None:
    for entry in pwd.getpwall():
        if entry.pw_uid in pool:
            raise ConfigurationError(f"[applications] uid_range: uid {entry.pw_uid} belongs to user "
                                     f"{entry.pw_name!r}; the range must hold no existing user")
    if check_groups:
        for group in grp.getgrall():
            if group.gr_gid in pool:
                raise ConfigurationError(f"[applications] uid_range: gid {group.gr_gid} belongs to group "
                                         f"{group.gr_name!r}; applications would run in it (choose another "
                                         "range, or set [applications] group)")


def _group(name: str) -> int:
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigurationError(f"[applications] group {name!r} does not exist") from None
    if gid == 0:
        raise ConfigurationError(f"[applications] group {name!r} is root's: applications must not run in it")
    return gid


def _service_user(name: str | None) -> Identity:
    if not name:
        raise ConfigurationError("dynamod runs as root: set [applications] uid_range or [server] service_user, "
                                 "the user applications run as")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigurationError(f"[server] service_user {name!r} does not exist") from None
    if entry.pw_uid == 0:
        raise ConfigurationError(f"[server] service_user {name!r} is root: applications must not run as root")
    return Identity(entry.pw_uid, entry.pw_gid)
