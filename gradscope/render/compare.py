"""The terminal view of a CompareResult: one row per run, side by side, at 80 columns.

Every number shown is a field of the result's JSON document (serialize.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..commands.compare import CompareResult, CompareRun
from ..mitigations import STRENGTH_FLAGS, strength_fields
from .common import num, print_header
from .train import on

BEST = "*"
LEGEND = (
    "ratio@0: ||dL/da_1|| / ||dL/da_T|| (h_t for gated cells) where training starts; rate: its mean "
    "factor per step back. "
    "loss: the loss after training, evaluated as stated above; /base: loss over the trivial "
    "baseline (below 1: the model learned something). clips: steps where clipping fired. rho@0, "
    "rho: spectral radius of the recurrent matrix before and after training (gated cells: of the "
    "largest gate block). "
    "div@N: diverged at step N."
)


def short(x: float | None) -> str:
    """Two significant digits; exponents without sign padding (7.5e14, 1.2e-6), so ten runs fit 80
    columns even when a run blows up to 1e212."""
    if x is None or not math.isfinite(x) or x == 0 or 1e-3 <= abs(x) < 1e3:
        return num(x, 2)
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


NAME_WIDTH = 14


def wrapped_name(name: str, width: int = NAME_WIDTH) -> str:
    """A composite's name broken after its "+" signs into lines of at most ``width`` where it can
    be, so that ten runs still fit 80 columns: "orthogonal+clip-norm+l2" -> "orthogonal+\n clip-norm+l2"."""
    lines = [""]
    for part in name.split("+"):
        piece = part if not lines[-1] else "+" + part
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines[-1] += "+"
            lines.append(" " + part)
        else:
            lines[-1] += piece
    return "\n".join(lines)


def _result(run: CompareRun) -> Text:
    if run.seeds is not None and len(run.seeds.seeds) > 1:
        if run.seeds.diverged:
            return Text(f"div {run.seeds.diverged}/{len(run.seeds.seeds)}", style="bold red")
        return Text("ok", style="green")
    if run.diverged:
        return Text(f"div@{run.steps}", style="bold red")
    return Text("ok", style="green")


def runs_table(result: CompareResult) -> Table:
    """Flow at init, training outcome and spectral radius of every run."""
    accuracy = any(r.accuracy is not None for r in result.runs)
    several = len(result.seeds) > 1  # /base and acc: means over the seeds, sd: /base's spread
    table = Table(box=None, pad_edge=False, padding=(0, 0, 0, 1), header_style="bold")
    table.add_column("mitigation", justify="left", no_wrap=True)
    for header in (("ratio@0", "rate") + (("/base", "sd") if several else ("loss", "/base")) + ("acc",) * accuracy
                   + ("max||g||", "clips", "rho@0", "rho")):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("result", justify="left", no_wrap=True)
    for r in result.runs:
        name = Text(f"{BEST if r.best else ' '}{wrapped_name(r.mitigation)}", style="bold" if r.best else "")
        if several:
            seeds = r.seeds
            row = [name, short(r.ratio_first_last), num(r.rate_per_step), short(seeds.loss_ratio.mean),
                   short(seeds.loss_ratio.std)]
            if accuracy:
                row.append(short(seeds.accuracy.mean if seeds.accuracy is not None else None))
        else:
            row = [name, short(r.ratio_first_last), num(r.rate_per_step), short(r.final_loss),
                   short(r.loss_ratio)]
            if accuracy:
                row.append(short(r.accuracy))
        row += [short(r.max_grad_norm), str(r.clip_events), short(r.spectral_radius_before),
                short(r.spectral_radius_after), _result(r)]
        table.add_row(*row)
    return table


def layers_table(result: CompareResult) -> Table:
    """Every run's end-to-end ratio per layer and direction, at the start -> after training."""
    table = Table(box=None, pad_edge=False, padding=(0, 0, 0, 1), header_style="bold")
    table.add_column("mitigation", justify="left", no_wrap=True)
    first = result.runs[0].layers
    for change in first:
        table.add_column(f"l{change.layer} {change.direction[:3]}", justify="right", no_wrap=True)
    for r in result.runs:
        cells = [f"{short(c.start.ratio_first_last)}>{short(c.end.ratio_first_last)}" for c in r.layers]
        table.add_row(Text(f"{BEST if r.best else ' '}{wrapped_name(r.mitigation)}"), *cells)
    return table


def render_compare(result: CompareResult, console: Console) -> None:
    """Print the comparison for a person."""
    print_header(console, "compare", result.config)
    t = result.training
    console.print(f"{t.optimizer} lr={t.lr:g}, {t.steps} steps per run, trivial baseline loss "
                  f"{num(result.baseline_loss, 4)}")
    console.print(f"evaluated on {on(result.evaluated_on)}")
    if len(result.seeds) > 1:
        console.print(f"{len(result.seeds)} seeds ({result.seeds[0]}-{result.seeds[-1]}) per run: /base (and acc) "
                      "the mean over them, sd its standard deviation; the rest the first seed's")
    used = [f for r in result.runs if r.mitigation != "none" for f in strength_fields(r.mitigation)]
    strengths = [f"{STRENGTH_FLAGS[k]} {v:g}" for k, v in asdict(result.strengths).items() if k in used]
    if strengths:
        console.print(", ".join(strengths))
    console.print()
    console.print(runs_table(result))
    if result.runs and len(result.runs[0].layers) > 1:
        console.print()
        console.print(Text("||dL/dh_1|| / ||dL/dh_T|| per layer and direction, at the start > after training",
                           style="bold"))
        console.print(layers_table(result))
    if result.start is not None:
        console.print()
        console.print("every run trained from " + ("the model's architecture newly initialised, as its "
                                                   "framework does" if result.start == "init" else "the saved weights")
                      + f" (--start {result.start}), but for what its cure sets (a cell swap: every layer new)")
    console.print()
    console.print(LEGEND)
    if result.best is not None:
        lowest = "the lowest mean final loss" if len(result.seeds) > 1 else "the lowest final loss"
        console.print(Text(f"{BEST} best: {result.best}, {lowest} of the runs that did not diverge",
                           style="bold"))
    elif result.partial is not None:
        console.print(Text("no best run: the runs that were lost leave nothing to compare with", style="bold red"))
    else:
        console.print(Text("no best run: every run diverged or ended with a loss that is not finite",
                           style="bold red"))
