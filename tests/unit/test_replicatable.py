"""Editing a packed table of block replicas in place (``replicatable.edit``), against a reference
encoder written from the layout in the module's docstring."""

from __future__ import annotations

import random
import struct

import pytest

from dynamo.dataformat import replicatable
from dynamo.dataformat.replicatable import Row
from dynamo.errors import ObjectError

Model = list[tuple[Row, list[int] | None]]


def reference(rows: Model) -> bytes:
    """The documented layout, written out plainly."""
    n = len(rows)
    out = struct.pack("<BI", 1, n)
    out += b"".join(struct.pack("<q", r.block_id) for r, _ in rows)
    out += b"".join(struct.pack("<q", r.last_update) for r, _ in rows)
    out += b"".join(struct.pack("<i", r.group_id) for r, _ in rows)
    out += bytes(r.flags for r, _ in rows)
    for _, ids in rows:
        if ids is not None:
            out += struct.pack("<I", len(ids)) + b"".join(struct.pack("<q", i) for i in ids)
    return out


def row(block_id: int, file_ids: list[int] | None = None, custodial: bool = False, update: int = 7,
        group: int = 3) -> tuple[Row, list[int] | None]:
    return Row(block_id, update, group, replicatable.flags_of(custodial, file_ids is not None)), file_ids


def edit(table: bytes, index: int, new: tuple[Row, list[int] | None] | None) -> bytes:
    if new is None:
        return replicatable.edit(table, 0, index, None)
    return replicatable.edit(table, 0, index, new[0], replicatable.segment(new[1]))


def test_the_reference_encoder_is_the_format() -> None:
    model = [row(5), row(6, [60, 61]), row(7, [], custodial=True), row(8, custodial=True)]
    table = reference(model)
    n, values, tail = replicatable.columns(table)
    assert n == 4 and list(values[:4]) == [5, 6, 7, 8] and values[12] == bytes([0, 2, 3, 1])
    lay = replicatable.layout(table)
    assert replicatable.file_ids_of(table, lay, 1) == [60, 61] and replicatable.file_ids_of(table, lay, 2) == []
    assert [replicatable.row(table, lay, i) for i in range(4)] == [r for r, _ in model]


def test_empty_table() -> None:
    assert replicatable.EMPTY == reference([])
    assert edit(replicatable.EMPTY, 0, row(9)) == reference([row(9)])
    assert edit(replicatable.EMPTY, 0, row(9, [1, 2])) == reference([row(9, [1, 2])])
    with pytest.raises(IndexError):
        edit(replicatable.EMPTY, 0, None)  # nothing to remove
    with pytest.raises(IndexError):
        edit(replicatable.EMPTY, 1, row(9))


@pytest.mark.parametrize("ids", [None, [], [4, 5]])
def test_one_block(ids: list[int] | None) -> None:
    table = reference([row(9, ids)])
    assert edit(table, 0, None) == reference([])
    assert edit(table, 0, row(9, [1], custodial=True, update=99, group=0)) == reference([row(9, [1], True, 99, 0)])
    assert edit(table, 0, row(9)) == reference([row(9)])
    assert edit(table, 1, row(10, ids)) == reference([row(9, ids), row(10, ids)])


def test_first_middle_and_last_block_with_incomplete_replicas() -> None:
    model = [row(1, [10, 11]), row(2), row(3, [30]), row(4), row(5, [50, 51, 52])]
    table = reference(model)
    for index in range(len(model)):
        assert edit(table, index, None) == reference(model[:index] + model[index + 1:])
        for new in (row(100 + index), row(100 + index, [7, 8, 9]), row(100 + index, [])):
            assert edit(table, index, new) == reference(model[:index] + [new] + model[index + 1:])
    assert edit(table, 5, row(6, [60])) == reference(model + [row(6, [60])])
    assert edit(table, 5, row(6)) == reference(model + [row(6)])


def test_a_table_inside_a_larger_buffer() -> None:
    """As in an arena: the table starts at ``at`` and is followed by other data."""
    model = [row(1, [10]), row(2), row(3, [30, 31])]
    table = reference(model)
    buf = b"\xee" * 13 + table + b"\xff" * 40
    for index in range(3):
        assert replicatable.edit(buf, 13, index, None) == edit(table, index, None)
        assert replicatable.edit(buf, 13, index, *_args(row(9, [1]))) == edit(table, index, row(9, [1]))
    assert replicatable.edit(buf, 13, 3, *_args(row(4))) == reference(model + [row(4)])


def _args(new: tuple[Row, list[int] | None]) -> tuple[Row, bytes]:
    return new[0], replicatable.segment(new[1])


def test_random_edits_match_the_reference() -> None:
    rng = random.Random(5)
    model: Model = []
    table = reference(model)
    for step in range(3000):
        ids = None if rng.random() < 0.6 else [rng.randrange(1, 1000) for _ in range(rng.randrange(0, 4))]
        new = row(step + 1, ids, rng.random() < 0.3, rng.randrange(0, 1 << 40), rng.randrange(0, 20))
        what = rng.random()
        if model and what < 0.35:
            index = rng.randrange(len(model))
            table = edit(table, index, None)
            del model[index]
        elif model and what < 0.7:
            index = rng.randrange(len(model))
            table = edit(table, index, new)
            model[index] = new
        else:
            table = edit(table, len(model), new)
            model.append(new)
        assert table == reference(model), step


def test_refused_edits() -> None:
    table = reference([row(1), row(2, [5])])
    with pytest.raises(IndexError):
        edit(table, 3, row(3))
    with pytest.raises(IndexError):
        edit(table, -1, None)
    with pytest.raises(IndexError):
        edit(table, 2, None)
    with pytest.raises(ValueError):  # incomplete, no file ids
        replicatable.edit(table, 0, 0, row(3, [1])[0], b"")
    with pytest.raises(ValueError):  # complete, with file ids
        replicatable.edit(table, 0, 0, row(3)[0], replicatable.segment([1]))
    with pytest.raises(ObjectError):
        replicatable.edit(b"\x02" + table[1:], 0, 0, None)
