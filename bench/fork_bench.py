"""What a child of a large image costs: ``fork()`` against the zygote's two ways of making dynamod's child.

A process holding ``--objects`` small Python objects (12 M: ~1.2 GB RSS, like dynamod's W10 image)
forks a child that waits on a pipe and then exits, ``--repeat`` times each way:

* ``fork``: one ``os.fork`` (what a process makes its own child with);
* ``intermediate``: through an intermediate process that forks again and exits at once (the zygote's
  way before ``dynamo.server.sibling``: two copies of the page tables, one teardown);
* ``sibling``: ``dynamo.server.sibling.fork_sibling``, from a middle process (the zygote's way now).

Reported per way: the median time until the parent has the child's pid, the median time from the
child's release to its reaping (its exit tears down its copy of the page tables), and the CPU of all
processes per child. Run it under ``flock /work/w10.lock`` (it is a timed run)."""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import statistics
import time
from collections.abc import Callable

from dynamo.server import sibling

PR_SET_CHILD_SUBREAPER = 36


def _cpu() -> float:
    self, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self.ru_utime + self.ru_stime + children.ru_utime + children.ru_stime


def _waiter(release: int) -> None:
    os.read(release, 1)
    os._exit(0)


def one_fork() -> tuple[int, int]:
    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _waiter(release_r)
    os.close(release_r)
    return pid, release_w


def through_intermediate() -> tuple[int, int]:
    release_r, release_w = os.pipe()
    told_r, told_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        pid = os.fork()
        if pid == 0:
            _waiter(release_r)
        os.write(told_w, pid.to_bytes(4, "big"))
        os._exit(0)
    pid = int.from_bytes(os.read(told_r, 4), "big")
    os.waitpid(middle, 0)
    for fd in (release_r, told_r, told_w):
        os.close(fd)
    return pid, release_w


def _cpu_of(pid: int) -> float:
    """CPU seconds of a live process (a middle one, not reaped yet)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Maker:
    """Makes a child; ``middle``: the process that forks it, when not this one (its CPU counts too)."""

    def __init__(self, make: Callable[[], tuple[int, int]], middle: int = 0):
        self.make = make
        self.middle = middle

    def cpu(self) -> float:
        return _cpu() + (_cpu_of(self.middle) if self.middle else 0.0)


def measure(maker: Maker, repeat: int) -> tuple[float, float, float]:
    forks, ends = [], []
    make = maker.make
    cpu = maker.cpu()
    for _ in range(repeat):
        started = time.perf_counter()
        pid, release = make()
        forked = time.perf_counter()
        os.write(release, b"x")
        os.waitpid(pid, 0)
        ends.append((time.perf_counter() - forked) * 1000)
        forks.append((forked - started) * 1000)
        os.close(release)
    return statistics.median(forks), statistics.median(ends), (maker.cpu() - cpu) * 1000 / repeat


def sibling_maker() -> Maker:
    """A middle process that forks siblings on request (one byte in, a pid out), as the zygote does."""
    ask_r, ask_w = os.pipe()
    told_r, told_w = os.pipe()
    release_r, release_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        while os.read(ask_r, 1):
            pid = sibling.fork_sibling()
            if pid == 0:
                _waiter(release_r)
            os.write(told_w, pid.to_bytes(4, "big"))
        os._exit(0)

    def make() -> tuple[int, int]:
        os.write(ask_w, b"x")
        return int.from_bytes(os.read(told_r, 4), "big"), os.dup(release_w)

    return Maker(make, middle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=12_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    image = [str(i) * 3 for i in range(args.objects)]
    gc.freeze()
    print(f"RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB, {len(image)} objects", flush=True)
    ways = [("fork", Maker(one_fork)), ("intermediate", Maker(through_intermediate))]
    if sibling.available():
        ways.append(("sibling", sibling_maker()))
    for _ in range(2):
        for name, make in ways:
            fork_ms, end_ms, cpu_ms = measure(make, args.repeat)
            print(f"{name:12} pid after {fork_ms:5.1f} ms, released to reaped {end_ms:5.1f} ms, "
                  f"CPU {cpu_ms:5.1f} ms per child", flush=True)


if __name__ == "__main__":
    main()
