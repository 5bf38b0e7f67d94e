"""Recordings written by ``train --record``, ``compare --record`` and gradscope.torch.attach(measure=
"flow"), read back by ``gradscope history``: every line a record of the schema, one flushed line per
recorded step, the records' numbers those of the passes they describe, compare's runs named."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

import gradscope
from gradscope.cli import main
from gradscope.commands.history import history
from gradscope.commands.train import batches, data_streams
from gradscope.config import RunConfig
from gradscope.experiment import build
from gradscope.profile import layer_flows
from gradscope.schemas import load_schema

SMALL = ["--seq-len", "12", "--hidden-size", "6", "--batch-size", "4", "--eval-size", "8"]


def lines(path) -> list[dict]:
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    validator = jsonschema.Draft202012Validator(load_schema("record"))
    for doc in docs:
        validator.validate(doc)
    return docs


def test_train_records_every_nth_step_and_history_reads_them(tmp_path, capsys):
    path = tmp_path / "train.ndjson"
    code = main(["train", "--steps", "7", "--record", str(path), "--record-every", "3", "--log-every", "1",
                 "--json", *SMALL])
    out = capsys.readouterr().out
    assert code == 0
    docs = lines(path)
    assert [d["step"] for d in docs] == [3, 6]
    assert all(d["source"] == "train" and d["measure"] == "flow" and "run" not in d for d in docs)
    logged = {r["step"]: r for r in json.loads(out)["history"]}
    for d in docs:  # the record's loss is the step's, as train logs it
        assert d["loss"] == logged[d["step"]]["loss"]
        assert d["layers"][0]["flow"]["ratio_first_last"] == pytest.approx(logged[d["step"]]["ratio_first_last"],
                                                                           rel=1e-12)
    result = history(path)
    assert [p.step for p in result.passes] == [3, 6] and result.runs == [None]
    assert [p.source for p in result.passes] == ["train", "train"]
    assert result.passes[0].layers[0].log10_grad_norms == docs[0]["layers"][0]["log10_grad_norms"]
    code = main(["history", str(path)])
    assert code == 0 and "written by train, measure flow" in capsys.readouterr().out


def test_the_first_record_is_the_flow_of_the_first_training_batch(tmp_path):
    """Step 1's record: every layer's per-step norms and flow of the untrained model on the first
    batch train draws, as analyze measures them (profile.layer_flows), digit for digit."""
    path = tmp_path / "one.ndjson"
    config = RunConfig(task="adding", seq_len=12, hidden_size=6, batch_size=4, cell="gru")
    gradscope.train(config, steps=1, eval_size=8, record=path, record_every=1)
    (doc,) = lines(path)
    setup = build(config)
    batch = next(batches(setup, data_streams(config.seed)[0], 12))
    (expected,) = layer_flows(setup.network, batch.x, batch.y, batch.mask)
    assert doc["layers"][0]["log10_grad_norms"] == expected.log10_grad_norms.tolist()
    assert doc["layers"][0]["flow"]["slope"] == expected.flow.slope
    assert doc["regime"] == expected.flow.regime


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_compare_records_name_their_run(tmp_path, capsys, jobs):
    path = tmp_path / "compare.ndjson"
    code = main(["compare", "--steps", "4", "--mitigations", "clip-norm", "--record", str(path), "--record-every",
                 "2", "--jobs", jobs, "--json", *SMALL])
    assert code == 0, capsys.readouterr().err
    docs = lines(path)
    assert sorted((d["run"], d["step"]) for d in docs) == [("clip-norm", 2), ("clip-norm", 4), ("none", 2),
                                                          ("none", 4)]
    assert all(d["source"] == "compare" for d in docs)
    result = history(path)
    assert sorted(result.runs) == ["clip-norm", "none"]
    one = history(path, run="clip-norm")
    assert [p.step for p in one.passes] == [2, 4] and all(p.run == "clip-norm" for p in one.passes)
    capsys.readouterr()
    assert main(["history", str(path), "--run", "none"]) == 0 and "run none" in capsys.readouterr().out


def test_several_seeds_are_runs_of_their_own(tmp_path):
    path = tmp_path / "seeds.ndjson"
    gradscope.train(task="adding", seq_len=8, hidden_size=4, batch_size=4, steps=2, eval_size=4, seeds=2,
                    record=path, record_every=1)
    assert [(d["run"], d["step"]) for d in lines(path)] == [("seed 0", 1), ("seed 0", 2), ("seed 1", 1),
                                                           ("seed 1", 2)]


def test_record_flags_are_checked_before_any_work(tmp_path, capsys):
    for argv, message in ((["--record", str(tmp_path / "r.txt")], "--record"),
                          (["--record", str(tmp_path / "r.ndjson"), "--record-every", "0"], "--record-every"),
                          (["--record", str(tmp_path / "missing" / "r.ndjson")], "--record")):
        code = main(["train", "--steps", "1", *argv, *SMALL])
        err = capsys.readouterr().err
        assert code == 2 and message in err, err
    with pytest.raises(gradscope.InputError, match="record_every must be a whole number"):
        gradscope.train(steps=1, record=tmp_path / "x.ndjson", record_every=0)


@pytest.mark.torch
def test_history_reads_the_light_records_the_hook_wrote(tmp_path):
    """attach(measure="flow") on a float32 2-layer nn.LSTM with dropout, some passes given hx."""
    torch = pytest.importorskip("torch")
    import gradscope.torch as gt

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 8, num_layers=2, dropout=0.5, batch_first=True)
    head = torch.nn.Linear(8, 1)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=0.01)
    path = tmp_path / "light.ndjson"
    with gt.attach(lstm, every=2, to=path, measure="flow"):
        for step in range(1, 7):
            x = torch.randn(5, 10, 3)
            hx = (torch.randn(2, 5, 8), torch.randn(2, 5, 8)) if step % 3 == 0 else None
            _, (h, _) = lstm(x, hx)
            loss = ((head(h[-1]).squeeze(1) - x[:, 0, 0]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    docs = lines(path)
    assert [d["step"] for d in docs] == [2, 4, 6]
    assert all(d["measure"] == "flow" and d["source"] == "torch" and d["dropout_left_out"] for d in docs)
    result = history(path)
    assert [p.step for p in result.passes] == [2, 4, 6] and all(p.dropout_left_out for p in result.passes)
    assert [(k["layer"], k["direction"]) for k in result.layers] == [(0, "forward"), (1, "forward")]
    assert all(np.isfinite([v for v in f.log10_grad_norms]).all() for p in result.passes for f in p.layers)


def test_a_light_records_verdict_is_the_top_layers_forward_where_layers_have_unlike_directions():
    """A Keras stack may put a one-way layer on a bidirectional one (or the reverse): the headline
    is found by its keys, not at (layers - 1) x the top's directions (that was layer 0 reverse)."""
    from gradscope.flow import Flow
    from gradscope.profile import LayerFlow
    from gradscope.recording import flow_report

    def layer(k, d, regime):
        return LayerFlow(k, d, Flow(1.0, 0.0, 0.0, 1.0, None, regime), np.zeros(3))

    bi_then_one = [layer(0, "forward", "vanishing"), layer(0, "reverse", "stable"), layer(1, "forward", "exploding")]
    one_then_bi = [layer(0, "forward", "vanishing"), layer(1, "forward", "exploding"), layer(1, "reverse", "stable")]
    assert flow_report(bi_then_one, None).regime == "exploding"
    assert flow_report(one_then_bi, None).regime == "exploding"
