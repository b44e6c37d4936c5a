"""The statement pipeline of the SQL stores: order, errors both ways, and no thread left behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dynamo.store.sql import Pipeline


def test_items_arrive_in_order() -> None:
    with Pipeline(iter(range(1000)), depth=2) as pipeline:
        assert list(pipeline) == list(range(1000))


def test_a_producer_error_reaches_the_consumer_after_what_came_before() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("row 3 cannot be built")

    seen = []
    with pytest.raises(ValueError, match="row 3"), Pipeline(items()) as pipeline:
        for item in pipeline:
            seen.append(item)
    assert seen == [1, 2]


def test_a_consumer_error_stops_the_producer_before_leaving() -> None:
    produced = []

    def items() -> Iterator[int]:
        for i in range(10_000):
            produced.append(i)
            yield i

    depth = 2
    with pytest.raises(RuntimeError), Pipeline(items(), depth=depth) as pipeline:
        for item in pipeline:
            if item == 5:
                raise RuntimeError("the database refused statement 5")
    assert not any(t.name == "dynamo-rows" for t in threading.enumerate())
    # The producer runs ahead of the consumer by at most the queue (depth) and the item it waits to
    # put; when the exit drains the queue, that put may succeed and one more item be made before the
    # producer sees the stop. So of items 0-5 consumed: 6 to 6 + depth + 2 made, in order, no more.
    assert produced == list(range(len(produced)))
    assert 6 <= len(produced) <= 6 + depth + 2, len(produced)
