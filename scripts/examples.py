"""Regenerate every example output in the docs from an actual run.

Each ```console block in README.md and docs/**/*.md whose first line is ``$ gradscope ...`` is the
output of that command: this script runs the command (at 80 columns, no colour, in a scratch
folder where ``docs/examples/make_*.py`` have saved the example models and batches, and
``docs/examples/record_training.py`` a recording of a training run) and writes its stdout back
into the block. So an example is never typed by hand, and after a change that moves a
number, one command brings the docs up to date:

    python scripts/examples.py            # rewrite the blocks
    python scripts/examples.py --check    # exit 1 if any block differs from a fresh run (CI-able)

What the prose says about the outputs is pinned by tests/docs/test_documented_claims.py.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```console\n\$ (gradscope[^\n]*)\n(.*?)```", re.S)
SETUP = sorted((ROOT / "docs" / "examples").glob("make_*.py")) + [ROOT / "docs" / "examples" / "record_training.py"]


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def run(command: str, cwd: Path) -> str:
    """The command's stdout as a person sees it at 80 columns (stderr, warnings included, left out)."""
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
    argv = [sys.executable, "-m", "gradscope", *shlex.split(command)[1:]]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: a check that failed, still an output worth showing
        raise SystemExit(f"{command!r} exited {done.returncode}: {done.stderr.strip()}")
    return "".join(line.rstrip() + "\n" for line in done.stdout.splitlines())  # rich pads lines to the width


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report blocks that differ; write nothing")
    args = parser.parse_args()
    stale = 0
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        for script in SETUP:
            subprocess.run([sys.executable, str(script)], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        for path in documents():
            text = path.read_text(encoding="utf-8")

            def fresh(match: re.Match) -> str:
                nonlocal stale
                command, old = match.group(1), match.group(2)
                new = run(command, cwd)
                if new != old:
                    stale += 1
                    print(f"{path.relative_to(ROOT)}: $ {command}: {'differs' if args.check else 'updated'}",
                          file=sys.stderr)
                return f"```console\n$ {command}\n{new}```"

            updated = BLOCK.sub(fresh, text)
            if updated != text and not args.check:
                path.write_text(updated, encoding="utf-8")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
