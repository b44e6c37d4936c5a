"""The spare's bookkeeping (no fork here: tests/e2e/test_spare.py runs real ones)."""

from __future__ import annotations

import os
import signal

import pytest

from dynamo.apps.containment import Limits
from dynamo.apps.runner import ChildSpec
from dynamo.core.inventory import Inventory
from dynamo.server.spare import MAX_AGE, SPEC_MAX, Spare, Spares, decode_spec, encode_spec
from tests.unit.server_fakes import FakeSystem

SPEC = ChildSpec(app_id=7, title="t", kind="app", script_name="s.py", source="print('é')\n", args=("a", "b c"),
                 write=False, work_area="/w/7/work", uid=61184, gid=61184, limits=Limits(memory=1 << 30, open_files=64))


def spare(inventory: Inventory, system: FakeSystem, pid: int = 500) -> Spare:
    fds = [fd for _ in range(2) for fd in os.pipe()]
    for fd in fds[1::2]:
        os.close(fd)  # the ends the spare would hold
    spec_r, spec_w = os.pipe()
    os.close(spec_r)
    return Spare(pid=pid, inventory=inventory, version=inventory.version, spec_w=spec_w, out_r=fds[0], err_r=fds[2],
                 forked=system.now)


def test_a_spec_travels_whole() -> None:
    frame = encode_spec(SPEC)
    assert frame is not None
    import json
    assert decode_spec(json.loads(frame[4:])) == SPEC


def test_a_spec_too_large_for_the_pipe_is_not_handed_over() -> None:
    big = ChildSpec(**{**SPEC.__dict__, "source": "x" * SPEC_MAX})
    assert encode_spec(big) is None
    system = FakeSystem()
    inventory = Inventory()
    spares = Spares(system)
    spares.spare = spare(inventory, system)
    assert spares.take(big, inventory) is None and spares.spare is not None  # kept for the next reader


@pytest.mark.parametrize("changes", [{"write": True}, {"kind": "shell"}])
def test_writers_and_consoles_are_forked_on_demand(changes: dict[str, object]) -> None:
    system = FakeSystem()
    inventory = Inventory()
    spares = Spares(system)
    spares.spare = spare(inventory, system)
    assert spares.take(ChildSpec(**{**SPEC.__dict__, **changes}), inventory) is None and spares.spare is not None


def test_a_reader_takes_the_spare_of_its_image() -> None:
    system = FakeSystem()
    inventory = Inventory()
    spares = Spares(system)
    held = spares.spare = spare(inventory, system)
    taken = spares.take(SPEC, inventory)
    assert taken is not None and taken[0] is held and spares.spare is None and spares.pids() == set()


def test_the_spare_of_an_older_image_is_discarded_never_used() -> None:
    system = FakeSystem()
    inventory = Inventory()
    spares = Spares(system)
    spares.spare = spare(inventory, system)
    inventory.version += 1  # a commit
    assert spares.take(SPEC, inventory) is None and spares.spare is None
    assert system.signals == [("kill", 500, signal.SIGKILL)] and spares.pids() == {500}
    assert system.lowered == [500]  # its teardown gives way to everything else
    system.exits[500] = signal.SIGKILL
    spares.tend(inventory, idle=False)  # reaped; not idle: no new fork (FakeSystem.fork would fail)
    assert spares.pids() == set()


def test_an_old_spare_is_replaced_when_idle_only() -> None:
    system = FakeSystem()
    inventory = Inventory()
    spares = Spares(system)
    spares.spare = spare(inventory, system)
    system.now += MAX_AGE + 1
    spares.tend(inventory, idle=False)
    assert spares.spare is not None and system.signals == []
    spares.failed = True  # no fork in a unit test
    spares.tend(inventory, idle=True)
    assert spares.spare is None and system.signals == [("kill", 500, signal.SIGKILL)]


def test_a_spare_that_died_is_forgotten_without_a_signal() -> None:
    system = FakeSystem()
    inventory = Inventory()
    spares = Spares(system)
    spares.spare = spare(inventory, system)
    system.exits[500] = 9
    spares.tend(inventory, idle=False)
    assert spares.spare is None and system.signals == [] and spares.pids() == set()


def test_a_writer_takes_the_writers_spare_and_a_reader_never_does() -> None:
    system = FakeSystem()
    inventory = Inventory()
    spares = Spares(system)
    writer = spares.writer = spare(inventory, system, pid=501)
    writing = ChildSpec(**{**SPEC.__dict__, "write": True})
    assert spares.take(SPEC, inventory) is None and spares.writer is writer  # no reader's spare: forked
    spares.spare = spare(inventory, system)
    taken = spares.take(writing, inventory)
    assert taken is not None and taken[0] is writer and spares.writer is None and spares.spare is not None
    spares.writer = spare(inventory, system, pid=502)
    inventory.version += 1
    assert spares.take(writing, inventory) is None and spares.writer is None
    assert ("kill", 502, signal.SIGKILL) in system.signals
