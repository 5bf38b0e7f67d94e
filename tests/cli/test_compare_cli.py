"""`gradscope compare` through the CLI: the table, the JSON and its schema, parallel runs, and the
claims docs/compare.md makes about what a comparison shows."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from gradscope.cli import main
from gradscope.mitigations import MITIGATIONS, default_mitigations
from gradscope.schemas import load_schema

SMALL = ["--seq-len", "10", "--hidden-size", "6", "--batch-size", "8", "--eval-size", "16"]


def run(capsys, *argv):
    code = main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv) -> dict:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    validator = jsonschema.Draft202012Validator(load_schema("compare"))
    assert [e.message for e in validator.iter_errors(doc)] == []
    return doc


def test_every_mitigation_that_applies_by_default_in_one_valid_document(capsys):
    doc = run_json(capsys, *SMALL, "--steps", "3", "--jobs", "1")
    # the gate-bias inits need a gated cell: the default rnn leaves them out
    assert [r["mitigation"] for r in doc["runs"]] == ["none", *(n for n in MITIGATIONS
                                                                if n not in ("forget-bias", "chrono"))]
    assert [r["cell"] for r in doc["runs"] if r["mitigation"] in ("gru", "lstm")] == ["gru", "lstm"]
    assert sum(r["best"] for r in doc["runs"]) == 1
    best = min((r for r in doc["runs"] if not r["diverged"]), key=lambda r: r["final_loss"])
    assert best["best"] and doc["best"] == best["mitigation"]
    runs = {r["mitigation"]: r for r in doc["runs"]}
    # The same first batch: mitigations that leave the model alone start from the same flow.
    assert runs["clip-norm"]["ratio_first_last"] == runs["none"]["ratio_first_last"]
    assert runs["orthogonal"]["spectral_radius_before"] == pytest.approx(1.0)
    assert runs["l2"]["loss_ratio"] == pytest.approx(runs["l2"]["final_loss"] / doc["baseline_loss"])


def test_parallel_runs_give_the_same_document_as_one_job(capsys):
    argv = [*SMALL, "--steps", "4", "--mitigations", "clip-norm,omega,gru"]
    serial = run_json(capsys, *argv, "--jobs", "1")
    parallel = run_json(capsys, *argv, "--jobs", "2")
    assert serial == parallel


def test_unknown_mitigation_lists_the_choices_and_exits_2(capsys):
    code, out, err = run(capsys, *SMALL, "--mitigations", "clip-norm,magic")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "unknown mitigation 'magic'; choose one of " + ", ".join(MITIGATIONS) in err


@pytest.mark.parametrize("argv, named", [
    (["--cell", "lstm"], "lstm"),
    (["--init", "orthogonal"], "orthogonal"),
    (["--activation", "relu"], "relu"),
])
def test_a_cure_that_would_train_the_unmitigated_model_is_refused_or_left_out(capsys, argv, named):
    """--cell lstm with the lstm cure trains the very model of the none run: named, it is an input
    error; by default it is not run. A composite with a part that does change the model runs."""
    code, out, err = run(capsys, *SMALL, "--steps", "2", *argv, "--mitigations", f"clip-norm,{named}")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert f"mitigation {named} changes nothing here: the model has its settings already" in err
    doc = run_json(capsys, *SMALL, "--steps", "2", "--jobs", "1", *argv)
    ran = [r["mitigation"] for r in doc["runs"]]
    assert named not in ran and "clip-norm" in ran
    doc = run_json(capsys, *SMALL, "--steps", "2", "--jobs", "1", "--cell", "lstm", "--mitigations", "lstm+chrono")
    assert [r["mitigation"] for r in doc["runs"]] == ["none", "lstm+chrono"]


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be a whole number"),
    (["--jobs", "0"], "--jobs must be a whole number of at least 1"),
    (["--omega-strength", "1", "--mitigations", "l2"], "--omega-strength applies only to the omega"),
    (["--start", "trained", "--mitigations", "l2"], "--start trained fine-tunes the weights of --weights"),
    (["--weights", "model.npz", "--loss", "mse", "--mitigations", "forget-bias"],
     # a loaded model's cell is the file's: the message names its layer, and no --cell to give
     "mitigation forget-bias applies to the lstm cell, not the rnn of your model's layer 0: combine it with one "
     "(lstm+forget-bias), which swaps every layer's cell"),
    (["--mitigations", " "], "--mitigations is empty"),  # "$UNSET" runs nothing by surprise
])
def test_bad_values_exit_2(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "--weights" in argv:
        assert main(["train", *SMALL, "--steps", "1", "--save-weights", "model.npz"]) == 0
        capsys.readouterr()
    code, out, err = run(capsys, *SMALL, "--steps", "2", *argv)
    assert code == 2 and out == "" and message in err


def test_table_fits_80_columns_and_marks_the_best(capsys):
    code, out, err = run(capsys, *SMALL, "--steps", "3", "--jobs", "1", "--task", "temporal-order",
                         "--seq-len", "20")
    assert code == 0 and err == ""
    rows = [line for line in out.splitlines() if line[1:].split(" ")[0] in ("none", *MITIGATIONS)]
    assert len(rows) == 1 + len(default_mitigations(None))
    assert sum(row.startswith("*") for row in rows) == 1
    assert " acc " in out  # a classification task: accuracy is shown
    assert all(len(line) <= 80 for line in out.splitlines())


def test_exploding_configuration_clip_norm_stays_finite_where_the_baseline_diverges(capsys):
    """The claim of docs/compare.md: relu, spectral radius 3, plain SGD."""
    doc = run_json(capsys, "--activation", "relu", "--spectral-radius", "3", "--optimizer", "sgd",
                   "--mitigations", "clip-norm", "--steps", "40", "--jobs", "1")
    none, clipped = doc["runs"]
    assert none["diverged"] and none["status"].startswith("diverged at step")
    assert not clipped["diverged"] and clipped["final_loss"] is not None and clipped["clip_events"] > 0
    assert doc["best"] == "clip-norm"


def test_gated_cells_learn_the_adding_problem_where_the_tanh_rnn_does_not(capsys):
    """The claim of docs/compare.md for the default comparison (adding, T = 50), on fewer steps."""
    doc = run_json(capsys, "--mitigations", "gru", "--steps", "400")
    none, gru = doc["runs"]
    assert none["loss_ratio"] > 0.8
    assert gru["loss_ratio"] < 0.3
    assert doc["config"]["seq_len"] == 50 and doc["config"]["task"] == "adding"


def test_plot_draws_every_run_in_one_picture(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "losses.svg"
    code, out, err = run(capsys, *SMALL, "--steps", "4", "--jobs", "1",
                         "--mitigations", "clip-norm,gru", "--plot", str(path))
    assert code == 0 and err == "" and out.startswith("gradscope compare")
    assert ET.parse(path).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    text = path.read_text()  # matplotlib leaves each label's text in a comment beside its glyphs
    assert all(f"<!-- {name}" in text for name in ("none", "clip-norm", "gru", "trivial baseline"))


def test_save_best_with_no_best_run_says_so_after_the_report(capsys, tmp_path):
    """Runs whose held-out loss overflowed (sgd at lr 1e30) leave no best run: the report is printed
    in full, then --save-best's error, and no file."""
    code, out, err = run(capsys, *SMALL, "--steps", "5", "--optimizer", "sgd", "--lr", "1e30", "--jobs", "1",
                         "--mitigations", "l2", "--save-best", str(tmp_path / "best.npz"), "--json")
    doc = json.loads(out)
    assert code == 2 and doc["best"] is None and all(r["final_loss"] is None for r in doc["runs"])
    assert err == ("gradscope: error: --save-best: every run diverged or ended with a loss that is not finite, "
                   "so none is best; nothing was written\n")
    assert not (tmp_path / "best.npz").exists()
    code, out, _ = run(capsys, *SMALL, "--steps", "5", "--optimizer", "sgd", "--lr", "1e30", "--jobs", "1",
                       "--mitigations", "l2")
    assert "no best run: every run diverged or ended with a loss that is not finite" in " ".join(out.split())


def test_cure_names_are_case_insensitive_as_every_choice(capsys):
    """--mitigations GRU,Clip-Norm is gru,clip-norm (cli.md: choices are case-insensitive)."""
    code, out, err = run(capsys, *SMALL, "--steps", "2", "--jobs", "1", "--mitigations", "GRU,Clip-Norm", "--json")
    assert code == 0, err
    assert [r["mitigation"] for r in json.loads(out)["runs"]] == ["none", "gru", "clip-norm"]
