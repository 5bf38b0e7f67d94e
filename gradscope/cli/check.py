"""``gradscope check``: analyse one BPTT pass and fail (exit 1) when the gradient flow is bad.

Settings come from three places, the first that has one wins: a flag given on the command line,
the settings file (``--config FILE``, or the nearest pyproject.toml with ``[tool.gradscope]``),
the built-in default. The report (or the JSON) is printed before the exit code says how it went.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from ..commands.check import FAILURE_MODES, evaluate, failure_summary
from ..errors import CheckFailed, InputError
from ..render.common import warn
from .app import app, emit
from .options import OUTPUT, JsonFlag, run_settings

CHECKS = "Checks"


def given_flags(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The values whose flags were given on the command line (not left at their defaults)."""
    out = {}
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            out[name] = value
    return out


@app.command("check")
@run_settings
def check_command(
    ctx: typer.Context,
    settings: dict,
    min_ratio: Annotated[Optional[float], typer.Option(
        help="Fail when ||dL/da_1|| / ||dL/da_T|| is below this (the gradient vanishes too fast).",
        rich_help_panel=CHECKS, show_default=False)] = None,
    max_ratio: Annotated[Optional[float], typer.Option(
        help="Fail when ||dL/da_1|| / ||dL/da_T|| is above this (the gradient grows back in time).",
        rich_help_panel=CHECKS, show_default=False)] = None,
    every_layer: Annotated[Optional[bool], typer.Option(
        "--every-layer", help="Make the checks on every layer and direction, the worst one reported "
                              "\\[default: the top layer's forward direction alone, as analyze's verdict]",
        rich_help_panel=CHECKS, show_default=False)] = None,
    fail_on: Annotated[Optional[str], typer.Option(
        help=f"Verdicts that fail the check, comma-separated: {', '.join(FAILURE_MODES)}, or none; "
             "the others only warn. \\[default: nonfinite]",
        rich_help_panel=CHECKS, show_default=False, metavar="LIST")] = None,
    config_file: Annotated[Optional[Path], typer.Option(
        "--config",
        help="TOML file with the settings (its \\[tool.gradscope] table, or top-level keys). "
             "\\[default: the nearest pyproject.toml with \\[tool.gradscope]]",
        rich_help_panel=CHECKS, show_default=False, dir_okay=False)] = None,
    output_format: Annotated[Literal["text", "github"], typer.Option(
        "--format",
        help="github: also write ::error/::warning annotations (to stderr with --json).",
        rich_help_panel=OUTPUT, case_sensitive=False)] = "text",
    junit: Annotated[Optional[Path], typer.Option(
        help="Write a JUnit XML report, one testcase per check.",
        rich_help_panel=OUTPUT, dir_okay=False, show_default=False)] = None,
    json: JsonFlag = False,
) -> None:
    """Fail (exit 1) when the gradient vanishes, explodes or overflows: a gate for CI."""
    # imported here, not at the top: the CLI's start-up imports every command's module (cli/__init__.py)
    from ..commands.analyze import analyze
    from ..project_config import load_project_settings
    from ..render.check import render_check
    from ..render.ci import append_step_summary, github_annotations, write_junit

    project = load_project_settings(config_file)
    thresholds = {"min_ratio": min_ratio, "max_ratio": max_ratio, "fail_on": fail_on, "every_layer": every_layer}
    given = {k: v for k, v in thresholds.items() if v is not None}
    criteria = project.thresholds(given)
    flags = given_flags(ctx, settings)
    config = project.run_config(flags)
    sources = {**{k: "file" for k in (*project.run, *project.criteria)}, **{k: "flag" for k in (*flags, *given)}}
    result = evaluate(analyze(config), criteria, project.source, sources)
    # Files first: if one cannot be written, the run is an input error and stdout stays empty.
    if junit is not None:
        write_junit(result, junit)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:  # the environment's, not asked for: a file it cannot take is a warning, the gate stands
        try:
            append_step_summary(result, summary)
        except InputError as exc:
            warn(f"{exc}; the check's result is unchanged")
    emit(result, json, lambda console: render_check(result, console))
    if output_format == "github":
        stream = sys.stderr if json else sys.stdout  # stdout stays one JSON document
        for line in github_annotations(result):
            print(line, file=stream)
        stream.flush()
    if not result.passed:
        raise CheckFailed(failure_summary(result))
