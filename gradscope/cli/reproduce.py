"""``gradscope reproduce NAME``: a canonical result of the literature, measured against the paper."""

from __future__ import annotations

import json as jsonlib
import sys
from typing import Annotated, Optional

import typer

from ..commands.defaults import EXPERIMENT_NAMES
from ..errors import InputError
from ..parallel import default_jobs
from ..render.common import console, step_progress
from .app import app, emit, keeping_partial
from .options import JsonFlag, Quiet, Scheduler, Verbose, check_scheduler, verbosity
from .train import TRAINING, Jobs, Seeds

SCALE = "Scale (default: the experiment's)"


def _size(help: str) -> typer.models.OptionInfo:
    return typer.Option(help=help, rich_help_panel=SCALE, min=1, show_default=False)


@app.command("reproduce")
def reproduce_command(
    name: Annotated[Optional[str], typer.Argument(
        help=f"The experiment: {', '.join(EXPERIMENT_NAMES)}.", show_default=False, metavar="NAME")] = None,
    list_experiments: Annotated[bool, typer.Option(
        "--list", help="List the experiments and what each shows, and exit.")] = False,
    full: Annotated[bool, typer.Option(
        "--full", help="Run at the paper's scale (minutes to hours) instead of the default (under 3 minutes on 2 cores).",
        rich_help_panel=SCALE)] = False,
    seed: Annotated[int, typer.Option(help="The first seed.", rich_help_panel=TRAINING, min=0)] = 0,
    seeds: Seeds = 1,
    steps: Annotated[Optional[int], _size("Optimizer updates per run.")] = None,
    seq_len: Annotated[Optional[int], _size("Sequence length T.")] = None,
    hidden_size: Annotated[Optional[int], _size("Hidden units H.")] = None,
    batch_size: Annotated[Optional[int], _size("Batch size B.")] = None,
    eval_size: Annotated[Optional[int], _size("Sequences in the held-out batch.")] = None,
    jobs: Jobs = None,
    scheduler: Scheduler = None,
    json: JsonFlag = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run a canonical experiment and say whether the paper's claim reproduces at this scale."""
    with verbosity(quiet, verbose, "reproduce"):
        _reproduce(name, list_experiments, full, seed, seeds, steps, seq_len, hidden_size, batch_size,
                   eval_size, jobs, scheduler, json)


def _reproduce(name, list_experiments, full, seed, seeds, steps, seq_len, hidden_size, batch_size,
               eval_size, jobs, scheduler, json) -> None:
    # imported here, not at the top: the CLI's start-up registers every command (tests/test_startup.py)
    from ..commands.reproduce import EXPERIMENTS, experiment, reproduce
    from ..render.reproduce import render_experiments, render_reproduce

    if list_experiments:
        if name is not None:
            raise InputError("--list takes no NAME: it lists the experiments")
        if json:  # a list, not a result document: each experiment's name, title, paper and claim
            listing = [{"name": e.name, "title": e.title, "paper": e.paper, "claim": e.claim}
                       for e in EXPERIMENTS.values()]
            sys.stdout.write(jsonlib.dumps({"experiments": listing}, indent=2) + "\n")
            return
        render_experiments(console())
        return
    if name is None:
        raise InputError(f"give an experiment's NAME ({', '.join(EXPERIMENTS)}), or --list")
    check_scheduler(scheduler, jobs)
    runs = len(experiment(name).arms) * seeds
    with step_progress(f"reproduce {name}", runs, scheduler is not None) as advance, keeping_partial(json):
        result = reproduce(name, full, seed, seeds, default_jobs() if jobs is None else jobs,
                           lambda done, total, label: advance(done, label), scheduler, steps=steps,
                           seq_len=seq_len, hidden_size=hidden_size, batch_size=batch_size, eval_size=eval_size)
    emit(result, json, lambda c: render_reproduce(result, c))
