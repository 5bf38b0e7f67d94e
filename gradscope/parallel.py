"""Running independent pieces of work in spawned processes, one per core.

Workers are spawned, never forked: each starts a fresh interpreter, which is safe beside threads
(a progress display) and reads the environment afresh when it starts numpy.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

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


def default_jobs() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
