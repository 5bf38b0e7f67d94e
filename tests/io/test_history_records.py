"""Reading a recording (commands/history.py): files gradscope.torch.attach really wrote, light records,
and the files a run leaves behind while it writes (unfinished, malformed, empty), and following one
that grows."""

from __future__ import annotations

import json
import threading
import time

import jsonschema
import numpy as np
import pytest
from helpers import light_record, write_records

from gradscope.commands.history import follow, heatmap, history, layer_key, unpadded
from gradscope.errors import InputError
from gradscope.schemas import load_schema

BI = ((0, "forward"), (0, "reverse"), (1, "forward"), (1, "reverse"))


def record_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema("record"))


@pytest.fixture(scope="module")
def torch_recording(tmp_path_factory):
    """A 2-layer bidirectional nn.LSTM trained 6 steps with the recorder on every pass; pass 3 has a
    non-zero initial state, from which the recorder analyses it."""
    torch = pytest.importorskip("torch")
    import gradscope.torch as gt

    path = tmp_path_factory.mktemp("torch") / "grads.ndjson"
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)
    head = torch.nn.Linear(10, 1)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=0.05)
    with gt.attach(lstm, every=1, to=path):
        for step in range(1, 7):
            x = torch.randn(4, 9, 3)
            hx = None if step != 3 else (torch.ones(4, 4, 5), torch.zeros(4, 4, 5))
            _, (h, _) = lstm(x, hx)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                head(torch.cat([h[-2], h[-1]], 1)).squeeze(1), (x[:, 0, 0] > 0).float())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return path


@pytest.mark.torch
def test_a_file_attach_wrote_is_read_whole(torch_recording):
    lines = [json.loads(line) for line in torch_recording.read_text().splitlines()]
    validator = record_validator()
    for line in lines:  # every line the recorder writes is a record
        validator.validate(line)
        assert line["source"] == "torch" and line["measure"] == "full" and "dropout_left_out" not in line
    result = history(torch_recording)
    assert [p.step for p in result.passes] == [1, 2, 3, 4, 5, 6] and result.skipped == []
    # the pass given hx: analysed from it, with the gradient reaching it
    assert lines[2]["config"]["initial_state"] is not None and lines[2]["layers"][0]["initial_state"] is not None
    assert lines[1]["config"]["initial_state"] is None
    assert [(k["layer"], k["direction"]) for k in result.layers] == list(BI)
    assert result.seq_len == 9 and not result.padded and not result.incomplete_last_line
    assert layer_key(result, None, "forward") == (1, "forward")
    for p in result.passes:
        record = lines[p.line - 1]
        assert p.step == record["step"] and p.loss is None  # the recorder sees the gradient, not the loss
        for got, want in zip(p.layers, record["layers"], strict=True):
            assert (got.layer, got.direction) == (want["layer"], want["direction"])
            assert got.log10_grad_norms == want["log10_grad_norms"]
            assert got.slope == want["flow"]["slope"] and got.horizon == want["flow"]["horizon"]
            assert got.regime == want["flow"]["regime"] and got.log10_ratio == want["flow"]["log10_ratio"]
    # the heatmap is the records' logs, pass by pass: the flow's profile where the record has one
    # (the reverse direction: counted back from step 1), else the steps in order
    for layer, direction in BI:
        h = heatmap(result, layer, direction, None)
        want = [next(f for f in lines[p.line - 1]["layers"] if (f["layer"], f["direction"]) == (layer, direction))
                for p in result.passes]
        assert h.steps.tolist() == [1, 2, 3, 4, 5, 6] and h.counted_back == (direction == "reverse")
        drawn = [w["log10_grad_norms"] if w["log10_flow_norms"] is None else w["log10_flow_norms"] for w in want]
        np.testing.assert_array_equal(h.values, np.array(drawn, dtype=float))
        if direction == "reverse":  # unpadded: the steps in order, reversed
            np.testing.assert_array_equal(h.values, np.array([w["log10_grad_norms"][::-1] for w in want]))


def test_light_records_of_different_lengths_are_end_aligned(tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1, seq_len=5), light_record(2, seq_len=8), light_record(3, seq_len=3)])
    result = history(path)
    assert result.seq_len == 8 and result.padded
    assert [p.seq_len for p in result.passes] == [5, 8, 3]
    first = result.passes[0].layers[0].log10_grad_norms
    assert first[:3] == [None] * 3 and first[3:] == light_record(1, seq_len=5)["layers"][0]["log10_grad_norms"]
    h = heatmap(result, 0, "forward", None)
    assert h.lengths.tolist() == [5, 8, 3]
    assert np.isnan(h.values[2, :5]).all() and h.values[2, -1] == 0.0  # every readout end at t = 8
    assert unpadded(result.passes[2]).layers[0].log10_grad_norms == light_record(3, seq_len=3)["layers"][0]["log10_grad_norms"]


def test_runs_are_grouped_in_order_of_appearance_and_can_be_picked(tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1, run="none"), light_record(1, run="clip-norm"),
                         {"step": 2, "skipped": "why", "run": "none"}, light_record(2, run="clip-norm"),
                         light_record(3, run="none")])
    result = history(path)
    assert result.runs == ["none", "clip-norm"]
    assert [(p.run, p.step) for p in result.passes] == [("none", 1), ("none", 3), ("clip-norm", 1), ("clip-norm", 2)]
    assert heatmap(result, 0, "forward", "clip-norm").steps.tolist() == [1, 2]
    one = history(path, run="none")
    assert one.runs == ["none"] and [p.step for p in one.passes] == [1, 3] and len(one.skipped) == 1
    with pytest.raises(InputError, match=r"--run nope: no such run in .* \(runs: none, clip-norm\)"):
        history(path, run="nope")


def test_blank_lines_null_norms_and_extra_fields_are_fine(tmp_path):
    path = tmp_path / "r.ndjson"
    rec = light_record(7, seq_len=4, dropout_left_out=True, surprise={"any": "thing"})
    rec["layers"][0]["log10_grad_norms"][0] = None
    rec["layers"][0]["flow"]["horizon"] = None
    write_records(path, [rec], tail="\n  \n")
    p = history(path).passes[0]
    assert p.dropout_left_out and p.layers[0].log10_grad_norms[0] is None and p.layers[0].horizon is None


@pytest.mark.parametrize("tail, incomplete, steps", [
    ('{"step": 3, "loss": 0.1, "lay', True, [1, 2]),  # the writer is mid-line: left out
    (json.dumps(light_record(3)), False, [1, 2, 3]),  # whole, only its newline missing: taken
])
def test_the_last_line_may_be_unfinished(tmp_path, tail, incomplete, steps):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1), light_record(2)], tail=tail)
    result = history(path)
    assert [p.step for p in result.passes] == steps and result.incomplete_last_line is incomplete


@pytest.mark.parametrize("line, message", [
    ('{"step": 3, "loss": 0.1, "lay', r"line 2: not JSON \(Unterminated string"),
    ("[1, 2]", "line 2: not a gradscope record: a JSON list, not an object"),
    ('{"loss": 1}', "line 2: not a gradscope record: no 'step'"),
    ('{"step": 1.5, "loss": 1, "layers": []}', "step is 1.5, not a whole number"),
    ('{"step": 1, "loss": "low", "layers": []}', "loss is 'low', not a number or null"),
    ('{"step": 1, "loss": 1, "layers": []}', "layers is not a non-empty list"),
    ('{"step": 1, "event": "step"}', "line 2: not a gradscope record: no 'loss'"),
])
def test_a_malformed_line_before_the_last_names_its_line(tmp_path, line, message):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1)], tail=line + "\n" + json.dumps(light_record(3)) + "\n")
    with pytest.raises(InputError, match=message) as caught:
        history(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_value_deep_in_a_layer_is_named(tmp_path):
    rec = light_record(1)
    rec["layers"][0]["log10_grad_norms"][3] = "x"
    write_records(tmp_path / "r.ndjson", [rec])
    with pytest.raises(InputError, match=r"line 1: .*layers\[0\]\.log10_grad_norms\[3\] is 'x'"):
        history(tmp_path / "r.ndjson")
    rec = light_record(1)
    del rec["layers"][0]["flow"]["slope"]
    write_records(tmp_path / "r.ndjson", [rec])
    with pytest.raises(InputError, match=r"no layers\[0\]\.flow\.'slope'"):
        history(tmp_path / "r.ndjson")


def test_not_utf8_is_named(tmp_path):
    path = tmp_path / "r.ndjson"
    path.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(InputError, match="line 1: not UTF-8 text"):
        history(path)


def test_one_file_one_model(tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1), light_record(2, keys=BI)])
    with pytest.raises(InputError, match=r"line 2: layers \(0 forward, 0 reverse, 1 forward, 1 reverse\) differ "
                                         r"from line 1's \(0 forward\)"):
        history(path)


@pytest.mark.parametrize("content, message", [
    ("", "is empty: no records yet"),
    ("\n \n", "is empty: no records yet"),
    ('{"step": 1, "lo', "holds only an unfinished line"),
    ('{"step": 1, "skipped": "proj_size=2"}\n', r"every pass in .* was skipped \(1\), e\.g\. step 1: proj_size=2"),
])
def test_nothing_to_show_says_why(tmp_path, content, message):
    path = tmp_path / "r.ndjson"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        history(path)


def test_a_missing_file_or_a_folder(tmp_path):
    with pytest.raises(InputError, match="recording file not found"):
        history(tmp_path / "none.ndjson")
    with pytest.raises(InputError, match="is a directory, not a regular file"):
        history(tmp_path)


def test_layer_key_checks_the_recording(tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1, keys=((0, "forward"), (1, "forward")))])
    result = history(path)
    assert layer_key(result, None, "forward") == (1, "forward") and layer_key(result, 0, "forward") == (0, "forward")
    with pytest.raises(InputError, match=r"--layer 2: the recording has layer\(s\) 0, 1"):
        layer_key(result, 2, "forward")
    with pytest.raises(InputError, match="--direction reverse: layer 1 of the recording has only forward"):
        layer_key(result, None, "reverse")


# --- following a file as it grows ---------------------------------------------------------------


def append_slowly(path, records, pause: float, start: float = 0.0) -> threading.Thread:
    """A writer thread: each record in two pieces (a reader may see half a line), ``pause`` apart."""
    def write():
        time.sleep(start)
        with open(path, "a", encoding="utf-8") as fh:
            for r in records:
                line = json.dumps(r) + "\n"
                fh.write(line[:25])
                fh.flush()
                time.sleep(pause / 2)
                fh.write(line[25:])
                fh.flush()
                time.sleep(pause / 2)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_follow_yields_each_new_pass_once_and_waits_for_the_file(tmp_path):
    path = tmp_path / "r.ndjson"  # not there yet: follow waits for it
    writer = append_slowly(path, [light_record(1), light_record(2), {"step": 3, "skipped": "why"}, light_record(4)],
                           pause=0.1, start=0.2)
    updates = list(follow(path, interval=0.02, timeout=0.5))
    writer.join()
    new = [p.step for u in updates for p in u.new]
    assert new == [1, 2, 4]  # each pass once, in file order, never half a line
    assert [s.step for u in updates for s in u.new_skipped] == [3]
    assert [p.step for p in updates[-1].result.passes] == [1, 2, 4]
    assert not any(u.restarted for u in updates)


def test_follow_starts_again_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1), light_record(2), light_record(3)])

    def replace():
        time.sleep(0.2)
        write_records(path, [light_record(10)])  # a new run: "w" truncates

    thread = threading.Thread(target=replace, daemon=True)
    thread.start()
    updates = list(follow(path, interval=0.02, timeout=0.5))
    thread.join()
    assert [p.step for p in updates[0].new] == [1, 2, 3]
    restarted = [u for u in updates if u.restarted]
    assert len(restarted) == 1 and [p.step for p in restarted[0].result.passes] == [10]


def test_follow_takes_a_whole_last_line_at_the_end_and_says_when_nothing_came(tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1)], tail=json.dumps(light_record(2)))
    updates = list(follow(path, interval=0.02, timeout=0.1))
    assert [p.step for u in updates for p in u.new] == [1, 2]
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    with pytest.raises(InputError, match="is empty"):
        list(follow(empty, interval=0.02, timeout=0.1))
    with pytest.raises(InputError, match="recording file not found"):
        list(follow(tmp_path / "never.ndjson", interval=0.02, timeout=0.1))


def test_follow_stops_only_after_the_timeout_without_growth(tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1)])
    writer = append_slowly(path, [light_record(s) for s in range(2, 6)], pause=0.15)
    started = time.monotonic()
    updates = list(follow(path, interval=0.02, timeout=0.3))
    writer.join()
    assert [p.step for u in updates for p in u.new] == [1, 2, 3, 4, 5]
    assert time.monotonic() - started >= 0.5 + 0.3  # the writing (its last piece at 0.525 s), then the quiet


def test_a_whole_last_line_that_is_no_record_is_an_error_not_unfinished(tmp_path):
    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1)], tail='{"event": "summary"}')
    with pytest.raises(InputError, match="line 2: not a gradscope record: no 'step'"):
        history(path)


def test_gradscope_history_in_python(tmp_path):
    import gradscope

    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1), light_record(2, slope=-0.5)])
    result = gradscope.history(path)
    assert repr(result) == (f"<HistoryResult history: 2 passes of {path}, last (step 2) layer 0 forward: "
                            "vanishing, ratio 1/T 0.00409, horizon 2.0 steps>")
    assert result.to_dict()["passes"][1]["layers"][0]["slope"] == pytest.approx(-0.5)
    with pytest.raises(InputError, match=r"^run x: no such run"):  # the keyword's name, not the flag's
        gradscope.history(path, run="x")


@pytest.mark.parametrize("run, builds", [(None, 3), ("clip-norm", 1)])
def test_following_builds_only_the_new_passes_and_equals_reading_the_whole(tmp_path, monkeypatch, run, builds):
    """Each poll extends the last result (commands.history.extended) instead of building it all
    again; what it shows must be what history() reads from the file at that point, through new
    runs, skipped passes, shorter passes and a longer one (which aligns everything afresh)."""
    import gradscope.commands.history as history_module

    whole_builds = []
    build = history_module.build
    monkeypatch.setattr(history_module, "build", lambda *a, **k: whole_builds.append(1) or build(*a, **k))
    path = tmp_path / "r.ndjson"
    chunks = [
        [light_record(1, run="none"), light_record(1, run="clip-norm")],
        [{"step": 2, "skipped": "why", "run": "none"}, light_record(2, run="clip-norm", seq_len=9)],
        [light_record(3, run="none"), light_record(3, run="clip-norm")],
        [light_record(4, run="l2")],  # a run not seen before
        [light_record(5, run="none", seq_len=20), light_record(5, run="clip-norm")],  # longer than any
        [light_record(6, run="clip-norm", seq_len=4), light_record(6, run="l2"), light_record(7, run="none")],
    ]
    follower, written, read_whole = history_module.Follower(path, run), [], 0
    for chunk in chunks:
        written += chunk
        write_records(path, written)
        update = follower.update(follower.poll())
        if update is None:
            continue
        whole, read_whole = history(path, run), read_whole + 1
        assert update.result == whole
        mine = [r for r in chunk if "layers" in r and (run is None or r.get("run") == run)]
        assert [(p.run, p.step) for p in update.new] == [(r.get("run"), r["step"]) for r in mine]
    # built whole: at the first pass, at the run not seen before and at the longer pass (when every
    # run is shown), each history() above aside; every other poll extended the last result
    assert len(whole_builds) - read_whole == builds


@pytest.mark.parametrize("first_line_same", [False, True])
def test_a_file_rewritten_in_place_past_its_old_length_is_read_again(tmp_path, first_line_same):
    """A run that starts again opens the file with "w" (same inode) and may write past the old
    length before the next poll: the line last read is no longer where it was, so the file is
    read again from its start (it was read on from the old offset, mid-record: 'not JSON')."""
    from gradscope.commands.history import Follower

    path = tmp_path / "r.ndjson"
    write_records(path, [light_record(1), light_record(2, loss=0.25), light_record(3, loss=0.125)])
    follower = Follower(path)
    assert [p.step for p in follower.update(follower.poll()).new] == [1, 2, 3]
    again = [light_record(1)] if first_line_same else [light_record(100)]
    again += [light_record(step, seq_len=15, loss=0.5 + step) for step in range(2, 9)]
    write_records(path, again)  # "w": the same file, truncated, then longer than before
    update = follower.update(follower.poll())
    assert update.restarted
    assert [p.step for p in update.result.passes] == [r["step"] for r in again]
    assert update.result == history(path)
