"""A CheckResult in the formats CI systems display.

- GitHub Actions workflow commands: ``::error title=...::message`` for a failed check, ``::warning``
  for a violated check that is not enforced. GitHub decodes %25, %0D, %0A in the message, and
  also %3A, %2C in a property such as the title, where ':' and ',' would end it.
- A Markdown summary appended to the file named by GITHUB_STEP_SUMMARY (shown on the run's page).
- A JUnit XML report, one testcase per check, which most CI systems render as test results.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from ..commands.check import CheckResult
from ..config import TEXT_FIELDS
from ..errors import InputError
from ..io.atomic import write_bytes
from .common import config_lines
from .check import threshold_text, value_text

LEVELS = {"fail": "error", "warn": "warning"}
SUITE = "gradscope check"


def escape_data(text: str) -> str:
    """A workflow command's message: % first, so that the escapes themselves survive."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (title=...)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(result: CheckResult) -> list[str]:
    """One workflow command per failed or warned check."""
    return [
        f"::{LEVELS[c.status]} title={escape_property(f'{SUITE} {c.name}')}::{escape_data(c.message)}"
        for c in result.checks
        if c.status in LEVELS
    ]


def _cell(text: str) -> str:
    # A '|' would end a Markdown table cell; a newline would end the row.
    return " ".join(text.replace("|", "\\|").split())


def step_summary(result: CheckResult) -> str:
    """The Markdown summary: outcome, the run, a table of the checks, the messages."""
    outcome = "passed" if result.passed else f"FAILED ({result.failures} of {len(result.checks)})"
    lines = [f"### {SUITE}: {outcome}", ""]
    lines += [f"`{line}`  " for line in config_lines(result.config)]
    if result.settings_file is not None:
        lines.append(f"settings: `{result.settings_file}`")
    lines += ["", "| check | result | enforced | measured | threshold | message |",
              "| --- | --- | --- | ---: | ---: | --- |"]
    for c in result.checks:
        result_cell = f"**{c.status.upper()}**" if c.status == "fail" else c.status
        lines.append(
            f"| {c.name} | {result_cell} | {'yes' if c.enforced else 'no'} | {value_text(c.measured)} "
            f"| {threshold_text(c.threshold)} | {_cell(c.message)} |"
        )
    return "\n".join(lines) + "\n\n"


def append_step_summary(result: CheckResult, path: str | os.PathLike) -> None:
    """Append the Markdown summary to ``path`` (GITHUB_STEP_SUMMARY), after what earlier steps wrote."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(step_summary(result))
    except OSError as exc:
        raise InputError(f"cannot append to GITHUB_STEP_SUMMARY file {path}: {exc.strerror or exc}") from None


def run_properties(result: CheckResult) -> dict[str, object]:
    """The settings this run has: none left unset, and the text task's only on a text run."""
    settings = {**result.config, "settings_file": result.settings_file}
    skipped = () if result.config.get("task") == "text" else TEXT_FIELDS
    return {k: v for k, v in settings.items() if v is not None and k not in skipped}


def junit_xml(result: CheckResult) -> bytes:
    """A JUnit XML report: one testsuite, one testcase per check, a <failure> for each failed one.

    The run's settings are the suite's properties; each check's message is its system-out. No
    timestamps or durations, so the same run writes the same bytes.
    """
    counts = {"tests": str(len(result.checks)), "failures": str(result.failures), "errors": "0",
              "skipped": "0"}
    root = ET.Element("testsuites", name=SUITE, **counts)
    suite = ET.SubElement(root, "testsuite", name=SUITE, **counts)
    properties = ET.SubElement(suite, "properties")
    for key, value in run_properties(result).items():
        ET.SubElement(properties, "property", name=key, value=str(value))
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname="gradscope.check", name=c.name)
        if c.status == "fail":
            failure = ET.SubElement(case, "failure", message=c.message, type=c.name)
            failure.text = f"measured {value_text(c.measured)}, threshold {threshold_text(c.threshold)}"
        ET.SubElement(case, "system-out").text = f"{c.status}: {c.message}"
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(result: CheckResult, path: str | os.PathLike) -> None:
    """Write the JUnit XML report to ``path``; an unwritable path is an input error."""
    write_bytes(path, junit_xml(result), "--junit")  # whole or not at all (io/atomic.py)
