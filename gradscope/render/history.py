"""The terminal view of a HistoryResult: per run a table of the flow at each recorded pass, and a
heatmap of log10 ||dL/dh_t|| over training step (rows) x time step (columns).

The table has a column group (ratio, slope, horizon, verdict) per layer and direction, as many groups
side by side as the width holds, the rest in further tables below. Rows are the recorded passes,
thinned evenly (first and last always) to ``rows`` unless ``--all``. The heatmap is of one layer and
direction (the top layer's forward by default, the headline); its columns are the time steps, binned
to the width (each character the mean log10 of its steps), its colours a viridis-like scale on a
colour terminal, a character ramp otherwise (NO_COLOR, a pipe). Every number shown is a field of
the result's JSON document (serialize.py); the heatmap's characters are means of them.

Also here: the rows --follow prints on a pipe, one line per pass as it arrives, and the heatmap as
an SVG picture for --report (drawn here, no matplotlib needed).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
from rich.console import Console, Group
from rich.text import Text

from ..commands.history import Heatmap, HistoryResult, LayerFlow, Pass, heatmap, layer_key
from .common import REGIME_STYLE, num, num_log10, step_count, thin

RAMP = ".:-=+*#%@"  # low to high, without colour
NULL = "!"  # the record has null: the norm is 0 or not finite
PAD = " "  # before a shorter pass's first step (end-aligned)
# viridis at 0, 1/4, 1/2, 3/4, 1: dark (faded gradient) to bright (strong)
PALETTE = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
NULL_COLOUR = (190, 190, 190)
GAP = "  "  # between column groups; one space between the columns of a group
GROUP_HEADERS = ("ratio", "slope", "horizon", "verdict")  # the verdict left-justified, the rest right


# --- the table ---------------------------------------------------------------------------------


def _layer_name(layer: int, direction: str) -> str:
    return f"layer {layer} {direction}"


def ratio_text(f: LayerFlow) -> str:
    """||dL/dh_1|| / ||dL/dh_T||, from its log10 where there is one (exact beyond float64)."""
    return num_log10(f.log10_ratio, 2) if f.log10_ratio is not None else num(f.ratio_first_last, 2)


def group_cells(f: LayerFlow) -> list[Text]:
    """One layer and direction's cells of a row: ratio, slope, horizon, verdict."""
    return [Text(ratio_text(f)), Text(num(f.slope, 2)), Text(step_count(f.horizon)),
            Text(f.regime, style=REGIME_STYLE[f.regime])]



def step_text(p: Pass) -> str:
    return f"{p.step}{'*' if p.dropout_left_out else ''}"


@dataclass
class Columns:
    """The widths of the table's columns: step, loss (None when no pass has a loss), and each
    group's four."""

    step: int
    loss: int | None
    groups: list[list[int]]

    def group_width(self, g: int) -> int:
        return sum(self.groups[g]) + len(self.groups[g]) - 1

    def lead(self) -> int:
        return self.step + (0 if self.loss is None else 1 + self.loss)


def _columns(result: HistoryResult, passes: list[Pass]) -> Columns:
    has_loss = any(p.loss is not None for p in result.passes)
    step = max(len("step"), *(len(step_text(p)) for p in passes))
    loss = max(len("loss"), *(len(num(p.loss)) for p in passes)) if has_loss else None
    groups = []
    for g in range(len(result.layers)):
        widths = [len(h) for h in GROUP_HEADERS]
        for p in passes:
            widths = [max(w, len(c)) for w, c in zip(widths, group_cells(p.layers[g]))]
        groups.append(widths)
    return Columns(step, loss, groups)


def _pack(columns: Columns, width: int) -> list[list[int]]:
    """The groups of each table: as many side by side as ``width`` holds (at least one)."""
    tables: list[list[int]] = []
    used = width
    for g in range(len(columns.groups)):
        need = len(GAP) + columns.group_width(g)
        if tables and used + need <= width:
            tables[-1].append(g)
            used += need
        else:
            tables.append([g])
            used = columns.lead() + need
    return tables


def _line(columns: Columns, groups: list[int], step: Text, loss: Text | None, cells: list[list[Text]]) -> Text:
    """One row: the cells right-justified in their columns (the verdict left), groups set apart."""
    line = _just(step, columns.step, False)
    if columns.loss is not None:
        line += Text(" ") + _just(loss or Text(""), columns.loss, False)
    for g, group in zip(groups, cells):
        line += Text(GAP)
        for i, (cell, w) in enumerate(zip(group, columns.groups[g])):
            line += (Text(" ") if i else Text("")) + _just(cell, w, left=GROUP_HEADERS[i] == "verdict")
    line.rstrip()
    return line


def _just(text: Text, width: int, left: bool) -> Text:
    pad = Text(" " * max(width - len(text), 0))
    return text + pad if left else pad + text


def _group_titles(result: HistoryResult, columns: Columns, groups: list[int]) -> Text:
    """The line above the headers: each group's layer and direction, centred over its columns."""
    line = " " * columns.lead()
    for g in groups:
        key = result.layers[g]
        line += GAP + _layer_name(key["layer"], key["direction"]).center(columns.group_width(g))
    return Text(line.rstrip(), style="bold")


def table_lines(result: HistoryResult, passes: list[Pass], width: int) -> list[Text]:
    """The table of ``passes``: step, loss and each layer and direction's flow, split into as many
    tables as the width needs."""
    columns = _columns(result, passes)
    lines: list[Text] = []
    for n, groups in enumerate(_pack(columns, width)):
        if n:
            lines.append(Text(""))
        lines.append(_group_titles(result, columns, groups))
        header = _line(columns, groups, Text("step"), Text("loss"),
                       [[Text(h) for h in GROUP_HEADERS] for _ in groups])
        header.stylize("bold")
        lines.append(header)
        for p in passes:
            lines.append(_line(columns, groups, Text(step_text(p)), Text(num(p.loss)),
                               [group_cells(p.layers[g]) for g in groups]))
    return lines


# --- the heatmap -------------------------------------------------------------------------------


@dataclass
class Binned:
    """A heatmap reduced to what is drawn: rows (the chosen passes) by column bins of time steps.

    steps : (R,) the rows' training steps. values : (R, C) the mean log10 norm over each bin's
    recorded steps, nan where there is none. null : (R, C) the bin has steps but every one is null.
    pad : (R, C) the bin lies wholly before the pass's first step. edges : (C + 1,) the bins'
    step boundaries, 0-based (bin c covers steps edges[c] + 1 .. edges[c + 1]).
    """

    steps: np.ndarray
    values: np.ndarray
    null: np.ndarray
    pad: np.ndarray
    edges: np.ndarray

    def finite_range(self) -> tuple[float, float] | None:
        finite = self.values[np.isfinite(self.values)]
        return None if finite.size == 0 else (float(finite.min()), float(finite.max()))


def binned(h: Heatmap, rows: list[int], columns: int) -> Binned:
    """The passes ``rows`` of ``h`` with its time steps in at most ``columns`` equal bins."""
    steps = h.values.shape[1]
    edges = np.linspace(0, steps, min(columns, steps) + 1).round().astype(int)
    values = h.values[rows]
    padding = h.padding[rows]
    shape = (len(rows), len(edges) - 1)
    means, null, pad = np.full(shape, np.nan), np.zeros(shape, bool), np.zeros(shape, bool)
    for c, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        block, real = values[:, a:b], ~padding[:, a:b]
        ok = np.isfinite(block)
        counts = ok.sum(axis=1)
        with np.errstate(invalid="ignore"):
            means[:, c] = np.where(counts > 0, np.where(ok, block, 0.0).sum(axis=1) / np.maximum(counts, 1), np.nan)
        pad[:, c] = ~real.any(axis=1)
        null[:, c] = (counts == 0) & ~pad[:, c]
    return Binned(h.steps[rows], means, null, pad, edges)


def colour(fraction: float) -> tuple[int, int, int]:
    """The palette at ``fraction`` in [0, 1], interpolated between its anchors."""
    x = min(max(fraction, 0.0), 1.0) * (len(PALETTE) - 1)
    i = min(int(x), len(PALETTE) - 2)
    w = x - i
    return tuple(round(a + (b - a) * w) for a, b in zip(PALETTE[i], PALETTE[i + 1]))  # type: ignore[return-value]


def _fraction(value: float, span: tuple[float, float]) -> float:
    lo, hi = span
    return 0.5 if hi <= lo else (value - lo) / (hi - lo)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def in_colour(console: Console) -> bool:
    """Colours on this console, or the character ramp (NO_COLOR, a pipe, a dumb terminal)."""
    return not console.no_color and console.color_system is not None


def _cell(b: Binned, r: int, c: int, span: tuple[float, float] | None, coloured: bool) -> tuple[str, str]:
    """The character and style of one cell: a colour, a ramp character, the null or padding mark."""
    if b.pad[r, c]:
        return PAD, ""
    if b.null[r, c] or span is None:
        return NULL, "bold" if coloured else ""
    fraction = _fraction(float(b.values[r, c]), span)
    if coloured:
        return " ", f"on {_hex(colour(fraction))}"
    return RAMP[min(int(fraction * len(RAMP)), len(RAMP) - 1)], ""


def _legend(span: tuple[float, float] | None, coloured: bool, padded: bool, nulls: bool) -> list[Text]:
    """The colour (or character) scale, and the keys of the marks the map holds (nulls, padding)."""
    marks = ([f"{NULL} the norm is 0 or not finite (null)"] if nulls else []) + (
        ["blank: before a shorter pass's first step"] if padded else [])
    keys = [Text("; ".join(marks))] if marks else []
    if span is None:
        return keys
    lo, hi = span
    scale = Text(f"log10 ||dL/dh_t||: {lo:.3g} ")
    if coloured:
        for i in range(24):
            scale.append(" ", style=f"on {_hex(colour(i / 23))}")
    else:
        scale.append(RAMP)
    scale.append(f" {hi:.3g}  (low: fading, high: strong)")
    return [scale, *keys]


def heatmap_lines(result: HistoryResult, h: Heatmap, rows: list[int], width: int, coloured: bool) -> list[Text]:
    """The heatmap of ``h``'s passes ``rows``: a title, a row per pass, the time axis, the legend.
    Each column is a bin of time steps when they are more than the width holds, else each step is
    up to 4 characters wide."""
    label = max(len("step"), *(len(str(s)) for s in h.steps[rows]))
    room = max(width - label - 1, 8)
    b = binned(h, rows, room)
    span = b.finite_range()
    columns = len(b.edges) - 1
    each = max(1, min(4, room // columns))  # characters per column
    columns_are = (f"steps back from the readout's end, t = {result.seq_len} (each sequence's last real step; "
                   "its first for a direction that reads backwards)" if h.counted_back else "the time step t")
    lines = [Text(_title(h), style="bold"), Text(f"rows: the training step; columns: {columns_are}")]
    if columns < result.seq_len:
        lines.append(Text(f"{result.seq_len} time steps in {columns} columns, each the mean log10 of its steps"))
    if result.padded and not h.counted_back:
        lines.append(Text(f"end-aligned: t = {result.seq_len} is the readout's step in every pass"))
    lines.append(Text("step".rjust(label)))
    for r, step in enumerate(b.steps):
        line = Text(f"{step}".rjust(label) + " ")
        for c in range(columns):
            char, style = _cell(b, r, c, span, coloured)
            line.append(char * each, style=style)
        lines.append(line)
    first, last = "t=1", f"t={result.seq_len}"
    lines.append(Text(" " * (label + 1) + first + last.rjust(max(columns * each - len(first), len(last) + 1))))
    return lines + _legend(span, coloured, result.padded, span is None or bool(b.null.any()))


# --- the whole view ----------------------------------------------------------------------------


def header_lines(result: HistoryResult) -> list[Text]:
    """What was read: the file, the passes, what wrote them, what was left out."""
    passes = result.passes
    title = Text("gradscope history  ", style="bold") + Text(result.file)
    sources = sorted({p.source for p in passes if p.source is not None})
    measures = sorted({p.measure for p in passes if p.measure is not None})
    layers = sorted({k["layer"] for k in result.layers})
    bidirectional = sum(1 for k in result.layers if k["direction"] == "reverse")
    indent = " " * len("gradscope history  ")
    shape = (" x 2 directions" if bidirectional == len(layers)  # every layer both ways, or some of them
             else f" ({bidirectional} bidirectional)" if bidirectional else "")
    what = [f"{len(passes)} recorded pass{'es' if len(passes) != 1 else ''}",
            f"{len(layers)} layer{'s' if len(layers) != 1 else ''}{shape}",
            f"T={'up to ' if result.padded else ''}{result.seq_len}"]
    origin = (([f"written by {', '.join(sources)}"] if sources else [])
              + ([f"measure {', '.join(measures)}"] if measures else []))
    lines = [title, Text(indent + ", ".join(what))]
    if origin:
        lines.append(Text(indent + ", ".join(origin)))
    if result.runs != [None]:
        lines.append(Text(f"runs: {', '.join(str(r) for r in result.runs)}"))
    return lines


def note_lines(result: HistoryResult, run: str | None) -> list[Text]:
    """Below a run's table: what the reader should know about it (about the file: below the first)."""
    passes = [p for p in result.passes if p.run == run]
    notes = []
    if all(p.loss is None for p in result.passes) and run == result.runs[0]:
        torch = all(p.source in (None, "torch") for p in result.passes)
        notes.append("no loss in the records" + (" (gradscope.torch sees the gradient, not the loss)" if torch else ""))
    if any(p.dropout_left_out for p in passes):
        notes.append("* dropout left out: analysed without the module's dropout masks, not that pass's exact gradient")
    return [Text(n) for n in notes]


def footer_lines(result: HistoryResult) -> list[Text]:
    lines = []
    if result.skipped:
        first = result.skipped[0]
        lines.append(Text(f"{len(result.skipped)} pass{'es' if len(result.skipped) != 1 else ''} skipped by the "
                          f"recorder, e.g. step {first.step}: {first.reason}"))
    if result.incomplete_last_line:
        lines.append(Text("the last line is unfinished (a run still writing it?): left out"))
    return lines


def history_view(result: HistoryResult, width: int, coloured: bool, rows: int | None,
                 key: tuple[int, str]) -> Group:
    """Everything ``gradscope history`` prints, as one renderable (--follow redraws it).

    rows : passes shown per run, evenly spaced (None: all). key : the heatmap's (layer, direction).
    """
    parts: list[Text] = [*header_lines(result)]
    for run in result.runs:
        passes = [p for p in result.passes if p.run == run]
        chosen = thin(len(passes), rows)
        parts.append(Text(""))
        if run is not None:
            parts.append(Text(f"run {run}", style="bold underline"))
        parts += table_lines(result, [passes[i] for i in chosen], width)
        if len(chosen) < len(passes):
            parts.append(Text(f"{len(chosen)} of {len(passes)} passes shown, evenly spaced (--all: every one)"))
        parts += note_lines(result, run)
        parts.append(Text(""))
        parts += heatmap_lines(result, heatmap(result, *key, run), chosen, width, coloured)
    footer = footer_lines(result)
    if footer:
        parts += [Text(""), *footer]
    return Group(*parts)


def render_history(result: HistoryResult, console: Console, rows: int | None = 20,
                   key: tuple[int, str] | None = None) -> None:
    """Print the history for a person: per run the table, then the heatmap of ``key`` (layer,
    direction), by default the top layer's forward direction."""
    console.print(history_view(result, console.width, in_colour(console), rows,
                               key or layer_key(result, None, "forward")))


def widened(columns: Columns | None, result: HistoryResult, new: list[Pass]) -> Columns:
    """The widths of every pass's columns from those of the earlier passes (``columns``, None: no
    pass yet) and the new ones alone: what ``_columns`` of all of them gives, one poll at a time."""
    fresh = _columns(result, new) if new else None
    if columns is None or fresh is None:
        return fresh or columns
    loss = None if fresh.loss is None and columns.loss is None else max(fresh.loss or 0, columns.loss or 0)
    return Columns(max(columns.step, fresh.step), loss,
                   [[max(a, b) for a, b in zip(old, now)] for old, now in zip(columns.groups, fresh.groups)])


def rows_to_fit(result: HistoryResult, width: int, height: int, rows: int | None,
                columns: Columns | None = None) -> int | None:
    """The rows per run that let the whole view fit ``height`` lines (--follow's live view; at
    least 2, at most ``rows``): each run shows its rows in every table and in the heatmap.
    columns : every pass's column widths where the caller keeps them (``widened``)."""
    tables = len(_pack(_columns(result, result.passes) if columns is None else columns, width))
    runs = len(result.runs)
    fixed = 4 + runs * (3 * tables + 13)  # headers, titles, notes, axis, legend (history_view)
    fit = max(2, (height - fixed) // (runs * (tables + 1)))
    return fit if rows is None else min(rows, fit)


# --- --follow on a pipe ------------------------------------------------------------------------

# Fixed widths, wide enough for the usual values, so that rows printed one by one line up.
STREAM_STEP, STREAM_LOSS, STREAM_GROUP, STREAM_RUN = 7, 8, [8, 6, 7, 9], 12


def _stream_columns(result: HistoryResult) -> Columns:
    loss = STREAM_LOSS if any(p.loss is not None for p in result.passes) else None
    return Columns(STREAM_STEP, loss, [STREAM_GROUP] * len(result.layers))


def stream_header(result: HistoryResult) -> str:
    """The header of the rows --follow prints on a pipe, one group per layer and direction."""
    columns = _stream_columns(result)
    groups = list(range(len(result.layers)))
    names = _run_cell(result, "") + _group_titles(result, columns, groups).plain
    head = _line(columns, groups, Text("step"), Text("loss"), [[Text(h) for h in GROUP_HEADERS] for _ in groups])
    return names.rstrip() + "\n" + _run_cell(result, "run") + head.plain


def stream_row(result: HistoryResult, p: Pass) -> str:
    """One pass's row, as it arrives."""
    columns = _stream_columns(result)
    groups = list(range(len(result.layers)))
    line = _line(columns, groups, Text(step_text(p)), Text(num(p.loss)), [group_cells(f) for f in p.layers])
    return _run_cell(result, p.run or "-") + line.plain


def _run_cell(result: HistoryResult, text: str) -> str:
    """The run column of the rows on a pipe, where the records name runs."""
    return "" if result.runs == [None] else text[:STREAM_RUN - 1].ljust(STREAM_RUN)


# --- the picture for --report ------------------------------------------------------------------

SVG_COLUMNS, SVG_ROWS = 240, 150  # the most cells drawn across and down
SVG_LEVELS = 64  # colours, so that neighbouring cells of one colour merge into one rectangle


def heatmap_svg(result: HistoryResult, h: Heatmap) -> str:
    """The heatmap as an SVG element: rows the passes (evenly chosen, at most SVG_ROWS), columns the
    time steps (binned to at most SVG_COLUMNS), a colour bar, axes labelled; no ids, no links."""
    rows = thin(len(h.steps), SVG_ROWS)
    b = binned(h, rows, SVG_COLUMNS)
    span = b.finite_range()
    n_rows, n_cols = b.values.shape
    left, top, plot_w, plot_h = 64, 34, 560, max(120, min(420, 6 * n_rows))
    width, height = left + plot_w + 150, top + plot_h + 48
    cw, ch = plot_w / n_cols, plot_h / n_rows
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="18" font-size="13">{html.escape(_title(h))}</text>']
    for r in range(n_rows):
        runs = _row_runs(b, r, span)
        for c0, c1, fill in runs:
            out.append(f'<rect x="{left + c0 * cw:.2f}" y="{top + r * ch:.2f}" width="{(c1 - c0) * cw:.2f}" '
                       f'height="{ch:.2f}" fill="{fill}"/>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>')
    for r in thin(n_rows, 8):  # step labels on the left
        out.append(f'<text x="{left - 6}" y="{top + (r + 0.5) * ch + 4:.2f}" text-anchor="end">{b.steps[r]}</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2:.2f}" transform="rotate(-90 14 {top + plot_h / 2:.2f})" '
               'text-anchor="middle">training step</text>')
    for t in sorted({1, *np.linspace(1, result.seq_len, 6).round().astype(int).tolist()}):
        x = left + (t - 0.5) / result.seq_len * plot_w
        out.append(f'<text x="{x:.2f}" y="{top + plot_h + 16}" text-anchor="middle">{t}</text>')
    axis = ("steps back from the readout's end (t = T)" if h.counted_back
            else "time step t" + (" (end-aligned)" if result.padded else ""))
    out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 36}" text-anchor="middle">{axis}</text>')
    out += _svg_colour_bar(span, left + plot_w + 24, top, plot_h)
    out.append("</svg>")
    return "\n".join(out)


def _title(h: Heatmap) -> str:
    where = f", run {h.run}" if h.run is not None else ""
    return f"log10 ||dL/dh_t||, {_layer_name(h.layer, h.direction)}{where}"


def _row_runs(b: Binned, r: int, span: tuple[float, float] | None) -> list[tuple[int, int, str]]:
    """A row's cells as (first column, end column, fill), neighbours of one colour merged; padding
    left blank."""
    fills: list[str | None] = []
    for c in range(b.values.shape[1]):
        if b.pad[r, c]:
            fills.append(None)
        elif b.null[r, c] or span is None or not math.isfinite(b.values[r, c]):
            fills.append(_hex(NULL_COLOUR))
        else:
            level = round(_fraction(float(b.values[r, c]), span) * (SVG_LEVELS - 1)) / (SVG_LEVELS - 1)
            fills.append(_hex(colour(level)))
    runs, start = [], 0
    for c in range(1, len(fills) + 1):
        if c == len(fills) or fills[c] != fills[start]:
            if fills[start] is not None:
                runs.append((start, c, fills[start]))
            start = c
    return runs


def _svg_colour_bar(span: tuple[float, float] | None, x: float, top: float, height: float) -> list[str]:
    out = [f'<rect x="{x}" y="{top + height + 8}" width="14" height="8" fill="{_hex(NULL_COLOUR)}"/>',
           f'<text x="{x + 18}" y="{top + height + 16}">0 or not finite</text>']
    if span is None:
        return out
    steps = 32
    for i in range(steps):  # top: the highest value
        out.append(f'<rect x="{x}" y="{top + i * height / steps:.2f}" width="14" height="{height / steps + 0.5:.2f}" '
                   f'fill="{_hex(colour(1 - i / (steps - 1)))}"/>')
    lo, hi = span
    out.append(f'<text x="{x + 18}" y="{top + 8}">{hi:.3g}</text>')
    out.append(f'<text x="{x + 18}" y="{top + height}">{lo:.3g}</text>')
    out.append(f'<text x="{x + 18}" y="{top + height / 2 + 4:.2f}">log10</text>')
    return out


def report_pictures(result: HistoryResult) -> list[tuple[str, str]]:
    """--report's pictures: (caption, SVG) of the heatmap of every run, layer and direction."""
    return [(_title(h), heatmap_svg(result, h))
            for run in result.runs for key in result.layers
            for h in [heatmap(result, key["layer"], key["direction"], run)]]

