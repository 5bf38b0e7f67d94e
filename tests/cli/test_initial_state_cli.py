"""--initial-state on analyze, check and spectrum: the file a PyTorch user saves (h_0, c_0 as hx),
the gradient reaching it in the report and in --save-grads (torch's h0.grad, c0.grad), the checks
on its arrays, and the commands that do not take it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from gradscope.cli import main
from gradscope.schemas import load_schema

B, T, D, H = 3, 7, 4, 5


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _lstm_files(tmp: Path, torch_module: bool = False):
    """A 2-layer bidirectional LSTM state dict, inputs, h_0 and c_0 (.npz), and dL/d(output) (.npy)."""
    rng = np.random.default_rng(0)
    sd = {}
    for k in range(2):
        for suffix in ("", "_reverse"):
            d = D if k == 0 else 2 * H
            sd[f"lstm.weight_ih_l{k}{suffix}"] = rng.standard_normal((4 * H, d)) * 0.4
            sd[f"lstm.weight_hh_l{k}{suffix}"] = rng.standard_normal((4 * H, H)) * 0.4
            sd[f"lstm.bias_ih_l{k}{suffix}"] = rng.standard_normal(4 * H) * 0.3
            sd[f"lstm.bias_hh_l{k}{suffix}"] = rng.standard_normal(4 * H) * 0.3
    paths = {"weights": tmp / "m.npz", "inputs": tmp / "x.npy", "initial": tmp / "hx.npz", "grads": tmp / "g.npy"}
    np.savez(paths["weights"], **sd)
    np.save(paths["inputs"], rng.standard_normal((B, T, D)))
    np.savez(paths["initial"], h_0=rng.standard_normal((4, B, H)), c_0=rng.standard_normal((4, B, H)))
    np.save(paths["grads"], rng.standard_normal((B, T, 2 * H)))
    return sd, {k: str(v) for k, v in paths.items()}


@pytest.mark.torch
def test_analyze_reports_and_saves_the_gradient_reaching_the_initial_state(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    sd, p = _lstm_files(tmp_path)
    saved = tmp_path / "grads.npz"
    code, out, err = run(capsys, "analyze", "--weights", p["weights"], "--inputs", p["inputs"], "--output-grads",
                         p["grads"], "--initial-state", p["initial"], "--save-grads", str(saved), "--json")
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.Draft202012Validator(load_schema("analyze")).validate(doc)
    assert doc["config"]["initial_state"] == p["initial"]

    # the reference: nn.LSTM called as rnn(x, (h0, c0)), the same upstream gradient on its output
    lstm = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, batch_first=True).double()
    lstm.load_state_dict({k.removeprefix("lstm."): torch.tensor(v) for k, v in sd.items()})
    hx = np.load(p["initial"])
    h0 = torch.tensor(hx["h_0"], requires_grad=True)
    c0 = torch.tensor(hx["c_0"], requires_grad=True)
    out_t, _ = lstm(torch.tensor(np.load(p["inputs"])), (h0, c0))
    out_t.backward(torch.tensor(np.load(p["grads"])))
    with np.load(saved) as arrays:
        np.testing.assert_allclose(arrays["dL_dh_0"], h0.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(arrays["dL_dc_0"], c0.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(arrays["lstm.weight_hh_l1_reverse"], lstm.weight_hh_l1_reverse.grad.numpy(),
                                   rtol=1e-9, atol=1e-12)
    for i, layer in enumerate(doc["layers"]):
        assert layer["initial_state"]["grad_norm"] == pytest.approx(float(h0.grad[i].norm()), rel=1e-10)
        assert layer["initial_state"]["cell_grad_norm"] == pytest.approx(float(c0.grad[i].norm()), rel=1e-10)
    # the table names it too
    code, table, _ = run(capsys, "analyze", "--weights", p["weights"], "--inputs", p["inputs"], "--output-grads",
                         p["grads"], "--initial-state", p["initial"])
    assert code == 0 and "dL/dh_0" in table


def test_without_an_initial_state_the_report_says_null_and_saves_no_dL_dh_0(tmp_path, capsys):
    _, p = _lstm_files(tmp_path)
    saved = tmp_path / "grads.npz"
    code, out, err = run(capsys, "analyze", "--weights", p["weights"], "--inputs", p["inputs"], "--output-grads",
                         p["grads"], "--save-grads", str(saved), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["config"]["initial_state"] is None
    assert all(layer["initial_state"] is None for layer in doc["layers"])
    with np.load(saved) as arrays:
        assert "dL_dh_0" not in arrays.files and "dL_dc_0" not in arrays.files
    code, table, _ = run(capsys, "analyze", "--weights", p["weights"], "--inputs", p["inputs"], "--output-grads",
                         p["grads"])
    assert "dL/dh_0" not in table


def test_spectrum_and_check_run_from_the_initial_state(tmp_path, capsys):
    _, p = _lstm_files(tmp_path)
    common = ["--weights", p["weights"], "--inputs", p["inputs"], "--output-grads", p["grads"], "--json"]
    docs = {}
    for name, extra in (("zero", []), ("given", ["--initial-state", p["initial"]])):
        code, out, err = run(capsys, "spectrum", *common, *extra)
        assert code == 0, err
        docs[name] = json.loads(out)
    assert docs["given"]["config"]["initial_state"] == p["initial"]
    # the run from h_0, c_0 is another trajectory: other step Jacobians, other exponents
    assert docs["given"]["lyapunov"]["exponents"] != docs["zero"]["lyapunov"]["exponents"]
    code, out, err = run(capsys, "check", *common, "--initial-state", p["initial"])
    assert code in (0, 1), err
    assert json.loads(out)["config"]["initial_state"] == p["initial"]


@pytest.mark.parametrize("arrays, message", [
    ({"h_0": np.zeros((4, B + 1, H))}, r"h_0 must have shape \(4, 3, 5\)"),
    ({"h0": np.zeros((4, B, H))}, "expected arrays 'h_0'"),
    ({"h_0": np.full((4, B, H), np.nan)}, "NaN or infinite"),
])
def test_a_wrong_initial_state_is_one_line_naming_the_flag(tmp_path, capsys, arrays, message):
    _, p = _lstm_files(tmp_path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    code, out, err = run(capsys, "analyze", "--weights", p["weights"], "--inputs", p["inputs"], "--output-grads",
                         p["grads"], "--initial-state", str(bad))
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert "initial-state" in err and re.search(message, err), err


def test_initial_state_needs_inputs_and_is_not_a_training_flag(tmp_path, capsys):
    _, p = _lstm_files(tmp_path)
    code, _, err = run(capsys, "analyze", "--initial-state", p["initial"])
    assert code == 2 and "--initial-state needs --inputs" in err
    for command in ("train", "compare", "sweep"):
        code, _, err = run(capsys, command, "--initial-state", p["initial"])
        assert code == 2 and "No such option" in err, (command, err)
    import gradscope

    with pytest.raises(gradscope.InputError, match="initial_state is a setting of one pass"):
        gradscope.train(inputs=np.load(p["inputs"]), initial_state=p["initial"], steps=1)
