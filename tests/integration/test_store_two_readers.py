"""The load's second reader (``store.filesreader``): a process of its own reads ``block_files`` while
the loader builds the rest. Real processes, real SQLite files, real commits in between."""

from __future__ import annotations

import mmap
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bench.workload import change_records, generate, scaled
from dynamo.core.changeset import apply_change_set
from dynamo.core.export import fingerprint
from dynamo.core.journal import ChangeMeta
from dynamo.errors import StoreError
from dynamo.store import open_store
from dynamo.store.filesreader import FilesReader
from dynamo.store.sqlite import SQLiteStore


def _store(path: Path, seed: int, scale: float = 0.002) -> Any:
    with open_store(f"sqlite:///{path}") as store:
        image = generate(scaled(scale), seed)
        store.import_image(image, ChangeMeta(title="import"))
    return image


def _reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_load_with_a_second_reader_is_the_image_stored(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"
    image = _store(path, 41)
    with SQLiteStore(path) as store:
        store.files_reader_min_bytes = 0
        loaded = store.load(freeze=False)
        assert store.load_readers == 2
        assert fingerprint(loaded) == fingerprint(image)
        assert store.loaded_counts == loaded.counts()
        # the reader's chunks are read-only private mappings of its memory file
        chunks = loaded.datasets[next(iter(loaded.datasets))]._arena.chunks
        with pytest.raises(TypeError):
            chunks[-1][0:1] = b"x"
        # changes after the load: blocks whose files changed leave the arena, the rest stay
        apply_change_set(loaded, store, change_records(loaded, 1500, seed=42))
        again = store.load()
        assert store.load_readers == 2
        assert fingerprint(again) == fingerprint(loaded)


def test_small_stores_load_with_one_reader(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"
    image = _store(path, 43)
    with SQLiteStore(path) as store:
        assert path.stat().st_size < (store.files_reader_min_bytes or 0)
        assert fingerprint(store.load()) == fingerprint(image) and store.load_readers == 1
        store.files_reader_min_bytes = None
        assert fingerprint(store.load()) == fingerprint(image) and store.load_readers == 1


class _ChangedInBetween(SQLiteStore):
    """A commit lands after the second reader took its snapshot and before the loader's own."""

    def _start_files_reader(self) -> FilesReader | None:
        reader = FilesReader("sqlite", self.path)
        reader.wait_for_report()
        with open_store(f"sqlite:///{self.path}") as other:
            inventory = other.load()
            apply_change_set(inventory, other, change_records(inventory, 800, seed=45))
            self.changed = fingerprint(inventory)
        return reader


def test_a_store_changed_between_the_two_snapshots_is_loaded_as_the_loader_saw_it(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"
    image = _store(path, 44)
    with _ChangedInBetween(path) as store:
        loaded = store.load()
        assert store.load_readers == 1  # the reader's older tables were not used
        assert fingerprint(loaded) == store.changed != fingerprint(image)
        assert loaded.version == 2


class _FailingReader(SQLiteStore):
    how = "error"

    def _start_files_reader(self) -> FilesReader | None:
        target = str(Path(self.path).parent / "missing" / "inventory.db") if self.how == "error" else self.path
        reader = FilesReader("sqlite", target)
        self.reader_pid = reader.pid
        if self.how == "killed":
            assert reader.pid is not None
            os.kill(reader.pid, signal.SIGKILL)
        return reader


@pytest.mark.parametrize("how", ["error", "killed"])
def test_a_second_reader_that_fails_fails_the_load_cleanly(tmp_path: Path, how: str) -> None:
    path = tmp_path / "inventory.db"
    image = _store(path, 46)
    with _FailingReader(path) as store:
        store.how = how
        with pytest.raises(StoreError, match="second reader"):
            store.load(freeze=True)
        assert _reaped(store.reader_pid)
        # the store is usable and the next load whole
        store.how = "none"
        assert fingerprint(store.load()) == fingerprint(image)
        assert store.load_readers == 2


class _Watched(SQLiteStore):
    def _start_files_reader(self) -> FilesReader | None:
        reader = super()._start_files_reader()
        assert reader is not None
        self.reader_pid = reader.pid
        return reader


def test_a_load_that_fails_ends_its_second_reader(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"
    _store(path, 47)
    with SQLiteStore(path) as store:  # a dataset replica row the builder refuses (read before the reader's result)
        store.execute("UPDATE dataset_replicas SET block_replicas = X'09000000000000' "
                      "WHERE rowid = (SELECT MIN(rowid) FROM dataset_replicas)")
    with _Watched(path) as store:
        store.files_reader_min_bytes = 0
        with pytest.raises(StoreError, match="unknown format"):
            store.load()
        assert _reaped(store.reader_pid)


def test_the_reader_lays_values_out_as_arena_chunks(tmp_path: Path) -> None:
    from dynamo.dataformat.arena import Arena
    from dynamo.store import filesreader
    fd = os.memfd_create("test")
    try:
        big = b"y" * (filesreader.CHUNK_SIZE - 20)  # does not fit after the first value: the next chunk
        rows = [(1, b"\x02\x00" + b"\x03\x00\x00\x00" + b"a"), (2, b"\x02\x00\x01\x00\x00\x00" + big),
                (5, b"\x02\x00\x00\x00\x00\x00")]
        ids, offsets, chunks, files, ascending = filesreader.copy_files(rows, fd)
        assert list(ids) == [1, 2, 5] and files == 4 and ascending
        assert [o >> 32 for o in offsets] == [0, 1, 1]
        assert all(start % mmap.PAGESIZE == 0 for start, _ in chunks)
        arena = Arena({})
        arena.chunks = [mmap.mmap(fd, n, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ, offset=start)
                        for start, n in chunks]
        for (_, blob), offset in zip(rows, offsets, strict=True):
            chunk, start, end = arena.span(offset)
            assert chunk[start:end] == blob
        assert chunks[1][1] == filesreader.CHUNK_SIZE  # the last value filled it up
        assert os.fstat(fd).st_size == chunks[-1][0] + filesreader.CHUNK_SIZE  # the unused end given back
        _, _, _, _, ascending = filesreader.copy_files([(3, b"\x02\x00\x00\x00\x00\x00")] * 2, os.memfd_create("t"))
        assert not ascending
    finally:
        os.close(fd)
