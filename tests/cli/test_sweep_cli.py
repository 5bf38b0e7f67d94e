"""`gradscope sweep` through the CLI: the heatmap, the JSON, the grid grammar, processes and Dask."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import jsonschema
import numpy as np
import pytest

from gradscope.commands.analyze import analyze
from gradscope.cli import main
from gradscope.config import RunConfig
from gradscope.schemas import load_schema
from gradscope.commands.sweep import evaluate, parse_axis, plan_sweep, run_sweep

SMALL = ["--hidden-size", "6", "--batch-size", "4"]
GRID = ["--x", "spectral_radius=0.5,1,2", "--y", "seq_len=5,20"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sweep_json(capsys, *argv) -> dict:
    code, out, err = run(capsys, "sweep", *SMALL, *argv, "--json")
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.Draft202012Validator(load_schema("sweep")).validate(doc)
    return doc


def test_heatmap_reads_on_a_pipe_within_80_columns(capsys):
    code, out, err = run(capsys, "sweep", *SMALL, "--jobs", "1")
    assert code == 0 and err == ""  # no progress bar on a pipe
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines) and "\x1b" not in out
    rows = [line.split(" |") for line in lines if re.match(r"\s*\d+ \|", line)]
    assert [label.strip() for label, _ in rows] == ["100", "50", "20", "10"]  # largest T on top
    assert all(len(cells) == 64 for _, cells in rows)  # 16 radii, 4 characters each
    assert "spectral_radius" in out and "Legend" in out and "(stable)" in out
    assert set("".join(cells for _, cells in rows)) <= set("=-.o+*#!")


def test_json_grid_and_values(capsys):
    doc = sweep_json(capsys, *GRID, "--jobs", "1")
    assert doc["x"] == {"name": "spectral_radius", "values": [0.5, 1.0, 2.0]}
    assert doc["y"] == {"name": "seq_len", "values": [5, 20]}
    (heatmap,) = doc["maps"]
    assert (heatmap["cell"], heatmap["activation"]) == ("rnn", "tanh")
    assert np.array(heatmap["values"]).shape == (2, 3) and len(heatmap["crossings"]) == 2
    # The metric at a point is exactly analyze's end-to-end ratio, in log10.
    point = analyze(RunConfig(hidden_size=6, batch_size=4, spectral_radius=1.0, seq_len=20))
    assert heatmap["values"][1][1] == pytest.approx(point.flow.log10_ratio, rel=1e-12)
    assert doc["scale"]["stable"] == [-2.0, 2.0]
    assert doc["scale"]["limit"] == pytest.approx(max(abs(v) for row in heatmap["values"] for v in row))


def test_lyapunov_metric_is_the_leading_exponent(capsys):
    doc = sweep_json(capsys, *GRID, "--metric", "lyapunov", "--transient", "2", "--jobs", "1")
    assert doc["metric"] == "lyapunov" and doc["transient"] == 2
    config = RunConfig(hidden_size=6, batch_size=4, spectral_radius=2.0, seq_len=5, cell="rnn", activation="tanh")
    assert doc["maps"][0]["values"][0][2] == pytest.approx(evaluate(config, "lyapunov", 2), rel=1e-12)


def test_one_map_per_supported_combination_and_the_rest_listed(capsys):
    doc = sweep_json(capsys, *GRID, "--cells", "rnn,gru", "--activations", "tanh,relu", "--jobs", "1")
    assert [(m["cell"], m["activation"]) for m in doc["maps"]] == [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh")]
    assert doc["skipped"] == [{"cell": "gru", "activation": "relu", "reason": "gru supports --activation tanh"}]
    code, out, _ = run(capsys, "sweep", *SMALL, *GRID, "--cells", "rnn,gru", "--activations", "tanh,relu", "--jobs", "1")
    assert "rnn / relu" in out and "gru / tanh" in out and "skipped gru / relu" in out


def test_weights_fix_the_cell_and_the_grid_rescales_them(capsys, tmp_path):
    weights = tmp_path / "lstm.npz"
    assert main(["analyze", "--cell", "lstm", *SMALL, "--save-weights", str(weights)]) == 0
    capsys.readouterr()
    doc = sweep_json(capsys, *GRID, "--weights", str(weights), "--jobs", "1")
    assert [m["cell"] for m in doc["maps"]] == ["lstm"] and doc["config"]["weights"] == str(weights)
    code, _, err = run(capsys, "sweep", *GRID, "--weights", str(weights), "--cells", "rnn")
    assert code == 2 and f"--cells rnn: {weights} holds a lstm model" in err


def test_two_processes_give_the_same_bytes_as_one(capsys):
    argv = [*GRID, "--cells", "rnn,lstm", "--metric", "lyapunov"]
    one = run(capsys, "sweep", *SMALL, *argv, "--json", "--jobs", "1")[1]
    two = run(capsys, "sweep", *SMALL, *argv, "--json", "--jobs", "2")[1]
    assert one == two and json.loads(one)["maps"][1]["cell"] == "lstm"


def test_overflowing_points_are_null_and_counted(capsys):
    doc = sweep_json(capsys, "--activations", "linear", "--x", "spectral_radius=1,3", "--y", "seq_len=5,2000", "--jobs", "1")
    values = doc["maps"][0]["values"]
    assert values[1][1] is None and values[0][0] is not None
    assert doc["nonfinite_count"] >= 1
    code, out, _ = run(capsys, "sweep", *SMALL, "--activations", "linear", "--x", "spectral_radius=1,3",
                       "--y", "seq_len=5,2000", "--jobs", "1")
    assert code == 0 and "!" in [line for line in out.splitlines() if line.strip().startswith("2000")][0]


@pytest.mark.parametrize("text, expected", [
    ("spectral_radius=0.5:2:4", ("spectral_radius", [0.5, 1.0, 1.5, 2.0])),
    ("seq-len=10,20,50", ("seq_len", [10, 20, 50])),
    ("seq_len=10:1000:3:log", ("seq_len", [10, 100, 1000])),
    ("hidden_size=2:10:3", ("hidden_size", [2, 6, 10])),
    ("init_gain=2,0.5", ("init_gain", [2.0, 0.5])),
])
def test_axis_grammar(text, expected):
    axis = parse_axis(text, "--x")
    assert (axis.name, axis.values) == expected


@pytest.mark.parametrize("argv, message", [
    (["--x", "spectral_radius"], "--x takes NAME=VALUES"),
    (["--x", "colour=1,2"], "'colour' is not a numeric setting"),
    (["--x", "spectral_radius=1,abc"], "'abc' is not a number"),
    (["--x", "spectral_radius=0.5:2"], "START:STOP:COUNT"),
    (["--x", "spectral_radius=0.5:2:1"], "COUNT must be a whole number from 2"),
    (["--x", "spectral_radius=0:2:4:log"], "positive ends"),
    (["--x", "spectral_radius=-1,1"], "--spectral-radius must be a positive finite number"),
    (["--y", "seq_len=2.5,3"], "takes whole numbers"),
    (["--y", "seq_len=1:3:10"], "values repeat"),
    (["--x", "seq_len=1,2"], "--x and --y both sweep seq_len"),
    (["--seq-len", "30"], "--seq-len 30 conflicts with --y"),
    (["--transient", "3"], "--transient applies to --metric lyapunov only"),
    (["--cells", "rnn,,gru"], "--cells takes names separated by commas"),
    (["--cells", "transformer"], "unknown cell 'transformer'"),
    (["--activations", "swish"], "unknown activation 'swish'"),
    (["--cells", "gru", "--activations", "relu"], "no combination"),
    (["--jobs", "2", "--scheduler", "tcp://localhost:8786"], "--jobs sets local processes"),
])
def test_bad_grids_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, "sweep", *SMALL, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_dask_cluster_gives_the_same_result_as_local_processes(capsys):
    distributed = pytest.importorskip("distributed")
    local = run(capsys, "sweep", *SMALL, *GRID, "--json", "--jobs", "1")[1]
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        code, remote, err = run(capsys, "sweep", *SMALL, *GRID, "--json", "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    assert remote == local


def test_without_dask_the_scheduler_is_a_clear_error(capsys, monkeypatch):
    for name in ("dask", "dask.distributed", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    code, out, err = run(capsys, "sweep", *SMALL, *GRID, "--scheduler", "tcp://localhost:8786")
    assert code == 2 and out == ""
    assert err.strip() == "gradscope: error: --scheduler needs Dask: pip install 'gradscope-bptt[dask]'"


def test_progress_bar_on_a_terminal_stderr_only():
    argv = [sys.executable, "-m", "gradscope", "sweep", *SMALL, *GRID, "--jobs", "2"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""  # pipes: no bar anywhere
    assert proc.stdout.startswith("gradscope sweep")
    leader, follower = os.openpty()  # stderr a terminal, stdout still a pipe
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=follower, text=True, timeout=120)
    finally:
        os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: all read
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.returncode == 0 and b"grid points" in seen
    assert "grid points" not in proc.stdout and "\x1b" not in proc.stdout


def test_crossings_interpolate_where_a_row_changes_sign():
    from gradscope.commands.sweep import crossings

    values = np.array([[-2.0, -1.0, 1.0, 3.0], [-1.0, math.inf, -1.0, 1.0], [1.0, 2.0, -1.0, -2.0]])
    assert crossings(values, [0.0, 1.0, 2.0, 3.0]) == [1.5, 0.5, None]
    # an axis given downwards (2:1:3) crosses where the same axis upwards does
    assert crossings(values[:, ::-1], [3.0, 2.0, 1.0, 0.0]) == [1.5, 0.5, None]


def test_automatic_jobs_give_the_same_grid_as_one_job():
    plan = plan_sweep(RunConfig(hidden_size=4, batch_size=2), "spectral_radius=0.5,1,2", "seq_len=5,10")
    auto, one = run_sweep(plan, None), run_sweep(plan, 1)
    assert np.array_equal(auto.maps[0].values, one.maps[0].values, equal_nan=True)


def test_a_seed_axis_where_nothing_is_drawn_is_refused(tmp_path, capsys):
    """--weights and a whole batch (--inputs, --targets) leave nothing to chance: every seed would
    be the same point; and --output-grads of the file's T cannot follow a seq_len axis."""
    from gradscope.cli import main

    weights = tmp_path / "w.npz"
    rng = np.random.default_rng(0)
    np.savez(weights, **{"rnn.weight_ih_l0": rng.normal(size=(4, 2)), "rnn.weight_hh_l0": rng.normal(size=(4, 4)),
                         "rnn.bias_ih_l0": np.zeros(4), "rnn.bias_hh_l0": np.zeros(4),
                         "fc.weight": rng.normal(size=(1, 4)), "fc.bias": np.zeros(1)})
    np.save(tmp_path / "x.npy", rng.normal(size=(3, 5, 2)))
    np.save(tmp_path / "y.npy", rng.normal(size=(3, 1)))
    np.save(tmp_path / "g.npy", rng.normal(size=(3, 5, 4)))
    files = ["--weights", str(weights), "--inputs", str(tmp_path / "x.npy")]
    for argv, message in (([*files, "--targets", str(tmp_path / "y.npy"), "--loss", "mse", "--y", "seed=0,1"],
                           "--y seed: nothing here is drawn at random"),
                          ([*files, "--output-grads", str(tmp_path / "g.npy")],
                           "--output-grads holds the gradient at the inputs' 5 steps")):
        assert main(["sweep", *argv]) == 2
        out, err = capsys.readouterr()
        assert out == "" and message in err and len(err.splitlines()) == 1
    # random targets are drawn by the seed: that axis stands
    assert main(["sweep", *files, "--y", "seed=0,1", "--jobs", "1"]) == 0
