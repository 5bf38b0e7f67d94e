"""`gradscope analyze` through the CLI: the table, the JSON, files, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gradscope import __version__
from gradscope.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_default_run_shows_vanishing_plainly(capsys):
    code, out, err = run(capsys, "analyze")
    assert code == 0 and err == ""
    assert "Verdict: VANISHING" in out
    assert "Spectrum of Wa" in out and "spectral radius" in out
    assert "Pascanu" in out and "holds at every step" in out
    assert all(len(line) <= 80 for line in out.splitlines()), "lines wider than 80 columns"
    assert "\x1b" not in out  # not a terminal: no ANSI


def test_table_shows_every_step_of_short_runs_and_log_spaced_steps_of_long_ones(capsys):
    _, out, _ = run(capsys, "analyze", "--seq-len", "6")
    rows = [line.split()[0] for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert rows[:6] == ["1", "2", "3", "4", "5", "6"]
    _, out, _ = run(capsys, "analyze", "--seq-len", "500", "--max-rows", "12")
    steps = [int(line.split()[0]) for line in out.splitlines()
             if line.strip() and line.split()[0].isdigit() and len(line.split()) >= 4]
    assert steps[0] == 1 and steps[-1] == 500 and 3 <= len(steps) <= 12
    assert steps == sorted(steps)


def test_json_document(capsys):
    code, out, _ = run(capsys, "analyze", "--json", "--seq-len", "30", "--hidden-size", "12")
    assert code == 0
    doc = json.loads(out)
    assert isinstance(doc["schema_version"], int)
    assert doc["gradscope_version"] == __version__
    assert doc["config"]["seq_len"] == 30 and doc["config"]["hidden_size"] == 12
    assert len(doc["grad_norms"]) == 30 and len(doc["contributions"]) == 30
    spec = doc["spectrum"]
    assert len(spec["eigenvalues"]) == 12 and all(len(e) == 2 for e in spec["eigenvalues"])
    assert spec["spectral_radius"] == pytest.approx(np.hypot(*spec["eigenvalues"][0]))
    assert doc["regime"] in {"vanishing", "exploding", "stable"}
    assert doc["nonfinite_count"] == 0
    assert doc["ratios"][-1] == 1.0


def test_json_grad_norms_are_the_frobenius_norms_of_saved_dL_da(capsys, tmp_path):
    code, out, _ = run(capsys, "analyze", "--json", "--seq-len", "15", "--save-grads",
                       str(tmp_path / "g.npz"))
    assert code == 0
    doc = json.loads(out)
    dl_da = np.load(tmp_path / "g.npz", allow_pickle=False)["dL_da"]
    assert dl_da.shape == (15, 16, 32)
    np.testing.assert_allclose(doc["grad_norms"], np.linalg.norm(dl_da, axis=(1, 2)), rtol=1e-12)


def test_same_seed_same_bytes_other_seed_other_numbers(capsys):
    first = run(capsys, "analyze", "--json", "--seed", "5")[1]
    second = run(capsys, "analyze", "--json", "--seed", "5")[1]
    other = run(capsys, "analyze", "--json", "--seed", "6")[1]
    assert first == second
    assert json.loads(first)["grad_norms"] != json.loads(other)["grad_norms"]
    assert run(capsys, "analyze", "--seed", "5")[1] == run(capsys, "analyze", "--seed", "5")[1]


def test_overflowing_run_keeps_its_table_and_valid_json(capsys):
    argv = ["analyze", "--activation", "linear", "--spectral-radius", "3", "--seq-len", "1500"]
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    assert "NaN" not in out and "Infinity" not in out
    doc = json.loads(out)
    assert doc["nonfinite_count"] > 0 and doc["regime"] == "exploding"
    assert None in doc["grad_norms"]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "EXPLODING" in out and "overflowed" in out


def test_adding_task_fixes_sizes_and_loss(capsys):
    code, out, _ = run(capsys, "analyze", "--task", "adding", "--json", "--seq-len", "40")
    doc = json.loads(out)
    assert code == 0
    assert (doc["config"]["input_size"], doc["config"]["output_size"], doc["config"]["loss"]) == (2, 1, "mse")
    assert doc["baseline_loss"] == pytest.approx(1 / 6)
    code, _, err = run(capsys, "analyze", "--task", "adding", "--input-size", "3")
    assert code == 2 and "--input-size must be 2" in err


def test_save_weights_round_trip(capsys, tmp_path):
    w = tmp_path / "w.npz"
    code, first, _ = run(capsys, "analyze", "--json", "--hidden-size", "9", "--seed", "4",
                         "--save-weights", str(w))
    assert code == 0
    keys = set(np.load(w).files)
    assert keys == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                    "fc.weight", "fc.bias"}
    code, again, _ = run(capsys, "analyze", "--json", "--weights", str(w), "--seed", "4")
    assert code == 0
    a, b = json.loads(first), json.loads(again)
    np.testing.assert_allclose(a["grad_norms"], b["grad_norms"], rtol=1e-12)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-12)


@pytest.mark.parametrize("argv,needle", [
    (["--hidden-size", "0"], "--hidden-size"),
    (["--seq-len", "-3"], "--seq-len"),
    (["--activation", "swish"], "--activation"),
    (["--spectral-radius", "0"], "--spectral-radius"),
    (["--spectral-radius", "-1"], "--spectral-radius"),
    (["--targets", "y.npy"], "--targets needs --inputs"),
    (["--weights", "missing.npz"], "missing.npz"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, needle):
    code, out, err = run(capsys, "analyze", *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err
    assert "Traceback" not in err


def test_entry_points():
    version = subprocess.run([sys.executable, "-m", "gradscope", "--version"],
                             capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"gradscope {__version__}"
    bad = subprocess.run([sys.executable, "-m", "gradscope", "analyze", "--cell", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["analyze", "check"])
def test_an_overflowing_run_is_the_reports_to_tell_not_numpys(capsys, command, recwarn):
    """Weights at 1e308 saturate every unit: no numpy warning reaches stderr, and the verdict says
    why it has no slope."""
    code = main([command, "--init-gain", "1e308", "--seq-len", "8", "--hidden-size", "4"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    if command == "analyze":
        assert "slope - (fewer than two steps with a nonzero, finite gradient to fit)" in out


def test_the_header_names_every_setting_and_wraps_under_itself_at_80_columns(capsys, tmp_path):
    """--recurrent-scale is in the header; a long path breaks between settings and, wider than a
    line, is cut under the header's indent, never at column 0."""
    folder = tmp_path / ("a_rather_long_directory_name_for_the_models_" * 2)
    folder.mkdir()
    path = folder / "model.npz"
    np.savez(path, **{"rnn.weight_ih_l0": np.ones((3, 2)), "rnn.weight_hh_l0": np.eye(3),
                      "rnn.bias_ih_l0": np.zeros(3), "rnn.bias_hh_l0": np.zeros(3),
                      "fc.weight": np.ones((1, 3)), "fc.bias": np.zeros(1)})
    code, out, err = run(capsys, "analyze", "--weights", str(path), "--recurrent-scale", "0.5", "--seq-len", "5")
    assert code == 0, err
    header = out.split("\nloss ")[0].splitlines()
    indent = " " * len("gradscope analyze  ")
    assert all(len(line) <= 80 for line in header)
    assert all(line.startswith(indent) for line in header[1:])
    joined = "".join(line[len(indent):] if i else line for i, line in enumerate(header))
    assert str(path) in joined and "W_hh x0.5" in joined


def test_a_padded_batch_shorter_than_its_array_counts_back_over_the_longest_sequence(capsys, tmp_path):
    """No sequence has all T = 10 steps: the end-aligned table and sparkline run over the longest
    one's 8, so row t = 1 is the step the verdict's ratio starts at (it showed two rows of 0)."""
    rng = np.random.default_rng(0)
    weights = tmp_path / "w.npz"
    np.savez(weights, **{"rnn.weight_ih_l0": rng.normal(size=(5, 3)), "rnn.weight_hh_l0": 0.5 * rng.normal(size=(5, 5)),
                         "rnn.bias_ih_l0": np.zeros(5), "rnn.bias_hh_l0": np.zeros(5),
                         "fc.weight": rng.normal(size=(1, 5)), "fc.bias": np.zeros(1)})
    for name, value in (("x", rng.normal(size=(6, 10, 3))), ("y", rng.integers(0, 2, 6).astype(float)),
                        ("lengths", np.array([6, 7, 5, 8, 3, 4]))):
        np.save(tmp_path / f"{name}.npy", value)
    argv = ["analyze", "--weights", str(weights), *(a for n in ("x", "y", "lengths") for a in (
        {"x": "--inputs", "y": "--targets", "lengths": "--lengths"}[n], str(tmp_path / f"{n}.npy")))]
    code, out, err = run(capsys, *argv, "--max-rows", "20")
    assert code == 0, err
    assert "T = 8 (the longest)" in out and "t (end-aligned) = 1..8:" in out
    rows = [line.split() for line in out.split("t (end-aligned)  ")[1].split("\n\n")[0].splitlines()[1:]]
    assert [r[0] for r in rows] == [str(t) for t in range(1, 9)]
    doc = json.loads(run(capsys, *argv, "--json")[1])
    assert float(rows[0][2]) == pytest.approx(doc["flow"]["ratio_first_last"], rel=1e-2)
    assert doc["flow_norms"][:2] == [0.0, 0.0] and len(doc["grad_norms"]) == 10


def test_a_value_beside_its_comparison_with_one_shows_the_digits_that_decide_it():
    from gradscope.render.analyze import off_one

    assert off_one(1.0000002) == "1.0000002" and off_one(0.99999999) == "0.99999999"
    assert off_one(1.0) == "1" and off_one(1.2345) == "1.234"


@pytest.mark.parametrize("readout, bounded", [("last", True), ("every", True), ("mean", False), ("max", False)])
def test_pascanus_bound_is_reported_only_where_the_gradient_enters_at_the_end(capsys, readout, bounded):
    """A pooled head (mean, max) gives every step a gradient of its own: the bound does not apply
    (it was reported, and flagged VIOLATED); where it applies it holds."""
    task = ["--task", "copy"] if readout == "every" else []
    code, out, err = run(capsys, "analyze", "--readout", readout, "--spectral-radius", "0.3", "--seq-len", "30",
                         "--hidden-size", "8", *task, "--json")
    assert code == 0, err
    pascanu = json.loads(out)["pascanu"]
    assert (pascanu is not None) == bounded
    assert pascanu is None or pascanu["bound_holds"]
