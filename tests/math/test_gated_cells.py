"""The GRU and LSTM cells against central finite differences in float64, and their theory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradscope import analyze
from gradscope.bptt import bptt, loss_only
from gradscope.bptt.gradcheck import numeric_gradient, numeric_state_gradient, relative_error
from gradscope.bptt.layer import contribution_norms
from gradscope.model.cells import make_cell
from gradscope.errors import InputError
from gradscope.model.losses import get_loss
from gradscope.spectrum import spectrum
from gradscope.model.statedict import Choices, export_network, export_network_grads, load_network
from helpers import random_model, random_targets

CELLS = ["gru", "lstm"]
LOSSES = [("bce", 1), ("ce", 3), ("mse", 2)]
TOL = 1e-6
EPS = 1e-6


def flat_state_step(cell, params, u_t, flat, h):
    """One step as a map of the flattened state (h, c) -> (h, c), for the Jacobian check."""
    state = tuple(flat[:, k * h:(k + 1) * h] for k in range(len(cell.state_names)))
    return np.concatenate(cell.step_forward(params, u_t, state)[0], axis=1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cell=st.sampled_from(CELLS), b=st.integers(1, 3), t=st.integers(1, 5), d=st.integers(1, 3),
    h=st.integers(1, 4), loss=st.sampled_from(LOSSES), seed=st.integers(0, 10_000),
)
def test_every_parameter_gradient_matches_finite_differences(cell, b, t, d, h, loss, seed):
    loss_name, outputs = loss
    rng = np.random.default_rng(seed)
    model = random_model(cell, "tanh", loss_name, d=d, h=h, o=outputs, seed=seed, bias_scale=0.5)
    x = rng.standard_normal((b, t, d))
    y = random_targets(loss_name, b, outputs, rng)
    _, grads = bptt(model, x, y)
    assert set(grads.layers[0][0].params) == {"W_ih", "W_hh", "b_ih", "b_hh"}
    assert set(grads.head) == {"Wy", "by"}
    analytic = grads.parameters(model)
    assert set(analytic) == set(model.parameters())
    for name, p in model.parameters().items():
        numeric = numeric_gradient(lambda: loss_only(model, x, y), p, EPS)
        assert relative_error(analytic[name], numeric, floor=1e-3) < TOL, name


def test_gru_biases_differ_where_b_hn_sits_inside_the_reset_gate():
    rng = np.random.default_rng(4)
    model = random_model("gru", "tanh", "mse", d=2, h=3, o=1, seed=2, bias_scale=0.5)
    x = rng.standard_normal((2, 4, 2))
    _, grads = bptt(model, x, random_targets("mse", 2, 1, rng))
    g_ih, g_hh = grads.layers[0][0].params["b_ih"], grads.layers[0][0].params["b_hh"]
    np.testing.assert_allclose(g_ih[:6], g_hh[:6], rtol=1e-12)  # r and z: both biases add
    assert relative_error(g_ih[6:], g_hh[6:]) > 1e-3  # n: dL/db_hn = r * dL/db_in


@pytest.mark.parametrize("cell", CELLS)
def test_dL_dh_is_the_total_derivative_of_the_state_at_every_step(cell):
    rng = np.random.default_rng(1)
    b, t, h = 2, 5, 3
    model = random_model(cell, "tanh", "ce", d=2, h=h, o=3, seed=8, bias_scale=0.5)
    x = rng.standard_normal((b, t, 2))
    y = random_targets("ce", b, 3, rng)
    _, grads = bptt(model, x, y)

    for step in range(1, t + 1):
        numeric = numeric_state_gradient(model, x, y, step, eps=EPS)
        assert relative_error(grads.layers[0][0].dL_dh[step - 1], numeric) < TOL, step


def test_lstm_dL_dc_is_the_total_derivative_through_h_and_the_next_cell():
    rng = np.random.default_rng(5)
    b, t, h = 2, 5, 3
    model = random_model("lstm", "tanh", "bce", d=2, h=h, o=1, seed=9, bias_scale=0.5)
    x = rng.standard_normal((b, t, 2))
    y = random_targets("bce", b, 1, rng)
    _, grads = bptt(model, x, y)
    dL_dc = grads.layers[0][0].dL_dc
    assert dL_dc.shape == (t, b, h)

    def shift_c(through_h):
        def shift(state, cache, unit, delta):
            c = state[1].copy()
            c[unit] += delta
            # the total: h_t = o_t tanh(c_t) is recomputed from the shifted c_t
            o = state[0] / np.tanh(state[1])  # o_t from the step's own h_t and c_t
            hs = o * np.tanh(c) if through_h else state[0]
            return (hs, c)
        return shift

    for step in range(1, t + 1):
        total = numeric_state_gradient(model, x, y, step, shift_c(True), EPS)
        carry = numeric_state_gradient(model, x, y, step, shift_c(False), EPS)
        assert relative_error(dL_dc[step - 1], total) < TOL, step
        if step == t:
            assert np.all(carry == 0)  # the readout sees only h_T: c_T matters through h_T alone
        else:  # the carry into step t+1 is what is left when h_t does not follow c_t
            assert relative_error(carry, total) > 1e-3, step


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.sampled_from(CELLS), b=st.integers(1, 3), h=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_step_jacobian_matches_finite_differences(cell, b, h, seed):
    rng = np.random.default_rng(seed)
    model = random_model(cell, "tanh", "bce", d=2, h=h, o=1, seed=seed, bias_scale=0.5)
    c, params = model.cell, model.layers[0][0]
    x = rng.standard_normal((b, 4, 2))
    traj, _ = bptt(model, x, random_targets("bce", b, 1, rng))
    traj = traj.runs[0][0]
    u = c.project_inputs(params, traj.x)
    step = 2  # the Jacobian of step 3, at the state after step 2
    flat = np.concatenate(traj.states[step - 1], axis=1)
    jac = c.step_jacobian(params, traj.caches[step])
    width = flat.shape[1]
    assert jac.shape == (b, width, width) and width == len(c.state_names) * h
    numeric = np.zeros_like(jac)
    for j in range(width):
        up, down = flat.copy(), flat.copy()
        up[:, j] += EPS
        down[:, j] -= EPS
        numeric[:, :, j] = (flat_state_step(c, params, u[step], up, h)
                            - flat_state_step(c, params, u[step], down, h)) / (2 * EPS)
    assert relative_error(jac, numeric) < TOL


@pytest.mark.parametrize("cell", CELLS)
def test_mean_step_jacobian_is_the_mean_of_the_step_jacobians(cell):
    rng = np.random.default_rng(6)
    model = random_model(cell, "tanh", "bce", d=2, h=4, o=1, seed=3, bias_scale=0.5)
    traj, _ = bptt(model, rng.standard_normal((3, 6, 2)), random_targets("bce", 3, 1, rng))
    traj, params = traj.runs[0][0], model.layers[0][0]
    direct = np.mean([model.cell.step_jacobian(params, cache) for cache in traj.caches], axis=(0, 1))
    np.testing.assert_allclose(model.cell.mean_step_jacobian(params, traj.caches), direct,
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cell", CELLS)
def test_step_backward_is_the_transposed_step_jacobian(cell):
    rng = np.random.default_rng(7)
    b, h = 3, 4
    model = random_model(cell, "tanh", "bce", d=2, h=h, o=1, seed=4, bias_scale=0.5)
    traj, _ = bptt(model, rng.standard_normal((b, 3, 2)), random_targets("bce", b, 1, rng))
    cache = traj.runs[0][0].caches[1]
    params = model.layers[0][0]
    m = len(model.cell.state_names)
    dstate = tuple(rng.standard_normal((b, h)) for _ in range(m))
    width = model.layer(0).recurrent_weight.shape[0]
    du, dv = np.empty((b, width)), np.empty((b, width))
    dprev = model.cell.step_backward(params, dstate, cache, du, dv)
    jac = model.cell.step_jacobian(params, cache)
    expected = np.einsum("bij,bi->bj", jac, np.concatenate(dstate, axis=1))
    np.testing.assert_allclose(np.concatenate(dprev, axis=1), expected, rtol=1e-12, atol=1e-14)


def test_direct_paths_are_diag_z_for_the_gru_and_diag_f_for_the_lstm():
    """REFERENCE §3: with W_hh = 0 only the direct paths are left."""
    rng = np.random.default_rng(8)
    b, h = 2, 3
    for name in CELLS:
        model = random_model(name, "tanh", "bce", d=2, h=h, o=1, seed=5, bias_scale=0.5)
        model.layers[0][0]["W_hh"][:] = 0.0
        traj, _ = bptt(model, rng.standard_normal((b, 3, 2)), random_targets("bce", b, 1, rng))
        traj = traj.runs[0][0]
        cache = traj.caches[2]
        jac = model.cell.step_jacobian(model.layers[0][0], cache)
        if name == "gru":
            z = cache.gates[:, h:2 * h]
            np.testing.assert_allclose(jac, z[:, :, None] * np.eye(h), rtol=1e-14)
        else:
            h_t, c_t = traj.states[2]
            f, o = cache.forget, h_t / np.tanh(c_t)  # o_t from h_t = o_t tanh(c_t)
            dh_dc = o * (1 - np.tanh(c_t) ** 2)
            np.testing.assert_allclose(jac[:, h:, h:], f[:, :, None] * np.eye(h), rtol=1e-14)
            np.testing.assert_allclose(jac[:, :h, h:], (dh_dc * f)[:, :, None] * np.eye(h), rtol=1e-12)
            assert np.all(jac[:, :, :h] == 0)  # nothing reaches back through h_{t-1} without W_hh


@pytest.mark.parametrize("cell", CELLS)
def test_contributions_add_up_to_dL_dW_hh(cell):
    rng = np.random.default_rng(9)
    model = random_model(cell, "tanh", "mse", d=3, h=4, o=2, seed=6, bias_scale=0.5)
    traj, grads = bptt(model, rng.standard_normal((5, 6, 3)), random_targets("mse", 5, 2, rng))
    layer, hidden_prev = grads.layers[0][0], traj.runs[0][0].hidden[:-1]
    summands = np.einsum("tbg,tbh->tgh", layer.dv, hidden_prev)
    gates = len(model.cell.gates)
    assert summands.shape == (6, gates * 4, 4)
    np.testing.assert_allclose(summands.sum(axis=0), layer.params["W_hh"], rtol=1e-12, atol=1e-15)
    assert np.all(summands[0] == 0)  # h_0 = 0
    np.testing.assert_allclose(contribution_norms(layer.dv, hidden_prev), np.linalg.norm(summands, axis=(1, 2)),
                               rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("cell,gates", [("gru", 3), ("lstm", 4)])
def test_init_applies_the_initialiser_to_each_gate_block(cell, gates):
    c = make_cell(cell)
    params = c.init_params(5, 6, np.random.default_rng(0), "orthogonal", 1.5)
    assert params["W_hh"].shape == (gates * 6, 6) and params["W_ih"].shape == (gates * 6, 5)
    assert list(c.gate_blocks(params)) == list(c.gates) and len(c.gates) == gates
    for block in c.gate_blocks(params).values():
        np.testing.assert_allclose(block.T @ block, 1.5 ** 2 * np.eye(6), atol=1e-12)
    assert not np.any(params["b_ih"]) and not np.any(params["b_hh"])


@pytest.mark.parametrize("cell", CELLS)
def test_gated_cells_take_tanh_only(cell):
    with pytest.raises(InputError, match="supports --activation tanh"):
        make_cell(cell, "relu")


@pytest.mark.parametrize("cell", CELLS)
def test_spectral_radius_rescales_each_gate_block(cell):
    r = analyze(cell=cell, hidden_size=6, seq_len=5, spectral_radius=0.7)
    assert all(s.spectral_radius == pytest.approx(0.7, rel=1e-10) for s in r.gate_spectra.values())


@pytest.mark.parametrize("cell", CELLS)
def test_analysis_reports_the_mean_jacobian_and_the_gate_blocks(cell):
    r = analyze(cell=cell, hidden_size=5, seq_len=8, batch_size=3)
    model = r.setup.network
    params = model.layers[0][0]
    traj, grads = bptt(model, r.setup.batch.x, r.setup.batch.y)
    mean = np.mean([model.cell.step_jacobian(params, c) for c in traj.runs[0][0].caches], axis=(0, 1))
    assert r.spectrum_of == "mean_step_jacobian"
    assert r.spectrum.spectral_radius == pytest.approx(spectrum(mean).spectral_radius, rel=1e-10)
    assert len(r.spectrum.eigenvalues) == 5 * len(model.cell.state_names)
    assert list(r.gate_spectra) == list(model.cell.gates)
    for gate, block in model.cell.gate_blocks(params).items():
        np.testing.assert_allclose(r.gate_spectra[gate].singular_values,
                                   np.linalg.svd(block, compute_uv=False), rtol=1e-12)
    assert r.pascanu is None
    if cell == "lstm":
        np.testing.assert_allclose(r.cell_grad_norms, np.linalg.norm(grads.layers[0][0].dL_dc, axis=(1, 2)), rtol=1e-12)
    else:
        assert r.cell_grad_norms is None


def test_the_rnn_keeps_the_spectrum_of_wa_and_no_gates():
    r = analyze(hidden_size=5, seq_len=8)
    assert r.spectrum_of == "recurrent_weight" and r.gate_spectra is None and r.pascanu is not None


@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_round_trip_keeps_every_tensor_and_key(cell):
    model = random_model(cell, "tanh", "ce", d=3, h=4, o=3, seed=1, bias_scale=0.5)
    state = export_network(model)
    assert set(state) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                          "fc.weight", "fc.bias"}
    loaded, layout = load_network(state, "test")
    loaded.loss = get_loss("ce")
    assert loaded.cell.name == cell
    assert (loaded.num_layers, loaded.directions, loaded.embedding) == (1, 1, None)
    theirs = loaded.parameters()
    assert set(theirs) == set(model.parameters())
    for name, p in model.parameters().items():
        np.testing.assert_array_equal(theirs[name], p)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 3))
    _, grads = bptt(loaded, x, random_targets("ce", 2, 3, rng))
    assert set(export_network_grads(loaded, grads, layout)) == set(state)


def test_state_dict_of_one_cell_refuses_another_cell_flag():
    state = export_network(random_model("lstm", "tanh", "bce", d=2, h=3, o=1))
    with pytest.raises(InputError, match="holds a lstm model, but --cell gru"):
        load_network(state, "w.npz", Choices(cell="gru"))
