"""`gradscope spectrum` through the CLI: the table, the JSON, errors."""

from __future__ import annotations

import json

import jsonschema
import pytest

from gradscope.cli import main
from gradscope.schemas import load_schema

SMALL = ["--seq-len", "40", "--hidden-size", "8", "--batch-size", "4"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def valid(doc: dict) -> dict:
    jsonschema.Draft202012Validator(load_schema("spectrum")).validate(doc)
    return doc


def test_table_shows_exponents_singular_values_and_the_verdict(capsys):
    code, out, err = run(capsys, "spectrum", *SMALL, "--rows", "3")
    assert code == 0 and err == ""
    assert "lambda_i" in out and "log10 sigma_i(P)" in out
    assert "Verdict: VANISHING" in out and "horizon" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "\x1b" not in out


def test_json_matches_the_table_and_the_schema(capsys):
    code, out, _ = run(capsys, "spectrum", *SMALL, "--json", "--transient", "5")
    doc = valid(json.loads(out))
    assert code == 0 and doc["command"] == "spectrum"
    assert doc["state"] == ["h"] and doc["state_size"] == 8 and doc["cell_path"] is None
    lyap = doc["lyapunov"]
    assert lyap["transient"] == 5 and lyap["steps"] == 35 and len(lyap["exponents"]) == 8
    assert lyap["leading_exponent"] == lyap["exponents"][0] < 0
    assert lyap["horizon"] == pytest.approx(-1 / lyap["leading_exponent"])
    assert doc["product"]["steps"] == 39 and doc["product"]["converged"]
    assert doc["product"]["log10_singular_values"] == sorted(doc["product"]["log10_singular_values"], reverse=True)
    _, table, _ = run(capsys, "spectrum", *SMALL, "--transient", "5")
    assert f"{lyap['leading_exponent']:.3g}" in table
    # ordered over 35 steps, so no note that they are not (tests/cli/test_treat_own_model.py has one)
    assert lyap["exponents"] == sorted(lyap["exponents"], reverse=True) and "not aligned" not in table


def test_analyze_reports_the_same_leading_exponent(capsys):
    _, out, _ = run(capsys, "spectrum", *SMALL, "--json")
    spectrum = json.loads(out)["lyapunov"]
    _, out, _ = run(capsys, "analyze", *SMALL, "--json")
    analyze = json.loads(out)["lyapunov"]
    assert analyze["leading_exponent"] == pytest.approx(spectrum["leading_exponent"], rel=1e-10)
    assert analyze["horizon"] == pytest.approx(spectrum["horizon"], rel=1e-10)
    _, table, _ = run(capsys, "analyze", *SMALL)
    assert "Lyapunov lambda_1" in table and f"horizon {analyze['horizon']:.1f} steps" in table


def test_lstm_shows_its_cell_path(capsys):
    code, out, _ = run(capsys, "spectrum", *SMALL, "--cell", "lstm")
    assert code == 0 and "Cell path" in out and "diag(f_t)" in out
    _, out, _ = run(capsys, "spectrum", *SMALL, "--cell", "lstm", "--json")
    doc = valid(json.loads(out))
    assert doc["state"] == ["h", "c"] and doc["state_size"] == 16
    assert len(doc["cell_path"]["exponents"]) == 8 and doc["cell_path"]["leading_exponent"] < 0


def test_overflowed_run_prints_valid_json_with_nulls(capsys):
    code, out, _ = run(capsys, "spectrum", "--activation", "relu", "--spectral-radius", "3",
                       "--seq-len", "2000", "--hidden-size", "8", "--json")
    doc = valid(json.loads(out))
    assert code == 0 and doc["lyapunov"]["regime"] == "exploding"
    assert doc["lyapunov"]["leading_exponent"] is None and doc["nonfinite_count"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--seq-len", "10", "--transient", "10"], "--transient must be between 0 and T - 1 = 9"),
    (["--seq-len", "1"], "at least two steps"),
    (["--rows", "0"], "--rows"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, "spectrum", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
