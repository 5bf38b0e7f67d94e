"""Running independent pieces of work in spawned processes, one per core (or, with a scheduler's
address, on a Dask cluster: ``run_each`` hands them to cluster.py).

Workers are spawned, never forked: each starts a fresh interpreter, which is safe beside threads
(a progress display) and reads the environment afresh when it starts numpy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:  # multiprocessing and concurrent.futures are imported when a pool starts
    from concurrent.futures import ProcessPoolExecutor

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
    (Ctrl-C, SIGTERM, closing the generator), terminates the workers, running ones included, and
    returns within a second or so: nothing is left running, nothing is waited for.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_start)
    with one_blas_thread_per_process():
        try:
            # workers start with SIGINT ignored (the parent handles Ctrl-C), and without a script to run
            # again where the parent's came from stdin
            with _sigint_ignored(), _main_without_a_missing_file():
                futures = {pool.submit(function, *call): i for i, call in enumerate(calls)}
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            terminate(pool)
            raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _main_without_a_missing_file() -> Iterator[None]:
    """A spawned worker runs the parent's ``__main__`` again from its file, which a script read from
    standard input (``python - <<EOF``: ``__file__`` '<stdin>') does not have: it would die at start
    (BrokenProcessPool). The workers need gradscope's functions only, so while they start such a
    ``__file__`` is hidden, as an interactive session has none."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None or os.path.exists(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def run_each(function: Callable[..., Any], calls: Sequence[tuple], jobs: int = 1, scheduler: str | None = None,
             cost: Callable[[int], float] | None = None,
             progress: Callable[[int, int, str], None] | None = None,
             label: Callable[[int], str] = str) -> dict[int, Any]:
    """``function(*call)`` for every call, the results by the calls' index: in this process (jobs 1),
    in ``jobs`` spawned processes, the costliest first (``cost(i)``: so that no core idles at the
    end), or, given a ``scheduler`` address, on that Dask cluster (cluster.py). ``progress(done,
    total, label(i))`` as each finishes, in the order they finish.

    A cluster that loses work raises cluster.Lost, its ``finished`` the results that came back.
    """
    results: dict[int, Any] = {}

    def finished(i: int, result: Any) -> None:
        results[i] = result
        if progress is not None:
            progress(len(results), len(calls), label(i))

    if scheduler is not None:
        from .cluster import Lost, on_cluster

        try:
            for i, result in on_cluster(function, calls, scheduler, label):
                finished(i, result)
        except Lost as exc:
            exc.finished = results
            raise
    elif jobs == 1 or len(calls) == 1:
        for i, call in enumerate(calls):
            finished(i, function(*call))
    else:
        order = sorted(range(len(calls)), key=lambda i: -cost(i)) if cost is not None else list(range(len(calls)))
        for k, result in in_processes(function, [calls[i] for i in order], min(jobs, len(calls))):
            finished(order[k], result)
    return results


def run_each_keeping(function: Callable[..., Any], calls: Sequence[tuple], missing: Callable[[int], dict],
                     **how: Any) -> tuple[dict[int, Any], Any]:
    """``run_each`` (``how``: its jobs, scheduler, cost, progress, label), keeping what came back when
    a cluster loses work: (the results by index, None) or (those that finished, a cluster.Partial
    naming each missing call by ``missing(i)``). Lost with nothing finished is raised as it is."""
    from .cluster import Lost, Partial

    try:
        return run_each(function, calls, **how), None
    except Lost as exc:
        if not exc.finished:
            raise
        done = exc.finished
        return done, Partial(str(exc), len(done), len(calls), [missing(i) for i in range(len(calls)) if i not in done])


def terminate(pool: ProcessPoolExecutor, grace: float = 1.0) -> None:
    """Stop a pool now: queued calls cancelled, running workers sent SIGTERM (SIGKILL after ``grace``
    seconds) and reaped, so that none is left behind as an orphan."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # not public API: read defensively
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(grace)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while workers are spawned, so that they inherit SIG_IGN (a terminal's Ctrl-C
    reaches the whole process group; the parent alone should answer it, by terminating them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker_start() -> None:
    """In each worker: SIGINT ignored, SIGTERM fatal, and SIGTERM when the parent dies (Linux), so that
    even a parent killed with SIGKILL leaves no worker running. And one BLAS thread, whichever BLAS
    numpy has (the variables that one_blas_thread_per_process sets name only the common ones): the
    workers already take every core, and runtime.blas_threads_for never raises the count again."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
            if os.getppid() == 1:  # the parent died before prctl took effect
                os._exit(1)


def default_jobs() -> int:
    """One job per CPU this process may use (runtime.usable_cores)."""
    from .runtime import usable_cores

    return usable_cores()


class Background:
    """``function(*args)`` started now on a thread of its own; ``result()`` waits for it.

    For work the GIL does not hold back: LAPACK's eigenvalue and SVD routines release it, so a
    decomposition that needs only the weights runs on one core while BPTT runs on the other. The
    thread is a daemon: an interrupted command exits without waiting for a decomposition to end.
    """

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(function, args), daemon=True)
        self._thread.start()

    def _run(self, function: Callable[..., Any], args: tuple) -> None:
        try:
            self._value = function(*args)
        except BaseException as exc:  # handed to the caller of result(), which raises it there
            self._error = exc

    def join(self) -> None:
        """Wait for the function to end, without its result or error."""
        self._thread.join()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class _After:
    """``function(*args)`` run when the block ends, on the caller's thread (``beside`` with
    thread=False): the same interface as Background."""

    def __init__(self, function: Callable[..., Any], args: tuple) -> None:
        self._function, self._args, self._value = function, args, None

    def run(self) -> None:
        self._value = self._function(*self._args)

    def result(self) -> Any:
        return self._value


@contextlib.contextmanager
def beside(function: Callable[..., Any], *args: Any, thread: bool = True) -> Iterator[Background | _After]:
    """``function(*args)`` on a thread of its own while the block runs, BLAS keeping the other
    cores (runtime.cores_beside_background); the block's end waits for it, so ``result()`` after
    the block returns at once. thread=False: run after the block instead, BLAS keeping every core
    for the block (where the work beside is too small to pay for the core the block gives up)."""
    from .runtime import cores_beside_background

    if not thread:
        work = _After(function, args)
        yield work
        work.run()
        return
    with cores_beside_background():
        work = Background(function, *args)
        try:
            yield work
        finally:  # also when the block raises: the limit is lifted only once the thread is done
            work.join()
