"""What the renderers share: consoles, the run header, numbers, sparklines, step selection, and
the progress bar of the long-running commands."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from typing import Callable, Iterator

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

BARS = "▁▂▃▄▅▆▇█"
REGIME_STYLE = {"vanishing": "bold yellow", "exploding": "bold red", "stable": "bold green"}  # flow.regime

# -q (-1): no progress bar, no warnings; -v (1): also the time each command took. Set by the CLI.
VERBOSITY = {"level": 0}


def set_verbosity(level: int) -> None:
    VERBOSITY["level"] = level


def warn(message: str) -> None:
    """A warning on stderr, one line, unless -q."""
    if VERBOSITY["level"] >= 0:
        print(f"gradscope: warning: {' '.join(str(message).split())}", file=sys.stderr)


class _Console(Console):
    """rich's Console, but a closed pipe (``| head``) is a BrokenPipeError for the CLI's boundary to
    end quietly with, not rich's own SystemExit(1), which would read as a failed check."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def console(stderr: bool = False) -> Console:
    """A Console for stdout (data) or stderr (progress): ANSI only on a terminal, NO_COLOR honoured."""
    stream = sys.stderr if stderr else sys.stdout
    return _Console(
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


def steps_of(n: int) -> str:
    """'1 step', '36 steps'."""
    return f"{n} step" if n == 1 else f"{n} steps"


def step_count(x: float | None) -> str:
    """A horizon in steps, to the digits it means: 3.6, 36, 357 (a fit over noisy norms, not 3.573)."""
    if x is None or not math.isfinite(x):
        return num(x)
    return f"{x:.1f}" if abs(x) < 10 else f"{x:.0f}"


def complex_num(z: complex) -> str:
    """a+bi with three significant digits each."""
    re, im = float(np.real(z)), float(np.imag(z))
    if abs(im) < 1e-12:
        return num(re)
    sign = "+" if im >= 0 else "-"
    return f"{num(re)}{sign}{num(abs(im))}i"


def num_log10(log10: float | None, digits: int = 3) -> str:
    """A number given by its log10, as ``num`` shows it, also beyond float64 (1e-400 is 0 there)."""
    if log10 is None or not math.isfinite(log10):
        return num(None if log10 is None else (0.0 if log10 < 0 else math.inf))
    if -300 < log10 < 300:
        return num(10.0 ** log10, digits)
    exponent = math.floor(log10)
    return f"{10.0 ** (log10 - exponent):.{max(digits - 1, 1)}f}e{exponent:+d}"


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
    # the set drops repeated distances (np.unique would too, but imports numpy.ma: 15 ms of start-up)
    back = np.round(np.geomspace(1, steps - 1, max_rows - 1)).astype(int)
    chosen = {steps, 1} | {steps - int(d) for d in back}
    return sorted(s for s in chosen if 1 <= s <= steps)


def config_lines(config: dict) -> list[str]:
    """The run's settings: the model on one line, the data on the next."""
    return ["  ".join(part) for part in config_parts(config)]


def config_parts(config: dict) -> tuple[list[str], list[str]]:
    """The run's settings, each a word such as ``H=32``: the model's, then the data's."""
    c = config
    model = [f"{c['cell']}/{c['activation']}" if c["cell"] == "rnn" else c["cell"],
             f"H={c['hidden_size']} D={c['input_size']}"
             + (f" O={c['output_size']}" if c["output_size"] is not None else ""),
             f"loss={c['loss']}" if c["loss"] is not None else "no head"]
    if c.get("weights"):
        model.append(f"weights={c['weights']}")
    else:
        model.append(f"init={c['init']}" + (f" x{c['init_gain']:g}" if c["init_gain"] != 1 else ""))
    if c.get("spectral_radius") is not None:
        model.append(f"radius={c['spectral_radius']:g}")
    if c.get("recurrent_scale") is not None:
        model.append(f"W_hh x{c['recurrent_scale']:g}")
    if c.get("bias_init", "zero") != "zero":
        model.append(f"bias={c['bias_init']}" + (f" T_max={c['chrono_max']}" if c.get("chrono_max") else ""))
    data = [f"inputs={c['inputs']}" if c.get("inputs") else f"task={c['task']}",
            f"T={c['seq_len']} B={c['batch_size']}", f"seed={c['seed']}"]
    if c["task"] == "text":
        data.append(f"padding={c['padding']}")
    if c.get("dtype", "float64") != "float64":
        data.append(f"dtype={c['dtype']}")
    return model, data


def growth_time(exponent: float) -> str:
    """', x e every N steps' for a positive exponent (per step, natural log): how slowly a barely
    exploding gradient grows, which the regime's word alone overstates; '' otherwise."""
    if not (math.isfinite(exponent) and exponent > 0):
        return ""
    return f", x e every {step_count(1.0 / exponent)} steps"


def chain_lines(label: str, chain: str, width: int) -> str:
    """``label + chain`` with the chain (``a -> b -> c``) broken at its arrows where it is wider than
    ``width``, each further line indented under the first link; a link wider than that is left whole."""
    links, indent = chain.split(" -> "), " " * len(label)
    lines, line = [], label + links[0]
    for link in links[1:]:
        if len(line) + len(" -> ") + len(link) > width:
            lines.append(line + " ->")
            line = indent + link
        else:
            line += " -> " + link
    return "\n".join(lines + [line])


def print_header(console: Console, command: str, config: dict) -> None:
    """The command's name, then the model and the data settings on two aligned lines."""
    model, data = config_parts(config)
    title = f"gradscope {command}  "
    indent = " " * len(title)
    lines = _wrapped(model, len(title), console.width) + _wrapped(data, len(title), console.width)
    console.print(Text(title, style="bold") + Text(lines[0]))
    for line in lines[1:]:
        console.print(Text(indent + line))  # Text: a path is not rich markup


def _wrapped(words: list[str], indent: int, width: int) -> list[str]:
    """``words`` joined by two spaces into lines that fit ``width`` after ``indent`` columns, broken
    between words; a word wider than that (a long path) is cut into lines of that width."""
    room = max(width - indent, 20)
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 2 + len(word) <= room:
            lines[-1] += "  " + word
        else:
            lines += [word[i : i + room] for i in range(0, len(word), room)] or [""]
    return lines


@contextlib.contextmanager
def step_progress(description: str, total: int | None, lines: bool = False) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr while the block runs, only when stderr is a terminal.

    Yields ``advance(completed, label=None, total=None)`` (a total given replaces the first, which
    may be None for work whose size is known only once it starts); a no-op on a pipe, so callers
    need not ask. With
    ``lines`` (runs on a cluster, which take long and are often logged), a stderr that is not a
    terminal gets one plain line per call instead: ``gradscope: runs: 3/6 (lstm, seed 1)``.
    """
    if VERBOSITY["level"] < 0 or not (sys.stderr.isatty() or lines):
        yield lambda completed, label=None, total=None: None
        return
    if not sys.stderr.isatty():
        def line(completed: int, label: str | None = None, now: int | None = None) -> None:
            print(f"gradscope: {description}: {completed}/{now or total}" + (f" ({label})" if label else ""),
                  file=sys.stderr, flush=True)

        yield line
        return
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console(stderr=True), transient=True,
        redirect_stdout=False, redirect_stderr=False,  # stdout carries data (--ndjson), untouched
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda completed, label=None, total=None: bar.update(task, completed=completed, total=total)


def thin(count: int, rows: int | None) -> list[int]:
    """Indices of ``rows`` of ``count`` items, evenly spaced, the first and the last always; all of
    them when ``rows`` is None or not fewer."""
    if rows is None or count <= rows:
        return list(range(count))
    return sorted(set(np.round(np.linspace(0, count - 1, max(rows, 2))).astype(int).tolist()))
