"""``gradscope train``: train a model on a task, with or without a mitigation, logging the gradient.

The training and mitigation flags are defined here once; ``gradscope compare`` takes them too.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional

import typer

from ..config import RunConfig
from ..errors import InputError
from ..io.arrays import check_output, check_weights_output, save_weights as save_model_weights
from ..mitigations import MITIGATIONS, Strengths, make_mitigation, resolve_strengths
from ..optimizers import OPTIMIZERS, SGD, Adam
from ..parallel import default_jobs
from ..render import plots
from ..render.common import step_progress, warn
from ..serialize import dumps_line, payload
from ..commands.defaults import TRAIN_DEFAULTS, TrainOptions
from .app import app, emit, keeping_partial
from .options import OUTPUT, JsonFlag, PlotFile, Scheduler, run_options_with

if TYPE_CHECKING:  # the training loop is imported when a command trains (tests/test_startup.py)
    from ..commands.train import StepRecord, TrainResult

TRAINING = "Training"
MITIGATION = "Mitigation"
_DEFAULTS = TrainOptions()
_STRENGTHS = Strengths()


def _strength(field: str, what: str, *decls: str) -> typer.models.OptionInfo:
    owner = next(name for name, cls in MITIGATIONS.items() if cls.strength == field)
    return typer.Option(*decls, help=f"{what} ({owner}).", rich_help_panel=MITIGATION,
                        show_default=f"{getattr(_STRENGTHS, field):g}")


Steps = Annotated[int, typer.Option(help="Optimizer updates, each on a fresh batch of the task.",
                                     rich_help_panel=TRAINING)]
Optimizer = Annotated[Literal[tuple(OPTIMIZERS)], typer.Option(  # type: ignore[misc]
    help="sgd (with momentum) or adam.", rich_help_panel=TRAINING, case_sensitive=False)]
LearningRate = Annotated[Optional[float], typer.Option(
    "--lr", help="Learning rate.", rich_help_panel=TRAINING,
    show_default=f"{Adam.default_lr:g} for adam, {SGD.default_lr:g} for sgd")]
Momentum = Annotated[float, typer.Option(help="SGD's momentum, or Adam's beta1.", rich_help_panel=TRAINING)]
LogEvery = Annotated[int, typer.Option(help="Log a step every this many (and the first and last).",
                                        rich_help_panel=TRAINING)]
EvalSize = Annotated[int, typer.Option(
    help="Sequences in the held-out batch the final loss is measured on (with --inputs: 20% of the "
         "file's sequences, none if it has fewer than 10).", rich_help_panel=TRAINING)]
ClipThreshold = Annotated[Optional[float], _strength("clip_threshold", "Threshold on the global gradient norm")]
ClipValue = Annotated[Optional[float], _strength("clip_value", "Bound on each gradient element")]
L2Strength = Annotated[Optional[float], _strength("l2", "lambda of the penalty lambda/2 ||W_hh||^2", "--l2")]
OmegaStrength = Annotated[Optional[float], _strength("omega", "Weight of Pascanu's Omega in the loss")]
Seeds = Annotated[int, typer.Option(
    help="Repeat the run on this many seeds (--seed, --seed + 1, ...) and report the spread of the final loss.",
    rich_help_panel=TRAINING, min=1)]
Jobs = Annotated[Optional[int], typer.Option(
    help="Runs in parallel, one process each.", rich_help_panel=TRAINING,
    show_default=f"the number of CPUs, {default_jobs()} here")]
RecordFile = Annotated[Optional[Path], typer.Option(
    "--record", help="Write a recording: every --record-every steps one flushed NDJSON line with the step's loss and, "
    "per layer and direction, ||dL/dh_t|| at every step and the flow (ratio, slope, horizon, verdict), as "
    "gradscope.torch.attach(measure='flow') writes them; `gradscope history FILE` shows it, also while it grows "
    "(--follow).", rich_help_panel=OUTPUT, dir_okay=False, show_default=False, metavar="FILE")]
RecordEvery = Annotated[Optional[int], typer.Option(
    "--record-every", help="Record every this many steps (with --record; default 10).", rich_help_panel=OUTPUT,
    min=1, metavar="N", show_default=False)]
RECORD_SUFFIXES = (".ndjson", ".jsonl")
RECORD_EVERY = 10


def record_schedule(record: Path | None, record_every: int | None) -> int:
    """--record's file checked, and the steps between records; --record-every without --record
    records nothing, so it is an input error rather than a flag that changes nothing."""
    if record is None:
        if record_every is not None:
            raise InputError("--record-every applies with --record FILE (the recording to write)")
        return RECORD_EVERY
    check_output(record, "--record", RECORD_SUFFIXES)
    return RECORD_EVERY if record_every is None else record_every
SaveWeights = Annotated[Optional[Path], typer.Option(
    help="Write the trained model as a PyTorch state dict in .npz (your keys for --weights; rnn.*, fc.* for a built model), or a Keras model's weights as a .weights.h5 that model.load_weights reads.",
    rich_help_panel=OUTPUT, dir_okay=False, show_default=False)]


def strengths_for(names: list[str], clip_threshold: float | None, clip_value: float | None,
                  l2: float | None, omega_strength: float | None) -> Strengths:
    """The strengths flags given, checked against the mitigations that will use them."""
    return resolve_strengths(names, clip_threshold=clip_threshold, clip_value=clip_value, l2=l2,
                             omega=omega_strength)


def _ndjson_line(record: dict) -> None:
    sys.stdout.write(dumps_line(record) + "\n")
    sys.stdout.flush()


@app.command("train")
@run_options_with(**TRAIN_DEFAULTS)
def train_command(
    config: RunConfig,
    steps: Steps = _DEFAULTS.steps,
    optimizer: Optimizer = _DEFAULTS.optimizer,
    lr: LearningRate = None,
    momentum: Momentum = _DEFAULTS.momentum,
    log_every: LogEvery = _DEFAULTS.log_every,
    eval_size: EvalSize = _DEFAULTS.eval_size,
    mitigation: Annotated[Optional[str], typer.Option(
        help=f"Apply a mitigation: {', '.join(MITIGATIONS)}; several joined by + (identity-relu+clip-norm).",
        rich_help_panel=MITIGATION, show_default="none", metavar="NAME")] = None,
    clip_threshold: ClipThreshold = None,
    clip_value: ClipValue = None,
    l2: L2Strength = None,
    omega_strength: OmegaStrength = None,
    seeds: Seeds = 1,
    scheduler: Scheduler = None,
    json: JsonFlag = False,
    ndjson: Annotated[bool, typer.Option(
        "--ndjson", help="Stream one JSON line per logged step on stdout, then a summary line.",
        rich_help_panel=OUTPUT)] = False,
    save_weights: SaveWeights = None,
    record: RecordFile = None,
    record_every: RecordEvery = None,
    plot: PlotFile = None,
) -> None:
    """Train with BPTT and log the loss, the gradient norm and how far the gradient reaches."""
    from ..commands.train import train
    from ..render.train import render_train

    if json and ndjson:
        raise InputError("--json and --ndjson are alternatives: give one")
    path = plots.prepare(plot) if plot is not None else None
    from ..experiment import keras_weights

    keras = save_weights is not None and keras_weights(config)  # the file's kind: for what is written only
    if save_weights is not None:
        check_weights_output(save_weights, "--save-weights", keras)
    record_every = record_schedule(record, record_every)
    options = TrainOptions(steps, optimizer, lr, momentum, log_every, eval_size)
    mitigation = mitigation.strip().lower() if mitigation is not None else None  # as every choice: --mitigation GRU
    names = [mitigation] if mitigation is not None else []
    strengths = strengths_for(names, clip_threshold, clip_value, l2, omega_strength)
    chosen = make_mitigation(mitigation, strengths) if mitigation is not None else None
    if keras:  # before training: a cell swap on a Keras model has no file to go to
        from ..commands.train import check_savable

        check_savable(config, chosen)

    with step_progress("training steps", steps * seeds, scheduler is not None) as advance, keeping_partial(json):
        def progress(step: int, total: int, record: StepRecord | None) -> None:
            advance(step)
            if ndjson and record is not None:
                _ndjson_line({"event": "step", **dataclasses.asdict(record)})

        result = train(config, options, chosen, progress, seeds, scheduler, record, record_every)
    if ndjson and scheduler is not None:  # the steps ran on a worker: the first seed's, now it is back
        for step in result.history:
            _ndjson_line({"event": "step", **dataclasses.asdict(step)})
    if path is not None:
        plots.save(plots.training_losses_figure({result.mitigation: result.history}, result.config,
                                                result.baseline_loss), path)
    if save_weights is not None:
        save_model_weights(save_weights, result.state_dict(), "--save-weights", keras)
        if config.weights is not None and chosen is not None and {"cell", "activation"} & set(chosen.overrides):
            from ..commands.train import layer_cells, load_note
            from ..experiment import loaded_network

            note = load_note(layer_cells(loaded_network(config)[0]), layer_cells(result.network), keras)
            if note:
                warn(f"--save-weights {save_weights}: {note}")
    if ndjson:
        _ndjson_line({"event": "summary", **summary(result)})
    else:
        emit(result, json, lambda console: render_train(result, console))


def summary(result: TrainResult) -> dict:
    """The --json document without the history, which --ndjson has already streamed."""
    return {k: v for k, v in payload(result).items() if k != "history"}
