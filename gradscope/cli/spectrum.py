"""``gradscope spectrum``: Lyapunov exponents and the singular values of the Jacobian product."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..config import RunConfig
from ..commands.spectrum import jacobian_spectrum
from ..render import plots
from ..render.report import prepare as prepare_report
from ..render.spectrum import render_spectrum
from .app import app, emit
from .options import OUTPUT, JsonFlag, PlotFile, ReportFile, run_options


@app.command("spectrum")
@run_options
def spectrum_command(
    config: RunConfig,
    transient: Annotated[Optional[int], typer.Option(
        help="Steps left out before the exponents are averaged, while the QR frame aligns.",
        min=0, show_default="T // 10")] = None,
    rows: Annotated[int, typer.Option(
        help="Exponents shown in the table (--json has all of them).", rich_help_panel=OUTPUT,
        min=1)] = 8,
    json: JsonFlag = False,
    plot: PlotFile = None,
    report: ReportFile = None,
) -> None:
    """Lyapunov exponents, the gradient horizon and the singular values of J_T ... J_2 (QR method)."""
    path = plots.prepare(plot) if plot is not None else None
    page = prepare_report(report) if report is not None else None
    result = jacobian_spectrum(config, transient)
    if path is not None:
        plots.save(plots.spectrum_figure(result), path)
    emit(result, json, lambda console: render_spectrum(result, console, rows), page)
