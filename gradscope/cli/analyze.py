"""``gradscope analyze``: one BPTT pass, the gradient norm at every step, the spectrum, a verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..commands.analyze import analyze, gradient_arrays, weight_arrays
from ..config import RunConfig
from ..experiment import keras_weights
from ..io.arrays import check_output, check_weights_output, save_npz, save_weights as save_model_weights
from ..render import plots
from ..render.analyze import render_analyze
from ..render.common import warn
from ..render.report import prepare as prepare_report
from .app import app, emit
from .options import OUTPUT, JsonFlag, PlotFile, ReportFile, run_options


@app.command("analyze")
@run_options
def analyze_command(
    config: RunConfig,
    json: JsonFlag = False,
    save_grads: Annotated[Optional[Path], typer.Option(
        help="Write the loss, dL/dh_t of every layer (dL_da (T, B, H) for one layer; dL_dh_l{k}[_reverse] for a network; dL_dc for lstm) and every parameter's gradient under its key in your state dict, or as <layer>/<weight> in Keras' shapes for a Keras model (.npz).",
        rich_help_panel=OUTPUT, dir_okay=False, show_default=False)] = None,
    save_weights: Annotated[Optional[Path], typer.Option(
        help="Write the model as a PyTorch state dict in .npz (your keys for --weights; rnn.*, fc.* for a built model), or a Keras model's weights as a .weights.h5 that model.load_weights reads.",
        rich_help_panel=OUTPUT, dir_okay=False, show_default=False)] = None,
    max_rows: Annotated[int, typer.Option(
        help="Most rows in the step table; longer runs show log-spaced steps.",
        rich_help_panel=OUTPUT, min=2)] = 16,
    plot: PlotFile = None,
    report: ReportFile = None,
) -> None:
    """Run exact BPTT once and show how ||dL/da_t|| fades or grows back through time."""
    path = plots.prepare(plot) if plot is not None else None
    page = prepare_report(report) if report is not None else None
    keras = save_weights is not None and keras_weights(config)  # the file's kind: for what is written only
    if save_grads is not None:
        check_output(save_grads, "--save-grads")
    if save_weights is not None:
        check_weights_output(save_weights, "--save-weights", keras)
    result = analyze(config, full_gradients=save_grads is not None)  # --save-grads needs every step's
    if path is not None:
        plots.save(plots.analyze_figure(result), path)
    if save_grads is not None:
        save_npz(save_grads, gradient_arrays(result), "--save-grads")
    if save_weights is not None:
        save_model_weights(save_weights, weight_arrays(result), "--save-weights", keras)
    for warning in result.warnings:
        warn(warning)
    emit(result, json, lambda console: render_analyze(result, console, max_rows), page)
