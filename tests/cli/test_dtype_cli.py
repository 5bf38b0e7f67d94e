"""``--dtype``: every command that builds a model takes it, runs in it, and says so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradscope.cli import main
from gradscope.commands.train import TrainOptions, train
from gradscope.config import RunConfig
from gradscope.errors import InputError
from gradscope.experiment import build
from gradscope.precision import LOG_NORM_ERROR_PER_STEP, LOSS_ERROR


def run_json(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


COMMANDS = {
    "analyze": ["analyze", "--seq-len", "40"],
    "check": ["check", "--seq-len", "40"],
    "spectrum": ["spectrum", "--seq-len", "30"],
    "train": ["train", "--steps", "5"],
    "compare": ["compare", "--steps", "3", "--mitigations", "clip-norm"],
    "sweep": ["sweep", "--x", "spectral-radius=0.5,1.5", "--y", "seq-len=20,40", "--jobs", "1"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_dtype_and_reports_it(capsys, command):
    doc = run_json(capsys, *COMMANDS[command], "--dtype", "float32", "--json")
    assert doc["config"]["dtype"] == "float32" and doc["nonfinite_count"] == 0
    assert run_json(capsys, *COMMANDS[command], "--json")["config"]["dtype"] == "float64"


def test_dtype_is_a_case_insensitive_choice(capsys):
    assert run_json(capsys, "analyze", "--seq-len", "20", "--dtype", "FLOAT32", "--json")["config"]["dtype"] == "float32"
    assert main(["analyze", "--dtype", "float16"]) == 2
    assert "float16" in capsys.readouterr().err
    with pytest.raises(InputError, match="--dtype"):
        RunConfig(dtype="float16")


def test_the_float32_analysis_agrees_with_float64_to_the_stated_bound(capsys):
    runs = {dt: run_json(capsys, "analyze", "--seq-len", "300", "--init-gain", "0.5", "--dtype", dt, "--json")
            for dt in ("float64", "float32")}
    low, ref = runs["float32"], runs["float64"]
    assert abs(low["loss"] - ref["loss"]) <= LOSS_ERROR * abs(ref["loss"])
    logs64, logs32 = np.array(ref["log10_grad_norms"]), np.array(low["log10_grad_norms"])
    assert logs64[0] < -100  # below float32's smallest number: only the logs hold it
    back = np.arange(len(logs64), 0, -1)
    assert np.all(np.abs(logs32 - logs64) * np.log(10) <= back * LOG_NORM_ERROR_PER_STEP)
    assert low["regime"] == ref["regime"] == "vanishing"


def test_the_table_names_the_dtype_only_when_it_is_not_float64(capsys):
    main(["analyze", "--seq-len", "20", "--dtype", "float32"])
    assert "dtype=float32" in capsys.readouterr().out
    main(["analyze", "--seq-len", "20"])
    assert "dtype" not in capsys.readouterr().out


def test_build_casts_the_model_and_the_batch():
    setup = build(RunConfig(cell="lstm", seq_len=10, dtype="float32"))
    assert {p.dtype for p in setup.network.parameters().values()} == {np.dtype(np.float32)}
    assert setup.batch.x.dtype == np.float32
    text = build(RunConfig(task="text", seq_len=10, dtype="float32"))  # word vectors, (B, T, D)
    assert text.batch.x.ndim == 3 and text.batch.x.dtype == np.float32


def test_training_in_float32_stays_float32():
    result = train(RunConfig(task="adding", seq_len=20, dtype="float32"), TrainOptions(steps=5, optimizer="adam"))
    assert {p.dtype for p in result.network.parameters().values()} == {np.dtype(np.float32)}
    assert np.isfinite(result.final_loss)


def test_inputs_or_weights_beyond_float32_are_an_input_error(capsys, tmp_path):
    """A value that float32 cannot hold would become inf: exit 2 naming the option, not a run on inf."""
    x = np.zeros((2, 5, 3))
    x[1, 2, 0] = 1e39
    np.save(tmp_path / "x.npy", x)
    code = main(["analyze", "--inputs", str(tmp_path / "x.npy"), "--dtype", "float32"])
    err = capsys.readouterr().err
    assert code == 2 and "--dtype float32: the inputs hold values beyond its range" in err
    assert err.count("\n") == 1
    from gradscope.model.statedict import export_network

    setup = build(RunConfig(hidden_size=4, input_size=3))
    weights = export_network(setup.network, setup.layout)
    weights["rnn.weight_hh_l0"] = weights["rnn.weight_hh_l0"].copy()
    weights["rnn.weight_hh_l0"][0, 0] = -4e38
    with pytest.raises(InputError, match="the weights hold values beyond its range"):
        build(RunConfig(weights=weights, dtype="float32"))
    assert main(["analyze", "--inputs", str(tmp_path / "x.npy")]) == 0  # float64 holds it


def test_dtype_is_case_insensitive_everywhere_and_the_sweep_header_says_it(capsys):
    """As the flag takes FLOAT32, so do a settings file and Python; sweep's header names a float32 run."""
    assert RunConfig(dtype="FLOAT32").dtype == "float32"
    assert main(["sweep", "--dtype", "float32", "--x", "spectral-radius=0.5,1.5", "--y", "seq-len=20,40",
                 "--jobs", "1"]) == 0
    assert "dtype=float32" in capsys.readouterr().out.splitlines()[0]
