"""The load's second reader (``store.filesreader``): a process of its own reads ``block_files`` while
the loader builds the rest. Real processes, real SQLite files, real commits in between."""

from __future__ import annotations

import mmap
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.workload import change_records, generate, scaled
from dynamo.core.changeset import apply_change_set
from dynamo.core.export import fingerprint
from dynamo.core.journal import ChangeMeta
from dynamo.errors import StoreError
from dynamo.store import open_store, sqlite
from dynamo.store.filesreader import FilesReader
from dynamo.store.mysql import MySQLStore
from dynamo.store.sql import SQLStore
from dynamo.store.sqlite import SQLiteStore


def _import(url: str, seed: int, scale: float = 0.002) -> Any:
    with open_store(url) as store:
        image = generate(scaled(scale), seed)
        store.import_image(image, ChangeMeta(title="import"))
    return image


def _open(url: str, mixin: type | None = None) -> Any:
    """The store at ``url`` (of a class with ``mixin`` first), loading with a second reader whatever its size."""
    base: type = SQLiteStore if url.startswith("sqlite:") else MySQLStore
    cls = base if mixin is None else type(f"{mixin.__name__}{base.__name__}", (mixin, base), {})
    store = cls.from_url(url)
    store.second_reader_min = 0
    return store


def _reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_load_with_a_second_reader_is_the_image_stored(store_url: str) -> None:
    image = _import(store_url, 41)
    with _open(store_url) as store:
        loaded = store.load(freeze=False)
        assert store.load_readers == 2
        assert fingerprint(loaded) == fingerprint(image)
        assert store.loaded_counts == loaded.counts()
        assert loaded.ids.next_ids == image.ids.next_ids
        # the reader's chunks are read-only private mappings of its memory file
        chunks = loaded.datasets[next(iter(loaded.datasets))]._arena.chunks
        with pytest.raises(TypeError):
            chunks[-1][0:1] = b"x"
        # changes after the load: blocks whose files changed leave the arena, the rest stay
        apply_change_set(loaded, store, change_records(loaded, 1500, seed=42))
        again = store.load()
        assert store.load_readers == 2
        assert fingerprint(again) == fingerprint(loaded)


def test_small_stores_load_with_one_reader(store_url: str) -> None:
    image = _import(store_url, 43)
    with open_store(store_url) as store:
        assert fingerprint(store.load()) == fingerprint(image) and store.load_readers == 1
    with _open(store_url) as store:
        store.second_reader_min = None
        assert fingerprint(store.load()) == fingerprint(image) and store.load_readers == 1


class _ChangedInBetween:
    """A commit lands after the second reader took its snapshot and before the loader's own."""

    url = ""

    def _start_files_reader(self) -> FilesReader | None:
        reader = super()._start_files_reader()  # type: ignore[misc]
        assert reader is not None
        reader.wait_for_report()
        with open_store(self.url) as other:
            inventory = other.load()
            apply_change_set(inventory, other, change_records(inventory, 800, seed=45))
            self.changed = fingerprint(inventory)
        return reader


def test_a_store_changed_between_the_two_snapshots_is_loaded_as_the_loader_saw_it(store_url: str) -> None:
    image = _import(store_url, 44)
    with _open(store_url, _ChangedInBetween) as store:
        store.url = store_url
        loaded = store.load()
        assert store.load_readers == 1  # the reader's older tables were not used
        assert fingerprint(loaded) == store.changed != fingerprint(image)
        assert loaded.version == 2


class _FailingReader:
    how = "error"

    def _start_files_reader(self) -> FilesReader | None:
        if self.how == "none":
            return super()._start_files_reader()  # type: ignore[misc, no-any-return]
        reader = FilesReader({"dialect": "nonesuch"}) if self.how == "error" else super()._start_files_reader()  # type: ignore[misc]
        assert reader is not None and reader.pid is not None
        self.reader_pid = reader.pid
        if self.how == "killed":
            os.kill(reader.pid, signal.SIGKILL)
        return reader


@pytest.mark.parametrize("how", ["error", "killed"])
def test_a_second_reader_that_fails_fails_the_load_cleanly(store_url: str, how: str) -> None:
    image = _import(store_url, 46)
    with _open(store_url, _FailingReader) as store:
        store.how = how
        with pytest.raises(StoreError, match="second reader failed"):
            store.load(freeze=True)
        assert _reaped(store.reader_pid)
        # the store is usable and the next load whole
        store.how = "none"
        assert fingerprint(store.load()) == fingerprint(image)
        assert store.load_readers == 2


class _Watched:
    def _start_files_reader(self) -> FilesReader | None:
        reader = super()._start_files_reader()  # type: ignore[misc]
        assert reader is not None
        self.reader_pid = reader.pid
        return reader


@pytest.mark.parametrize("which", ["loader's", "reader's"])
def test_a_load_that_fails_ends_its_second_reader(store_url: str, which: str) -> None:
    """A dataset replica row that cannot be built: among the loader's (read before the reader's result), or,
    SQLite, among the second reader's share (the last rows: the reader reports the error)."""
    if which == "reader's" and not store_url.startswith("sqlite:"):
        pytest.skip("MariaDB's loader reads every dataset replica")
    _import(store_url, 47 if which == "loader's" else 54)
    row = ("dataset_id = (SELECT MIN(dataset_id) FROM (SELECT dataset_id FROM dataset_replicas) r)"
           if which == "loader's" else "rowid = (SELECT MAX(rowid) FROM dataset_replicas)")
    with open_store(store_url) as store:
        store.execute(f"UPDATE dataset_replicas SET block_replicas = X'09000000000000' WHERE {row}")
    with _open(store_url, _Watched) as store:
        with pytest.raises(StoreError, match="unknown format 9" if which == "loader's"
                           else "second reader failed.*unknown format 9"):
            store.load()
        assert _reaped(store.reader_pid)


def test_the_reader_lays_values_out_as_arena_chunks() -> None:
    from dynamo.dataformat.arena import Arena, FileChunks
    from dynamo.store import filesreader
    size = 64 << 20
    fd = os.memfd_create("test")
    try:
        chunks = FileChunks(fd, [], filesreader._place, size=size)
        big = b"y" * (size - 14)  # does not fit after the first value: the next chunk
        huge = b"z" * (size + 5)  # larger than a chunk: a chunk of its own
        values = [b"a" * 7, big, b"b" * 6, huge, b"c"]  # the third fills the second chunk up
        offsets = [chunks.add(v) for v in values]
        layout = filesreader._sealed(chunks)
        assert [o >> 32 for o in offsets] == [0, 1, 1, 2, 3]
        assert all(start % mmap.PAGESIZE == 0 for start, _ in layout)
        assert [n for _, n in layout] == [11, size, len(huge) + 4, 5]
        arena = Arena({})
        arena.chunks = [mmap.mmap(fd, n, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ, offset=start)
                        for start, n in layout]
        for value, offset in zip(values, offsets, strict=True):
            chunk, start, end = arena.span(offset)
            assert chunk[start:end] == value
        assert os.fstat(fd).st_size == layout[-1][0] + 5  # nothing past the last value
    finally:
        os.close(fd)


def test_the_reader_merges_blocks_with_their_files() -> None:
    from dynamo.store.filesreader import with_files
    blocks = [(1, "a"), (3, "b"), (4, "c"), (9, "d")]
    files = [(0, b"orphan"), (3, b"three"), (4, b"four"), (7, b"orphan"), (12, b"orphan")]
    assert list(with_files(blocks, files)) == [(1, "a", None), (3, "b", b"three"), (4, "c", b"four"),
                                               (9, "d", None)]


def test_a_second_reader_that_cannot_be_started_leaves_the_load_to_one(sqlite_url: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    image = _import(sqlite_url, 49)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with _open(sqlite_url) as store:
        assert fingerprint(store.load()) == fingerprint(image) and store.load_readers == 1
    assert "could not be started" in caplog.text


@pytest.mark.parametrize("share", [0.0, 0.4])
def test_blocks_without_files_on_both_sides_of_the_split(sqlite_url: str, share: float,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: the loader reads the file tables of the lowest block ids (``LOADER_FILES_SHARE``; none by
    default), the reader the rest; blocks without files below and above that split (and a split that is
    not a block id) load as with one reader."""
    from dynamo.store import sqlite
    monkeypatch.setattr(sqlite, "LOADER_FILES_SHARE", share)
    _import(sqlite_url, 51)
    with open_store(sqlite_url) as store:
        ids = [row[0] for row in store.query_all("SELECT block_id FROM block_files ORDER BY block_id")]
        gone = [ids[0], ids[1], ids[len(ids) // 3], ids[len(ids) // 2], ids[-1]]
        store.execute(f"DELETE FROM block_files WHERE block_id IN ({','.join(map(str, gone))})")
    with _open(sqlite_url) as store:
        store.second_reader_min = None
        alone = store.load()
        assert store.load_readers == 1
    with _open(sqlite_url) as store:
        both = store.load()
        assert store.load_readers == 2
        assert (0 < store._files_split < ids[-1]) if share else store._files_split == 0
        assert store.loaded_counts == both.counts()
    assert fingerprint(both) == fingerprint(alone)
    assert sum(1 for d in both.datasets.values() for b in d.blocks if b._files is None) == len(gone)


def _replica_orders(inventory: Any) -> tuple[list[list[str]], list[list[str]]]:
    """Each site's dataset replicas and each dataset's replicas, in their dicts' order."""
    return ([list(site._dataset_replicas or {}) for site in inventory.sites.values()],
            [list(dataset._replicas or {}) for dataset in inventory.datasets.values()])


@pytest.mark.parametrize("share", [0.25, 1.0])
def test_the_readers_share_of_the_dataset_replicas_loads_as_with_one_reader(sqlite_url: str, share: float,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: the reader reads the dataset replicas after a rowid (``READER_REPLICAS_SHARE``) once it has
    sent the blocks, the loader the others; the image is the one a single reader makes, down to the order
    of every site's and every dataset's replicas, replicas holding no block replica on both sides of the
    split included."""
    from dynamo.dataformat import replicatable
    from dynamo.store import sqlite
    monkeypatch.setattr(sqlite, "READER_REPLICAS_SHARE", share)
    _import(sqlite_url, 52)
    with open_store(sqlite_url) as store:
        rowids = [row[0] for row in store.query_all("SELECT rowid FROM dataset_replicas ORDER BY rowid")]
        empty = [rowids[0], rowids[len(rowids) // 2], rowids[-1]]
        store.execute(f"UPDATE dataset_replicas SET block_replicas = %s WHERE rowid IN ({','.join(map(str, empty))})",
                      (replicatable.pack([]),))
    with _open(sqlite_url) as store:
        store.second_reader_min = None
        alone = store.load()
        assert store.load_readers == 1 and store._replicas_split is None
    with _open(sqlite_url) as store:
        both = store.load()
        assert store.load_readers == 2
        assert rowids[0] - 1 <= store._replicas_split < rowids[-1]
        assert store.loaded_counts == both.counts() == alone.counts()
    assert fingerprint(both) == fingerprint(alone)
    assert _replica_orders(both) == _replica_orders(alone)
    held = [r for d in both.datasets.values() for r in d.replicas if r.site.id and not list(r.block_replicas)]
    assert len(held) == len(empty)


def test_a_split_the_reader_does_not_share_is_read_by_the_loader(sqlite_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader uses the reader's dataset replicas only when both split the rows at the same rowid (they
    do when they saw the same version); else it reads them itself, after the others."""
    from dynamo.store import sqlite
    image = _import(sqlite_url, 53)
    split = sqlite.replicas_split
    monkeypatch.setattr(sqlite, "replicas_split", lambda low, high, share: split(low, high, share) - 1)  # loader's only
    with _open(sqlite_url) as store:
        loaded = store.load()
        assert store.load_readers == 2  # its blocks and files were taken
    assert fingerprint(loaded) == fingerprint(image)
    with _open(sqlite_url) as store:
        store.second_reader_min = None
        assert _replica_orders(store.load()) == _replica_orders(loaded)


# a reader that reads and reports the blocks, then fails while it reads their files (the loader builds
# the blocks meanwhile): killed by a signal, or with an error it reports
_FAILING_AFTER_BLOCKS = """import os, signal, sys
from dynamo.store import filesreader
def add_files(self, batch):
    if {how!r} == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError("no space left for the file tables")
filesreader._Blocks.add_files = add_files
sys.exit(filesreader.main(sys.argv[1:]))
"""


class _FailingAfterBlocks:
    how = "killed"

    def _start_files_reader(self) -> FilesReader | None:
        if self.how == "none":
            return super()._start_files_reader()  # type: ignore[misc, no-any-return]
        args = ("-P", "-c", _FAILING_AFTER_BLOCKS.format(how=self.how))
        failing = type("FailingReader", (FilesReader,), {"ARGS": args})
        reader = failing({"dialect": "sqlite", "path": str(Path(self.path).resolve()), "after": 0})  # type: ignore[attr-defined]
        self.reader_pid = reader.pid
        return reader


@pytest.mark.parametrize("how", ["killed", "error"])
def test_a_reader_that_fails_after_sending_the_blocks_fails_the_load_cleanly(
        sqlite_url: str, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader built the reader's blocks from their columns; the reader then dies (or reports an
    error) while it reads their files: the load fails with StoreError, the reader is reaped, and the
    next load is whole."""
    from dynamo.store.rows import ImageBuilder
    image = _import(sqlite_url, 52)
    built: list[int] = []
    columns = ImageBuilder.blocks_columns

    def blocks_columns(self: ImageBuilder, read: Any) -> None:
        built.append(len(read.ids))
        columns(self, read)

    monkeypatch.setattr(ImageBuilder, "blocks_columns", blocks_columns)
    with _open(sqlite_url, _FailingAfterBlocks) as store:
        store.how = how
        why = "no report" if how == "killed" else "no space left for the file tables"
        with pytest.raises(StoreError, match=f"second reader failed: .*{why}"):
            store.load(freeze=True)
        assert built and built[0] == sum(len(d.blocks) for d in image.datasets.values())  # the blocks came first
        assert _reaped(store.reader_pid)
        store.how = "none"
        assert fingerprint(store.load()) == fingerprint(image)
        assert store.load_readers == 2


# --- a second reader started before the store is opened (dynamod starts it first thing) -------------------

def _early(url: str) -> tuple[FilesReader, int]:
    reader = sqlite.start_files_reader(url, minimum=0)
    assert reader is not None and reader.pid is not None
    return reader, reader.pid


def test_a_reader_started_before_the_store_is_opened_is_the_loads(sqlite_url: str) -> None:
    image = _import(sqlite_url, 48)
    reader, pid = _early(sqlite_url)
    with _open(sqlite_url, _Watched) as store:
        store.adopt_files_reader(reader)
        loaded = store.load()
        assert store.reader_pid == pid and store.load_readers == 2
        assert fingerprint(loaded) == fingerprint(image)
        assert _reaped(pid)
        again = store.load()  # the next load starts its own
        assert store.reader_pid != pid and store.load_readers == 2
        assert fingerprint(again) == fingerprint(image)


def test_a_reader_no_load_takes_ends_with_the_store(sqlite_url: str, tmp_path: Path) -> None:
    _import(sqlite_url, 49)
    (first, first_pid), (second, second_pid) = _early(sqlite_url), _early(sqlite_url)
    store = _open(sqlite_url)
    store.adopt_files_reader(first)
    store.adopt_files_reader(second)  # the first is ended: one reader a load
    assert _reaped(first_pid)
    store.close()
    assert _reaped(second_pid)
    # nor do other stores keep one (MariaDB's loads start their own)
    third, third_pid = _early(sqlite_url)

    class _NoReaders(SQLiteStore):
        def _start_files_reader(self) -> FilesReader | None:
            return None

    with _NoReaders.from_url(f"sqlite:///{tmp_path}/other.db") as other:
        SQLStore.adopt_files_reader(other, third)
        assert _reaped(third_pid)


@pytest.mark.parametrize("why", ["another file", "no second reader"])
def test_a_reader_that_reads_what_the_load_does_not_want_is_ended(sqlite_url: str, tmp_path: Path,
                                                                  why: str) -> None:
    image = _import(sqlite_url, 50)
    other_url = f"sqlite:///{tmp_path}/other.db"
    _import(other_url, 51)
    reader, pid = _early(other_url if why == "another file" else sqlite_url)
    with _open(sqlite_url) as store:
        if why == "no second reader":
            store.second_reader_min = None
        store.adopt_files_reader(reader)
        loaded = store.load()
        assert _reaped(pid)
        assert store.load_readers == (2 if why == "another file" else 1)
        assert fingerprint(loaded) == fingerprint(image)


def test_a_store_changed_after_its_early_reader_started_is_loaded_as_the_loader_saw_it(sqlite_url: str) -> None:
    image = _import(sqlite_url, 52)
    reader, pid = _early(sqlite_url)
    reader.wait_for_report()  # its snapshot is taken
    with open_store(sqlite_url) as other:
        inventory = other.load()
        apply_change_set(inventory, other, change_records(inventory, 800, seed=53))
        changed = fingerprint(inventory)
    with _open(sqlite_url) as store:
        store.adopt_files_reader(reader)
        loaded = store.load()
        assert store.load_readers == 1 and _reaped(pid)
        assert fingerprint(loaded) == changed != fingerprint(image)
