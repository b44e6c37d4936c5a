"""The packed block replicas of a dataset replica: a copy in other id spaces (``replicatable.rebased``)."""

from __future__ import annotations

import struct

import pytest

from dynamo.dataformat import replicatable
from dynamo.errors import ObjectError


def table(block_ids: list[int], incomplete: dict[int, list[int]]) -> bytes:
    """Replicas of ``block_ids``; those in ``incomplete`` hold those file ids (custodial every other)."""
    n = len(block_ids)
    tail = [struct.pack(f"<I{len(incomplete[b])}q", len(incomplete[b]), *incomplete[b])
            for b in block_ids if b in incomplete]
    return b"".join((struct.pack("<BI", replicatable.VERSION, n), struct.pack(f"<{n}q", *block_ids),
                     struct.pack(f"<{n}q", *range(1000, 1000 + n)), struct.pack(f"<{n}i", *range(n)),
                     bytes((2 if b in incomplete else 0) | (i % 2) for i, b in enumerate(block_ids)), *tail))


@pytest.mark.parametrize("incomplete", [{}, {7: [70, 72]}, {3: [30], 9: [], 11: [110, 111, 2**40]}])
def test_rebased_shifts_block_ids_and_the_file_ids_of_incomplete_replicas(incomplete: dict[int, list[int]]) -> None:
    blocks = [3, 7, 9, 11, 2**33]
    original = table(blocks, incomplete)
    copy = replicatable.rebased(original, 500, 10**6)
    assert copy == table([b + 500 for b in blocks], {b + 500: [f + 10**6 for f in files]
                                                      for b, files in incomplete.items()})
    n, values, _ = replicatable.columns(copy)
    assert n == 5 and list(values[:n]) == [b + 500 for b in blocks]
    assert values[-1] == replicatable.columns(original)[1][-1]  # flags unchanged
    lay = replicatable.layout(copy)
    for index, block in enumerate(blocks):
        if block in incomplete:
            assert replicatable.file_ids_of(copy, lay, index) == [f + 10**6 for f in incomplete[block]]


def test_rebased_of_no_replicas_and_of_a_damaged_table() -> None:
    empty = table([], {})
    assert replicatable.rebased(empty, 5, 5) == empty
    with pytest.raises(ObjectError):
        replicatable.rebased(table([1, 2], {2: [20]}) + b"\0", 5, 5)
