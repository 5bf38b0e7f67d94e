"""A readout at every step (the copy task): BPTT against finite differences and PyTorch autograd.

    logits_t = Wy a_t + by,   L = mean over batch and steps,   delta_t = Wy^T dL/dlogits_t + (from t+1)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gradscope import analyze
from gradscope.bptt import bptt, forward
from gradscope.bptt.gradcheck import numeric_param_grads, numeric_state_gradient, relative_error
from gradscope.bptt.network import last_step_backward
from gradscope.model.losses import get_loss
from gradscope.model.network import Network
from gradscope.model.statedict import Choices, export_network_grads, load_network
from helpers import random_model

TOL = 1e-6
LOSSES = [("ce", 4), ("mse", 2), ("bce", 1)]


def step_targets(loss: str, b: int, t: int, o: int, rng: np.random.Generator) -> np.ndarray:
    """Targets at every step: (B, T) classes or 0/1, (B, T, O) values."""
    if loss == "ce":
        return rng.integers(0, o, (b, t)).astype(np.float64)
    if loss == "bce":
        return rng.integers(0, 2, (b, t)).astype(np.float64)
    return rng.standard_normal((b, t, o))


def case(activation: str, loss: str, b: int, t: int, d: int, h: int, o: int, seed: int):
    """A vanilla RNN read out at every step, inputs x (B, T, D) and targets at every step."""
    model = random_model("rnn", activation, loss, d=d, h=h, o=o, seed=seed, readout="every")
    rng = np.random.default_rng(seed + 100)
    return model, rng.standard_normal((b, t, d)), step_targets(loss, b, t, o, rng)


def numeric_dL_da(model: Network, x, y) -> np.ndarray:
    """(T, B, H) by central differences, every a_t read out."""
    return np.stack([numeric_state_gradient(model, x, y, step) for step in range(1, x.shape[1] + 1)])


# --- finite differences -------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("loss,outputs", LOSSES)
def test_parameter_gradients_match_finite_differences(activation, loss, outputs):
    model, x, y = case(activation, loss, b=3, t=6, d=3, h=5, o=outputs, seed=4)
    _, grads = bptt(model, x, y)
    analytic = grads.parameters(model)
    numeric = numeric_param_grads(model, x, y)
    assert set(analytic) == set(numeric)
    for name, g in numeric.items():
        assert relative_error(analytic[name], g) < TOL, name


@pytest.mark.parametrize("loss,outputs", LOSSES)
def test_dL_da_holds_the_local_term_at_every_step(loss, outputs):
    model, x, y = case("tanh", loss, b=3, t=5, d=2, h=4, o=outputs, seed=6)
    _, grads = bptt(model, x, y)
    dL_dh = grads.layers[0][0].dL_dh
    numeric = numeric_dL_da(model, x, y)
    for t in range(5):
        assert relative_error(dL_dh[t], numeric[t]) < TOL, t + 1
    # without the local terms the early steps would be far smaller than they are
    last = bptt(replace(model, readout="last"), x, y[:, -1])[1]
    assert not np.allclose(dL_dh[0], last.layers[0][0].dL_dh[0] / 5)


def test_loss_is_the_mean_over_batch_and_steps():
    model, x, y = case("tanh", "ce", b=4, t=7, d=2, h=3, o=4, seed=1)
    traj, grads = bptt(model, x, y)
    assert traj.logits.shape == (4, 7, 4)
    last = replace(model, readout="last")
    per_step = [bptt(last, x[:, : t + 1], y[:, t])[1].loss for t in range(7)]
    assert grads.loss == pytest.approx(np.mean(per_step), rel=1e-13)


# --- the part that flows back from the readout at T ---------------------------------------------


def test_last_step_backward_is_the_gradient_of_the_last_steps_share():
    model, x, y = case("tanh", "ce", b=3, t=6, d=2, h=4, o=3, seed=2)
    traj, total = bptt(model, x, y)
    part = last_step_backward(model, traj, y)
    # at T only the local term
    np.testing.assert_allclose(part.layers[0][0].dL_dh[-1], total.layers[0][0].dL_dh[-1], rtol=1e-14)
    # finite differences of L_T / T: the loss with every target but the last made irrelevant
    only_last = replace(model, readout="last")
    numeric = numeric_param_grads(only_last, x, y[:, -1])
    analytic = part.parameters(model)
    assert set(analytic) == set(numeric)
    for name, g in numeric.items():
        assert relative_error(analytic[name], g / 6) < TOL, name
    assert part.loss == pytest.approx(bptt(only_last, x, y[:, -1])[1].loss / 6, rel=1e-14)


def test_on_a_padded_batch_the_last_steps_share_is_of_the_mean_over_real_positions():
    """The loss of a padded batch averages over its N real positions: at each sequence's last real
    step the share equals the total gradient there (B/N, not 1/T: audit of 2026-12-05)."""
    model, x, y = case("tanh", "bce", b=3, t=6, d=2, h=4, o=1, seed=5)
    lengths = np.array([6, 2, 4])
    mask = np.arange(6)[None, :] < lengths[:, None]
    x = np.where(mask[:, :, None], x, 0.0)
    traj, total = bptt(model, x, y, mask)
    part = last_step_backward(model, traj, y)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(part.layers[0][0].dL_dh[n - 1, b], total.layers[0][0].dL_dh[n - 1, b], rtol=1e-13)
    rows = part.layers[0][0].log_rows  # the logs agree with the records they were taken of
    np.testing.assert_allclose(rows[lengths - 1, np.arange(3)],
                               np.log(np.linalg.norm(total.layers[0][0].dL_dh[lengths - 1, np.arange(3)], axis=1)),
                               rtol=1e-12)


def test_analyze_on_copy_keeps_pascanus_bound_where_the_total_would_break_it():
    r = analyze(task="copy", seq_len=40, init_gain=0.3, batch_size=4)
    assert r.pascanu.vanishing_guaranteed and r.pascanu.bound_holds
    assert r.regime == "vanishing"
    total = r.gradients.layers[0][0].dL_dh  # the total derivative keeps each step's local term: no vanishing
    total_ratio = np.linalg.norm(total[0]) / np.linalg.norm(total[-1])
    assert total_ratio > r.pascanu.bound[0] * 1e6
    assert r.grad_norms[-1] == pytest.approx(np.linalg.norm(total[-1]), rel=1e-12)


# --- the losses on (B, T, O) --------------------------------------------------------------------


@pytest.mark.parametrize("loss,outputs", LOSSES)
def test_loss_on_steps_is_the_loss_on_flattened_rows(loss, outputs):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 5, outputs))
    y = step_targets(loss, 4, 5, outputs, rng)
    fn = get_loss(loss)
    flat_y = y.reshape(20) if loss == "ce" else y.reshape(20, outputs)
    value, grad = fn.value_and_grad(logits, y)
    flat_value, flat_grad = fn.value_and_grad(logits.reshape(20, outputs), flat_y)
    assert grad.shape == logits.shape
    assert value == pytest.approx(flat_value, rel=1e-15)
    np.testing.assert_allclose(grad.reshape(20, outputs), flat_grad, rtol=1e-15)
    assert fn.check_targets(y, outputs, 5) is None
    assert "every step" in fn.check_targets(y[:, :3], outputs, 5)


def test_accuracy_per_position():
    logits = np.zeros((2, 3, 4))
    logits[0, :, 1] = 1.0  # predicts class 1 at every step of sequence 0
    logits[1, :, 2] = 1.0
    y = np.array([[1, 1, 0], [2, 3, 3]], dtype=np.float64)
    assert get_loss("ce").accuracy(logits, y) == pytest.approx(3 / 6)
    probs = get_loss("ce").predict(logits)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0)


def test_last_mode_logits_are_unchanged():
    rng = np.random.default_rng(0)
    model = random_model("rnn", "tanh", "ce", d=2, h=3, o=4, seed=0)
    x = rng.standard_normal((2, 5, 2))
    traj = forward(model, x)
    every = forward(replace(model, readout="every"), x)
    assert traj.logits.shape == (2, 4)
    np.testing.assert_array_equal(every.logits[:, -1], traj.logits)


# --- PyTorch autograd ---------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("loss,outputs", LOSSES)
def test_every_step_readout_matches_torch_autograd(nonlinearity, loss, outputs):
    torch = pytest.importorskip("torch")
    b, t, d, h = 4, 8, 3, 6
    torch.manual_seed(outputs)
    net = torch.nn.ModuleDict({
        "rnn": torch.nn.RNN(d, h, nonlinearity=nonlinearity, batch_first=True),
        "fc": torch.nn.Linear(h, outputs),
    }).double()
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.3)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((b, t, d))
    y = step_targets(loss, b, t, outputs, rng)

    # nn.Linear on every step's output; the loss over the (B*T, O) rows, mean reduction.
    xt = torch.tensor(x)
    cell = torch.nn.RNNCell(d, h, nonlinearity=nonlinearity).double()
    with torch.no_grad():
        for ours, theirs in [("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"),
                             ("bias_ih", "bias_ih_l0"), ("bias_hh", "bias_hh_l0")]:
            getattr(cell, ours).copy_(getattr(net["rnn"], theirs))
    flat = torch.tensor(y).reshape(b * t, -1) if loss != "ce" else torch.tensor(y).reshape(b * t).long()
    criterion = {"ce": torch.nn.CrossEntropyLoss(), "mse": torch.nn.MSELoss(),
                 "bce": torch.nn.BCEWithLogitsLoss()}[loss]
    out, _ = net["rnn"](xt)
    value = criterion(net["fc"](out).reshape(b * t, outputs), flat)
    net.zero_grad()
    value.backward()
    torch_grads = {k: p.grad.numpy().copy() for k, p in net.named_parameters()}
    # dL/dh_t, the total derivative, from the same network unrolled with retain_grad
    state, hs = torch.zeros(b, h, dtype=torch.float64), []
    for step in range(t):
        state = cell(xt[:, step], state)
        state.retain_grad()
        hs.append(state)
    criterion(net["fc"](torch.stack(hs, 1)).reshape(b * t, outputs), flat).backward()

    state_dict = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    model, layout = load_network(state_dict, "torch", Choices("rnn", nonlinearity), readout="every")
    model.loss = get_loss(loss)
    _, grads = bptt(model, x, y)
    assert grads.loss == pytest.approx(value.item(), rel=1e-12)
    ours = export_network_grads(model, grads, layout)
    assert set(ours) == set(torch_grads)
    for key, g in torch_grads.items():
        assert relative_error(ours[key], g) < 1e-9, key
    for step, state in enumerate(hs):
        assert relative_error(grads.layers[0][0].dL_dh[step], state.grad.numpy()) < 1e-9, step + 1
