"""Exact BPTT for the vanilla RNN against central finite differences in float64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradscope.bptt import bptt, forward, loss_only
from gradscope.bptt.layer import contribution_norms
from gradscope.bptt.gradcheck import (
    numeric_gradient, numeric_param_grads, numeric_state_gradient, relative_error,
)
from helpers import random_model, random_targets

ACTIVATIONS = ["tanh", "relu", "sigmoid", "linear"]
LOSSES = [("bce", 1), ("ce", 3), ("mse", 2)]
TOL = 1e-6


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss,outputs", LOSSES)
def test_parameter_gradients_match_finite_differences(activation, loss, outputs):
    rng = np.random.default_rng(7)
    model = random_model("rnn", activation, loss, d=3, h=5, o=outputs, seed=3)
    x = rng.standard_normal((4, 6, 3))
    y = random_targets(loss, 4, outputs, rng)
    _, grads = bptt(model, x, y)
    numeric = numeric_param_grads(model, x, y)
    # nn.RNN's two biases, each checked
    assert set(numeric) == {"l0.Wa", "l0.Wx", "l0.b", "l0.b_hh", "head.Wy", "head.by"}
    analytic = grads.parameters(model)
    assert set(analytic) == set(numeric)
    for name, g in numeric.items():
        assert relative_error(analytic[name], g) < TOL, name


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dL_da_is_the_total_derivative_at_every_step(activation):
    rng = np.random.default_rng(11)
    model = random_model("rnn", activation, "ce", d=2, h=4, o=3, seed=5)
    x = rng.standard_normal((3, 5, 2))
    y = random_targets("ce", 3, 3, rng)
    _, grads = bptt(model, x, y)
    for step in range(1, 6):
        numeric = numeric_state_gradient(model, x, y, step)
        assert relative_error(grads.layers[0][0].dL_dh[step - 1], numeric) < TOL, step


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    b=st.integers(1, 3), t=st.integers(1, 6), d=st.integers(1, 3), h=st.integers(1, 4),
    activation=st.sampled_from(ACTIVATIONS), loss=st.sampled_from(LOSSES), seed=st.integers(0, 10_000),
)
def test_gradients_for_drawn_shapes(b, t, d, h, activation, loss, seed):
    loss_name, outputs = loss
    rng = np.random.default_rng(seed)
    model = random_model("rnn", activation, loss_name, d=d, h=h, o=outputs, seed=seed)
    x = rng.standard_normal((b, t, d))
    y = random_targets(loss_name, b, outputs, rng)
    _, grads = bptt(model, x, y)
    assert grads.layers[0][0].dL_dh.shape == (t, b, h)
    analytic = grads.parameters(model)
    for name, p in model.parameters().items():
        numeric = numeric_gradient(lambda: loss_only(model, x, y), p)
        # relu's kink: a pre-activation within eps of 0 makes the difference quotient meaningless.
        if activation == "relu" and np.any(np.abs(forward(model, x).runs[0][0].hidden[1:]) < 1e-5):
            continue
        assert relative_error(analytic[name], numeric, floor=1e-3) < TOL, name


@pytest.mark.parametrize("batch", [1, 3, 40])
def test_contributions_are_the_summands_of_dL_dWa(batch):
    rng = np.random.default_rng(2)
    model = random_model("rnn", "tanh", "bce", d=3, h=6, o=1, seed=1)
    x = rng.standard_normal((batch, 7, 3))
    traj, grads = bptt(model, x, random_targets("bce", batch, 1, rng))
    layer = grads.layers[0][0]
    hidden_prev = traj.runs[0][0].hidden[:-1]
    summands = np.einsum("tbg,tbh->tgh", layer.dv, hidden_prev)
    assert summands.shape == (7, 6, 6)
    np.testing.assert_allclose(summands.sum(axis=0), layer.params["Wa"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(layer.dv[3].T @ hidden_prev[3], summands[3], rtol=1e-12)
    assert np.all(summands[0] == 0)  # a_0 = 0: the first step adds nothing to dL/dWa
    # the Gram-matrix shortcut for the norms agrees with the summands themselves
    np.testing.assert_allclose(contribution_norms(layer.dv, hidden_prev), np.linalg.norm(summands, axis=(1, 2)),
                               rtol=1e-10, atol=1e-300)


def test_loss_matches_forward_and_is_the_batch_mean():
    rng = np.random.default_rng(3)
    model = random_model("rnn", "tanh", "bce", d=2, h=3, o=1)
    x = rng.standard_normal((5, 4, 2))
    y = random_targets("bce", 5, 1, rng)
    per_sequence = [loss_only(model, x[i:i + 1], y[i:i + 1]) for i in range(5)]
    assert loss_only(model, x, y) == pytest.approx(np.mean(per_sequence), rel=1e-13)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_inputs_taken_a_block_of_steps_at_a_time_give_the_same_gradients(cell, monkeypatch):
    """The inputs are read through the batch-first array's time-major view, a block of steps at a
    time (cells/base.py: no copy of a long run's inputs): the blocks change nothing but rounding."""
    from gradscope.bptt import bptt
    from gradscope.bptt.layer import to_time_major
    from gradscope.config import RunConfig
    from gradscope.experiment import build
    from gradscope.model.cells import base

    setup = build(RunConfig(cell=cell, hidden_size=6, input_size=3, seq_len=23, batch_size=5, seed=4))
    x = setup.batch.x
    assert np.shares_memory(to_time_major(x, x.dtype), x)
    _, whole = bptt(setup.network, x, setup.batch.y)
    monkeypatch.setattr(base, "INPUT_BLOCK", 2 * 5 * 3)  # two steps a block: 12 blocks, the last short
    _, blocked = bptt(setup.network, x, setup.batch.y)
    assert whole.loss == pytest.approx(blocked.loss, rel=1e-14)
    blocked_params = blocked.parameters(setup.network)
    for name, g in whole.parameters(setup.network).items():
        np.testing.assert_allclose(blocked_params[name], g, rtol=1e-12, atol=1e-15, err_msg=name)
