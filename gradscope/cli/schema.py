"""``gradscope schema``: the JSON Schema of a command's --json output, as shipped in the package."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ..schemas import schema_commands, schema_text
from .app import app


@app.command("schema")
def schema_command(
    command: Annotated[Optional[str], typer.Argument(
        help="The command whose --json output to describe; without it, list the commands that have one.",
        show_default=False)] = None,
) -> None:
    """Print the JSON Schema (draft 2020-12) of a command's --json output."""
    text = "\n".join(schema_commands()) + "\n" if command is None else schema_text(command)
    sys.stdout.write(text)
    sys.stdout.flush()
