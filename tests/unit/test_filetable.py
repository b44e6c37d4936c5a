"""The packed per-block file table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo.dataformat import filetable
from dynamo.dataformat.filetable import FileEntry
from dynamo.errors import ObjectError


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


# --- version 2: compact forms, each with its fallback ----------------------------------------

_LFN_CHARS = st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="\n")
_CHECKSUMS = st.one_of(
    st.none(),
    st.integers(0, 0xFFFFFFFF).map(lambda v: f"adler32:{v:08x}"),  # canonical: binary when all are
    st.integers(0, 0xFFFFFFFF).map(lambda v: f"adler32:{v:08X}"),  # upper case: text
    st.integers(0, 0xFFFFFFF).map(lambda v: f"adler32:{v:x}"),  # too short: text
    st.sampled_from(["adler32:+1234567", "adler32:0000_001", "adler32: 123456", "ADLER32:0a1b2c3d",
                     "adler32:0a1b2c3d,md5:00112233445566778899aabbccddeeff", "cksum:1234", "adler32:0a1b2c3d0"]),
    st.text(_LFN_CHARS, min_size=1, max_size=40),
)


@st.composite
def _tables(draw: st.DrawFn) -> dict[str, FileEntry]:
    n = draw(st.integers(1, 40))
    directory = draw(st.sampled_from(["/store/data/Run2018/DoubleMuon/MINIAOD/", "/a/", "", "/ü/ß/"]))
    names = draw(st.lists(st.text(_LFN_CHARS, min_size=1, max_size=60), min_size=n, max_size=n, unique=True))
    big = draw(st.booleans())
    sizes = draw(st.lists(st.integers(0, 2**63 - 1 if big else 0xFFFFFFFF), min_size=n, max_size=n))
    first = draw(st.integers(0, 2**62))
    ids = list(range(first, first + n)) if draw(st.booleans()) else \
        draw(st.lists(st.integers(0, 2**63 - 1), min_size=n, max_size=n))
    canonical = draw(st.booleans())
    if canonical:
        checksums = draw(st.lists(st.integers(0, 0xFFFFFFFF).map(lambda v: f"adler32:{v:08x}"), min_size=n, max_size=n))
    else:
        checksums = draw(st.lists(_CHECKSUMS, min_size=n, max_size=n))
    return {directory + name: FileEntry(size, checksum, i)
            for name, size, checksum, i in zip(names, sizes, checksums, ids, strict=True)}


def _check_reads(blob: bytes, original: dict[str, FileEntry]) -> None:
    assert filetable.unpack(blob) == original
    assert filetable.count(blob) == len(original)
    assert filetable.total_size(blob) == sum(e.size for e in original.values())
    assert filetable.names(blob) == list(original)
    assert filetable.ids(blob) == [e.id for e in original.values()]
    assert filetable.sizes(blob) == [e.size for e in original.values()]
    # in place inside a larger buffer (an arena chunk), with bytes on either side
    arena = bytearray(b"\xff" * 7 + blob + b"\xfe" * 5)
    assert filetable.unpack(arena, 7, 7 + len(blob)) == original
    assert filetable.count(arena, 7, 7 + len(blob)) == len(original)
    assert filetable.extract(arena, 7, 7 + len(blob)) == blob


@settings(max_examples=300, deadline=None)
@given(_tables())
def test_round_trip_any_table_both_versions(original: dict[str, FileEntry]) -> None:
    """Every string comes back exactly as stored (odd, mixed, upper-case and absent checksums,
    non-ASCII names, large and consecutive or scattered ids), from version 2 and version 1."""
    blob = filetable.pack(original)
    assert blob is not None and blob[0] == 2
    _check_reads(blob, original)
    old = filetable.pack(original, version=1)
    assert old is not None and old[0] == 1
    _check_reads(old, original)



@settings(max_examples=200, deadline=None)
@given(_tables(), st.integers(0, 2**40), st.sampled_from(["", "/c1", "/c12_ü"]))
def test_rebased_shifts_every_id_and_prefixes_every_name(original: dict[str, FileEntry], shift: int,
                                                         prefix: str) -> None:
    """A copy of the table in another id space, with its names moved under ``prefix``: both versions,
    consecutive ids (version 2 stores the first alone) and scattered ones."""
    if max(e.id for e in original.values()) + shift >= 2**63:
        shift = 0
    expected = {prefix + lfn: FileEntry(e.size, e.checksum, e.id + shift) for lfn, e in original.items()}
    for version in (2, 1):
        blob = filetable.pack(original, version=version)
        assert blob is not None
        copy, highest = filetable.rebased(blob, shift, prefix)
        assert copy[0] == version and copy[1] == blob[1]  # same version, same flags (version 2)
        _check_reads(copy, expected)
        assert highest == max(e.id for e in expected.values())

def test_compact_forms_are_used_when_they_apply() -> None:
    original = {f"/store/mc/X/{i:05d}/{i * 7919:032X}.root": FileEntry(2**31 + i, f"adler32:{i * 40503:08x}", 100 + i)
                for i in range(10)}
    blob = filetable.pack(original)
    assert blob is not None
    flags = blob[1]
    assert flags == filetable.IDS_RUN | filetable.SIZES_U32 | filetable.CHECKSUMS_ADLER32 | filetable.NAMES_DEFLATED
    old = filetable.pack(original, version=1)
    assert old is not None and len(blob) < 0.6 * len(old)
    assert filetable.unpack(blob) == original


def test_each_fallback_alone() -> None:
    base = {f"/d/{i}.root": FileEntry(i, f"adler32:{i:08x}", 10 + i) for i in range(3)}
    cases = {
        "gap in ids": ({**base, "/d/9.root": FileEntry(9, "adler32:00000009", 99)}, filetable.IDS_RUN),
        "big size": ({**base, "/d/9.root": FileEntry(2**32, "adler32:00000009", 13)}, filetable.SIZES_U32),
        "upper case": ({**base, "/d/9.root": FileEntry(9, "adler32:0000000A", 13)}, filetable.CHECKSUMS_ADLER32),
        "absent": ({**base, "/d/9.root": FileEntry(9, None, 13)}, filetable.CHECKSUMS_ADLER32),
        "md5 too": ({**base, "/d/9.root": FileEntry(9, "adler32:00000009,md5:" + "0" * 32, 13)},
                    filetable.CHECKSUMS_ADLER32),
    }
    for what, (original, missing) in cases.items():
        blob = filetable.pack(original)
        assert blob is not None
        assert not blob[1] & missing, what
        assert filetable.unpack(blob) == original, what


def test_unknown_version_and_flags_are_refused() -> None:
    blob = filetable.pack({"/d/x.root": FileEntry(1, None, 1)})
    assert blob is not None
    with pytest.raises(ObjectError, match="format 3"):
        filetable.names(b"\x03" + blob[1:])
    with pytest.raises(ObjectError, match="format 3"):
        filetable.count(b"\x03" + blob[1:])
    with pytest.raises(ObjectError, match="flags"):
        filetable.names(blob[:1] + b"\x80" + blob[2:])
