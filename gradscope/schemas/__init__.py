"""The JSON contract: one JSON Schema (draft 2020-12) per command, ``<command>.json`` in this package.

A command has a documented ``--json`` document exactly when its schema file is here; adding the file
is all it takes for ``gradscope schema`` to print it and for the contract tests to validate the
command's real output against it.
"""

from __future__ import annotations

import json
from importlib import resources

from ..errors import InputError

SUFFIX = ".json"


def schema_commands() -> tuple[str, ...]:
    """The commands that have a schema, sorted."""
    files = resources.files(__name__).iterdir()
    return tuple(sorted(f.name[: -len(SUFFIX)] for f in files if f.name.endswith(SUFFIX) and f.is_file()))


def schema_text(command: str) -> str:
    """The schema of ``command``'s --json output, as shipped (an InputError if it has none)."""
    if command not in schema_commands():
        raise InputError(
            f"no JSON schema for {command!r}; commands with one: {', '.join(schema_commands())}"
        )
    return resources.files(__name__).joinpath(command + SUFFIX).read_text(encoding="utf-8")


def load_schema(command: str) -> dict:
    """The schema of ``command``'s --json output, parsed."""
    return json.loads(schema_text(command))
