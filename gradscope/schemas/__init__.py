"""The JSON contract: one JSON Schema (draft 2020-12) per command, ``<command>.json`` in this package.

A command has a documented ``--json`` document exactly when its schema file is here; adding the file
is all it takes for ``gradscope schema`` to print it and for the contract tests to validate the
command's real output against it. Files that gradscope reads and others write have a schema here
too, named in FORMATS: ``record.json``, one line of a recording (``gradscope history`` reads them).
"""

from __future__ import annotations

import json
from importlib import resources

from ..errors import InputError

SUFFIX = ".json"
# Schemas of files, not of a command's output: name -> what the file is
FORMATS = {"record": "one line of a recording (.ndjson), as gradscope history reads it"}
# A record's words (record.json): what wrote it, and how the pass was measured. The recorders
# (recording.py) write them and history reads them; this module, light, is where both look.
SOURCES = ("torch", "keras", "train", "compare")
MEASURES = ("full", "flow")


def schema_commands() -> tuple[str, ...]:
    """The commands that have a schema, sorted."""
    files = resources.files(__name__).iterdir()
    names = (f.name[: -len(SUFFIX)] for f in files if f.name.endswith(SUFFIX) and f.is_file())
    return tuple(sorted(name for name in names if name not in FORMATS))


def schema_text(command: str) -> str:
    """The schema of ``command``'s --json output, or of a file format in FORMATS, as shipped (an
    InputError if there is none)."""
    if command not in schema_commands() and command not in FORMATS:
        raise InputError(
            f"no JSON schema for {command!r}; commands with one: {', '.join(schema_commands())}"
        )
    return resources.files(__name__).joinpath(command + SUFFIX).read_text(encoding="utf-8")


def load_schema(command: str) -> dict:
    """The schema of ``command``'s --json output (or of a file format in FORMATS), parsed."""
    return json.loads(schema_text(command))
