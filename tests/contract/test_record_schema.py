"""The record (schemas/record.json): one line of a recording, the minimal fields `gradscope history`
reads. Full analyze documents are records once they carry their step; so are light records and the
recorder's skipped passes. (tests/io/test_history_records.py validates a file gradscope.torch wrote.)"""

from __future__ import annotations

import jsonschema
import pytest
from contract_support import GENERIC_ARGS, run_cli, run_json
from helpers import light_record

from gradscope.schemas import load_schema, schema_commands


def errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(load_schema("record"))
    return [e.message for e in validator.iter_errors(doc)]


def test_the_schema_is_draft_2020_12_and_not_a_command():
    schema = load_schema("record")
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "record" not in schema_commands()


@pytest.mark.parametrize("argv", [GENERIC_ARGS, [*GENERIC_ARGS, "--cell", "lstm"]], ids=["rnn", "lstm"])
def test_an_analyze_document_with_its_step_is_a_record(argv):
    _, doc = run_json(["analyze", *argv])
    assert errors({"step": 40, **doc}) == []
    assert errors(doc) != []  # the step is what the recorder adds
    assert errors({"step": 40, **doc, "source": "torch", "measure": "full", "dropout_left_out": False}) == []


def test_light_and_skipped_records_are_records_and_drift_is_caught():
    light = light_record(3, keys=((0, "forward"), (0, "reverse")), run="clip-norm")
    assert errors(light) == [] and errors({"step": 3, "skipped": "proj_size=4"}) == []
    assert errors({**light, "loss": None}) == [] and errors({**light, "source": "keras"}) == []
    wrong = [
        {k: v for k, v in light.items() if k != "layers"},
        {**light, "measure": "some"},
        {**light, "source": "tensorflow"},
        {**light, "layers": [{**light["layers"][0], "direction": "backward"}]},
        {**light, "layers": [{**light["layers"][0], "log10_grad_norms": ["x"]}]},
        {**light, "layers": [{**light["layers"][0], "flow": {"slope": -0.1}}]},
        {"step": -1, "skipped": "why"},
    ]
    for bad in wrong:
        assert errors(bad), bad


def test_gradscope_schema_record_prints_it():
    code, out, err = run_cli(["schema", "record"])
    assert code == 0 and err == "" and '"title": "gradscope record' in out
    code, out, _ = run_cli(["schema"])
    assert "record" not in out.split()
