"""The temporal-order and copy tasks: shapes, symbols and positions, targets, baselines, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradscope import analyze
from gradscope.cli import main
from gradscope.config import RunConfig
from gradscope.errors import InputError
from gradscope.experiment import build
from gradscope.model.losses import get_loss
from gradscope.tasks import TASKS, TaskShape, make_task
from gradscope.tasks import copy as copy_task
from gradscope.tasks import temporal_order as order


def draw(name: str, batch: int, seq_len: int, seed: int = 0):
    task = make_task(name)
    shape = task.resolve(None, None, None)
    return task, shape, task.sample(np.random.default_rng(seed), batch, seq_len, shape)


# --- registry and interface ---------------------------------------------------------------------


def test_both_tasks_are_registered_with_their_sizes_loss_and_readout():
    assert TASKS["temporal-order"] is order.TemporalOrderTask
    assert TASKS["copy"] is copy_task.CopyTask
    assert make_task("temporal-order").resolve(None, None, None) == TaskShape(8, 4, "ce", "last")
    assert make_task("copy").resolve(None, None, None) == TaskShape(10, 9, "ce", "every")
    assert make_task("temporal-order").default_seq_len == 100
    assert make_task("copy").default_seq_len == 120


@pytest.mark.parametrize("name", ["temporal-order", "copy"])
def test_same_seed_same_bytes_other_seed_other_batch(name):
    _, _, a = draw(name, 8, 40, seed=5)
    _, _, b = draw(name, 8, 40, seed=5)
    _, _, c = draw(name, 8, 40, seed=6)
    assert a.x.tobytes() == b.x.tobytes() and a.y.tobytes() == b.y.tobytes()
    assert a.x.shape != c.x.shape or not np.array_equal(a.x, c.x)


@pytest.mark.parametrize("name,width", [("temporal-order", 8), ("copy", 10)])
def test_inputs_are_one_hot_float64(name, width):
    _, _, batch = draw(name, 6, 50)
    assert batch.x.dtype == np.float64 and batch.y.dtype == np.float64
    assert batch.x.shape[0] == 6 and batch.x.shape[2] == width
    assert set(np.unique(batch.x)) == {0.0, 1.0}
    assert np.all(batch.x.sum(axis=2) == 1.0)


# --- temporal order -----------------------------------------------------------------------------


def test_layout_is_the_original_at_100_and_scales_with_the_length():
    assert order.layout(100) == order.Layout((100, 110), (10, 20), (50, 60))
    assert order.layout(200) == order.Layout((200, 220), (20, 40), (100, 120))
    assert order.layout(20) == order.Layout((20, 22), (2, 4), (10, 12))


def test_temporal_order_sequence_structure_and_class_from_the_inputs():
    _, _, batch = draw("temporal-order", 500, 100, seed=1)
    b, steps, _ = batch.x.shape
    assert 100 <= steps <= 110
    symbols = batch.x.argmax(axis=2)
    assert np.all(symbols[:, 0] == order.E) and np.all(symbols[:, -1] == order.B)
    middle = symbols[:, 1:-1]
    relevant = (middle == order.X) | (middle == order.Y)
    assert np.all(relevant.sum(axis=1) == 2)
    assert np.all(middle[~relevant] < order.DISTRACTORS)  # everything else is a, b, c or d
    t1, t2 = (np.nonzero(relevant)[1].reshape(b, 2) + 2).T  # steps from 1; column 0 of middle is step 2
    assert t1.min() == 10 and t1.max() == 20 and t2.min() == 50 and t2.max() == 60
    first = symbols[np.arange(b), t1 - 1]
    second = symbols[np.arange(b), t2 - 1]
    expected = np.array([order.CLASSES.index(order.SYMBOLS[f] + order.SYMBOLS[s])
                         for f, s in zip(first, second)])
    np.testing.assert_array_equal(batch.y, expected)
    assert set(batch.y) == {0.0, 1.0, 2.0, 3.0}


def test_one_length_per_batch_drawn_over_the_whole_range():
    task = make_task("temporal-order")
    shape = task.resolve(None, None, None)
    rng = np.random.default_rng(0)
    lengths = {task.sample(rng, 2, 20, shape).x.shape[1] for _ in range(60)}
    assert lengths == {20, 21, 22}


def test_temporal_order_baseline_is_the_best_constant_prediction():
    task, shape, batch = draw("temporal-order", 40_000, 30, seed=2)
    assert task.baseline_loss(shape, batch.x.shape[1]) == pytest.approx(np.log(4), rel=1e-15)
    freq = np.bincount(batch.y.astype(int), minlength=4) / batch.y.size
    best = np.broadcast_to(np.log(freq), (batch.y.size, 4))  # the empirical class prior, every time
    loss = get_loss("ce").value_and_grad(best, batch.y)[0]
    assert loss == pytest.approx(task.baseline_loss(shape, batch.x.shape[1]), abs=2e-3)


def test_temporal_order_lengths_too_short_are_input_errors():
    task, shape, _ = draw("temporal-order", 1, 20)
    with pytest.raises(InputError, match="--seq-len of at least 20"):
        task.sample(np.random.default_rng(0), 1, 19, shape)


# --- copy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq_len", [21, 30, 120])
def test_copy_sequence_structure_and_targets_from_the_inputs(seq_len):
    _, _, batch = draw("copy", 300, seq_len, seed=3)
    assert batch.x.shape == (300, seq_len, 10) and batch.y.shape == (300, seq_len)
    symbols = batch.x.argmax(axis=2)
    delay = seq_len - 20
    data = symbols[:, :10]
    assert data.min() == 1 and data.max() == 8  # all eight data symbols, nothing else
    assert np.all(symbols[:, 10:10 + delay - 1] == copy_task.BLANK)  # T - 1 blanks
    assert np.all(symbols[:, 10 + delay - 1] == copy_task.DELIMITER)
    assert np.all(symbols[:, -10:] == copy_task.BLANK)
    assert np.all(batch.y[:, :-10] == copy_task.BLANK)
    np.testing.assert_array_equal(batch.y[:, -10:], data)  # the first 10 symbols, at the last 10 steps
    assert batch.y.max() < 9  # the delimiter is never a target


def test_copy_baseline_is_the_best_memoryless_prediction():
    task, shape, batch = draw("copy", 20_000, 40, seed=4)
    assert task.baseline_loss(shape, 40) == pytest.approx(10 * np.log(8) / 40, rel=1e-15)
    assert task.baseline_loss(shape, 120) == pytest.approx(0.17328679513998632, rel=1e-12)
    # Without memory, the best prediction at step t is the frequency of each class at t.
    y = batch.y.astype(int)
    freq = np.stack([np.bincount(y[:, t], minlength=9) for t in range(40)]) / y.shape[0]
    best = np.broadcast_to(np.log(np.maximum(freq, 1e-300)), (y.shape[0], 40, 9))
    loss = get_loss("ce").value_and_grad(best, batch.y)[0]
    assert loss == pytest.approx(task.baseline_loss(shape, 40), rel=2e-3)


def test_copy_too_short_is_an_input_error():
    task, shape, _ = draw("copy", 1, 21)
    with pytest.raises(InputError, match="--seq-len of at least 21"):
        task.sample(np.random.default_rng(0), 1, 20, shape)


# --- contradicting flags ------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["temporal-order", "copy"])
@pytest.mark.parametrize("setting,flag", [
    ({"input_size": 3}, "--input-size"),
    ({"output_size": 2}, "--output-size"),
    ({"loss": "mse"}, "--loss"),
])
def test_contradicting_sizes_or_loss_are_input_errors(task, setting, flag):
    with pytest.raises(InputError, match=flag):
        build(RunConfig(task=task, **setting))


@pytest.mark.parametrize("task,d,o", [("temporal-order", 8, 4), ("copy", 10, 9)])
def test_repeating_the_fixed_sizes_is_fine(task, d, o):
    setup = build(RunConfig(task=task, input_size=d, output_size=o, loss="ce", seq_len=30))
    assert (setup.config.input_size, setup.config.output_size, setup.config.loss) == (d, o, "ce")


def test_cli_reports_contradictions_as_usage_errors(capsys):
    assert main(["analyze", "--task", "copy", "--input-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "--input-size must be 10 for the copy task" in err and len(err.strip().splitlines()) == 1
    assert main(["analyze", "--task", "temporal-order", "--seq-len", "10"]) == 2
    assert "--seq-len of at least 20" in capsys.readouterr().err


# --- through analyze ----------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["temporal-order", "copy"])
def test_analyze_json_on_the_task(capsys, task):
    assert main(["analyze", "--task", task, "--json", "--batch-size", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    steps = out["config"]["seq_len"]
    assert len(out["grad_norms"]) == len(out["ratios"]) == len(out["contributions"]) == steps
    assert out["regime"] in ("vanishing", "exploding", "stable")
    assert out["pascanu"]["bound_holds"] is True
    if task == "copy":
        assert steps == 120 and out["config"]["input_size"] == 10 and out["config"]["output_size"] == 9
        assert out["baseline_loss"] == pytest.approx(10 * np.log(8) / 120)
    else:
        assert 100 <= steps <= 110 and out["config"]["input_size"] == 8
        assert out["baseline_loss"] == pytest.approx(np.log(4))


@pytest.mark.parametrize("task", ["temporal-order", "copy"])
def test_analyze_table_on_the_task(capsys, task):
    assert main(["analyze", "--task", task, "--seq-len", "40"]) == 0
    out = capsys.readouterr().out
    assert "Verdict:" in out and f"task={task}" in out and "VIOLATED" not in out
    assert ("read out at every step" in out) == (task == "copy")
    assert all(len(line) <= 80 for line in out.splitlines())


def test_copy_model_saved_and_loaded_reads_out_at_every_step(tmp_path, capsys):
    path = tmp_path / "copy.npz"
    assert main(["analyze", "--task", "copy", "--seq-len", "30", "--save-weights", str(path)]) == 0
    capsys.readouterr()
    saved = np.load(path)
    assert saved["fc.weight"].shape == (9, 32) and saved["rnn.weight_ih_l0"].shape == (32, 10)
    fresh = analyze(task="copy", seq_len=30)
    loaded = analyze(task="copy", seq_len=30, weights=str(path))
    assert loaded.setup.network.readout == "every"
    assert loaded.loss == pytest.approx(fresh.loss, rel=1e-12)
    np.testing.assert_allclose(loaded.grad_norms, fresh.grad_norms, rtol=1e-10)


def test_copy_batch_from_files_needs_a_target_per_step(tmp_path):
    _, _, batch = draw("copy", 3, 25)
    np.save(tmp_path / "x.npy", batch.x)
    np.save(tmp_path / "y.npy", batch.y)
    np.save(tmp_path / "y1.npy", batch.y[:, -1])
    r = analyze(task="copy", inputs=str(tmp_path / "x.npy"), targets=str(tmp_path / "y.npy"))
    assert r.grad_norms.shape == (25,) and r.config["seq_len"] == 25
    with pytest.raises(InputError, match=r"shape \(B, 25\)"):
        analyze(task="copy", inputs=str(tmp_path / "x.npy"), targets=str(tmp_path / "y1.npy"))
    drawn = analyze(task="copy", inputs=str(tmp_path / "x.npy"))  # random targets, one per step
    assert drawn.setup.batch.y.shape == (3, 25)
