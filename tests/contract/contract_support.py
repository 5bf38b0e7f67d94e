"""What the contract tests run: a small, fast invocation of every command that has a JSON schema.

A command not listed in SAMPLE_ARGS runs with GENERIC_ARGS (the shared run flags, kept small); a
command whose small run needs other flags (fewer training steps, say) adds its line here.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import typer
from helpers import light_record, write_records

from gradscope.cli import app, main
from gradscope.schemas import schema_commands


def _sample_recording() -> str:
    """A small recording for `gradscope history`: 6 light records of a 2-layer model, in a folder of
    its own that lives as long as the tests."""
    folder = Path(tempfile.mkdtemp(prefix="gradscope-contract-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "records.ndjson"
    keys = ((0, "forward"), (1, "forward"))
    write_records(path, [light_record(10 * i, keys=keys, slope=-0.1 * i, loss=1 / i) for i in range(1, 7)])
    return str(path)


GENERIC_ARGS = ["--seq-len", "12", "--hidden-size", "6", "--batch-size", "4"]
SAMPLE_ARGS: dict[str, list[str]] = {
    "analyze": GENERIC_ARGS,
    "check": [*GENERIC_ARGS, "--min-ratio", "1e-30"],
    "train": [*GENERIC_ARGS, "--steps", "5"],
    "compare": [*GENERIC_ARGS, "--steps", "3", "--eval-size", "8"],
    "reproduce": ["forget-bias", "--steps", "3", "--seq-len", "12", "--hidden-size", "4", "--batch-size", "4",
                  "--eval-size", "8", "--seeds", "2", "--jobs", "1"],
    "sweep": ["--hidden-size", "6", "--batch-size", "4", "--x", "spectral_radius=0.5,1,2",
              "--y", "seq_len=4,12", "--jobs", "1"],
    "history": [_sample_recording()],
}
# An extreme overflow: a linear RNN whose Wa has spectral radius 3, run over 2000 steps.
OVERFLOW_ARGS = ["--activation", "linear", "--spectral-radius", "3", "--seq-len", "2000"]
SCHEMA_COMMANDS = schema_commands()


def cli_commands() -> set[str]:
    """Every command registered on the CLI."""
    return set(typer.main.get_command(app).commands)


def takes_option(command: str, name: str) -> bool:
    """Whether the command has the option ``name`` (its parameter's name: "seed")."""
    return name in {p.name for p in typer.main.get_command(app).commands[command].params}


def sample_argv(command: str) -> list[str]:
    return [command, *SAMPLE_ARGS.get(command, GENERIC_ARGS)]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr). Usable inside hypothesis tests.

    GITHUB_STEP_SUMMARY is hidden, so that a test suite run in GitHub Actions adds nothing to
    the job's summary.
    """
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        os.environ.pop("GITHUB_STEP_SUMMARY", None)
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def run_json(argv: list[str]) -> tuple[int, dict]:
    """Run a command with --json in-process: (exit code, the parsed document)."""
    code, out, err = run_cli([*argv, "--json"])
    assert code in (0, 1), f"gradscope {' '.join(argv)} --json exited {code}: {err}"
    return code, json.loads(out)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess on a pipe: no forced colours, no CI summary file."""
    dropped = ("FORCE_COLOR", "NO_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "GITHUB_STEP_SUMMARY")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(extra)
    return env


def run_subprocess(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    """``python -m gradscope ARGV`` with stdout and stderr on pipes."""
    return subprocess.run([sys.executable, "-m", "gradscope", *argv], capture_output=True,
                          env=clean_env(**env), timeout=300)
