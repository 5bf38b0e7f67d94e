"""Fuzzing analyze and check over random valid configurations: whatever the settings, the output is
one JSON document the schema accepts, every number finite or null, and nothing raises."""

from __future__ import annotations

import math

import jsonschema
from contract_support import run_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradscope.model.cells import CELLS, FLAG_CELLS
from gradscope.model.initializers import INITIALIZERS
from gradscope.schemas import load_schema
from gradscope.tasks import TASKS

# Tasks whose length the user sets freely; the others run at their default length (they have
# a minimum, or a length of their own).
FREE_LENGTH_TASKS = ("random", "adding")
VALIDATORS = {c: jsonschema.Draft202012Validator(load_schema(c)) for c in ("analyze", "check")}


@st.composite
def run_args(draw) -> list[str]:
    cell = draw(st.sampled_from(sorted(FLAG_CELLS)))  # what --cell offers
    task = draw(st.sampled_from(sorted(TASKS)))
    args = [
        "--cell", cell,
        "--activation", draw(st.sampled_from(CELLS[cell].activations)),
        "--task", task,
        "--hidden-size", str(draw(st.integers(1, 6))),
        "--batch-size", str(draw(st.integers(1, 4))),
        "--init", draw(st.sampled_from(sorted(INITIALIZERS))),
        "--init-gain", repr(draw(st.floats(0.05, 4.0))),
        "--seed", str(draw(st.integers(0, 2**32 - 1))),
    ]
    if task in FREE_LENGTH_TASKS:
        args += ["--seq-len", str(draw(st.integers(2, 40)))]  # adding needs two halves
    if draw(st.booleans()):
        args += ["--spectral-radius", repr(draw(st.floats(0.05, 4.0)))]
    return args


@st.composite
def check_args(draw) -> list[str]:
    args = draw(run_args())
    low = draw(st.none() | st.floats(1e-30, 1.0))
    if low is not None:
        args += ["--min-ratio", repr(low)]
    if draw(st.booleans()):
        args += ["--max-ratio", repr(draw(st.floats(1.0, 1e30)))]
    modes = draw(st.lists(st.sampled_from(["vanishing", "exploding", "nonfinite"]), unique=True))
    return args + ["--fail-on", ",".join(modes) or "none"]


def numbers(doc) -> list:
    """Every number (and null) in a document, recursively."""
    if isinstance(doc, dict):
        return [x for v in doc.values() for x in numbers(v)]
    if isinstance(doc, list):
        return [x for v in doc for x in numbers(v)]
    return [doc] if doc is None or (isinstance(doc, (int, float)) and not isinstance(doc, bool)) else []


def assert_valid(command: str, doc: dict) -> None:
    problems = [e.message for e in VALIDATORS[command].iter_errors(doc)]
    assert problems == [], problems
    assert all(x is None or math.isfinite(x) for x in numbers(doc))


FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(run_args())
def test_analyze_gives_valid_json_for_any_valid_configuration(args):
    code, doc = run_json(["analyze", *args])
    assert code == 0
    assert_valid("analyze", doc)
    assert len(doc["grad_norms"]) == doc["config"]["seq_len"]


@FUZZ
@given(check_args())
def test_check_gives_valid_json_and_the_exit_code_it_reports(args):
    code, doc = run_json(["check", *args])
    assert_valid("check", doc)
    assert code == (0 if doc["passed"] else 1)
    assert doc["failures"] == sum(c["status"] == "fail" for c in doc["checks"])
    assert all(c["enforced"] or c["status"] != "fail" for c in doc["checks"])
