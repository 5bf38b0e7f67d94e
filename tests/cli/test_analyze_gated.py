"""`gradscope analyze --cell gru|lstm`: the JSON fields of gated cells and their table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradscope.cli import main

SPECTRUM_FIELDS = {"spectral_radius", "max_singular_value", "min_singular_value", "condition_number",
                   "eigenvalues", "singular_values"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def strict_json(text):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("cell,gates,width", [("gru", "rzn", 1), ("lstm", "ifgo", 2)])
def test_json_has_gate_spectra_and_the_mean_jacobian(capsys, cell, gates, width):
    code, out, err = run(capsys, "analyze", "--cell", cell, "--json", "--seq-len", "20",
                         "--hidden-size", "6")
    assert code == 0 and err == ""
    doc = strict_json(out)
    assert doc["config"]["cell"] == cell and doc["config"]["activation"] == "tanh"
    assert doc["spectrum_of"] == "mean_step_jacobian"
    assert set(doc["spectrum"]) == SPECTRUM_FIELDS
    assert len(doc["spectrum"]["eigenvalues"]) == width * 6
    assert list(doc["gate_spectra"]) == list(gates)
    for spec in doc["gate_spectra"].values():
        assert set(spec) == SPECTRUM_FIELDS and len(spec["singular_values"]) == 6
    assert doc["pascanu"] is None
    assert len(doc["grad_norms"]) == 20 and len(doc["contributions"]) == 20
    if cell == "lstm":
        assert len(doc["cell_grad_norms"]) == 20 and all(v > 0 for v in doc["cell_grad_norms"])
    else:
        assert doc["cell_grad_norms"] is None
    assert doc["nonfinite_count"] == 0


def test_rnn_json_has_no_gate_spectra(capsys):
    code, out, _ = run(capsys, "analyze", "--json", "--seq-len", "10")
    doc = strict_json(out)
    assert code == 0 and doc["gate_spectra"] is None and doc["spectrum_of"] == "recurrent_weight"


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_table_names_what_the_spectrum_is_of_and_fits_80_columns(capsys, cell):
    code, out, _ = run(capsys, "analyze", "--cell", cell, "--seq-len", "40", "--hidden-size", "8")
    assert code == 0
    assert "Spectrum of the mean step Jacobian" in out and "Spectrum of Wa" not in out
    assert "Pascanu" not in out
    assert "||dL/dh_t||" in out and "||dL/dW_hh_t||" in out
    assert ("||dL/dc_t||" in out) == (cell == "lstm")
    blocks = [line.split()[0] for line in out.splitlines() if line.strip().startswith("W_h")]
    assert blocks == ["W_h" + g for g in ("rzn" if cell == "gru" else "ifgo")]
    assert all(len(line) <= 80 and line == line.rstrip() for line in out.splitlines())


def test_lstm_table_shows_the_cell_norms_of_the_json(capsys):
    _, out, _ = run(capsys, "analyze", "--cell", "lstm", "--seq-len", "5", "--json")
    norms = strict_json(out)["cell_grad_norms"]
    _, out, _ = run(capsys, "analyze", "--cell", "lstm", "--seq-len", "5")
    header = next(line for line in out.splitlines() if line.startswith("step t"))
    assert header.split() == ["step", "t", "||dL/dh_t||", "ratio", "to", "T", "||dL/dc_t||", "||dL/dW_hh_t||"]
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit() and len(line.split()) == 5]
    assert [float(r[3]) for r in rows] == pytest.approx(norms, rel=5e-3)  # shown to 3 digits


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_relu_is_refused_in_one_line(capsys, cell):
    code, out, err = run(capsys, "analyze", "--cell", cell, "--activation", "relu")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--activation tanh" in err


def test_weights_of_one_cell_with_another_cell_flag_are_an_input_error(capsys, tmp_path):
    assert main(["analyze", "--cell", "lstm", "--hidden-size", "3", "--seq-len", "4",
                 "--save-weights", str(tmp_path / "w.npz"), "--json"]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "analyze", "--weights", str(tmp_path / "w.npz"), "--cell", "gru")
    assert code == 2 and "holds a lstm model" in err
    code, out, _ = run(capsys, "analyze", "--weights", str(tmp_path / "w.npz"), "--json", "--seq-len", "4")
    assert code == 0 and strict_json(out)["config"]["cell"] == "lstm"


def test_save_grads_of_the_lstm_hold_dL_dc(capsys, tmp_path):
    code, out, _ = run(capsys, "analyze", "--cell", "lstm", "--seq-len", "6", "--hidden-size", "4",
                       "--save-grads", str(tmp_path / "g.npz"), "--json")
    saved = np.load(tmp_path / "g.npz", allow_pickle=False)
    assert code == 0 and saved["dL_dc"].shape == (6, 16, 4)
    np.testing.assert_allclose(np.linalg.norm(saved["dL_dc"], axis=(1, 2)),
                               strict_json(out)["cell_grad_norms"], rtol=1e-12)
    assert {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"} <= set(saved.files)
