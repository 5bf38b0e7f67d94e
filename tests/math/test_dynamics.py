"""Jacobian products along the run (gradscope/dynamics.py): Lyapunov exponents, exact singular
values of the product, the LSTM's cell path, and what they say about the gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradscope.commands.analyze import analyze
from gradscope.bptt import forward
from gradscope.commands.spectrum import jacobian_spectrum, spectrum_setup
from gradscope.config import RunConfig
from gradscope.dynamics import (
    jacobi_log_singular_values,
    lyapunov,
    lyapunov_exponents,
    product_log_singular_values,
    step_jacobians,
)
from gradscope.errors import InputError
from gradscope.experiment import build
from gradscope.commands.sweep import sweep
from helpers import random_model


def explicit_product(factors: list[np.ndarray]) -> np.ndarray:
    """J_n ... J_1 formed outright (what the QR accumulation must never need), per sequence."""
    product = np.broadcast_to(np.eye(factors[0].shape[-1]), factors[0].shape)
    for jac in factors:
        product = jac @ product
    return product


@pytest.mark.parametrize("gain", [0.7, 1.0, 1.3])
def test_linear_rnn_with_scaled_orthogonal_wa_has_every_exponent_ln_g(gain):
    result = jacobian_spectrum(activation="linear", init="orthogonal", init_gain=gain, seq_len=300,
                               hidden_size=12, batch_size=3)
    np.testing.assert_allclose(result.lyapunov.exponents, math.log(gain), rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.product.exponents, math.log(gain), rtol=0, atol=1e-10)
    np.testing.assert_allclose(result.product.log10_singular_values, 299 * math.log10(gain), rtol=1e-10, atol=1e-10)
    assert result.lyapunov.regime == {0.7: "vanishing", 1.0: "neutral", 1.3: "exploding"}[gain]
    if gain < 1:
        assert result.lyapunov.horizon == pytest.approx(-1 / math.log(gain), rel=1e-6)
    else:
        assert result.lyapunov.horizon is None


def test_irnn_at_initialisation_has_product_singular_values_zero_or_one():
    # relu and Wa = I: J_t = diag(1[z_t > 0]), so the product is diag(units active at every step).
    config = RunConfig(activation="relu", init="identity", seq_len=4, hidden_size=16, batch_size=1, seed=3)
    result = jacobian_spectrum(config)
    sigma = 10.0 ** result.product.log10_singular_values
    assert np.all(np.isclose(sigma, 0.0, atol=1e-12) | np.isclose(sigma, 1.0, rtol=1e-12))
    traj = forward(result.setup.network, result.setup.batch.x)
    always_on = np.all(traj.runs[0][0].hidden[2:, 0] > 0, axis=0)  # a_2..a_T: the units J_T ... J_2 keep
    assert 0 < always_on.sum() < 16, "the case must have both singular values to prove anything"
    assert np.sum(np.isclose(sigma, 1.0)) == always_on.sum()


@pytest.mark.parametrize("size, count, seed", [(5, 6, 0), (8, 3, 1), (4, 12, 2), (3, 1, 3), (7, 20, 4)])
def test_singular_values_of_a_short_product_match_the_svd_of_the_formed_product(size, count, seed):
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((2, size, size)) for _ in range(count)]
    ln_sigma, _, converged = product_log_singular_values(factors)
    assert converged
    expected = np.linalg.svd(explicit_product(factors), compute_uv=False)
    # numpy's SVD is accurate to eps * sigma_max, which is therefore the yardstick.
    np.testing.assert_allclose(np.exp(ln_sigma), expected, rtol=0, atol=1e-10 * expected[:, :1].max())


def test_model_product_singular_values_match_the_svd_of_the_step_jacobians():
    config = RunConfig(seq_len=8, hidden_size=6, batch_size=1, spectral_radius=1.4, seed=2)
    result = jacobian_spectrum(config)
    net = result.setup.network
    traj = forward(net, result.setup.batch.x)
    factors = list(step_jacobians(net.layer(0), traj.runs[0][0]))[1:]  # J_2 .. J_T
    expected = np.linalg.svd(explicit_product(factors)[0], compute_uv=False)
    np.testing.assert_allclose(10.0 ** result.product.log10_singular_values, expected,
                               rtol=0, atol=1e-10 * expected[0])


def test_tiny_singular_values_far_beyond_float_range_stay_exact():
    # J_k = U_k diag(s_k) U_{k-1}^T: the product is U_n diag(prod s_k) U_0^T, singular values known
    # exactly though they span e^60 .. e^-800, where a formed product would be 0 or inf.
    rng = np.random.default_rng(1)
    size, count = 6, 200
    frames = [np.linalg.qr(rng.standard_normal((size, size)))[0] for _ in range(count + 1)]
    rates = np.array([0.3, -0.1, -0.5, -1.0, -2.0, -4.0])
    total, factors = np.zeros(size), []
    for k in range(1, count + 1):
        s = np.exp(rates + 0.1 * rng.standard_normal(size))
        total += np.log(s)
        factors.append((frames[k] @ np.diag(s) @ frames[k - 1].T)[None])
    ln_sigma, _, _ = product_log_singular_values(factors)
    np.testing.assert_allclose(ln_sigma[0], np.sort(total)[::-1], rtol=1e-12)
    assert ln_sigma[0, -1] < -700


def test_jacobi_orthogonalises_rows_of_wildly_different_lengths():
    # Rows e^l u with l from 0 to -2000: a rotation between them is Gram-Schmidt in logarithms.
    rng = np.random.default_rng(5)
    u = rng.standard_normal((1, 5, 5))
    u /= np.linalg.norm(u, axis=2, keepdims=True)
    logs = np.array([[0.0, -500.0, -1000.0, -1500.0, -2000.0]])
    ln_sigma, sweeps, converged = jacobi_log_singular_values(u, logs)
    assert converged and sweeps < 10
    # Strongly graded: sigma_i = e^{l_i} times the length of u_i's part orthogonal to u_1..u_{i-1}.
    q, r = np.linalg.qr(u[0].T)
    np.testing.assert_allclose(ln_sigma[0], logs[0] + np.log(np.abs(np.diag(r))), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_leading_exponent_negative_for_small_radius_tanh_positive_for_large(seed):
    small = build(RunConfig(spectral_radius=0.5, seq_len=100, seed=seed))
    # A large tanh network with weak inputs at radius 3 is chaotic (Sompolinsky et al. 1988).
    large = build(RunConfig(spectral_radius=3.0, seq_len=100, hidden_size=64, input_size=1, seed=seed))
    lam_small = lyapunov(small.network.layer(0), forward(small.network, small.batch.x).runs[0][0]).leading_exponent
    lam_large = lyapunov(large.network.layer(0), forward(large.network, large.batch.x).runs[0][0]).leading_exponent
    assert lam_small < -0.5
    assert lam_large > 0.05


def test_leading_exponent_is_the_same_alone_and_in_the_full_spectrum_and_in_analyze():
    config = RunConfig(seq_len=60, hidden_size=10, cell="gru", seed=4)
    full = jacobian_spectrum(config)
    result = analyze(config)
    assert result.lyapunov.leading_exponent == pytest.approx(full.lyapunov.leading_exponent, rel=1e-10)
    assert result.lyapunov.transient == full.lyapunov.transient == 6
    assert len(result.lyapunov.exponents) == 1 and len(full.lyapunov.exponents) == 10


def test_the_gradient_ratio_lies_between_the_extreme_singular_values_of_the_product():
    # delta_1 = P^T delta_T with P = J_T ... J_2: sigma_min <= ||delta_1|| / ||delta_T|| <= sigma_max.
    for cell in ("rnn", "gru", "lstm"):
        config = RunConfig(cell=cell, seq_len=40, hidden_size=8, batch_size=1, seed=1)
        log10_sv = jacobian_spectrum(config).product.log10_singular_values
        ratio = math.log10(analyze(config).ratios[0])
        if cell == "lstm":  # the gradient enters h_T only; P maps all of (h, c)
            assert ratio <= log10_sv[0] + 1e-9
        else:
            assert log10_sv[-1] - 1e-9 <= ratio <= log10_sv[0] + 1e-9


def test_lyapunov_exponent_is_where_the_gradient_slope_goes_on_a_long_run():
    result = analyze(seq_len=600, hidden_size=16, batch_size=4)
    assert result.flow.slope == pytest.approx(result.lyapunov.leading_exponent, abs=0.02)


def test_lstm_cell_path_is_the_forget_gate_product():
    setup = build(RunConfig(cell="lstm", seq_len=30, hidden_size=5, batch_size=3, seed=2))
    result = spectrum_setup(setup, transient=4)
    traj = forward(setup.network, setup.batch.x).runs[0][0]
    h = 5
    forget = np.stack([cache.forget for cache in traj.caches])  # (T, B, H)
    for t, jac in enumerate(step_jacobians(setup.network.layer(0), traj)):
        np.testing.assert_array_equal(jac[:, h:, h:], forget[t][:, :, None] * np.eye(h))
    exponents = -np.sort(-np.log(forget[4:]).mean(axis=0), axis=1).mean(axis=0)
    product = -np.sort(-np.log(forget[1:]).sum(axis=0), axis=1).mean(axis=0) / math.log(10)
    np.testing.assert_allclose(result.cell_path.exponents, exponents, rtol=1e-12)
    np.testing.assert_allclose(result.cell_path.log10_singular_values, product, rtol=1e-12)
    assert result.cell_path.horizon == pytest.approx(-1 / exponents[0])
    assert jacobian_spectrum(seq_len=10).cell_path is None


def test_an_overflowed_run_has_undefined_exponents_and_counts_as_exploding():
    result = jacobian_spectrum(activation="relu", spectral_radius=3.0, seq_len=2000, hidden_size=8)
    assert math.isnan(result.lyapunov.leading_exponent) and result.lyapunov.regime == "exploding"
    assert np.all(np.isnan(result.product.log10_singular_values))
    assert analyze(activation="relu", spectral_radius=3.0, seq_len=2000, hidden_size=8).lyapunov.regime == "exploding"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tanh_boundary_is_near_spectral_radius_one_for_weak_inputs(tmp_path, seed):
    # Weak inputs keep tanh near its linear part, where rho(Wa) = 1 is the boundary; on a small
    # grid, each row (a seed) crosses from vanishing to exploding within 0.05 of radius 1.
    inputs = tmp_path / "x.npy"
    np.save(inputs, 0.01 * np.random.default_rng(seed).standard_normal((4, 50, 8)))
    result = sweep(RunConfig(inputs=str(inputs)), x="spectral_radius=0.8:1.3:6", y="seed=0,1,2")
    values = result.maps[0].values
    assert np.all(values[:, 0] < -1) and np.all(values[:, 3] > 0)  # radius 0.8 vanishes, 1.1 not
    for crossing in result.maps[0].crossings:
        assert crossing is not None and abs(crossing - 1.0) < 0.05


def test_transient_must_leave_steps_to_average():
    with pytest.raises(InputError, match="--transient"):
        jacobian_spectrum(seq_len=10, transient=10)
    with pytest.raises(InputError, match="--seq-len 2"):
        jacobian_spectrum(seq_len=1)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_jacobian_times_is_the_step_jacobian_applied(cell):
    """The matrix-free J_t q that the leading exponent uses is exactly the formed Jacobian's."""
    net = random_model(cell, "tanh", "bce", d=3, h=5, o=1, seed=2, bias_scale=0.4)
    layer = net.layer(0)
    rng = np.random.default_rng(3)
    traj = forward(net, rng.standard_normal((4, 6, 3))).runs[0][0]
    size = net.hidden_size * len(net.cell.state_names)
    assert layer.state_size == size
    q = rng.standard_normal((4, size, 2))
    for cache in traj.caches:
        np.testing.assert_allclose(layer.cell.jacobian_times(layer.params, cache, q),
                                   layer.cell.step_jacobian(layer.params, cache) @ q,
                                   rtol=1e-12, atol=1e-14)
    formed = lyapunov_exponents(step_jacobians(layer, traj), 0, 2)
    np.testing.assert_allclose(lyapunov(layer, traj, 0, 2).exponents, formed.mean(axis=0), rtol=1e-10)


@pytest.mark.parametrize("activation, scale", [("tanh", 1.0), ("linear", 1e30), ("linear", 1e-30), ("relu", -1.0)])
def test_blocked_power_iteration_equals_the_step_by_step_one(activation, scale):
    """lambda_1 normalised every POWER_BLOCK steps equals the one-column QR accumulation, also where a
    block would leave float64 (a linear RNN gaining or losing 1e30 a step) or annihilates q (a ReLU
    RNN whose units all die: lambda_1 = -inf)."""
    from gradscope.bptt import forward
    from gradscope.config import RunConfig
    from gradscope.dynamics import leading_exponents, lyapunov_exponents, step_maps
    from gradscope.experiment import build

    setup = build(RunConfig(activation=activation, hidden_size=12, seq_len=41, batch_size=3, seed=2))
    net = setup.network
    params = net.layers[0][0]
    if scale < 0:
        params["Wa"] = -np.abs(params["Wa"])
        params["Wx"] = -np.abs(params["Wx"])
        setup.batch.x[...] = np.abs(setup.batch.x)
    else:
        params["Wa"] = params["Wa"] * scale
    layer = net.layer(0)
    with np.errstate(all="ignore"):
        traj = forward(net, setup.batch.x).runs[0][0]
        for transient in (0, 5, 13):
            blocked = leading_exponents(layer, traj, transient)
            stepwise = lyapunov_exponents(step_maps(layer, traj), transient, 1)
            if scale < 0:
                assert np.all(blocked == -np.inf) and np.all(stepwise == -np.inf)
            else:
                np.testing.assert_allclose(blocked, stepwise, rtol=1e-12, atol=1e-12)


def _padded_network(cell: str):
    """A 2-layer bidirectional network in PyTorch's layout (numpy only) and a post-padded batch."""
    from gradscope.model.losses import get_loss
    from gradscope.model.statedict import Choices, load_network

    rng = np.random.default_rng(7)
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    d, h = 3, 4
    arrays = {}
    for k in range(2):
        for suffix in ("", "_reverse"):
            arrays[f"rnn.weight_ih_l{k}{suffix}"] = rng.standard_normal((gates * h, d if k == 0 else 2 * h))
            arrays[f"rnn.weight_hh_l{k}{suffix}"] = rng.standard_normal((gates * h, h)) * 0.6
            arrays[f"rnn.bias_ih_l{k}{suffix}"] = rng.standard_normal(gates * h) * 0.1
            arrays[f"rnn.bias_hh_l{k}{suffix}"] = np.zeros(gates * h)
    arrays["fc.weight"], arrays["fc.bias"] = rng.standard_normal((1, 2 * h)), np.zeros(1)
    net, _ = load_network(arrays, "test", Choices(cell))
    net.loss = get_loss("bce")
    lengths = np.array([30, 22, 30, 17])
    mask = np.arange(30)[None, :] < lengths[:, None]
    x = rng.standard_normal((4, 30, d)) * mask[:, :, None]
    return net, x, mask, lengths


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_every_layers_spectrum_is_an_independent_qr_iteration_over_its_real_steps(cell):
    """spectrum --weights: per layer and direction, lambda_i of each sequence over its own real
    steps after its own transient, against a plain QR iteration on that sequence's Jacobians."""
    from gradscope.bptt.network import forward
    from gradscope.commands.spectrum import spectrum_setup
    from gradscope.config import RunConfig
    from gradscope.experiment import Setup
    from gradscope.model.statedict import Layout
    from gradscope.tasks import Batch, make_task

    net, x, mask, lengths = _padded_network(cell)
    traj = forward(net, x, mask)
    task = make_task("random")
    setup = Setup(RunConfig(), net, Batch(x, np.zeros((4, 1)), mask), task, task.resolve(3, 1, "bce"), Layout())
    result = spectrum_setup(setup)
    assert [(s.layer, s.direction) for s in result.layers] == [(0, "forward"), (0, "reverse"), (1, "forward"),
                                                                (1, "reverse")]
    for report in result.layers:
        k, d = report.layer, 0 if report.direction == "forward" else 1
        run = traj.runs[k][d]
        per_sequence = []
        for b, n in enumerate(lengths):
            steps = range(n) if d == 0 else range(30 - n, 30)  # the reverse direction meets its real steps last
            q, total, seen = np.eye(report.state_size), np.zeros(report.state_size), 0
            for t in steps:
                jac = net.cell.step_jacobian(net.layers[k][d], run.caches[t])[b]
                q, r = np.linalg.qr(jac @ q)
                seen += 1
                if seen > n // 10:
                    total += np.log(np.abs(np.diag(r)))
            per_sequence.append(total / (n - n // 10))
        np.testing.assert_allclose(report.lyapunov.exponents, np.mean(per_sequence, axis=0), rtol=1e-10, atol=1e-12)
    assert result.lyapunov.leading_exponent == result.layers[2].lyapunov.leading_exponent
