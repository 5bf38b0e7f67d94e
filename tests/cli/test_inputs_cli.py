"""`gradscope train` and `compare` on a user's own batch: with --inputs the file is the data (T, B
and D are the file's, train's adding defaults give way), sequences are held out of training, and a
loaded nn.RNN's two biases survive --save-weights."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from gradscope.cli import main
from gradscope.commands.train import HELD_OUT_SEQUENCES, TRAINING_BATCH, TrainOptions, train
from gradscope.config import RunConfig
from gradscope.model.statedict import export_network
from gradscope.schemas import load_schema
from helpers import random_model

B, T, D, H = 20, 11, 3, 5


@pytest.fixture
def files(tmp_path):
    """A saved nn.RNN + nn.Linear (bce) and a batch of B sequences of T steps, D features."""
    np.savez(tmp_path / "w.npz", **export_network(random_model("rnn", "tanh", "bce", d=D, h=H, o=1, seed=2)))
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((B, T, D)))
    np.save(tmp_path / "y.npy", rng.integers(0, 2, B).astype(float))
    np.save(tmp_path / "x_small.npy", rng.standard_normal((6, T, D)))
    np.save(tmp_path / "y_small.npy", rng.integers(0, 2, 6).astype(float))
    return {name: str(tmp_path / f"{name}.{'npz' if name == 'w' else 'npy'}")
            for name in ("w", "x", "y", "x_small", "y_small")}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, command, *argv) -> dict:
    code, out, err = run(capsys, command, *argv, "--json")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    validator = jsonschema.Draft202012Validator(load_schema(command))
    assert [e.message for e in validator.iter_errors(doc)] == []
    return doc


def test_train_takes_t_b_and_d_from_the_inputs_and_holds_sequences_out(capsys, files):
    doc = run_json(capsys, "train", "--weights", files["w"], "--inputs", files["x"], "--targets", files["y"],
                   "--steps", "5")
    config = doc["config"]
    assert (config["seq_len"], config["batch_size"], config["input_size"]) == (T, B, D)
    assert config["task"] == "random" and config["loss"] == "bce"
    assert doc["evaluated_on"] == HELD_OUT_SEQUENCES
    code, out, err = run(capsys, "train", "--weights", files["w"], "--inputs", files["x"], "--targets",
                         files["y"], "--steps", "5")
    assert code == 0 and err == ""
    assert f"T={T} B={B}" in out and "evaluated on the held-out sequences:" in out


def test_train_on_inputs_alone_takes_d_from_the_file_and_says_when_it_cannot_hold_any_out(capsys, files):
    doc = run_json(capsys, "train", "--inputs", files["x_small"], "--targets", files["y_small"],
                   "--hidden-size", "4", "--steps", "3")
    assert (doc["config"]["seq_len"], doc["config"]["batch_size"], doc["config"]["input_size"]) == (T, 6, D)
    assert doc["evaluated_on"] == TRAINING_BATCH
    code, out, _ = run(capsys, "train", "--inputs", files["x_small"], "--targets", files["y_small"],
                       "--hidden-size", "4", "--steps", "3")
    assert code == 0 and "evaluated on the training batch (too few sequences to hold any out):" in out


def test_compare_takes_the_inputs_as_train_does(capsys, files):
    doc = run_json(capsys, "compare", "--weights", files["w"], "--inputs", files["x"], "--targets", files["y"],
                   "--mitigations", "clip-norm,l2", "--steps", "4", "--jobs", "1")
    assert (doc["config"]["seq_len"], doc["config"]["batch_size"], doc["config"]["task"]) == (T, B, "random")
    assert doc["evaluated_on"] == HELD_OUT_SEQUENCES
    assert len({r["initial_loss"] for r in doc["runs"]}) == 1  # the same weights on the same held-out sequences
    code, out, err = run(capsys, "compare", "--weights", files["w"], "--inputs", files["x"], "--targets",
                         files["y"], "--mitigations", "clip-norm", "--steps", "2", "--jobs", "1")
    assert code == 0 and err == "" and "evaluated on the held-out sequences" in out


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize("flag, value, actual", [("--seq-len", "50", T), ("--input-size", "2", D)])
def test_a_flag_that_contradicts_the_inputs_exits_2_naming_it(capsys, files, command, flag, value, actual):
    code, out, err = run(capsys, command, "--inputs", files["x"], "--targets", files["y"], flag, value,
                         "--steps", "2")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert f"{flag} {value}" in err and f"({actual})" in err


def test_flags_that_repeat_the_inputs_are_accepted(capsys, files):
    doc = run_json(capsys, "train", "--weights", files["w"], "--inputs", files["x"], "--targets", files["y"],
                   "--seq-len", str(T), "--batch-size", str(B), "--input-size", str(D), "--steps", "2")
    # --batch-size with --inputs: the sequences of each step, at most the training ones (a fifth held out)
    assert (doc["config"]["seq_len"], doc["config"]["batch_size"]) == (T, B - round(0.2 * B))


def test_an_explicit_task_must_fit_the_inputs(capsys, files, tmp_path):
    code, out, err = run(capsys, "train", "--inputs", files["x"], "--targets", files["y"], "--task", "adding",
                         "--steps", "2")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "3 features" in err and "takes 2" in err  # the adding task's D is 2
    rng = np.random.default_rng(1)
    np.save(tmp_path / "add_x.npy", rng.uniform(size=(12, 9, 2)))
    np.save(tmp_path / "add_y.npy", rng.uniform(size=(12, 1)))
    doc = run_json(capsys, "train", "--inputs", str(tmp_path / "add_x.npy"), "--targets",
                   str(tmp_path / "add_y.npy"), "--task", "adding", "--steps", "2")
    assert doc["config"]["task"] == "adding" and doc["baseline_loss"] == pytest.approx(1 / 6)
    assert (doc["config"]["seq_len"], doc["config"]["batch_size"]) == (9, 12)


def test_without_inputs_train_keeps_its_defaults(capsys):
    doc = run_json(capsys, "train", "--hidden-size", "4", "--steps", "1", "--eval-size", "8")
    assert (doc["config"]["task"], doc["config"]["seq_len"], doc["config"]["batch_size"]) == ("adding", 50, 32)
    assert doc["evaluated_on"] == "held-out batch"


@pytest.mark.parametrize("command", ["train", "compare"])
def test_help_says_the_defaults_give_way_to_the_inputs(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    text = " ".join(out.replace("│", " ").split())
    assert code == 0
    assert "adding, or random with --inputs" in text
    assert "50, or what --inputs holds" in text and "32, or what --inputs holds" in text


def test_save_weights_round_trips_both_biases_of_a_loaded_rnn(capsys, files, tmp_path):
    with np.load(files["w"]) as original:
        state = {k: original[k] for k in original.files}
    assert not np.array_equal(state["rnn.bias_ih_l0"], state["rnn.bias_hh_l0"])
    code, _, _ = run(capsys, "analyze", "--weights", files["w"], "--save-weights", str(tmp_path / "same.npz"),
                     "--json")
    assert code == 0
    with np.load(tmp_path / "same.npz") as saved:
        assert set(saved.files) == set(state)
        for key, value in state.items():  # bit for bit: neither folded into the other nor zeroed
            np.testing.assert_array_equal(saved[key], value, err_msg=key)

    trained = tmp_path / "trained.npz"
    argv = ["--weights", files["w"], "--inputs", files["x"], "--targets", files["y"], "--steps", "3"]
    code, _, _ = run(capsys, "train", *argv, "--save-weights", str(trained))
    assert code == 0
    result = train(RunConfig(weights=files["w"], inputs=files["x"], targets=files["y"]), TrainOptions(steps=3))
    with np.load(trained) as saved:
        for ours, key in (("b", "rnn.bias_ih_l0"), ("b_hh", "rnn.bias_hh_l0")):
            np.testing.assert_array_equal(saved[key], result.network.layers[0][0][ours], err_msg=key)
            assert not np.array_equal(saved[key], state[key])  # trained: each bias moved
        # both got the same gradient, so both moved by the same step (Adam: the same update)
        np.testing.assert_allclose(saved["rnn.bias_ih_l0"] - state["rnn.bias_ih_l0"],
                                   saved["rnn.bias_hh_l0"] - state["rnn.bias_hh_l0"], rtol=1e-12, atol=1e-15)
