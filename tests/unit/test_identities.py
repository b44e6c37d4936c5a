"""Who applications run as: the uid pool (allocation, release once nothing runs as it), the modes,
and the validation of ``[applications] uid_range``."""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Iterable

import pytest

from dynamo.config import ConfigurationError, embedded_default, parse_config, parse_uid_range
from dynamo.errors import StartupError
from dynamo.server import identities
from dynamo.server.identities import Identities, Identity, NoIdentity


class FakeProcesses:
    """The processes per uid, as /proc would show them; ``stubborn`` ones survive SIGKILL."""

    def __init__(self) -> None:
        self.by_pid: dict[int, int] = {}
        self.stubborn: set[int] = set()
        self.killed: list[int] = []

    def scan(self, uids: Iterable[int]) -> dict[int, int]:
        wanted = set(uids)
        return {pid: uid for pid, uid in self.by_pid.items() if uid in wanted}

    def kill(self, pid: int) -> None:
        self.killed.append(pid)
        if pid not in self.stubborn:
            self.by_pid.pop(pid, None)


@pytest.fixture
def procs(monkeypatch: pytest.MonkeyPatch) -> FakeProcesses:
    monkeypatch.setattr(identities, "KILL_PAUSE", 0.0)
    return FakeProcesses()


def pool(procs: FakeProcesses, uids: range, gid: int | None = None) -> Identities:
    return Identities(pool=uids, gid=gid, scan=procs.scan, kill=procs.kill)


def test_each_application_gets_a_uid_of_its_own(procs: FakeProcesses) -> None:
    ids = pool(procs, range(1000, 1003))
    got = [ids.acquire() for _ in range(3)]
    assert [i.uid for i in got if i] == [1000, 1001, 1002]
    assert all(i is not None and i.own and i.gid == i.uid for i in got)
    with pytest.raises(NoIdentity, match="all 3 uids"):
        ids.acquire()


def test_a_configured_group_is_everyones_gid(procs: FakeProcesses) -> None:
    got = pool(procs, range(1000, 1002), gid=555).acquire()
    assert got == Identity(1000, 555, own=True)


def test_release_kills_what_runs_as_the_uid_and_frees_it(procs: FakeProcesses) -> None:
    ids = pool(procs, range(1000, 1001))
    got = ids.acquire()
    procs.by_pid.update({10: 1000, 11: 1000, 12: 2000})  # an escaped descendant, its child, someone else
    ids.release(got)
    assert sorted(procs.killed) == [10, 11] and procs.by_pid == {12: 2000}
    again = ids.acquire()
    assert again is not None and again.uid == 1000


def test_a_uid_whose_processes_survive_is_not_handed_out_until_they_end(procs: FakeProcesses,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    ids = pool(procs, range(1000, 1001))
    got = ids.acquire()
    procs.by_pid[10] = 1000
    procs.stubborn.add(10)  # uninterruptible, say
    with caplog.at_level(logging.WARNING, logger="dynamo.server"):
        ids.release(got)
    assert "uid 1000: processes survive SIGKILL" in caplog.text
    with pytest.raises(NoIdentity, match="1 still have processes"):
        ids.acquire()
    procs.stubborn.clear()  # it ends at last
    again = ids.acquire()
    assert again is not None and again.uid == 1000


def test_releasing_twice_or_a_shared_identity_does_nothing(procs: FakeProcesses) -> None:
    ids = pool(procs, range(1000, 1002))
    got = ids.acquire()
    ids.release(got)
    ids.release(got)
    assert list(ids.free) == [1001, 1000]
    shared = Identities(shared=Identity(65534, 65534), scan=procs.scan, kill=procs.kill)
    procs.by_pid[10] = 65534  # another application of the shared user: never killed by a release
    assert shared.acquire() == Identity(65534, 65534)
    shared.release(Identity(65534, 65534))
    assert procs.killed == [] and Identities().acquire() is None


def test_close_kills_every_uid_handed_out(procs: FakeProcesses) -> None:
    ids = pool(procs, range(1000, 1003))
    ids.acquire()
    ids.acquire()
    procs.by_pid.update({10: 1000, 11: 1001})
    ids.close()
    assert procs.by_pid == {} and sorted(ids.free) == [1000, 1001, 1002]


def test_start_up_refuses_a_range_with_running_processes(procs: FakeProcesses) -> None:
    ids = pool(procs, range(1000, 1010))
    ids.check()
    procs.by_pid[4242] = 1005
    with pytest.raises(StartupError, match=r"uid 1005 runs processes \(pid 4242\)"):
        ids.check()


@pytest.mark.parametrize("text", ["", "61184", "a-b", "0-10", "10-5", f"1-{1 << 31}", "-5-10"])
def test_bad_uid_ranges_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="uid_range"):
        parse_uid_range(text)


def test_a_range_parses_inclusively() -> None:
    assert parse_uid_range("61184-62183") == range(61184, 62184)
    assert parse_uid_range(f"1-{(1 << 31) - 1}") == range(1, 1 << 31)


def test_a_range_smaller_than_the_applications_that_may_run_is_refused() -> None:
    base = {"store": {"url": "sqlite:///x.db"}, "listen": {"socket": "/tmp/x.sock"}}
    with pytest.raises(ConfigurationError, match="fewer than max_running"):
        parse_config({**base, "applications": {"uid_range": "61184-61187", "max_running": 4}}, "t")
    config = parse_config({**base, "applications": {"uid_range": "61184-61188", "max_running": 4}}, "t")
    assert config.applications.uid_range == "61184-61188"


@pytest.mark.skipif(os.getuid() != 0, reason="the modes apply to a dynamod run as root")
def test_the_mode_follows_the_configuration() -> None:
    base = {"store": {"url": "sqlite:///x.db"}, "listen": {"socket": "/tmp/x.sock"}}
    assert identities.for_config(embedded_default()).acquire() is None
    shared = identities.for_config(parse_config(base, "t"))
    nobody = pwd.getpwnam("nobody")
    assert shared.acquire() == Identity(nobody.pw_uid, nobody.pw_gid) and not shared.per_application
    own = identities.for_config(parse_config({**base, "applications": {"uid_range": "61184-62183"}}, "t"))
    assert own.per_application and own.probe() == Identity(61184, 61184, own=True)
    taken = parse_config({**base, "applications": {"uid_range": f"{nobody.pw_uid - 20}-{nobody.pw_uid}"}}, "t")
    with pytest.raises(ConfigurationError, match="belongs to user 'nobody'"):
        identities.for_config(taken)
    grouped = parse_config({**base, "applications": {"uid_range": "61184-62183", "group": "no-such-group"}}, "t")
    with pytest.raises(ConfigurationError, match="group 'no-such-group' does not exist"):
        identities.for_config(grouped)
