"""The terminal view of a TrainResult.

Every number shown is a field of the result's JSON document (serialize.py).
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..mitigations import STRENGTH_FLAGS, mitigation_help
from ..commands.train import StepRecord, TrainResult
from ..seeds import SeedSummary
from .common import num, print_header, sparkline, thin

MAX_ROWS = 15


def subsample(history: list[StepRecord], rows: int = MAX_ROWS) -> list[StepRecord]:
    """At most ``rows`` records, evenly spread, always with the first and the last."""
    return [history[i] for i in thin(len(history), rows)]


def training_line(result: TrainResult) -> str:
    """Optimizer, steps and the mitigation with its strength."""
    t = result.training
    momentum = "beta1" if t.optimizer == "adam" else "momentum"
    settings = "".join(f" ({STRENGTH_FLAGS[k]} {v:g})" for k, v in result.mitigation_settings.items())
    return (f"{t.optimizer} lr={t.lr:g} {momentum}={t.momentum:g}, {t.steps} steps, "
            f"mitigation {result.mitigation}{settings}")


def history_table(result: TrainResult) -> Table:
    """The logged steps, subsampled to MAX_ROWS; penalty and clipping only where they happened."""
    rows = subsample(result.history)
    penalty = any(r.penalty for r in result.history)
    clipped = any(r.clipped for r in result.history)
    table = Table(box=None, pad_edge=False, header_style="bold")
    headers = ["step", "loss"] + ["penalty"] * penalty + ["||g||"] + ["clipped to"] * clipped
    state = "a" if result.config.get("cell") == "rnn" else "h"  # the lesson's a_t; PyTorch's h_t for gated cells
    for header in headers + ["rho", f"||dL/d{state}_1||/||dL/d{state}_T||"]:
        table.add_column(header, justify="right")
    for r in rows:
        cells = [str(r.step), num(r.loss, 4)] + [num(r.penalty)] * penalty + [num(r.grad_norm)]
        cells += [num(r.clipped_grad_norm) if r.clipped else "-"] * clipped
        table.add_row(*cells, num(r.spectral_radius), num(r.ratio_first_last))
    return table


def on(evaluated_on: str) -> str:
    """TrainResult.evaluated_on after "on": "the held-out batch", "the training batch (...)"."""
    return evaluated_on if evaluated_on.startswith("the ") else f"the {evaluated_on}"


def outcome(result: TrainResult) -> Text:
    """Loss reached against the baseline (on what it was measured on), accuracy, and how it ended."""
    text = Text(f"evaluated on {on(result.evaluated_on)}:\n")
    text.append(f"loss {num(result.final_loss, 4)}  (trivial baseline {num(result.baseline_loss, 4)}, "
                f"before training {num(result.initial_loss, 4)})\n")
    if result.accuracy is not None:
        base = (f" (trivial {num(result.baseline_accuracy)})" if result.baseline_accuracy is not None else "")
        text.append(f"accuracy {num(result.accuracy)}{base}\n")
    text.append(f"largest ||g|| {num(result.max_grad_norm)}, clipping fired at {result.clip_events} "
                f"of {result.steps} steps, rho {num(result.spectral_radius_before)} -> "
                f"{num(result.spectral_radius_after)}\n")
    text.append("status: ")
    text.append(result.status, style="bold red" if result.diverged else "bold green")
    return text


def render_train(result: TrainResult, console: Console) -> None:
    """Print a training run for a person."""
    print_header(console, "train", result.config)
    console.print(training_line(result))
    for part in result.mitigation_parts:
        console.print(f"  {part['name']}: {mitigation_help(part['name'])}")
    console.print()
    console.print(history_table(result))
    with np.errstate(all="ignore"):
        logs = np.log10([r.loss for r in result.history])
    console.print(f"log10 loss over the {len(result.history)} logged steps:  " + sparkline(logs, 40))
    console.print()
    console.print(outcome(result))
    if len(result.seeds.seeds) > 1:
        console.print(seeds_line(result.seeds))


def seeds_line(summary: SeedSummary) -> str:
    """The final loss over the seeds: mean +- std, range, and how many diverged."""
    ratio = summary.loss_ratio
    first, last = summary.seeds[0], summary.seeds[-1]
    text = f"over {len(summary.seeds)} seeds ({first}-{last}): "
    if ratio.mean is None:
        return text + "no run ended with a finite loss"
    text += (f"loss/baseline {num(ratio.mean)} +- {num(ratio.std)} (min {num(ratio.min)}, max {num(ratio.max)})")
    if summary.accuracy is not None and summary.accuracy.mean is not None:
        text += f", accuracy {num(summary.accuracy.mean)} +- {num(summary.accuracy.std)}"
    return text + (f", {summary.diverged} diverged" if summary.diverged else "")
