"""The users and roles dynamod shares with running web workers (dynamo.web.users): a change published
after a worker was forked reaches it; a table too large for the region leaves the old one."""

from __future__ import annotations

import os
import time

from dynamo.web.user import User
from dynamo.web.users import SharedUsers

ALICE = User("alice", "/CN=alice", 1, (("admin", "inventory"),))


def test_a_worker_forked_before_a_change_sees_it() -> None:
    shared = SharedUsers(1 << 16)
    shared.publish({})
    pid = os.fork()
    if pid == 0:  # the "worker": unknown first, then alice with her role, then without it
        code = 1
        try:
            deadline = time.monotonic() + 10
            seen = []
            while time.monotonic() < deadline and len(seen) < 3:
                user = shared.get("/CN=alice")
                state = None if user is None else user.authlist
                if not seen or seen[-1] != state:
                    seen.append(state)
                time.sleep(0.001)
            code = 0 if seen == [None, (("admin", "inventory"),), ()] else 2
        finally:
            os._exit(code)
    time.sleep(0.2)
    assert shared.publish({ALICE.dn: ALICE})  # type: ignore[dict-item]
    time.sleep(0.2)
    assert shared.publish({ALICE.dn: ALICE._replace(authlist=())})  # type: ignore[dict-item]
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_table_that_does_not_fit_leaves_the_old_one() -> None:
    shared = SharedUsers(4096)
    assert shared.publish({ALICE.dn: ALICE})  # type: ignore[dict-item]
    many = {f"/CN=user{i}": User(f"user{i}", f"/CN=user{i}", i, ()) for i in range(500)}
    assert not shared.publish(many)  # type: ignore[arg-type]
    reader = SharedUsers.__new__(SharedUsers)  # a worker's view of the same region
    reader.__dict__.update(shared.__dict__, _seen=-1, _users={})
    assert reader.get(ALICE.dn) == ALICE and reader.get("/CN=user1") is None
