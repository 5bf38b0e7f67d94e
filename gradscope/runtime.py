"""Process-level tuning for runs that repeat BPTT many times (train, compare, sweep, benchmarks).

Each BPTT pass allocates a few arrays of T x B x H floats (megabytes). glibc serves blocks that
large with mmap and gives them back on free, so every pass page-faults its memory in afresh: on a
virtual machine that costs as much as the arithmetic (measured here: 8 ms of a 25 ms pass at
(B, T, H) = (32, 200, 128)). Raising glibc's mmap and trim thresholds keeps freed blocks in the
heap for the next pass. Only the CLI and the benchmarks call this; importing gradscope changes
nothing in the caller's process.

The BLAS threads: a step's products are small, (B, H) times (H, G*H), and on matrices that small
a second BLAS thread costs more to wake and join than it saves, while on a busy machine threads
that spin waiting for work take the cores from whoever else runs (measured on 2 cores:
benchmarks/bench_blas_threads.py). ``blas_threads_for`` runs a loop of small steps on one BLAS thread,
and leaves larger ones, and the caller's setting once the loop is done, alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from typing import Any, Iterable, Iterator

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB: larger blocks still come from mmap


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed large blocks instead of unmapping them; True where it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))


# Multiply-adds in one step's products, B x (entries of W_ih and W_hh), below which a training step
# is as fast or faster on one BLAS thread than on two: the crossover measured on 2 idle cores lies
# near 0.5M (benchmarks/bench_blas_threads.py); on a busy machine one thread wins far beyond it.
SMALL_STEP = 1 << 19


def cores_taken() -> bool:
    """Whether other work holds the cores we would give BLAS threads: the runnable tasks besides
    this one, now (/proc/loadavg's fourth field) or over the last minute, fill every core but ours.

    A second BLAS thread saves at most half the time on two cores; when it has to share a core it
    costs several times the time instead (OpenBLAS's threads wait for each other at every product):
    measured with benchmarks/bench_blas_threads.py beside other jobs, `train --hidden-size 256
    --batch-size 64` took 5-17 times as long on two threads as on one.
    """
    cores = usable_cores()
    if cores < 2:
        return False
    try:
        with open("/proc/loadavg") as fh:
            fields = fh.read().split()
        # the run queue counts threads: this process's own (its BLAS workers spin a while after
        # every product) are not other work
        running = int(fields[3].split("/")[0]) - _own_running_threads()
        minute = float(fields[0])
    except (OSError, IndexError, ValueError):  # not Linux: count only the one-minute average
        try:
            running, minute = 0, os.getloadavg()[0]
        except (AttributeError, OSError):
            return False
    return running >= cores - 1 or minute >= cores + 0.5


def blas_threads(batch_size: int, matrices: Iterable[Any], busy: bool | None = None) -> int | None:
    """The BLAS threads for steps that multiply a batch of ``batch_size`` rows by ``matrices``
    (arrays; their entries are counted): 1 when the work is small or the other cores are taken
    (``busy``; None: ``cores_taken()``), None (as many as BLAS has) otherwise."""
    work = batch_size * sum(int(m.size) for m in matrices)
    if work < SMALL_STEP:
        return 1
    return 1 if (cores_taken() if busy is None else busy) else None


@functools.lru_cache(maxsize=1)
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController  # imported when a loop of steps starts

    return ThreadpoolController()  # finding the BLAS libraries takes 0.3 ms: once per process


@contextlib.contextmanager
def blas_threads_for(batch_size: int, matrices: Iterable[Any]) -> Iterator[None]:
    """Inside the block, BLAS runs on ``blas_threads(batch_size, matrices)`` threads; after it, on as
    many as before. None leaves the setting alone: in a worker process (parallel.py) that is one."""
    threads = blas_threads(batch_size, matrices)
    if threads is None:
        yield
        return
    with _controller().limit(limits=threads, user_api="blas"):
        yield


def usable_cores() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _own_running_threads() -> int:
    """This process's threads in the run queue now (state R in /proc/self/task/*/stat); at least 1."""
    running = 0
    try:
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as fh:
                    running += fh.read().rpartition(")")[2].split()[0] == "R"
            except (OSError, IndexError):  # the thread ended meanwhile
                continue
    except OSError:
        pass
    return max(1, running)


def _blas_threads_now() -> int:
    """The threads the BLAS library would use now (the smallest over the libraries found)."""
    counts = [lib.num_threads for lib in _controller().lib_controllers if lib.user_api == "blas"]
    return min(counts) if counts else 1


@contextlib.contextmanager
def cores_beside_background() -> Iterator[None]:
    """Inside the block a decomposition runs on a thread of its own (parallel.Background), so BLAS
    keeps one core fewer than there are: OpenBLAS's threads spin while they wait for work, and one
    more busy thread than cores made a pass at H = 512 three times slower instead of faster
    (measured on 2 cores). Never more threads than the caller's limit (a worker process's one,
    or one for small steps or a busy machine: ``blas_threads_for``). On one core nothing changes."""
    cores = usable_cores()
    if cores < 2:
        yield
        return
    with _controller().limit(limits=max(1, min(_blas_threads_now(), cores - 1)), user_api="blas"):
        yield
