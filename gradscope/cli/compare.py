"""``gradscope compare``: the same task, data and seed, trained without and with each mitigation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from ..config import RunConfig
from ..io.arrays import check_weights_output, save_weights
from ..mitigations import MITIGATIONS, STARTS, parse_mitigations
from ..parallel import default_jobs
from ..render import plots
from ..render.common import step_progress, warn
from ..render.report import prepare as prepare_report
from ..commands.defaults import TRAIN_DEFAULTS, TrainOptions
from .app import app, emit, keeping_partial
from .options import OUTPUT, JsonFlag, PlotFile, ReportFile, Scheduler, check_scheduler, run_options_with
from .train import (
    MITIGATION, ClipThreshold, ClipValue, EvalSize, L2Strength, LearningRate, LogEvery, Jobs, Momentum,
    OmegaStrength, Optimizer, RecordEvery, RecordFile, Seeds, Steps, record_schedule, strengths_for,
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
    scheduler: Scheduler = None,
    start: Annotated[Literal[STARTS], typer.Option(
        help="With --weights: train each run from your model's architecture initialised anew, as PyTorch "
             "(or for a Keras model, Keras) initialises it (init), or fine-tune your saved weights (trained). "
             "Each cure then changes what it sets.",
        rich_help_panel=MITIGATION)] = "init",
    save_best: Annotated[Optional[Path], typer.Option(
        "--save-best", help="Write the best run's trained weights as a PyTorch state dict (.npz) under the keys "
        "your model has (a cell swap: those of the swapped nn module), or a Keras model's as a .weights.h5.", rich_help_panel=OUTPUT,
        metavar="FILE", dir_okay=False)] = None,
    record: RecordFile = None,
    record_every: RecordEvery = None,
    json: JsonFlag = False,
    plot: PlotFile = None,
    report: ReportFile = None,
) -> None:
    """Train without and with each mitigation on the same data, and compare them side by side."""
    # imported here, not at the top: the CLI's start-up registers every command (tests/test_startup.py)
    from ..commands.compare import best_load_note, best_weights, compare
    from ..render.compare import render_compare

    check_scheduler(scheduler, jobs)
    path = plots.prepare(plot) if plot is not None else None
    page = prepare_report(report) if report is not None else None
    from ..experiment import keras_weights

    keras = save_best is not None and keras_weights(config)  # the file's kind: for what is written only
    if save_best is not None:
        check_weights_output(save_best, "--save-best", keras)
    record_every = record_schedule(record, record_every)  # every run's records, named after its cure (history --run)
    names = parse_mitigations(mitigations)  # None: every registered one, for the strengths' check
    options = TrainOptions(steps, optimizer, lr, momentum, log_every, eval_size)
    strengths = strengths_for(names, clip_threshold, clip_value, l2, omega_strength)
    # none named: compare runs those that apply to the cell and change the model, and its first
    # progress call gives the bar their number (the CLI does not read the model to count them)
    chosen = names if mitigations is not None else None
    with step_progress("runs", None if chosen is None else (len(chosen) + 1) * seeds,
                       scheduler is not None) as advance, keeping_partial(json):
        result = compare(config, options, chosen, strengths, default_jobs() if jobs is None else jobs,
                         lambda done, total, label: advance(done, label, total), seeds, start, scheduler, record,
                         record_every)
    if path is not None:
        plots.save(plots.training_losses_figure({r.mitigation: r.history for r in result.runs}, result.config,
                                                result.baseline_loss), path)
    emit(result, json, lambda console: render_compare(result, console), page)
    if save_best is not None:  # after the report: which run is best, and whether it can be written, is known now
        save_weights(save_best, best_weights(result), "--save-best", keras)
        if result.config.get("weights") is not None and (note := best_load_note(result, keras)):
            warn(f"--save-best {save_best}: {note}")
