"""What the one model gained to compute as Keras does, against central finite differences in float64:
the gate activations (sigmoid, Keras 3's and Keras 2's hard sigmoid) and the candidate activations of
the GRU and the LSTM, the GRU with the reset gate before the product (its step Jacobian too), and the
network's Keras wirings: merges, masked steps that repeat the previous output, a layer reading
backwards, the max over every step, arrays held fixed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gradscope.bptt import bptt, forward, loss_only
from gradscope.bptt.gradcheck import numeric_gradient, relative_error
from gradscope.bptt.layer import backprop_layer, cell_contribution_norms, run_layer, to_time_major
from gradscope.errors import InputError
from gradscope.model.activations import get_gate_activation
from gradscope.model.cells import make_cell
from gradscope.model.losses import get_loss
from gradscope.model.network import Network, OwnMask, Wiring, readout_params

TOL, EPS = 1e-6, 1e-6
GATED = ["gru", "lstm", "gru-reset-before"]
GATES = ["sigmoid", "hard_sigmoid", "hard_sigmoid_keras2"]


def one_layer(cell: str, activation: str = "tanh", gate: str = "sigmoid", d: int = 2, h: int = 3, o: int = 2,
              seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    c = make_cell(cell, activation, gate, saved=True)
    params = c.init_params(d, h, rng, "normal", 1.0)
    for p in params.values():
        if p.ndim == 1:
            p[:] = 0.5 * rng.standard_normal(p.shape)
    head = readout_params(h, o, rng)
    head["by"][:] = 0.1
    return Network(c, [[params]], head, "last", get_loss("mse"))


def worst_error(net: Network, x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> float:
    _, grads = bptt(net, x, y, mask)
    analytic = grads.parameters(net)
    assert set(analytic) == set(net.parameters())
    return max(relative_error(analytic[name], numeric_gradient(lambda: loss_only(net, x, y, mask), p, EPS), 1e-3)
               for name, p in net.parameters().items())


@pytest.mark.parametrize("cell, activation, gate", [
    (c, a, g) for c in GATED for a, g in itertools.product(["tanh", "relu", "sigmoid", "linear"], GATES)
])
def test_gated_cells_with_keras_activations_match_finite_differences(cell, activation, gate):
    net = one_layer(cell, activation, gate)
    rng = np.random.default_rng(1)
    assert worst_error(net, rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 2))) < TOL


@pytest.mark.parametrize("name, slope", [("hard_sigmoid", 1 / 6), ("hard_sigmoid_keras2", 0.2)])
def test_hard_sigmoids_are_keras_formulas(name, slope):
    z = np.array([-4.0, -2.4, -1.0, 0.0, 1.0, 2.4, 4.0])
    f = get_gate_activation(name)
    expected = np.clip(slope * z + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(f.forward(z), expected, rtol=1e-15)
    np.testing.assert_array_equal(f.slope(f.forward(z)), np.where((expected > 0) & (expected < 1), slope, 0.0))


def test_hard_sigmoid_is_torchs():
    torch = pytest.importorskip("torch")
    z = np.linspace(-4, 4, 33)
    ours = get_gate_activation("hard_sigmoid").forward(z.copy())
    np.testing.assert_array_equal(ours, torch.nn.functional.hardsigmoid(torch.tensor(z)).numpy())


def test_gate_activations_are_for_gated_cells_only():
    with pytest.raises(InputError, match="supports gate activations none"):
        make_cell("rnn", "tanh", "hard_sigmoid")
    with pytest.raises(InputError, match="supports --activation tanh"):
        make_cell("lstm", "relu")  # the flag keeps PyTorch's cells; a saved Keras model may say relu
    assert make_cell("lstm", "relu", saved=True).label == "lstm(activation=relu)"


@pytest.mark.parametrize("gate", GATES)
def test_reset_before_step_jacobian_is_the_derivative_of_the_step(gate):
    cell = make_cell("gru-reset-before", "tanh", gate, saved=True)
    rng = np.random.default_rng(2)
    h = 4
    params = cell.init_params(3, h, rng, "normal", 1.0)
    u = rng.standard_normal((2, 3 * h))
    h_prev = rng.standard_normal((2, h))
    _, cache = cell.step_forward(params, u, (h_prev,))
    jac = cell.step_jacobian(params, cache)
    numeric = np.zeros_like(jac)
    for j in range(h):
        step = np.zeros(h)
        step[j] = EPS
        up = cell.step_forward(params, u, (h_prev + step,))[0][0]
        down = cell.step_forward(params, u, (h_prev - step,))[0][0]
        numeric[:, :, j] = (up - down) / (2 * EPS)
    assert relative_error(jac, numeric) < TOL
    q = rng.standard_normal((2, h, 3))
    np.testing.assert_allclose(cell.jacobian_times(params, cache, q), jac @ q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cell.mean_step_jacobian(params, [cache, cache]), jac.mean(axis=0), rtol=1e-12)


def test_reset_before_is_not_pytorchs_gru():
    """The reset gate scales h_{t-1} before W_hn: the same weights give another step than nn.GRU's."""
    before, after = make_cell("gru-reset-before"), make_cell("gru")
    rng = np.random.default_rng(3)
    params = before.init_params(2, 3, rng, "normal", 1.0)
    u, h_prev = rng.standard_normal((1, 9)), rng.standard_normal((1, 3))
    assert not np.allclose(before.step_forward(params, u, (h_prev,))[0][0],
                           after.step_forward(params, u, (h_prev,))[0][0])


def test_reset_before_contributions_are_the_norms_of_its_summands():
    """Each step's summand of dL/dW_hh: dv_rz^T h_{t-1} in the r, z rows, dv_n^T (r_t h_{t-1}) in the n rows."""
    net = one_layer("gru-reset-before", h=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 2))
    cell, params = net.cell, net.layers[0][0]
    run = run_layer(cell, params, to_time_major(x))
    grads = backprop_layer(cell, params, run, final=(rng.standard_normal((2, 3)),))
    r = np.stack([c.gates[:, :3] for c in run.caches])
    h_prev = run.hidden[:-1]
    summands = np.concatenate([np.einsum("tbg,tbh->tgh", grads.dv[..., :6], h_prev),
                               np.einsum("tbg,tbh->tgh", grads.dv[..., 6:], r * h_prev)], axis=1)
    np.testing.assert_allclose(summands.sum(axis=0), grads.params["W_hh"], rtol=1e-12)
    np.testing.assert_allclose(cell_contribution_norms(cell, params, run.x, h_prev, grads.dv),
                               np.linalg.norm(summands, axis=(1, 2)), rtol=1e-12)


# -- the network's Keras options -------------------------------------------------------------------


def stacked(cell: str, merge: str, pad: str, backwards: bool, readout: str, directions: int,
            seed: int = 0) -> Network:
    """Two layers of ``cell`` wired as Keras may wire them, l0's recurrent bias fixed (Keras' one bias)."""
    rng = np.random.default_rng(seed)
    c = make_cell(cell)
    h, d = 3, 2
    layers = []
    for k in range(2):
        width = d if k == 0 else (h * directions if merge == "concat" else h)
        layers.append([c.init_params(width, h, rng, "normal", 1.0) for _ in range(directions)])
        for params in layers[-1]:
            for p in params.values():
                if p.ndim == 1:
                    p[:] = 0.3 * rng.standard_normal(p.shape)
    wiring = tuple(Wiring(merge, pad, backwards) for _ in range(2))
    net = Network(c, layers, None, readout, get_loss("mse"), wiring=wiring, fixed=frozenset({"l0.b_hh"}))
    net.head = readout_params(net.feature_size, 2, rng)
    return net


MASK = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 1, 1]], bool)  # pre, post, inside


@pytest.mark.parametrize("merge, pad, readout", [
    (m, p, r) for m, p, r in itertools.product(["concat", "sum", "ave", "mul"], ["zero", "previous"],
                                                ["last", "mean", "max", "max-all", "every"])
])
def test_bidirectional_merges_and_pad_outputs_match_finite_differences(merge, pad, readout):
    net = stacked("lstm", merge, pad, False, readout, 2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, 2))
    y = rng.standard_normal((3, 5, 2) if readout == "every" else (3, 2))
    assert "l0.b_hh" not in net.parameters()
    assert worst_error(net, x, y, MASK) < TOL


@pytest.mark.parametrize("cell, pad, readout", [
    (c, p, r) for c, p, r in itertools.product(["rnn", "gru", "gru-reset-before"], ["zero", "previous"],
                                                ["last", "mean", "max-all", "every"])
])
def test_a_layer_reading_backwards_matches_finite_differences(cell, pad, readout):
    net = stacked(cell, "concat", pad, True, readout, 1)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5, 2))
    y = rng.standard_normal((3, 5, 2) if readout == "every" else (3, 2))
    assert worst_error(net, x, y, MASK) < TOL


def test_a_masked_step_repeats_the_previous_output():
    """pad_output previous: the output at a masked step is the last real step's (0 before the first),
    zero: it is 0; a layer reading backwards outputs in its reading order."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 2))
    previous = forward(stacked("gru", "concat", "previous", False, "every", 1), x, MASK)
    top = previous.output.transpose(1, 0, 2)  # (B, T, H)
    np.testing.assert_array_equal(top[0, :2], 0.0)  # before the first real step
    np.testing.assert_array_equal(top[1, 3], top[1, 2])  # after the last: the last real output
    np.testing.assert_array_equal(top[1, 4], top[1, 2])
    np.testing.assert_array_equal(top[2, 2], top[2, 1])  # a masked step inside
    zero = forward(stacked("gru", "concat", "zero", False, "every", 1), x, MASK).output.transpose(1, 0, 2)
    np.testing.assert_array_equal(zero[~MASK], 0.0)
    np.testing.assert_array_equal(zero[MASK], top[MASK])


def test_max_all_reads_masked_steps_and_max_does_not():
    net = stacked("rnn", "concat", "previous", False, "max-all", 1)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 5, 2))
    every = forward(net, x, MASK).output  # (T, B, F)
    np.testing.assert_array_equal(forward(net, x, MASK).features, every.max(axis=0))
    net.readout = "max"
    np.testing.assert_array_equal(forward(net, x, MASK).features,
                                  np.where(MASK.T[:, :, None], every, -np.inf).max(axis=0))


def test_own_mask_is_computed_from_the_inputs():
    net = one_layer("lstm")
    net.embedding = np.arange(12.0).reshape(6, 2)
    net.embedding[3] = 0.5
    net.own_mask = OwnMask(token=0)
    tokens = np.array([[0, 0, 1, 2], [1, 3, 0, 0]])
    np.testing.assert_array_equal(net.input_mask(tokens), tokens != 0)
    net.own_mask = OwnMask(token=0, value=0.5)  # Masking after the embedding: its mask replaces mask_zero's
    np.testing.assert_array_equal(net.input_mask(tokens), tokens != 3)
    assert Network(net.cell, net.layers, net.head).input_mask(tokens) is None
