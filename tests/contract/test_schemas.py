"""The JSON contract: every command's --json output is valid against the schema shipped for it.

Parametrised over every schema file in gradscope/schemas, so a command's schema is checked against
its real output the moment the file lands.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from contract_support import (
    OVERFLOW_ARGS,
    SCHEMA_COMMANDS,
    cli_commands,
    run_cli,
    run_json,
    run_subprocess,
    sample_argv,
    takes_option,
)

from gradscope.schemas import load_schema, schema_text
from gradscope.serialize import SCHEMA_VERSION

DOCS = Path(__file__).resolve().parents[2] / "docs"
HEADER = ("schema_version", "gradscope_version", "command", "nonfinite_count")


def validator(command: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(command))


def errors(command: str, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(command).iter_errors(doc)]


def test_the_built_in_commands_have_schemas():
    assert {"analyze", "check"} <= set(SCHEMA_COMMANDS)


@pytest.mark.parametrize("command", SCHEMA_COMMANDS)
def test_schema_is_strict_draft_2020_12_for_a_real_command(command):
    schema = load_schema(command)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False, "the top level must reject unknown fields"
    assert set(HEADER) <= set(schema["required"])
    assert set(schema["required"]) == set(schema["properties"]), "every top-level field is always present"
    assert schema["properties"]["command"] == {"const": command}
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    assert command in cli_commands(), f"schemas/{command}.json describes no command"


@pytest.mark.parametrize("command", SCHEMA_COMMANDS)
def test_real_output_is_valid(command):
    _, doc = run_json(sample_argv(command))
    assert errors(command, doc) == []
    assert doc["command"] == command and doc["nonfinite_count"] == 0


@pytest.mark.parametrize("command", SCHEMA_COMMANDS)
def test_schema_rejects_drift(command):
    """An added field, a missing one and a retyped one are each caught."""
    _, doc = run_json(sample_argv(command))
    added = {**doc, "surprise": 1}
    missing = {k: v for k, v in doc.items() if k != "gradscope_version"}
    retyped = {**doc, "nonfinite_count": "0"}
    for bad in (added, missing, retyped):
        assert errors(command, bad), "the schema accepted a drifted document"


@pytest.mark.parametrize("command", SCHEMA_COMMANDS)
def test_docs_document_every_field(command):
    """Every top-level field is named on the command's own page (docs/COMMAND.md), or on the JSON
    contract's page (docs/json.md) for the header fields that every document shares."""
    pages = [DOCS / f"{command}.md", DOCS / "json.md"]
    text = "".join(page.read_text(encoding="utf-8") for page in pages)
    documented = set(re.findall(r"`([a-z_0-9]+)`", text))
    undocumented = set(load_schema(command)["properties"]) - documented
    assert not undocumented, f"docs/{command}.md does not mention {command} field(s) {sorted(undocumented)}"


@pytest.mark.parametrize("command", ["analyze", "check"])
def test_overflowing_run_prints_valid_json_with_nulls_and_its_table(command):
    code, doc = run_json([command, *OVERFLOW_ARGS])
    assert code == (1 if command == "check" else 0)  # check fails on nonfinite by default
    assert errors(command, doc) == []
    assert doc["grad_norms"].count(None) == len(doc["grad_norms"]) == 2000
    assert doc["nonfinite_count"] >= 2000  # every null is counted
    assert doc["regime"] == "exploding"
    code, out, err = run_cli([command, *OVERFLOW_ARGS])
    assert code == (1 if command == "check" else 0)
    assert "overflowed" in out and "nan" in out  # the table is printed, non-finite values shown
    assert len(err.splitlines()) == (1 if command == "check" else 0)


@pytest.mark.parametrize("command", SCHEMA_COMMANDS)
def test_same_seed_same_bytes(command):
    argv = [*sample_argv(command), "--json"]
    first, second = run_subprocess(argv), run_subprocess(argv)
    assert first.returncode in (0, 1), first.stderr.decode()
    assert first.stdout == second.stdout and first.returncode == second.returncode
    if not takes_option(command, "seed"):
        return  # history reads a file: nothing is drawn at random
    other = run_subprocess([*argv, "--seed", "1"])
    assert other.stdout != first.stdout, "the seed changes nothing: the comparison proves nothing"


def test_schema_command_prints_the_shipped_schema_and_lists_commands():
    code, out, err = run_cli(["schema", "analyze"])
    assert code == 0 and err == ""
    assert out == schema_text("analyze") and json.loads(out) == load_schema("analyze")
    code, out, _ = run_cli(["schema"])
    assert code == 0 and out.split() == list(SCHEMA_COMMANDS)


def test_schema_command_rejects_an_unknown_command():
    code, out, err = run_cli(["schema", "nonsense"])
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "no JSON schema for 'nonsense'" in err and "analyze" in err
