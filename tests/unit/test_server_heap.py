"""``heap.trim``: the C library's free memory goes back to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import ctypes
    from dynamo.server import heap
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    # 100k chunks of 1 KiB in the heap, all freed but the last, which keeps the heap's top in place: the
    # C library keeps the freed ~100 MB for later (resident) until trimmed
    chunks = [libc.malloc(1024) for _ in range(100_000)]
    for c in chunks[:-1]:
        ctypes.memset(c, 1, 1024)
        libc.free(c)
    before = heap._rss_kib()
    heap.trim()
    print(before - heap._rss_kib())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the GNU C library's malloc_trim")
def test_trim_gives_free_heap_memory_back() -> None:
    given_back_kib = int(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                                        check=True).stdout)
    assert given_back_kib > 50 * 1024  # of the ~100 MB freed


def test_trim_without_a_c_library_that_has_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    from dynamo.server import heap

    def no_library(*args: object, **kwargs: object) -> None:
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    heap.trim()  # returns quietly
