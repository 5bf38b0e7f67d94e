"""Running independent pieces of work in spawned processes, one per core.

Workers are spawned, never forked: each starts a fresh interpreter, which is safe beside threads
(a progress display) and reads the environment afresh when it starts numpy.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Sequence

BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# glibc reads these when a process starts: keep freed large blocks for reuse (see runtime.py).
MALLOC_REUSE = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


@contextlib.contextmanager
def one_blas_thread_per_process() -> Iterator[None]:
    """Let each worker started inside the block run its BLAS on one thread.

    The workers already use every core; BLAS threads on top of them only contend for the cores
    (on these small matrices each worker runs several times slower). The variables are read when a
    spawned worker starts numpy; the parent's own BLAS, already started, is not affected. Workers
    also keep freed memory for their next BPTT pass, as runtime.keep_freed_memory does here.
    """
    saved = {name: os.environ.get(name) for name in BLAS_THREADS + MALLOC_REUSE}
    os.environ.update({name: "1" for name in BLAS_THREADS})
    os.environ.update({name: str(1 << 30) for name in MALLOC_REUSE})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def in_processes(function: Callable[..., Any], calls: Sequence[tuple], jobs: int) -> Iterator[tuple[int, Any]]:
    """``function(*call)`` for every call, in ``jobs`` spawned workers with one BLAS thread each.

    Yields (index of the call, its result) as each finishes. An error, or the consumer stopping
    (Ctrl-C), cancels the calls still queued instead of waiting for them.
    """
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    with one_blas_thread_per_process(), pool:
        futures = {pool.submit(function, *call): i for i, call in enumerate(calls)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def default_jobs() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
