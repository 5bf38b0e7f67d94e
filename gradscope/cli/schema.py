"""``gradscope schema``: the JSON Schema of a command's --json output, as shipped in the package."""

from __future__ import annotations

import json as jsonlib
import sys
from typing import Annotated, Optional

import typer

from ..errors import InputError
from ..schemas import FORMATS, schema_commands, schema_text
from .app import app
from .options import JsonFlag
from .usage import did_you_mean


@app.command("schema")
def schema_command(
    command: Annotated[Optional[str], typer.Argument(
        help="The command whose --json output to describe, or record (a line of the files gradscope history "
             "reads); without it, list the commands that have one.",
        show_default=False)] = None,
    json: JsonFlag = False,
) -> None:
    """Print the JSON Schema (draft 2020-12) of a command's --json output.

    A schema is JSON already, so --json changes nothing then; without COMMAND, --json prints the
    list as {"commands": [...]}.

    `gradscope schema record` describes one line of a recording, as gradscope history reads it.
    """
    names = list(schema_commands())
    if command is None:
        text = jsonlib.dumps({"commands": names}, indent=2) + "\n" if json else "\n".join(names) + "\n"
    elif command.lower() in names or command.lower() in FORMATS:
        text = schema_text(command.lower())
    else:
        raise InputError(f"no JSON schema for {command!r}{did_you_mean(command, names)} "
                         f"(commands with one: {', '.join(names)})")
    sys.stdout.write(text)
    sys.stdout.flush()
