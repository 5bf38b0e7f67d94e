"""Optimizers and the training loop: updates as torch.optim, learning, divergence, what is logged."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest

from gradscope.config import RunConfig
from gradscope.errors import InputError
from gradscope.experiment import build
from gradscope.mitigations import Strengths, make_mitigation
from gradscope.optimizers import SGD, Adam, make_optimizer
from gradscope.commands.train import (
    HELD_OUT_SEQUENCES, TRAINING_BATCH, TrainOptions, data_streams, evaluate, file_config, split_inputs, train,
)

SMALL = dict(task="adding", seq_len=10, hidden_size=8, batch_size=16)
# relu with Wa at spectral radius 3: the forward pass grows like 3^T, and one plain SGD step on that
# gradient overflows the weights. Clipping bounds the step (docs/compare.md, "An exploding configuration").
EXPLODING = RunConfig(task="adding", seq_len=30, hidden_size=8, activation="relu", spectral_radius=3.0)


# --- optimizers -------------------------------------------------------------------------------------


def quadratic(seed: int = 0):
    """f(p) = 1/2 p^T A p with A symmetric positive definite; its gradient A p."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    a = q @ np.diag([0.5, 1.0, 2.0, 4.0]) @ q.T
    return a, {"p": rng.standard_normal(4), "m": rng.standard_normal((2, 2))}


def run(optimizer, steps: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    a, params = quadratic(seed)
    state = optimizer.init(params)
    trail = [params]
    for _ in range(steps):
        grads = {"p": a @ params["p"], "m": params["m"]}
        params, state = optimizer.step(params, grads, state)
        trail.append(params)
    return trail


@pytest.mark.parametrize("optimizer", [SGD(0.1, 0.9), SGD(0.2, 0.0), Adam(0.05)])
def test_optimizers_minimise_a_quadratic_without_touching_their_inputs(optimizer):
    trail = run(optimizer, 400)
    first = {k: v.copy() for k, v in trail[0].items()}
    assert all(np.linalg.norm(v) < 1e-3 for v in trail[-1].values())
    for k in first:  # the start is what it was: every step returned new arrays
        np.testing.assert_array_equal(trail[0][k], first[k])


@pytest.mark.torch
@pytest.mark.parametrize("name, momentum", [("sgd", 0.9), ("sgd", 0.0), ("adam", 0.8)])
def test_optimizers_take_the_steps_of_torch_optim(name, momentum):
    torch = pytest.importorskip("torch")
    ours = run(make_optimizer(name, 0.05, momentum), 25)
    a, params = quadratic()
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    if name == "sgd":
        opt = torch.optim.SGD(list(tensors.values()), lr=0.05, momentum=momentum)
    else:
        opt = torch.optim.Adam(list(tensors.values()), lr=0.05, betas=(momentum, 0.999), eps=1e-8)
    at = torch.tensor(a)
    for step in range(1, 26):
        opt.zero_grad()
        loss = 0.5 * tensors["p"] @ at @ tensors["p"] + 0.5 * (tensors["m"] ** 2).sum()
        loss.backward()
        opt.step()
        for k in tensors:
            np.testing.assert_allclose(ours[step][k], tensors[k].detach().numpy(), rtol=1e-12, atol=1e-15)


def test_unknown_optimizer_and_bad_options_are_input_errors():
    with pytest.raises(InputError, match="unknown optimizer 'rmsprop'; choose one of sgd, adam"):
        make_optimizer("rmsprop")
    for bad, match in [(dict(steps=0), "--steps"), (dict(lr=-1.0), "--lr"), (dict(lr=math.nan), "--lr"),
                       (dict(momentum=1.0), "--momentum"), (dict(log_every=0), "--log-every"),
                       (dict(optimizer="rmsprop"), "optimizer")]:
        with pytest.raises(InputError, match=match):
            TrainOptions(**bad)
    assert TrainOptions(optimizer="sgd").resolved().lr == SGD.default_lr


# --- training ---------------------------------------------------------------------------------------


def test_a_short_run_learns_the_adding_problem():
    result = train(RunConfig(**SMALL, cell="gru"), TrainOptions(steps=150, log_every=50))
    assert result.status == "completed" and not result.diverged and result.steps == 150
    assert result.final_loss < 0.5 * result.baseline_loss < result.initial_loss
    assert result.baseline_loss == pytest.approx(1 / 6)
    assert [r.step for r in result.history] == [1, 50, 100, 150]
    assert result.accuracy is None  # regression


def test_divergence_stops_the_run_without_exceptions_or_warnings(capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would fail here
        result = train(EXPLODING, TrainOptions(steps=50, optimizer="sgd"))
    assert result.diverged and result.status == f"diverged at step {result.diverged_at}"
    assert result.steps == result.diverged_at < 50
    assert result.history[-1].step == result.diverged_at
    assert not math.isfinite(result.history[-1].loss) or not math.isfinite(result.history[-1].grad_norm)
    assert result.max_grad_norm == math.inf
    assert capfd.readouterr().err == ""


def test_clip_norm_keeps_the_exploding_run_finite_and_reports_the_unclipped_norm():
    options = TrainOptions(steps=50, optimizer="sgd", log_every=1)
    plain = train(EXPLODING, options)
    clipped = train(EXPLODING, options, make_mitigation("clip-norm", Strengths(clip_threshold=1.0)))
    assert plain.diverged and not clipped.diverged and math.isfinite(clipped.final_loss)
    first, unclipped = clipped.history[0], plain.history[0]
    assert first.grad_norm == unclipped.grad_norm > 1.0  # the diagnostics see the real gradient
    assert first.clipped and first.clipped_grad_norm == pytest.approx(1.0)
    assert clipped.clip_events == sum(r.clipped for r in clipped.history) > 0
    assert clipped.max_grad_norm == max(r.grad_norm for r in clipped.history)


def test_every_mitigation_trains_on_the_same_batches():
    options = TrainOptions(steps=3, log_every=1)
    plain = train(RunConfig(**SMALL), options)
    for name in ("l2", "clip-value"):
        other = train(RunConfig(**SMALL), options, make_mitigation(name))
        assert other.history[0].loss == plain.history[0].loss  # same model, same first batch
        assert other.initial_loss == plain.initial_loss  # same held-out batch
    train_a, held_a = data_streams(4)
    train_b, held_b = data_streams(4)
    assert train_a.random() == train_b.random() != held_a.random() == held_b.random()


def test_progress_sees_every_step_and_each_logged_record():
    seen = []
    result = train(RunConfig(**SMALL), TrainOptions(steps=7, log_every=3),
                   progress=lambda step, total, record: seen.append((step, total, record)))
    assert [s for s, _, _ in seen] == list(range(1, 8)) and {t for _, t, _ in seen} == {7}
    assert [r for _, _, r in seen if r is not None] == result.history
    assert [r.step for r in result.history] == [1, 3, 6, 7]


def test_penalty_is_logged_and_spectral_radius_of_gated_cells_is_the_largest_gate_block():
    result = train(RunConfig(**SMALL, cell="lstm"), TrainOptions(steps=2, log_every=1),
                   make_mitigation("l2", Strengths(l2=0.1)))
    first = result.history[0]
    assert first.penalty > 0
    net = build(RunConfig(**SMALL, cell="lstm")).network
    blocks = net.layer(0).gate_blocks().values()
    assert result.spectral_radius_before == max(np.max(np.abs(np.linalg.eigvals(b))) for b in blocks)


def test_a_task_read_out_at_every_step_trains_and_reports_accuracy():
    result = train(RunConfig(task="copy", seq_len=24, hidden_size=8, batch_size=8),
                   TrainOptions(steps=3, log_every=1, eval_size=16))
    assert 0 <= result.accuracy <= 1 and math.isfinite(result.final_loss)
    assert all(math.isfinite(r.ratio_first_last) for r in result.history)


def test_with_an_inputs_file_every_step_uses_that_batch(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((6, 9, 3)))
    np.save(tmp_path / "y.npy", rng.integers(0, 2, 6).astype(float))
    config = RunConfig(inputs=str(tmp_path / "x.npy"), targets=str(tmp_path / "y.npy"), hidden_size=5,
                       input_size=3)
    result = train(config, TrainOptions(steps=40, log_every=39))
    assert result.history[-1].loss < result.history[0].loss  # full-batch descent on one batch
    assert result.initial_loss == result.history[0].loss  # evaluated on that very batch
    assert result.evaluated_on == TRAINING_BATCH  # 6 sequences: too few to hold any out


def save_batch(tmp_path, x, y, name="") -> RunConfig:
    np.save(tmp_path / f"x{name}.npy", x)
    np.save(tmp_path / f"y{name}.npy", y)
    return RunConfig(inputs=str(tmp_path / f"x{name}.npy"), targets=str(tmp_path / f"y{name}.npy"),
                     hidden_size=5)


def test_with_enough_sequences_a_fixed_fifth_of_the_inputs_is_held_out_and_never_trained_on(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 9, 3)), rng.integers(0, 2, 20).astype(float)
    config = save_batch(tmp_path, x, y)
    setup = build(file_config(config))  # D from the file: no --input-size needed
    training, kept = split_inputs(setup)
    assert (training.x.shape[0], kept.x.shape[0]) == (16, 4)
    held = [i for i in range(20) if any(np.array_equal(x[i], k) for k in kept.x)]
    assert len(held) == 4 and not any(np.array_equal(x[i], t) for i in held for t in training.x)
    np.testing.assert_array_equal(kept.y.ravel(), y[held])  # bce targets, (B, 1)

    options = TrainOptions(steps=25, log_every=1)
    result = train(config, options)
    assert result.evaluated_on == HELD_OUT_SEQUENCES and result.config["batch_size"] == 20
    assert result.history[0].loss == pytest.approx(evaluate(setup.network, [training])[0], rel=1e-12)
    assert result.initial_loss == pytest.approx(evaluate(setup.network, [kept])[0], rel=1e-12)
    # Other targets for the held-out sequences change the evaluation, and nothing of the training.
    flipped = y.copy()
    flipped[held] = 1 - flipped[held]
    other = train(save_batch(tmp_path, x, flipped, "2"), options)
    assert [r.loss for r in other.history] == [r.loss for r in result.history]
    theirs = other.network.parameters()
    assert theirs.keys() == result.network.parameters().keys()
    for name, p in result.network.parameters().items():
        np.testing.assert_array_equal(theirs[name], p)
    assert other.final_loss != result.final_loss


@pytest.mark.parametrize("b, held", [(9, 0), (10, 2), (12, 2), (13, 3), (50, 10)])
def test_a_fifth_of_the_inputs_is_held_out_from_ten_sequences_on(tmp_path, b, held):
    rng = np.random.default_rng(b)
    setup = build(file_config(save_batch(tmp_path, rng.standard_normal((b, 4, 2)),
                                         rng.integers(0, 2, b).astype(float))))
    training, kept = split_inputs(setup)
    assert (0 if kept is None else kept.x.shape[0]) == held and training.x.shape[0] == b - held


def test_the_held_out_sequences_are_fixed_by_the_seed(tmp_path):
    rng = np.random.default_rng(3)
    config = save_batch(tmp_path, rng.standard_normal((30, 4, 2)), rng.integers(0, 2, 30).astype(float))

    def kept(seed):
        return split_inputs(build(file_config(replace(config, seed=seed))))[1].x

    np.testing.assert_array_equal(kept(0), kept(0))
    assert not np.array_equal(kept(0), kept(1))


def test_file_config_takes_d_from_the_inputs_only_where_nothing_else_fixes_it(tmp_path):
    config = save_batch(tmp_path, np.zeros((4, 5, 3)), np.zeros(4))
    assert file_config(config).input_size == 3
    assert file_config(replace(config, task="adding")).input_size is None  # adding's D is 2: build says so
    plain = RunConfig(task="adding")
    assert file_config(plain) is plain  # no inputs: unchanged
    with pytest.raises(InputError, match=r"--input-size 4 disagrees with inputs file .*x\.npy \(3\)"):
        file_config(replace(config, input_size=4))


def test_held_out_sequences_keep_their_padding_mask(tmp_path):
    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 7, 15)
    np.save(tmp_path / "len.npy", lengths)
    batch = save_batch(tmp_path, rng.standard_normal((15, 6, 2)), rng.integers(0, 2, 15).astype(float))
    config = replace(batch, lengths=str(tmp_path / "len.npy"))
    setup = build(file_config(config))
    training, kept = split_inputs(setup)
    for part in (training, kept):  # each sequence's mask goes with it: True over its first lengths[b] steps
        rows = [next(i for i in range(15) if np.array_equal(setup.batch.x[i], x)) for x in part.x]
        np.testing.assert_array_equal(part.mask, np.arange(6)[None, :] < lengths[rows, None])


def test_evaluation_with_padding_and_a_readout_at_every_step_scores_real_steps_only():
    """train's held-out loss is the loss analyze and BPTT compute: pad steps are not scored."""
    from gradscope.bptt.network import bptt as network_bptt, forward
    from gradscope.commands.train import evaluate
    from gradscope.tasks import Batch
    from helpers import random_model

    net = random_model("gru", "tanh", "ce", 3, 5, 4, readout="every")
    rng = np.random.default_rng(0)
    lengths = np.array([9, 4, 7])
    mask = np.arange(9)[None, :] < lengths[:, None]
    x = rng.standard_normal((3, 9, 3)) * mask[:, :, None]
    y = rng.integers(0, 4, (3, 9)).astype(float)
    loss, _ = evaluate(net, [Batch(x, y, mask)])
    _, grads = network_bptt(net, x, y, mask)
    assert loss == pytest.approx(grads.loss, rel=1e-14)
    traj = forward(net, x, mask)
    real = net.loss.value_and_grad(traj.logits[mask], y[mask])[0]
    every = net.loss.value_and_grad(traj.logits, y)[0]  # what counting the pad steps would give
    assert loss == pytest.approx(real, rel=1e-14) and abs(loss - every) > 1e-3
