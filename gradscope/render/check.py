"""The terminal view of a CheckResult: the run, where the settings came from, one row per check.

Every number shown is a field of the result's JSON document (serialize.py).
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..commands.check import CheckOutcome, CheckResult, show
from .analyze import REGIME_STYLE, counted_from, symbols
from .common import num, num_log10, print_header, sparkline

STATUS_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow"}


def value_text(x: float | int | None) -> str:
    """A measured value or threshold: counts as whole numbers, floats as in every table."""
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    return num(x)


def threshold_text(x: float | int | None) -> str:
    """A threshold as the user wrote it (1e-06, not 1.00e-06)."""
    return show(x) if isinstance(x, float) else value_text(x)


def settings_line(result: CheckResult) -> str:
    """Where each setting came from: "settings: seq_len from pyproject.toml; --min-ratio from flags;
    the rest defaults"."""
    by: dict[str, list[str]] = {"flag": [], "file": []}
    for name, source in result.settings_sources.items():
        by[source].append(name)
    parts = [f"{', '.join(by['file'])} from {result.settings_file}"] if by["file"] else []
    if by["flag"]:
        parts.append(f"{', '.join('--' + n.replace('_', '-') for n in by['flag'])} from flags")
    if not parts:
        where = "no [tool.gradscope] found" if result.settings_file is None else f"{result.settings_file} sets none"
        return f"settings: all defaults ({where})"
    return "settings: " + "; ".join([*parts, "the rest defaults"])


def check_table(checks: list[CheckOutcome]) -> Table:
    """One row per check: its result, whether it is enforced, the measured value and the threshold."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("check")
    table.add_column("result")
    table.add_column("enforced")
    table.add_column("measured", justify="right")
    table.add_column("threshold", justify="right")
    for c in checks:
        table.add_row(c.name, Text(c.status.upper(), style=STATUS_STYLE[c.status]),
                      "yes" if c.enforced else "no", value_text(c.measured), threshold_text(c.threshold))
    return table


def outcome_text(result: CheckResult) -> Text:
    """The last line: PASSED or FAILED, with the counts."""
    total = len(result.checks)
    if result.passed:
        text = Text("PASSED", style=STATUS_STYLE["pass"] + " bold")
        text.append(f"  {total} checks")
    else:
        text = Text("FAILED", style=STATUS_STYLE["fail"])
        text.append(f"  {result.failures} of {total} checks failed")
    if result.warnings:
        text.append(f", {result.warnings} warning{'s' if result.warnings > 1 else ''}")
    return text


def render_check(result: CheckResult, console: Console) -> None:
    """Print the check for a person (and for a CI log)."""
    print_header(console, "check", result.config)
    console.print(Text(settings_line(result)))  # Text: "[tool.gradscope]" is not rich markup
    console.print()
    state, _ = symbols(result.analysis)
    flow = result.flow  # the ratio from its log10 where float64 cannot hold it (10^-670.933, not 0)
    shown = num_log10(flow.log10_ratio) if flow.log10_ratio is not None else num(flow.ratio_first_last)
    ratio = Text(f"||dL/d{state}_1|| / ||dL/d{state}_T|| = {shown}   regime ")
    ratio.append(result.regime, style=REGIME_STYLE[result.regime])
    console.print(ratio)
    analysis = result.analysis
    with np.errstate(all="ignore"):  # padded: the end-aligned profile the ratio is read from
        logs = (analysis.log10_flow_norms[counted_from(analysis):] if analysis.network.padded
                else analysis.log10_grad_norms)
        console.print("  " + sparkline(logs, 60))  # both from the log domain: exact beyond float64
    console.print()
    console.print(check_table(result.checks))
    notes = [c for c in result.checks if c.status != "pass"]
    if notes:
        console.print()
        for c in notes:
            label = Text(f"{c.status.upper()} ", style=STATUS_STYLE[c.status])
            console.print(label + Text(f"{c.name}: {c.message}"))
    console.print()
    console.print(outcome_text(result))
