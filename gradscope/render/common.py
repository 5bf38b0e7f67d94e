"""Formatting shared by the renderers: numbers, sparklines, step selection, consoles."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
from rich.console import Console

BARS = "▁▂▃▄▅▆▇█"


def console(stderr: bool = False) -> Console:
    """A Console for stdout (data) or stderr (progress): ANSI only on a terminal, NO_COLOR honoured."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(
        file=stream,
        highlight=False,
        soft_wrap=False,
        no_color="NO_COLOR" in os.environ or None,
        width=None if stream.isatty() else 80,
    )


def num(x: float | None, digits: int = 3) -> str:
    """A float for a table: fixed for ordinary magnitudes, scientific for tiny or huge ones."""
    if x is None:
        return "-"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{max(digits, 1) + 1}g}"
    return f"{x:.{max(digits - 1, 1)}e}"


def complex_num(z: complex) -> str:
    """a+bi with three significant digits each."""
    re, im = float(np.real(z)), float(np.imag(z))
    if abs(im) < 1e-12:
        return num(re)
    sign = "+" if im >= 0 else "-"
    return f"{num(re)}{sign}{num(abs(im))}i"


def sparkline(values: np.ndarray, width: int = 60) -> str:
    """One line of block characters, resampled to at most ``width``; non-finite values show as '!'."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return ""
    if values.size > width:
        edges = np.linspace(0, values.size, width + 1).astype(int)
        values = np.array([np.mean(values[a:b]) for a, b in zip(edges[:-1], edges[1:])])
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "!" * values.size
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo if hi > lo else 1.0
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append("!")
        else:
            out.append(BARS[min(int((v - lo) / span * (len(BARS) - 1) + 0.5), len(BARS) - 1)])
    return "".join(out)


def select_steps(steps: int, max_rows: int) -> list[int]:
    """Steps to show (1-based): all when few, else log-spaced back from T, always with 1 and T.

    Vanishing is geometric in the distance T - t, so equal ratios between shown distances make each
    row a comparable step down: T, T-1, T-2, T-4, ..., 1.
    """
    if steps <= max_rows:
        return list(range(1, steps + 1))
    back = np.unique(np.round(np.geomspace(1, steps - 1, max_rows - 1)).astype(int))
    chosen = {steps, 1} | {steps - int(d) for d in back}
    return sorted(s for s in chosen if 1 <= s <= steps)
