"""Start-up: `gradscope analyze` imports only what analyze needs (issue 11), proven in a fresh interpreter.

Every command is registered when the CLI starts, so a command module imported at the top of its CLI
module would be paid for by every run of every other command. Timings are benchmarks' business; this
guards the cause.
"""

from __future__ import annotations

import json
import subprocess
import sys

from gradscope.commands import defaults
from gradscope.commands.reproduce import EXPERIMENTS
from gradscope.commands.sweep import DEFAULT_X, DEFAULT_Y, METRICS

# concurrent.futures itself arrives with asyncio, which typer's pydantic imports to coerce the flags:
# its process pool (what gradscope.parallel would bring) is the part that must stay out.
NOT_FOR_ANALYZE = (
    "gradscope.text", "gradscope.commands.train", "gradscope.commands.sweep", "gradscope.commands.compare",
    "gradscope.commands.reproduce", "gradscope.commands.history", "gradscope.render.history",
    "gradscope.render.notebook", "gradscope.project_config",
    "multiprocessing", "concurrent.futures.process", "dask", "matplotlib", "torch",
)

PROBE = """
import contextlib, io, json, sys
from gradscope.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(["analyze", "--seq-len", "5", "--json"])
print(json.dumps({"code": code, "document": json.loads(out.getvalue())["command"],
                  "modules": sorted(sys.modules)}))
"""


def imported(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == name or m.startswith(name + ".") for name in NOT_FOR_ANALYZE)]


def test_analyze_imports_no_other_command():
    seen = imported(PROBE)
    assert seen["code"] == 0 and seen["document"] == "analyze"
    assert heavy(seen["modules"]) == []


def test_the_probe_notices_a_heavy_import():
    """Running train does import its loop, so the check above can fail."""
    seen = imported(PROBE.replace('["analyze", "--seq-len", "5", "--json"]',
                                  '["train", "--steps", "1", "--seq-len", "5", "--json"]'))
    assert seen["document"] == "train" and "gradscope.commands.train" in heavy(seen["modules"])


def test_import_gradscope_is_cheap_and_complete():
    seen = imported("import json, sys, gradscope; before = sorted(sys.modules); "
                    "missing = [n for n in gradscope.__all__ if not hasattr(gradscope, n)]; "
                    "print(json.dumps({'modules': before, 'missing': missing, "
                    "'repr': repr(gradscope.analyze(seq_len=5, hidden_size=3))}))")
    assert [m for m in seen["modules"] if m.startswith("gradscope.commands")] == []
    assert seen["missing"] == []
    assert seen["repr"].startswith("<AnalyzeResult analyze: ")  # results.py's views come with the names


def test_signature_defaults_match_the_commands():
    """The CLI shows these without importing the commands: they must be the commands' own."""
    assert tuple(EXPERIMENTS) == defaults.EXPERIMENT_NAMES
    assert (DEFAULT_X, DEFAULT_Y, METRICS) == (defaults.SWEEP_X, defaults.SWEEP_Y, defaults.SWEEP_METRICS)
