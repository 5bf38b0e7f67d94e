"""`gradscope reproduce` and composite mitigations through the CLI: the list, each experiment's
plumbing at a tiny size (never the full runs), verdicts computed from the runs, and one-line errors."""

from __future__ import annotations

import json

import jsonschema
import pytest

from gradscope.cli import main
from gradscope.commands.reproduce import EXPERIMENTS, Target, reproduce
from gradscope.schemas import load_schema
from gradscope.seeds import summarize

TINY = ["--steps", "2", "--seq-len", "24", "--hidden-size", "3", "--batch-size", "3", "--eval-size", "6",
        "--jobs", "1"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_experiment(capsys):
    code, out, err = run(capsys, "reproduce", "--list")
    assert code == 0 and err == ""
    names = [line.split()[0] for line in out.splitlines()[1:] if line and not line.startswith(" ")]
    assert names == list(EXPERIMENTS)
    assert {"adding", "clipping", "irnn", "copy", "temporal-order", "forget-bias"} == set(EXPERIMENTS)


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_experiment_runs_at_a_tiny_size_into_a_valid_document(capsys, name):
    argv = ["reproduce", name, *TINY] + (["--seq-len", "25"] if name == "copy" else [])
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    assert list(jsonschema.Draft202012Validator(load_schema("reproduce")).iter_errors(doc)) == []
    exp = EXPERIMENTS[name]
    assert [a["label"] for a in doc["arms"]] == [a.label for a in exp.arms]
    assert doc["training"]["steps"] == 2 and doc["config"]["hidden_size"] == 3
    assert doc["reproduced"] == all(a["met"] for a in doc["arms"])
    assert ("reproduced:" in doc["verdict"]) == doc["reproduced"]
    for arm, spec in zip(doc["arms"], exp.arms):
        assert arm["mitigation"] == (spec.mitigation or "none")
        assert arm["target"] == spec.target.describe()


def test_the_table_shows_the_claim_and_the_verdict_in_80_columns(capsys):
    code, out, err = run(capsys, "reproduce", "forget-bias", *TINY, "--seeds", "2")
    assert code == 0 and err == ""
    assert "paper's claim" in out and "2 seeds (0-1)" in out and "the paper:" in out
    assert "chrono" in out and "loss/baseline < 0.1" in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_verdicts_are_computed_from_the_runs():
    """The same experiment, judged on what it measured: two steps teach nothing, so an arm whose
    claim is that it learns misses, and the verdict names it with its figure."""
    result = reproduce("adding", steps=2, seq_len=20, hidden_size=3, batch_size=3, eval_size=6)
    lstm = next(a for a in result.arms if a.label == "LSTM")
    assert not lstm.met and not result.reproduced
    assert f"LSTM: the claim needs loss/baseline < 0.1, measured loss/baseline {lstm.seeds.loss_ratio.mean:.3g}" \
        in result.verdict


def test_temporal_order_trains_the_1997_lstm_whose_cell_is_held_open():
    """The paper's LSTM had no forget gate; the recipe's stands for it with the gate held open by
    chrono's bias (a gate at sigmoid(0) = 0.5 would test another model), and says so in its arm."""
    result = reproduce("temporal-order", steps=2, seq_len=24, hidden_size=3, batch_size=3, eval_size=6)
    tanh, lstm = result.arms
    assert (tanh.cell, tanh.bias_init) == ("rnn", "zero")
    assert (lstm.cell, lstm.mitigation, lstm.bias_init) == ("lstm", "lstm+chrono", "chrono")
    assert result.reproduced == (tanh.met and lstm.met)


@pytest.mark.parametrize("target, losses, diverged, met", [
    (Target("loss_ratio", high=0.1), [0.01, 0.02], [False, False], True),
    (Target("loss_ratio", high=0.1), [0.01, 0.5], [False, False], False),  # the mean, not the best seed
    (Target("loss_ratio", high=0.1), [0.01, 0.01], [False, True], False),  # a diverged seed fails it
    (Target("loss_ratio", low=0.5), [0.9, 1.1], [False, False], True),
    (Target("diverged"), [0.0, 0.0], [True, True], True),
    (Target("diverged"), [0.0, 0.0], [True, False], False),
    (Target("finite"), [1.0, 2.0], [False, False], True),
])
def test_targets_judge_the_mean_over_seeds(target, losses, diverged, met):
    summary = summarize([0, 1], [x * 0.5 for x in losses], 0.5, diverged, [None, None])
    assert target.met(summary) is met


@pytest.mark.parametrize("argv, message", [
    (["reproduce"], "give an experiment's NAME"),
    (["reproduce", "nope"], "unknown experiment 'nope'; choose one of adding"),
    (["reproduce", "adding", "--list"], "--list takes no NAME"),
    (["reproduce", "adding", "--seeds", "0"], "--seeds"),
    (["train", "--mitigation", "relu+lstm"], "mitigations relu and lstm conflict: both set the cell"),
    (["train", "--mitigation", "lstm+gru"], "mitigations lstm and gru conflict"),
    (["train", "--mitigation", "orthogonal+identity-relu"], "both set the init of Wa"),
    (["train", "--mitigation", "clip-norm+clip-value"], "both set the clipping of the gradient"),
    (["train", "--mitigation", "forget-bias"], "forget-bias applies to the lstm cell, not the rnn"),
    (["compare", "--mitigations", "l2,lstm+relu"], "mitigations lstm and relu conflict"),
    (["train", "--mitigation", "lstm+forget-bias", "--clip-threshold", "2"], "--clip-threshold applies only"),
    (["analyze", "--bias-init", "chrono"], "--bias-init chrono applies to the lstm and the gru cells, not the rnn"),
    (["spectrum", "--cell", "lstm", "--chrono-max", "9"], "--chrono-max is a setting of --bias-init chrono"),
])
def test_conflicts_and_bad_names_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_composites_train_and_compare_side_by_side(capsys):
    small = ["--seq-len", "8", "--hidden-size", "4", "--batch-size", "4", "--eval-size", "8", "--steps", "3"]
    code, out, err = run(capsys, "train", *small, "--mitigation", "identity-relu+clip-norm", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["mitigation"] == "identity-relu+clip-norm"
    assert [p["name"] for p in doc["mitigation_parts"]] == ["identity-relu", "clip-norm"]
    assert doc["config"]["activation"] == "relu" and doc["mitigation_settings"] == {"clip_threshold": 1.0}
    code, out, err = run(capsys, "compare", *small, "--mitigations", "lstm+forget-bias,lstm+chrono",
                         "--jobs", "1", "--json")
    doc = json.loads(out)
    assert code == 0 and [r["mitigation"] for r in doc["runs"]] == ["none", "lstm+forget-bias", "lstm+chrono"]
    assert [r["cell"] for r in doc["runs"]] == ["rnn", "lstm", "lstm"]


def test_seeds_in_the_cli_report_the_spread(capsys):
    small = ["--seq-len", "8", "--hidden-size", "4", "--batch-size", "4", "--eval-size", "8", "--steps", "3"]
    code, out, err = run(capsys, "train", *small, "--seeds", "3")
    assert code == 0 and "over 3 seeds (0-2): loss/baseline" in out
    code, out, err = run(capsys, "compare", *small, "--seeds", "2", "--mitigations", "gru", "--jobs", "1")
    assert code == 0 and " sd " in out and "2 seeds (0-1) per run" in out
