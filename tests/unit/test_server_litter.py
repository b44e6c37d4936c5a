"""Large garbage freed a slice at a time (dynamo.server.litter)."""

from __future__ import annotations

import weakref

from dynamo.server.litter import STEP, Litter


class Thing:
    pass


def test_heaps_are_freed_from_their_end_a_budget_at_a_time_and_all_of_them_in_the_end() -> None:
    things = [Thing() for _ in range(5 * STEP)]
    first, last = weakref.ref(things[0]), weakref.ref(things[-1])
    other = [Thing() for _ in range(10)]
    litter = Litter()
    litter.add(things)
    litter.add([])  # nothing to keep
    litter.add(other)
    del things
    litter.sweep(0.0)  # one step at least: the last heap's end
    assert litter.pending and not other and first() is not None and last() is not None
    litter.sweep(0.0)
    assert last() is None and first() is not None
    while litter.pending:
        litter.sweep(0.001)
    assert first() is None and not litter.heaps


def test_at_shutdown_everything_goes_at_once() -> None:
    heap = [Thing() for _ in range(3 * STEP)]
    litter = Litter()
    litter.add(heap)
    litter.clear()
    assert heap == [] and not litter.pending
