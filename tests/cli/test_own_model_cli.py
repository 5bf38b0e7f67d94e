"""A user's own model through the CLI: what a new user tried and what must come of it (exit 2 with
one line where gradscope cannot analyse what was trained; a warning where it may not be what was
meant). The state dicts are built with numpy in PyTorch's layout, so no torch is needed."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from gradscope.cli import main
from gradscope.schemas import load_schema

V, D, H, B, T = 12, 4, 5, 3, 6


def lstm(prefix: str, rng: np.random.Generator, d: int = D, h: int = H) -> dict:
    return {prefix + "weight_ih_l0": rng.standard_normal((4 * h, d)) * 0.4,
            prefix + "weight_hh_l0": rng.standard_normal((4 * h, h)) * 0.4,
            prefix + "bias_ih_l0": np.zeros(4 * h), prefix + "bias_hh_l0": np.zeros(4 * h)}


def model(**extra) -> dict:
    rng = np.random.default_rng(0)
    sd = {"embedding.weight": rng.standard_normal((V, D)), **lstm("lstm.", rng)}
    sd["embedding.weight"][0] = 0.0  # nn.Embedding(padding_idx=0)
    sd.update(extra)
    return sd


def save(tmp: Path, name: str, arrays) -> str:
    path = tmp / name
    if isinstance(arrays, dict):
        np.savez(path, **arrays)
    else:
        np.save(path, arrays)
    return str(path)


def tokens(pre: bool = False) -> np.ndarray:
    lengths = np.array([6, 3, 4])
    x = np.arange(1, B * T + 1).reshape(B, T) % (V - 1) + 1
    for b, n in enumerate(lengths):
        if pre:
            x[b, : T - n] = 0
        else:
            x[b, n:] = 0
    return x


def one_line_error(capsys, argv: list[str], expected: str) -> None:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}: {err}"
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("gradscope: error: "), err
    assert expected in err, err


def test_a_head_of_several_layers_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(1)
    sd = model(**{"fc1.weight": rng.standard_normal((7, H)), "fc1.bias": np.zeros(7),
                  "fc2.weight": rng.standard_normal((1, 7)), "fc2.bias": np.zeros(1)})
    argv = ["analyze", "--weights", save(tmp_path, "w.npz", sd), "--inputs", save(tmp_path, "x.npy", tokens())]
    one_line_error(capsys, argv, "fc2.weight reads the 7 outputs of fc1.weight")
    one_line_error(capsys, argv, "--output-grads")


def test_two_linears_that_could_be_the_head_are_not_guessed(tmp_path, capsys):
    rng = np.random.default_rng(1)
    sd = model(**{"att.weight": rng.standard_normal((1, H)), "att.bias": np.zeros(1),
                  "fc.weight": rng.standard_normal((1, H)), "fc.bias": np.zeros(1)})
    argv = ["analyze", "--weights", save(tmp_path, "w.npz", sd), "--inputs", save(tmp_path, "x.npy", tokens())]
    one_line_error(capsys, argv, "choose one with --head-key; or give your head's gradient with --output-grads")
    assert main([*argv, "--head-key", "fc", "--json"]) == 0


def test_lengths_that_count_pad_tokens_as_real_are_refused(tmp_path, capsys):
    sd = model(**{"fc.weight": np.ones((1, H)), "fc.bias": np.zeros(1)})
    argv = ["analyze", "--weights", save(tmp_path, "w.npz", sd), "--inputs", save(tmp_path, "x.npy", tokens(pre=True)),
            "--lengths", save(tmp_path, "l.npy", np.array([6, 3, 4])), "--padding-idx", "0"]
    one_line_error(capsys, argv, "--lengths and --padding-idx 0 disagree at sequence 1")
    # post-padded tokens agree with their lengths; junk at pad steps is never read
    x = tokens()
    x[1, 5] = 7
    assert main(["analyze", *argv[1:4], save(tmp_path, "x2.npy", x), *argv[5:], "--json"]) == 0


@pytest.mark.parametrize("flag, value", [("--lengths", np.array([3, 2, 3])), ("--targets", np.zeros(B))])
def test_time_major_batches_get_a_hint(tmp_path, capsys, flag, value):
    sd = model(**{"fc.weight": np.ones((1, H)), "fc.bias": np.zeros(1)})
    argv = ["analyze", "--weights", save(tmp_path, "w.npz", sd), "--inputs", save(tmp_path, "x.npy", tokens().T),
            flag, save(tmp_path, "v.npy", value)]
    one_line_error(capsys, argv, "time-major")


def test_an_empty_batch_of_token_ids_is_an_input_error(tmp_path, capsys):
    sd = model(**{"fc.weight": np.ones((1, H)), "fc.bias": np.zeros(1)})
    one_line_error(capsys, ["analyze", "--weights", save(tmp_path, "w.npz", sd),
                            "--inputs", save(tmp_path, "x.npy", np.zeros((0, T), int))], "inputs are empty")


def test_the_caller_s_gradient_leaves_no_readout_or_loss_to_give(tmp_path, capsys):
    sd = model()
    base = ["analyze", "--weights", save(tmp_path, "w.npz", sd), "--inputs", save(tmp_path, "x.npy", tokens()),
            "--output-grads", save(tmp_path, "g.npy", np.ones((B, T, H)))]
    one_line_error(capsys, [*base, "--targets", save(tmp_path, "y.npy", np.zeros(B))], "--targets and --output-grads")
    one_line_error(capsys, [*base, "--readout", "mean"], "--readout and --output-grads")
    # and its JSON is valid against the schema (no head: output_size and loss are null)
    assert main([*base, "--padding-idx", "0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, load_schema("analyze"))
    assert doc["loss"] is None and doc["config"]["output_size"] is None and doc["network"]["head"] is None


def test_a_bce_loss_against_a_head_of_three_outputs_names_the_head(tmp_path, capsys):
    sd = model(**{"classifier.weight": np.ones((3, H)), "classifier.bias": np.zeros(3)})
    one_line_error(capsys, ["analyze", "--weights", save(tmp_path, "w.npz", sd), "--loss", "bce"],
                   "the head classifier.weight has 3")


@pytest.mark.parametrize("command", ["analyze", "train"])
def test_targets_of_several_values_for_a_one_output_bce_head_are_an_input_error(tmp_path, capsys, command):
    sd = model(**{"fc.weight": np.ones((1, H)), "fc.bias": np.zeros(1)})
    one_line_error(capsys, [command, "--weights", save(tmp_path, "w.npz", sd), "--inputs",
                            save(tmp_path, "x.npy", tokens()), "--padding-idx", "0", "--targets",
                            save(tmp_path, "y.npy", np.zeros((B, 3)))],
                   f"bce targets must be one value per sequence, (B,) or (B, 1), got shape ({B}, 3)")


def test_made_up_targets_are_said_to_be(tmp_path, capsys):
    sd = model(**{"fc.weight": np.ones((1, H)), "fc.bias": np.zeros(1)})
    assert main(["analyze", "--weights", save(tmp_path, "w.npz", sd), "--inputs", save(tmp_path, "x.npy", tokens()),
                 "--padding-idx", "0", "--json"]) == 0
    assert "targets drawn at random (give --targets)" in json.loads(capsys.readouterr().out)["data"]


def test_another_recurrent_module_is_pointed_out(tmp_path, capsys):
    rng = np.random.default_rng(2)
    sd = model(**lstm("lstm2.", rng, d=H), **{"fc.weight": np.ones((1, H)), "fc.bias": np.zeros(1)})
    assert main(["analyze", "--weights", save(tmp_path, "w.npz", sd), "--rnn-key", "lstm", "--json"]) == 0
    captured = capsys.readouterr()
    assert "holds other recurrent modules (lstm2)" in json.loads(captured.out)["warnings"][0]
    assert captured.err.startswith("gradscope: warning: the state dict holds other recurrent modules")


def test_a_batch_saved_with_torch_save_is_read(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    sd = model(**{"fc.weight": np.ones((1, H)), "fc.bias": np.zeros(1)})
    weights = save(tmp_path, "w.npz", sd)
    torch.save(torch.tensor(tokens()), tmp_path / "x.pt")
    torch.save(torch.tensor([1.0, 0.0, 1.0]), tmp_path / "y.pt")
    np.save(tmp_path / "y.npy", np.array([1.0, 0.0, 1.0]))
    runs = []
    for x, y in ((tmp_path / "x.pt", tmp_path / "y.pt"), (save(tmp_path, "x.npy", tokens()), tmp_path / "y.npy")):
        assert main(["analyze", "--weights", weights, "--inputs", str(x), "--targets", str(y), "--padding-idx", "0",
                     "--json"]) == 0
        runs.append(json.loads(capsys.readouterr().out)["loss"])
    assert runs[0] == runs[1]
    torch.save({"x": torch.zeros(2)}, tmp_path / "d.pt")
    one_line_error(capsys, ["analyze", "--weights", weights, "--inputs", str(tmp_path / "d.pt")],
                   "holds a dict (a state dict?), not one tensor")


@pytest.mark.parametrize("flags, message", [
    (["--init", "orthogonal"], "--init orthogonal draws the recurrent weights at initialisation, which --weights fixes"),
    (["--init-gain", "5"], "--init-gain 5.0 scales the recurrent weights' initialisation, which --weights fixes"),
])
def test_an_initialisation_flag_with_weights_is_refused_not_ignored(tmp_path, capsys, flags, message):
    sd = model(**{"fc.weight": np.ones((1, H)), "fc.bias": np.zeros(1)})
    one_line_error(capsys, ["analyze", "--weights", save(tmp_path, "w.npz", sd), *flags], message)
