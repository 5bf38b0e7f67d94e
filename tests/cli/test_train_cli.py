"""`gradscope train` through the CLI: the table, the JSON and its schema, the NDJSON stream, files,
exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import numpy as np
import pytest

from gradscope.cli import main
from gradscope.schemas import load_schema

SMALL = ["--seq-len", "10", "--hidden-size", "6", "--batch-size", "8", "--eval-size", "16"]
EXPLODING = ["--activation", "relu", "--spectral-radius", "3", "--optimizer", "sgd", "--seq-len", "30"]


def run(capsys, *argv):
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def schema_errors(doc: dict, schema: dict | None = None) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema or load_schema("train"))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_json_report_is_valid_and_complete(capsys):
    code, out, err = run(capsys, *SMALL, "--steps", "30", "--log-every", "10", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert schema_errors(doc) == []
    assert doc["command"] == "train" and doc["mitigation"] == "none" and doc["status"] == "completed"
    assert doc["diverged"] is False and doc["steps"] == 30 and doc["baseline_loss"] == pytest.approx(1 / 6)
    assert [r["step"] for r in doc["history"]] == [1, 10, 20, 30]
    assert doc["config"]["task"] == "adding"  # train's default task can be learned
    assert doc["training"] == {"steps": 30, "optimizer": "adam", "lr": 0.01, "momentum": 0.9,
                               "log_every": 10, "eval_size": 16}


def test_schema_rejects_a_history_record_that_drifted(capsys):
    _, out, _ = run(capsys, *SMALL, "--steps", "2", "--json")
    doc = json.loads(out)
    doc["history"][0]["surprise"] = 1
    assert schema_errors(doc)


def test_a_diverged_run_is_a_report_not_a_crash(capsys):
    code, out, err = run(capsys, *EXPLODING, "--steps", "20", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert schema_errors(doc) == []
    assert doc["diverged"] is True and doc["status"] == f"diverged at step {doc['diverged_at']}"
    assert doc["nonfinite_count"] > 0 and doc["max_grad_norm"] is None  # inf is written as null
    code, out, err = run(capsys, *EXPLODING, "--steps", "20")
    assert code == 0 and err == "" and f"status: diverged at step {doc['diverged_at']}" in out


def test_ndjson_streams_one_valid_line_per_logged_step_then_the_summary(capsys):
    code, out, err = run(capsys, *SMALL, "--steps", "12", "--log-every", "5", "--mitigation", "clip-norm",
                         "--ndjson")
    assert code == 0 and err == ""
    lines = [json.loads(line) for line in out.splitlines()]  # each line is one JSON document
    assert all("\n" not in line for line in out.splitlines())
    steps, summary = lines[:-1], lines[-1]
    assert [r["event"] for r in steps] == ["step"] * 4 and [r["step"] for r in steps] == [1, 5, 10, 12]
    schema = load_schema("train")
    record = {"$defs": schema["$defs"], "$ref": "#/$defs/record"}
    for line in steps:
        assert schema_errors({k: v for k, v in line.items() if k != "event"}, record) == []
    assert summary["event"] == "summary" and "history" not in summary
    full = {**{k: v for k, v in summary.items() if k != "event"}, "history": [
        {k: v for k, v in line.items() if k != "event"} for line in steps]}
    assert schema_errors(full) == []  # the stream holds the --json document, split up
    assert summary["mitigation"] == "clip-norm" and summary["mitigation_settings"] == {"clip_threshold": 1.0}


def test_table_shows_the_loss_against_the_baseline_at_80_columns(capsys):
    code, out, err = run(capsys, *SMALL, "--steps", "40", "--log-every", "2", "--mitigation", "clip-norm",
                         "--clip-threshold", "0.5")
    assert code == 0 and err == ""
    assert "trivial baseline 0.1667" in out and "status: completed" in out
    assert "mitigation clip-norm (--clip-threshold 0.5)" in out and "clipped to" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 15  # 21 logged steps, subsampled
    assert rows[0].split()[0] == "1" and rows[-1].split()[0] == "40"
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "\x1b" not in out


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be a whole number of at least 1"),
    (["--lr", "-1"], "--lr must be a positive finite number"),
    (["--momentum", "1.5"], "--momentum must be in [0, 1)"),
    (["--mitigation", "magic"], "unknown mitigation 'magic'; choose one of clip-norm, clip-value"),
    (["--mitigation", "l2", "--clip-threshold", "2"], "--clip-threshold applies only to the clip-norm"),
    (["--mitigation", "l2", "--l2", "0"], "--l2 must be a positive finite number"),
    (["--json", "--ndjson"], "--json and --ndjson are alternatives"),
    (["--optimizer", "rmsprop"], "--optimizer: no such choice 'rmsprop' (sgd, adam)"),
    (["--mitigation", "omega", "--cell", "gru"], "omega needs the vanilla rnn"),
    # the held-out batch is refused before it is drawn, as the training batch is
    (["--record-every", "3"], "--record-every applies with --record FILE"),
    (["--eval-size", "2000000", "--max-memory", "100M"], "--eval-size 2000000: T=10, H=6 needs about"),
])
def test_bad_values_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *SMALL, "--steps", "2", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_save_weights_writes_a_state_dict_that_analyze_loads(tmp_path, capsys):
    path = tmp_path / "trained.npz"
    code, _, _ = run(capsys, *SMALL, "--steps", "5", "--cell", "gru", "--save-weights", str(path))
    assert code == 0
    with np.load(path) as saved:
        assert saved["rnn.weight_hh_l0"].shape == (18, 6) and saved["fc.weight"].shape == (1, 6)
    code = main(["analyze", "--weights", str(path), "--task", "adding", "--loss", "mse", "--seq-len", "10",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["config"]["cell"] == "gru"


def test_ndjson_is_flushed_line_by_line_to_a_pipe():
    """A subprocess on pipes: no progress bar, no ANSI, every line JSON, and stderr empty."""
    proc = subprocess.run([sys.executable, "-m", "gradscope", "train", *SMALL, "--steps", "6",
                           "--log-every", "3", "--ndjson"], capture_output=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == b""
    events = [json.loads(line)["event"] for line in proc.stdout.decode().splitlines()]
    assert events == ["step", "step", "step", "summary"]


def test_plot_draws_the_loss_curve_beside_the_table(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "loss.png"
    code, out, err = run(capsys, *SMALL, "--steps", "6", "--log-every", "2", "--plot", str(path))
    assert code == 0 and err == "" and out.startswith("gradscope train")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    code, out, err = run(capsys, *SMALL, "--steps", "6", "--plot", str(tmp_path / "loss.txt"))
    assert code == 2 and out == "" and "must end in .png or .svg" in err
