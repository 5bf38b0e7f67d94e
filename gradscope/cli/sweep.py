"""``gradscope sweep``: the vanishing/exploding phase diagram over two settings, on every core."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from ..model.activations import ACTIVATIONS
from ..model.cells import FLAG_CELLS
from ..config import RunConfig
from ..errors import InputError
from ..parallel import default_jobs
from ..render import plots
from ..render.report import prepare as prepare_report
from ..render.common import step_progress
from ..commands.defaults import SWEEP_METRICS, SWEEP_WEIGHTS_X, SWEEP_X, SWEEP_Y
from .app import app, emit, keeping_partial
from .options import RUNNING, JsonFlag, PlotFile, ReportFile, Scheduler, check_scheduler, run_options_without

GRID = "Grid"


def _names(text: Optional[str], option: str) -> Optional[list[str]]:
    """A comma-separated list of names, in lower case as every choice is; an empty item is an input error."""
    if text is None:
        return None
    names = [n.strip().lower() for n in text.split(",")]
    if not all(names):
        raise InputError(f"{option} takes names separated by commas (got {text!r})")
    return names


@app.command("sweep")
@run_options_without("cell", "activation")
def sweep_command(
    config: RunConfig,
    x: Annotated[Optional[str], typer.Option(
        "--x", help="The setting across, NAME=VALUES: NAME any numeric setting (spectral_radius, "
                    "recurrent_scale, seq_len, hidden_size, init_gain, seed, ...), VALUES a list a,b,c or "
                    "a range START:STOP:COUNT (both ends included; :log after it spaces geometrically).",
        rich_help_panel=GRID, show_default=f"{SWEEP_X}; with --weights {SWEEP_WEIGHTS_X}")] = None,
    y: Annotated[Optional[str], typer.Option(
        "--y", help="The setting up, NAME=VALUES as for --x. With --inputs, seq_len takes each sequence's "
                    "first T steps.", rich_help_panel=GRID,
        show_default=f"{SWEEP_Y}; with --inputs four lengths up to its T")] = None,
    metric: Annotated[Literal[tuple(SWEEP_METRICS)], typer.Option(  # type: ignore[misc]
        help="ratio: log10 ||dL/da_1|| / ||dL/da_T|| (as analyze); lyapunov: the leading "
             "Lyapunov exponent lambda_1 (as spectrum). Both are 0 on the boundary.",
        rich_help_panel=GRID, case_sensitive=False)] = "ratio",
    cells: Annotated[Optional[str], typer.Option(
        help=f"Cells, one map each, comma-separated: {', '.join(FLAG_CELLS)}.", rich_help_panel=GRID,
        show_default="rnn, or what --weights holds")] = None,
    activations: Annotated[Optional[str], typer.Option(
        help=f"Activations, comma-separated: {', '.join(ACTIVATIONS)}; combinations a cell does "
             "not support are skipped.", rich_help_panel=GRID, show_default="tanh")] = None,
    transient: Annotated[Optional[int], typer.Option(
        help="With --metric lyapunov: steps left out before lambda_1 is averaged.",
        rich_help_panel=GRID, min=0, show_default="T // 10")] = None,
    jobs: Annotated[Optional[int], typer.Option(
        help="Processes that evaluate the points.", min=1, rich_help_panel=RUNNING,
        show_default=f"one per CPU ({default_jobs()} here) when the grid takes longer than starting them")] = None,
    scheduler: Scheduler = None,
    json: JsonFlag = False,
    plot: PlotFile = None,
    report: ReportFile = None,
) -> None:
    """The vanishing/exploding phase diagram: a heatmap of the gradient over two settings."""
    # imported here, not at the top: the CLI's start-up registers every command (tests/test_startup.py)
    from ..commands.sweep import plan_sweep, run_sweep
    from ..render.sweep import render_sweep

    check_scheduler(scheduler, jobs)
    path = plots.prepare(plot) if plot is not None else None
    page = prepare_report(report) if report is not None else None
    plan = plan_sweep(config, x, y, metric, _names(cells, "--cells"), _names(activations, "--activations"),
                      transient)
    with step_progress("grid points", len(plan.points), scheduler is not None) as advance, keeping_partial(json):
        result = run_sweep(plan, jobs, scheduler, lambda done, total: advance(done))
    if path is not None:
        plots.save(plots.sweep_figure(result), path)
    emit(result, json, lambda console: render_sweep(result, console), page)
