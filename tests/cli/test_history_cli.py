"""`gradscope history FILE.ndjson` through the CLI: the table and the heatmap at 80 columns, the JSON,
the errors, --follow on a growing file, --report and --plot."""

from __future__ import annotations

import io
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from helpers import light_record, write_records
from rich.console import Console
from test_report import assert_self_contained

from gradscope.cli import main
from gradscope.commands.history import heatmap, history
from gradscope.render.common import num, num_log10
from gradscope.render.history import RAMP, binned, render_history
from gradscope.schemas import load_schema

TWO = ((0, "forward"), (1, "forward"))
BI = ((0, "forward"), (0, "reverse"), (1, "forward"), (1, "reverse"))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def valid(doc: dict) -> dict:
    jsonschema.Draft202012Validator(load_schema("history")).validate(doc)
    return doc


@pytest.fixture
def recording(tmp_path, monkeypatch):
    """50 light records of a 2-layer bidirectional model, the gradient fading faster as training goes;
    named as a user would, relative to the folder the command runs in."""
    monkeypatch.chdir(tmp_path)
    path = Path("run.ndjson")
    write_records(path, [light_record(10 * i, seq_len=30, keys=BI, slope=-0.02 * i, loss=1 / i)
                         for i in range(1, 51)])
    return path


def table_rows(out: str) -> list[list[str]]:
    """The rows of the first table: lines that start with a step number."""
    block = out.split("\n\n")[1]
    return [line.split() for line in block.splitlines() if re.match(r"\s*\d", line)]


def test_the_table_and_the_heatmap_read_at_80_columns(capsys, recording):
    code, out, err = run(capsys, "history", recording)
    assert code == 0 and err == ""
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "\x1b" not in out
    assert out.startswith(f"gradscope history  {recording}\n")
    assert "50 recorded passes, 2 layers x 2 directions, T=30" in out
    assert "written by train, measure flow" in out
    # four column groups do not fit 80 columns: two tables of two
    assert out.count("layer 0 forward") == 1 and out.count("layer 1 reverse") == 1
    assert len(re.findall(r"^step +loss +ratio", out, re.M)) == 2
    rows = table_rows(out)
    assert len(rows) == 20 and rows[0][0] == "10" and rows[-1][0] == "500"  # thinned, first and last kept
    assert "20 of 50 passes shown, evenly spaced (--all: every one)" in out
    assert "log10 ||dL/dh_t||, layer 1 forward\nrows: the training step; columns: the time step t" in out  # the headline


def test_all_shows_every_pass_and_rows_thins(capsys, recording):
    _, out, _ = run(capsys, "history", recording, "--all")
    assert len(table_rows(out)) == 50 and "passes shown" not in out
    _, out, _ = run(capsys, "history", recording, "--rows", "5")
    assert [r[0] for r in table_rows(out)] == ["10", "130", "250", "380", "500"]


def test_the_table_shows_the_json_figures(capsys, recording):
    _, out, _ = run(capsys, "history", recording, "--all", "--json")
    doc = valid(json.loads(out))
    assert doc["command"] == "history" and doc["nonfinite_count"] == 0
    assert len(doc["passes"]) == 50 and doc["seq_len"] == 30 and doc["runs"] == [None]
    _, table, _ = run(capsys, "history", recording, "--all")
    rows = table_rows(table)
    for entry, row in zip(doc["passes"], rows, strict=True):
        first = entry["layers"][0]
        assert row[:2] == [str(entry["step"]), num(entry["loss"])]
        assert row[2:6] == [num_log10(first["log10_ratio"], 2), num(first["slope"], 2),
                            f"{first['horizon']:.1f}" if first["horizon"] < 10 else f"{first['horizon']:.0f}",
                            first["regime"]]


def test_the_heatmap_is_the_records_logs(capsys, recording):
    """Each cell is the record's log10 norm (T = 30 fits the width: one step a column), drawn on the ramp."""
    records = [json.loads(line) for line in recording.read_text().splitlines()]
    result = history(recording)
    h = heatmap(result, 1, "reverse", None)
    np.testing.assert_array_equal(h.values, [r["layers"][3]["log10_grad_norms"] for r in records])
    b = binned(h, list(range(50)), 72)
    np.testing.assert_array_equal(b.values, h.values)
    _, out, _ = run(capsys, "history", recording, "--all", "--layer", "1", "--direction", "reverse")
    assert "log10 ||dL/dh_t||, layer 1 reverse\n" in out
    lines = out.splitlines()
    start = lines.index("step", lines.index(next(l for l in lines if l.startswith("log10 ||dL/dh_t||, layer 1"))))
    cells = [line[5:] for line in lines[start + 1:start + 51]]  # after "step" and a space
    lo, hi = np.nanmin(h.values), np.nanmax(h.values)
    for row, line in zip(h.values, cells):
        expected = "".join(RAMP[min(int((v - lo) / (hi - lo) * len(RAMP)), len(RAMP) - 1)] * 2 for v in row)
        assert line == expected
    assert f"log10 ||dL/dh_t||: {lo:.3g} {RAMP} {hi:.3g}" in out


def test_the_header_counts_a_stack_whose_layers_read_both_ways_or_one(capsys, tmp_path):
    """A Bidirectional LSTM under a GRU (a Keras stack): two layers, one of them bidirectional."""
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1, keys=((0, "forward"), (0, "reverse"), (1, "forward")))])
    code, out, _ = run(capsys, "history", path)
    assert code == 0 and "1 recorded pass, 2 layers (1 bidirectional), T=12" in out


def test_long_sequences_are_binned_and_nulls_and_padding_shown(capsys, tmp_path):
    path = tmp_path / "r.ndjson"
    short = light_record(2, seq_len=100)
    short["layers"][0]["log10_grad_norms"][-4:] = [None] * 4  # zero gradients: a whole bin of 4 steps
    write_records(path, [light_record(1, seq_len=300), short])
    code, out, _ = run(capsys, "history", path)
    assert code == 0
    assert "300 time steps in 75 columns, each the mean log10 of its steps" in out
    assert "end-aligned: t = 300 is the readout's step in every pass" in out
    row = [line for line in out.splitlines() if line.startswith("   2 ")][-1]  # the heatmap's, after the table's
    assert row[5:55] == " " * 50 and row[55] != " " and row.endswith("!")  # padding, the steps, the nulls
    assert "! the norm is 0 or not finite (null); blank: before a shorter pass's first step" in out


def test_colour_is_a_scale_and_no_colour_a_ramp(recording):
    result = history(recording)
    coloured = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=80)
    render_history(result, coloured, rows=4)
    text = coloured.file.getvalue()
    assert "\x1b[48;2;" in text  # background colours
    plain = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=80, no_color=True)
    render_history(result, plain, rows=4)
    assert "\x1b[48;2;" not in plain.file.getvalue() and RAMP in plain.file.getvalue()


def test_runs_get_a_table_and_a_heatmap_each(capsys, tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(s, run=run) for s in (1, 2, 3) for run in ("none", "clip-norm")])
    code, out, _ = run(capsys, "history", path)
    assert code == 0 and "runs: none, clip-norm" in out
    assert out.index("run none") < out.index("run clip-norm")
    assert "layer 0 forward, run none\n" in out and "layer 0 forward, run clip-norm\n" in out
    assert out.count("no loss in the records") == 0  # light records have their loss
    code, out, _ = run(capsys, "history", path, "--run", "clip-norm", "--json")
    assert {p["run"] for p in valid(json.loads(out))["passes"]} == {"clip-norm"}


def test_skipped_passes_and_an_unfinished_last_line_are_reported(capsys, tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1), {"step": 2, "skipped": "proj_size=4: not modelled"}, light_record(3)],
                  tail='{"step": 4, "lo')
    code, out, err = run(capsys, "history", path)
    assert code == 0
    assert "1 pass skipped by the recorder, e.g. step 2: proj_size=4: not modelled" in out
    assert err == f"gradscope: warning: the last line of {path} is unfinished (a run still writing it?): left out\n"
    code, out, err = run(capsys, "history", path, "--json", "-q")
    doc = valid(json.loads(out))
    assert code == 0 and err == ""
    assert doc["skipped"] == [{"step": 2, "run": None, "reason": "proj_size=4: not modelled", "line": 2}]
    assert doc["incomplete_last_line"] is True


def test_no_loss_and_dropout_left_out_are_said(capsys, tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1, loss=None), light_record(2, loss=None, dropout_left_out=True)])
    _, out, _ = run(capsys, "history", path)
    assert "no loss in the records\n" in out and "loss" not in out.split("\n\n")[1].splitlines()[1]
    assert re.search(r"^ +2\* ", out, re.M) and "* dropout left out" in out
    write_records(path, [{k: v for k, v in light_record(s, loss=None, run=r).items() if k != "source"}
                         for s in (1, 2) for r in ("a", "b")])
    _, out, _ = run(capsys, "history", path)  # once, and why, for a file as gradscope.torch writes them
    assert out.count("no loss in the records (gradscope.torch sees the gradient, not the loss)") == 1


@pytest.mark.parametrize("argv, message", [
    (["--layer", "2"], r"--layer 2: the recording has layer\(s\) 0, 1"),
    (["--direction", "reverse"], "--direction reverse: layer 1 of the recording has only forward"),
    (["--run", "clip"], "--run clip: no such run"),
    (["--follow-timeout", "3"], "--follow-timeout goes with --follow"),
    (["--rows", "1"], "--rows must be >= 2"),
])
def test_bad_options_are_one_line_and_exit_2(capsys, tmp_path, argv, message):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1, keys=TWO)])
    code, out, err = run(capsys, "history", path, *argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert re.search(message, err), err


@pytest.mark.parametrize("content, message", [
    ("", "is empty: no records yet"),
    (json.dumps(light_record(1)) + "\n{oops}\n" + json.dumps(light_record(2)) + "\n",
     r"line 2: not JSON \(Expecting property name enclosed in double quotes at column 2\)"),
])
def test_bad_files_are_one_line_and_exit_2(capsys, tmp_path, content, message):
    path = tmp_path / "r.ndjson"
    path.write_text(content)
    code, out, err = run(capsys, "history", path)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert re.search(message, err), err
    code, out, err = run(capsys, "history", tmp_path / "missing.ndjson")
    assert code == 2 and "recording file not found" in err


# --- --follow -----------------------------------------------------------------------------------


def start(argv: list[str]) -> tuple[subprocess.Popen, queue.Queue]:
    """``gradscope ARGV`` with stdout on a pipe, and a queue its stdout lines arrive on."""
    proc = subprocess.Popen([sys.executable, "-m", "gradscope", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def append(path, record: dict, split: bool = True) -> None:
    """One record, in two writes when ``split`` (the reader may see half of it for a while)."""
    line = json.dumps(record) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[:30] if split else line)
        fh.flush()
        if split:
            time.sleep(0.6)  # longer than a poll: the reader sees the half line
            fh.write(line[30:])


@pytest.mark.parametrize("as_json", [False, True], ids=["rows", "ndjson"])
def test_follow_on_a_pipe_prints_each_pass_as_it_arrives_and_ctrl_c_ends_it(tmp_path, as_json):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1, keys=TWO, slope=-0.1)])
    proc, lines = start(["history", str(path), "--follow", *(["--json"] if as_json else [])])
    try:
        if not as_json:  # the group names and the header, once
            assert "layer 0 forward" in lines.get(timeout=30) and "step" in lines.get(timeout=5)
        seen = [lines.get(timeout=30)]
        for step in (2, 3):  # each row is out before the next record is written
            append(path, light_record(step, keys=TWO, slope=-0.1 * step))
            seen.append(lines.get(timeout=10))
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and err == ""  # Ctrl-C is how --follow stops: no error
    if as_json:
        passes = [json.loads(line) for line in seen]
        assert [p["step"] for p in passes] == [1, 2, 3]
        assert [p["layers"][1]["slope"] for p in passes] == [light_record(s, keys=TWO, slope=-0.1 * s)["layers"][1]
                                                              ["flow"]["slope"] for s in (1, 2, 3)]
        entry = jsonschema.Draft202012Validator({"$ref": "#/$defs/pass", "$defs": load_schema("history")["$defs"]})
        for p in passes:  # each line is an entry of --json's passes
            entry.validate(p)
    else:
        assert [line.split()[0] for line in seen] == ["1", "2", "3"]
        assert seen[2].split()[2:4] == [num_log10(-0.3 * 11 / np.log(10), 2), num(-0.3, 2)]


def test_follow_stops_after_the_timeout_and_writes_the_page(capsys, tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1)])
    writer = threading.Thread(target=lambda: [append(path, light_record(s), split=False) or time.sleep(0.3)
                                              for s in (2, 3)], daemon=True)
    writer.start()
    started = time.monotonic()
    code, out, err = run(capsys, "history", path, "--follow", "--follow-timeout", "1",
                         "--report", tmp_path / "r.html")
    writer.join()
    assert code == 0 and err == "" and time.monotonic() - started >= 1
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["1", "2", "3"]
    assert (tmp_path / "r.html").stat().st_size > 1000


@pytest.mark.parametrize("as_json", [False, True])
def test_follow_on_a_pipe_says_on_stderr_which_passes_the_recorder_skipped(capsys, tmp_path, as_json):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1), {"step": 2, "skipped": "proj_size=4"}, light_record(3),
                         {"step": 4, "skipped": "proj_size=4"}, {"step": 5, "skipped": "another"}])
    code, out, err = run(capsys, "history", path, "--follow", "--follow-timeout", "0.2",
                         *(["--json"] if as_json else []))
    assert code == 0
    assert err.count("proj_size=4") == 1 and "step 2" in err and "another" in err  # once per reason
    steps = [json.loads(line)["step"] for line in out.splitlines()] if as_json else \
        [line.split()[0] for line in out.splitlines()[2:]]
    assert steps == ([1, 3] if as_json else ["1", "3"])  # stdout: the passes alone


def test_follow_waits_and_says_when_nothing_came(capsys, tmp_path):
    code, out, err = run(capsys, "history", tmp_path / "later.ndjson", "--follow", "--follow-timeout", "0.6")
    assert code == 2 and out == "" and "recording file not found" in err


# --- --report and --plot ------------------------------------------------------------------------


def test_report_is_one_self_contained_page_with_the_view_and_a_heatmap_per_layer(capsys, tmp_path, recording,
                                                                             monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the heatmaps are gradscope's own SVG
    page_path = tmp_path / "h.html"
    code, out, err = run(capsys, "history", recording, "--report", page_path)
    assert code == 0 and err == ""
    page = page_path.read_text(encoding="utf-8")
    parsed = assert_self_contained(page)
    view, heading = "".join(parsed.pre), "log10 ||dL/dh_t||, layer 1 forward\n"
    assert view.split(heading)[0] == out.split(heading)[0]  # the terminal's tables, line for line
    assert "background-color: #" in page and RAMP not in view  # its heatmap in colour
    assert page.count("<svg") == 4 and page.count("</svg>") == 4  # each layer and direction
    assert "pip install" not in page
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        root = ET.fromstring(svg)
        assert len(root.findall("rect")) > 40 and "log10 ||dL/dh_t||" in svg
    assert "<figcaption>log10 ||dL/dh_t||, layer 1 reverse</figcaption>" in page


def test_plot_draws_the_heatmap_and_the_ratio(capsys, tmp_path, recording):
    pytest.importorskip("matplotlib")
    for suffix in ("png", "svg"):
        picture = tmp_path / f"h.{suffix}"
        code, out, err = run(capsys, "history", recording, "--plot", picture)
        assert code == 0 and err == "" and out.startswith("gradscope history")
        assert picture.stat().st_size > 10_000
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install_it(capsys, tmp_path, recording, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(capsys, "history", recording, "--plot", tmp_path / "h.png")
    assert code == 2 and out == ""
    assert err.strip() == ("gradscope: error: --plot needs matplotlib, which is not installed: "
                           "pip install 'gradscope-bptt[plot]'")


def test_the_live_views_widths_grown_poll_by_poll_are_those_of_every_pass(tmp_path):
    """--follow's live view measures each poll's new passes only (render.history.widened); the
    widths, and so the rows that fit, are those of all the passes measured at once."""
    from gradscope.commands.history import Follower
    from gradscope.render.history import _columns, rows_to_fit, widened

    path, written, columns = tmp_path / "r.ndjson", [], None
    follower = Follower(path)
    for chunk in ([light_record(1, loss=None)], [light_record(2, keys=((0, "forward"),), loss=123.456789)],
                  [light_record(30000, slope=-7.0), light_record(4, loss=None)]):
        written += chunk
        write_records(path, written)
        update = follower.update(follower.poll())
        columns = widened(columns, update.result, update.new)
        assert columns == _columns(update.result, update.result.passes)
        assert rows_to_fit(update.result, 80, 40, None, columns) == rows_to_fit(update.result, 80, 40, None)
