"""The packed per-block file table."""

from __future__ import annotations

import pytest

from dynamo.dataformat import filetable
from dynamo.dataformat.filetable import FileEntry


def entries(n: int, prefix: str = "/store/data/Run2018/DoubleMuon/MINIAOD/") -> dict[str, FileEntry]:
    return {f"{prefix}{i:04d}-ABCD.root": FileEntry(1000 + i, None if i % 2 else f"adler32:{i:08x}", 50 + i)
            for i in range(n)}


@pytest.mark.parametrize("n", [1, 2, 17])
def test_pack_unpack_round_trip(n: int) -> None:
    original = entries(n)
    blob = filetable.pack(original)
    assert blob is not None
    assert filetable.unpack(blob) == original
    assert filetable.count(blob) == n
    assert filetable.total_size(blob) == sum(e.size for e in original.values())
    assert filetable.names(blob) == list(original)
    assert filetable.ids(blob) == [e.id for e in original.values()]


def test_no_checksums_costs_nothing() -> None:
    original = {f"/store/x/{i}.root": FileEntry(i, None, i + 1) for i in range(5)}
    blob = filetable.pack(original)
    assert blob is not None and filetable.unpack(blob) == original
    assert blob.endswith(b"4.root")


def test_empty_table_is_none() -> None:
    assert filetable.pack({}) is None
    assert filetable.unpack(None) == {}
    assert filetable.count(None) == 0 and filetable.total_size(None) == 0


def test_names_without_a_common_directory() -> None:
    original = {"/a/x.root": FileEntry(1, None, 1), "/b/y.root": FileEntry(2, None, 2)}
    blob = filetable.pack(original)
    assert filetable.unpack(blob) == original


def test_packing_is_compact() -> None:
    original = entries(1000)
    blob = filetable.pack(original)
    assert blob is not None
    suffix = len("0000-ABCD.root")
    # 16 bytes of numbers + the name suffix + separator + half the files with an 16-char checksum
    assert len(blob) < 1000 * (16 + suffix + 1 + 9) + 200
