"""The terminal view of a SweepResult: one heatmap per cell and activation, a legend, the crossings.

Each grid point is a character whose shape gives its band on the shared scale, so the diagram
reads on a pipe or with NO_COLOR; on a colour terminal the same characters get a diverging
background, blue (vanishing) through white to red (exploding). The largest y is on top.
Every number shown is a field of the result's JSON document (serialize.py).
"""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console
from rich.text import Text

from ..commands.sweep import Heatmap, SweepResult
from .common import num

# Bands from the deepest vanishing to the strongest exploding (Scale.edges separate them), and
# the overflow mark: (character, style).
BANDS = (
    ("=", "white on blue"),
    ("-", "black on bright_blue"),
    (".", "black on cyan"),
    ("o", "black on white"),
    ("+", "black on yellow"),
    ("*", "black on bright_red"),
    ("#", "white on red"),
)
OVERFLOW = ("!", "bold white on magenta")
WIDTH = 80


def band(value: float, edges: list[float]) -> tuple[str, str]:
    """The (character, style) of a value: -inf in the deepest vanishing band; +inf, nan overflow."""
    if math.isnan(value) or value == math.inf:
        return OVERFLOW
    low, high = edges[2], edges[3]
    if low <= value <= high:
        return BANDS[3]
    below = sum(value < e for e in edges[:3])  # 3: below every lower edge, 1: just under the band
    above = sum(value > e for e in edges[3:])
    return BANDS[3 - below] if value < low else BANDS[3 + above]


def shown_columns(columns: int, label_width: int) -> tuple[list[int], int]:
    """The x indices drawn and the characters per point: up to 4 each, and when there are more
    points than 80 columns hold, evenly spaced ones (--json and --plot keep them all)."""
    room = WIDTH - label_width - 2
    if columns > room:
        return sorted(set(np.round(np.linspace(0, columns - 1, room)).astype(int).tolist())), 1
    return list(range(columns)), max(1, min(4, room // columns))


def _x_labels(values: list, width: int, offset: int) -> str:
    """Tick labels under the columns, each from its column's start; those that would touch the one
    before are left out, and the last column is always labelled."""
    labels = [num(v) for v in values]
    placed: list[tuple[int, str]] = []
    for j, label in enumerate(labels):
        start = offset + j * width
        if not placed or start > placed[-1][0] + len(placed[-1][1]):
            placed.append((start, label))
    last = offset + (len(values) - 1) * width
    if placed[-1][0] != last:
        while placed and placed[-1][0] + len(placed[-1][1]) >= last:
            placed.pop()
        placed.append((last, labels[-1]))
    line = ""
    for start, label in placed:
        line = line.ljust(start) + label
    return line


def _label_width(result: SweepResult) -> int:
    """Characters left of the diagram: the y values and the y axis's name."""
    return max(len(result.y.name), *(len(num(v)) for v in result.y.values))


def heatmap_lines(result: SweepResult, heatmap: Heatmap) -> list[Text]:
    """The diagram of one map: rows of characters, the axis, the tick labels."""
    ys = [num(v) for v in result.y.values]
    label_width = _label_width(result)
    columns, width = shown_columns(len(result.x.values), label_width)
    lines = [Text(result.y.name.rjust(label_width))]
    model_row = _nearest(result.y.values, result.model_at.get("y"))
    model_column = _nearest([result.x.values[j] for j in columns], result.model_at.get("x"))
    for i in range(len(result.y.values) - 1, -1, -1):
        line = Text(ys[i].rjust(label_width) + (" >" if i == model_row else " |"))
        for j in columns:
            char, style = band(float(heatmap.values[i][j]), result.scale.edges)
            line.append(char * width, style=style)
        lines.append(line)
    axis = ["-" * width for _ in columns]
    if model_column is not None:
        axis[model_column] = "^".center(width, "-")
    lines.append(Text(" " * label_width + " +" + "".join(axis)))
    ticks = _x_labels([result.x.values[j] for j in columns], width, label_width + 2)
    lines.append(Text(ticks + "  " + result.x.name if len(ticks) + len(result.x.name) + 2 <= WIDTH
                      else ticks + "\n" + " " * (label_width + 2) + result.x.name))
    return lines


def _nearest(values: list, value) -> int | None:
    """The index of the axis value nearest ``value`` (in log where every value is positive)."""
    if value is None:
        return None
    v = np.asarray(values, dtype=float)
    if np.all(v > 0) and value > 0:
        return int(np.argmin(np.abs(np.log(v) - np.log(value))))
    return int(np.argmin(np.abs(v - value)))


def model_line(result: SweepResult) -> str | None:
    """Where the model as given sits (``model_at``), as the diagrams mark it."""
    parts = [f"{axis.name}={num(result.model_at[key])} ({mark})"
             for key, axis, mark in (("x", result.x, "^"), ("y", result.y, ">")) if result.model_at.get(key) is not None]
    return None if not parts else "the model as given: " + ", ".join(parts)


def legend_lines(result: SweepResult) -> list[Text]:
    """Each character, its colour and the range of values it stands for."""
    e = result.scale.edges
    ranges = [f"< {num(e[0])}", f"{num(e[0])} .. {num(e[1])}", f"{num(e[1])} .. {num(e[2])}",
              f"{num(e[2])} .. {num(e[3])} (stable)", f"{num(e[3])} .. {num(e[4])}",
              f"{num(e[4])} .. {num(e[5])}", f"> {num(e[5])}"]
    entries = [(char, style, text) for (char, style), text in zip(BANDS, ranges)]
    entries.append((*OVERFLOW, "overflowed (null in --json)"))
    lines, line = [], Text("  ")
    for char, style, text in entries:
        piece = Text(char, style=style) + Text(f" {text}")
        if len(line) + 3 + len(piece) > WIDTH:
            lines.append(line)
            line = Text("  ")
        line += (Text("   ") if len(line) > 2 else Text("")) + piece
    lines.append(line)
    return lines


def crossing_lines(result: SweepResult, heatmap: Heatmap) -> list[str]:
    """Where each row crosses 0 along x: the vanishing/exploding boundary."""
    pairs = [f"{num(y)}: {num(c)}" if c is not None else f"{num(y)}: -"
             for y, c in zip(result.y.values, heatmap.crossings)]
    head = f"  crosses 0 at {result.x.name}, by {result.y.name}:"
    lines, line = [], head
    for pair in pairs:
        if len(line) + 2 + len(pair) > WIDTH:
            lines.append(line)
            line = "   "
        line += f" {pair}" if line == head else f"  {pair}"
    lines.append(line)
    return lines


def render_sweep(result: SweepResult, console: Console) -> None:
    """Print the phase diagrams for a person."""
    dtype = result.config.get("dtype", "float64")
    console.print(Text("gradscope sweep  ", style="bold") + Text(result.quantity)
                  + Text("" if dtype == "float64" else f"  dtype={dtype}"))
    console.print(f"grid: {result.y.name} ({len(result.y.values)} values) by {result.x.name} "
                  f"({len(result.x.values)} values), {len(result.maps)} map(s)")
    if result.transient is not None:
        console.print(f"lambda_1 averaged after a {result.transient}-step transient")
    columns, _ = shown_columns(len(result.x.values), _label_width(result))
    if len(columns) < len(result.x.values):
        console.print(f"showing {len(columns)} of the {len(result.x.values)} x values, evenly spaced")
    for heatmap in result.maps:
        console.print()
        console.print(Text(f"{heatmap.cell} / {heatmap.activation}", style="bold"))
        for line in heatmap_lines(result, heatmap):
            console.print(line)
        for line in crossing_lines(result, heatmap):
            console.print(line)
    where = model_line(result)
    if where is not None:
        console.print(where)
    console.print()
    console.print(Text("Legend", style="bold") + Text(f" ({result.quantity}; below 0 vanishing, above exploding)"))
    for line in legend_lines(result):
        console.print(line)
    for skipped in result.skipped:
        console.print(f"skipped {skipped.cell} / {skipped.activation}: {skipped.reason}")
