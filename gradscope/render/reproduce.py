"""The terminal view of a ReproduceResult, and the list of experiments (``--list``).

Every number shown is a field of the result's JSON document (serialize.py).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..commands.reproduce import EXPERIMENTS, ReproduceResult
from .common import num, print_header
from .compare import short


def render_experiments(console: Console) -> None:
    """``gradscope reproduce --list``: each experiment's name, title and paper."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("what it shows (paper)")
    for exp in EXPERIMENTS.values():
        table.add_row(exp.name, f"{exp.title} ({exp.paper})")
    console.print(table)


def arms_table(result: ReproduceResult) -> Table:
    """One row per arm: its figures over the seeds beside the paper's claim about it."""
    accuracy = any(a.seeds.accuracy is not None for a in result.arms)
    several = len(result.seeds) > 1
    table = Table(box=None, pad_edge=False, padding=(0, 0, 0, 1), header_style="bold")
    table.add_column("arm", no_wrap=True)
    for header in ("ratio@0", "/base") + ("sd",) * several + ("acc",) * accuracy + ("div",):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("paper's claim")
    table.add_column("met", no_wrap=True)
    for a in result.arms:
        s = a.seeds
        row = [a.label, short(a.ratio_first_last), short(s.loss_ratio.mean)]
        if several:
            row.append(short(s.loss_ratio.std))
        if accuracy:
            row.append(short(s.accuracy.mean if s.accuracy is not None else None))
        row.append(f"{s.diverged}/{len(s.seeds)}")
        row += [a.target, Text("yes", style="green") if a.met else Text("no", style="bold red")]
        table.add_row(*row)
    return table


def render_reproduce(result: ReproduceResult, console: Console) -> None:
    """Print an experiment's runs beside the paper's claim, and the verdict."""
    console.print(Text(f"{result.name}: {result.title}", style="bold"))
    console.print(f"paper: {result.paper}")
    console.print(f"claim: {result.claim}")
    console.print()
    print_header(console, f"reproduce {result.name}", result.config)
    t = result.training
    seeds = (f"seed {result.seeds[0]}" if len(result.seeds) == 1
             else f"{len(result.seeds)} seeds ({result.seeds[0]}-{result.seeds[-1]})")
    console.print(f"{t.steps} steps per run, {seeds}, trivial baseline loss {num(result.baseline_loss, 4)}")
    scale = "the paper's scale (--full)" if result.scale == "full" else "the default scale (--full: the paper's)"
    console.print(f"{scale}; the paper: {result.paper_scale}")
    console.print()
    console.print(arms_table(result))
    console.print()
    for a in result.arms:
        console.print(f"  {a.label}: {a.mitigation}, {a.cell}" + (f"/{a.activation}" if a.cell == "rnn" else "")
                      + f", {a.optimizer} lr={a.lr:g}, {a.clip_events} clips, {a.status}")
    console.print("ratio@0: ||dL/da_1|| / ||dL/da_T|| at init (first seed); /base: final loss over the "
                  "trivial baseline" + (", mean over the seeds; sd its spread" if len(result.seeds) > 1 else "")
                  + "; div: seeds that diverged.")
    console.print(Text(result.verdict, style="bold green" if result.reproduced else "bold red"))
