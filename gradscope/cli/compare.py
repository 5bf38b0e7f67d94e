"""``gradscope compare``: the same task, data and seed, trained without and with each mitigation."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..config import RunConfig
from ..mitigations import MITIGATIONS, default_mitigations, parse_mitigations
from ..parallel import default_jobs
from ..render import plots
from ..render.common import step_progress
from ..render.report import prepare as prepare_report
from ..commands.defaults import TRAIN_DEFAULTS, TrainOptions
from .app import app, emit
from .options import JsonFlag, PlotFile, ReportFile, run_options_with
from .train import (
    MITIGATION, TRAINING, ClipThreshold, ClipValue, EvalSize, L2Strength, LearningRate, LogEvery,
    Jobs, Momentum, OmegaStrength, Optimizer, Seeds, Steps, strengths_for,
)

_DEFAULTS = TrainOptions()


@app.command("compare")
@run_options_with(**TRAIN_DEFAULTS)
def compare_command(
    config: RunConfig,
    mitigations: Annotated[Optional[str], typer.Option(
        help=f"Comma-separated mitigations to compare with the unmitigated run: {', '.join(MITIGATIONS)}; "
             "one joined by + applies several at once (lstm+forget-bias).",
        rich_help_panel=MITIGATION, show_default="all that apply to --cell", metavar="LIST")] = None,
    steps: Steps = _DEFAULTS.steps,
    optimizer: Optimizer = _DEFAULTS.optimizer,
    lr: LearningRate = None,
    momentum: Momentum = _DEFAULTS.momentum,
    log_every: LogEvery = _DEFAULTS.log_every,
    eval_size: EvalSize = _DEFAULTS.eval_size,
    clip_threshold: ClipThreshold = None,
    clip_value: ClipValue = None,
    l2: L2Strength = None,
    omega_strength: OmegaStrength = None,
    seeds: Seeds = 1,
    jobs: Jobs = None,
    json: JsonFlag = False,
    plot: PlotFile = None,
    report: ReportFile = None,
) -> None:
    """Train without and with each mitigation on the same data, and compare them side by side."""
    # imported here, not at the top: the CLI's start-up registers every command (tests/test_startup.py)
    from ..commands.compare import compare
    from ..render.compare import render_compare

    path = plots.prepare(plot) if plot is not None else None
    page = prepare_report(report) if report is not None else None
    names = parse_mitigations(mitigations)  # None: every registered one, for the strengths' check
    options = TrainOptions(steps, optimizer, lr, momentum, log_every, eval_size)
    strengths = strengths_for(names, clip_threshold, clip_value, l2, omega_strength)
    # none named: those that apply to the cell, resolved once here for the progress bar and the runs
    chosen = names if mitigations and mitigations.strip() else default_mitigations(config.cell)
    with step_progress("runs", (len(chosen) + 1) * seeds) as advance:
        result = compare(config, options, chosen, strengths, default_jobs() if jobs is None else jobs,
                         lambda done, total, name: advance(done), seeds)
    if path is not None:
        plots.save(plots.training_losses_figure({r.mitigation: r.history for r in result.runs}, result.config,
                                                result.baseline_loss), path)
    emit(result, json, lambda console: render_compare(result, console), page)
