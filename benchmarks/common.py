"""Helpers shared by the benchmark scripts: timing, the result table, the environment line.

Benchmarks are scripts, never tests: run them with ``python benchmarks/<name>.py``. Each compares
gradscope with PyTorch in the same run and prints ratios (torch time / gradscope time, so > 1
means gradscope is faster), which stay meaningful on a loaded or slower machine.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from gradscope.runtime import keep_freed_memory

# As the CLI does: repeated passes reuse freed memory instead of page-faulting it in again. It is
# process-wide, so PyTorch, timed in the same process, gets the same allocator.
MEMORY_REUSED = keep_freed_memory()

SIZES = [(32, 200, 16, 128), (1, 1000, 8, 64), (64, 100, 64, 512)]  # (B, T, D, H)


def median_time(fn: Callable[[], object], repeats: int = 7, warmup: int = 2, budget: float = 20.0) -> float:
    """Median wall time of ``fn()`` in seconds, over up to ``repeats`` runs within ``budget`` s."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def environment() -> str:
    """One line: Python, numpy, torch, threads and the OpenBLAS overrides in force."""
    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        parts.append("torch not installed")
    parts.append(f"cpus {os.cpu_count()}")
    parts.append(f"glibc keeps freed memory: {'yes' if MEMORY_REUSED else 'no'}")
    overrides = [f"{k}={v}" for k, v in os.environ.items() if k.startswith("OPENBLAS_")]
    parts.append("OpenBLAS overrides: " + (", ".join(overrides) if overrides else "none"))
    return "; ".join(parts)


def print_table(header: list[str], rows: list[list[str]], out=sys.stdout) -> None:
    """A plain fixed-width table (benchmarks print to pipes and logs)."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)), file=out)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def ratio(slow: float, fast: float) -> str:
    return f"{slow / fast:.2f}x"


SETTLE = 0.3  # seconds: longer than an OpenMP / OpenBLAS thread pool spins after its last job


@dataclass
class Timing:
    """Wall times of one contender over the rounds, in seconds: the median and the spread.

    q1, q3 : the quartiles (inclusive method); low, high : the fastest and slowest round.
    """

    median: float
    q1: float
    q3: float
    low: float
    high: float
    rounds: int

    @property
    def half_iqr(self) -> float:
        return (self.q3 - self.q1) / 2


def timing(times: list[float]) -> Timing:
    q1, q3 = statistics.quantiles(times, n=4, method="inclusive")[::2] if len(times) > 1 else times * 2
    return Timing(statistics.median(times), q1, q3, min(times), max(times), len(times))


def interleaved_timings(fns: list, repeats: int, warmup: int = 2, before: list | None = None) -> list[Timing]:
    """The Timing of each of ``fns``, run in turn in every round (see ``interleaved_medians``).

    before : optional untimed callables (or None), one per fn, run just before each of its calls,
        after the thread pools have settled: to empty a cache that would flatter repeated rounds.

    Each timed call follows an untimed call of the same fn: after the pause that lets the previous
    contender's threads stop spinning, the thread pools (torch's OpenMP, OpenBLAS) and the VM's
    cores have gone idle, and waking them cost torch's fused module ~10 ms per call at small sizes
    (2-3 ms calls timed at 13-15 ms), which would flatter whichever contender runs single-threaded.
    """
    times: list[list[float]] = [[] for _ in fns]
    prepare = before or [None] * len(fns)
    for round_ in range(warmup + repeats):
        for fn, ready, kept in zip(fns, prepare, times):
            time.sleep(SETTLE)
            if ready is not None:
                ready()
            fn()  # untimed: every thread pool awake, as in a loop of calls
            if ready is not None:
                ready()
            t0 = time.perf_counter()
            fn()
            if round_ >= warmup:
                kept.append(time.perf_counter() - t0)
    return [timing(kept) for kept in times]


def interleaved_medians(fns: list, repeats: int, warmup: int = 2) -> list[float]:
    """Median wall time of each of ``fns``, run in turn in every round.

    On a shared machine the load drifts; taking the rounds in turn gives every contender the same
    conditions, so the ratios stay meaningful even when the absolute times move.
    """
    return [t.median for t in interleaved_timings(fns, repeats, warmup)]


def ms_spread(t: Timing) -> str:
    """``median ± half the interquartile range``, in ms."""
    return f"{t.median * 1e3:.1f} ± {t.half_iqr * 1e3:.1f}"


def torch_modules(cell: str, b: int, t: int, d: int, h: int, seed: int = 0) -> tuple:
    """(module, step, fc, x, y): nn.RNN/GRU/LSTM(d, h) in float64, the matching nn.*Cell with the
    module's weights (for the unrolled loop with retain_grad), an nn.Linear(h, 1) head, a batch
    x (b, t, d) ~ N(0, 1) and labels y (b, 1) in {0, 1}, all from torch.manual_seed(seed)."""
    import torch

    torch.manual_seed(seed)
    module_type, step_type = {"rnn": (torch.nn.RNN, torch.nn.RNNCell), "gru": (torch.nn.GRU, torch.nn.GRUCell),
                              "lstm": (torch.nn.LSTM, torch.nn.LSTMCell)}[cell]
    module = module_type(d, h, batch_first=True).double()
    fc = torch.nn.Linear(h, 1).double()
    step = step_type(d, h).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(step, name).copy_(getattr(module, name + "_l0"))
    x = torch.randn(b, t, d, dtype=torch.float64)
    y = (torch.rand(b, 1) > 0.5).double()
    return module, step, fc, x, y
