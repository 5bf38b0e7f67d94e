"""BPTT's log domain: ln||dL/dh_t|| exact at any depth, and the same gradients as plain float64.

The references are independent of the renormalisation of bptt/logdomain.py: a plain float64 loop
over the cells' step functions (no scaling), the orthogonal linear RNN whose norms are known in
closed form, and a diagonal tanh RNN whose gradient is computed component by component in
logarithms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradscope.bptt.layer import backprop_layer, run_layer
from gradscope.bptt.logdomain import combine_log_norms, log_row_norms
from gradscope.commands.analyze import analyze, step_norms
from gradscope.flow import flow
from gradscope.model.cells import make_cell
from gradscope.precision import LOG_NORM_ERROR_PER_STEP

RTOL = 1e-12


def plain_backprop(cell, params, traj, local=None, final=None, mask=None):
    """BPTT in plain float64, the recursion of bptt/layer.py without the log domain: no scaling at all."""
    steps, batch, h = traj.hidden.shape[0] - 1, traj.hidden.shape[1], traj.hidden.shape[2]
    width = params[cell.recurrent].shape[0]
    du = np.zeros((steps, batch, width))
    dv = du if cell.dv_is_du else np.zeros((steps, batch, width))
    dL_dh = np.zeros((steps, batch, h))
    final = final or (None,) * len(cell.state_names)
    dstate = tuple(np.zeros((batch, h)) if f is None else np.array(f, dtype=np.float64) for f in final)
    for t in range(steps - 1, -1, -1):
        if local is not None:
            dstate = (dstate[0] + local[t],) + dstate[1:]
        dL_dh[t] = dstate[0]
        back = cell.step_backward(params, dstate, traj.caches[t], du[t], dv[t])
        if mask is not None:
            m = mask[t][:, None].astype(float)
            du[t] *= m
            if dv is not du:
                dv[t] *= m
            into = tuple(d * m for d in dstate)
            back = cell.step_backward(params, into, traj.caches[t], du[t], dv[t])
            back = tuple(b + d * (1 - m) for b, d in zip(back, dstate))
        dstate = tuple(np.array(b) for b in back)
    return dL_dh, cell.param_grads(params, traj.x, traj.hidden[:-1], du, dv), du


def _layer(name, activation="tanh", h=4, d=3, t=30, b=3, gain=1.0, seed=0):
    rng = np.random.default_rng(seed)
    cell = make_cell(name, activation)
    params = cell.init_params(d, h, rng, "normal", gain)
    for k, v in params.items():
        if k.startswith("b"):
            params[k] = 0.1 * rng.standard_normal(v.shape)
    xt = rng.standard_normal((t, b, d))
    return cell, params, xt, rng


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("with_local", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_log_domain_matches_plain_float64(name, with_local, with_mask):
    cell, params, xt, rng = _layer(name)
    steps, batch = xt.shape[:2]
    mask = None
    if with_mask:
        mask = np.ones((steps, batch), dtype=bool)
        mask[20:, 0] = False  # a sequence that ends early (its pad steps carry the state)
    traj = run_layer(cell, params, xt, mask)
    local = rng.standard_normal((steps, batch, 4)) if with_local else None
    final = tuple(rng.standard_normal((batch, 4)) for _ in cell.state_names)
    ours = backprop_layer(cell, params, traj, local=local, final=final, mask=mask, input_grads=True)
    dL_dh, grads, du = plain_backprop(cell, params, traj, local, final, mask)
    np.testing.assert_allclose(ours.dL_dh, dL_dh, rtol=RTOL, atol=1e-14 * np.abs(dL_dh).max())
    np.testing.assert_allclose(ours.du, du, rtol=RTOL, atol=1e-14 * np.abs(du).max())
    for k, g in grads.items():
        np.testing.assert_allclose(ours.params[k], g, rtol=RTOL, atol=1e-14 * np.abs(g).max(), err_msg=k)
    np.testing.assert_allclose(ours.log_norms, np.log(step_norms(dL_dh)), rtol=RTOL, atol=1e-13)


def test_parameter_gradients_are_exact_when_every_summand_is_subnormal():
    """A final gradient 1e-300 times smaller gives gradients exactly 1e-300 times smaller: the plain
    path loses them to subnormal rounding, the log domain keeps all digits."""
    cell, params, xt, rng = _layer("rnn", gain=0.5, t=200)
    traj = run_layer(cell, params, xt)
    final = rng.standard_normal((xt.shape[1], 4))
    unit = backprop_layer(cell, params, traj, final=(final,))
    tiny = backprop_layer(cell, params, traj, final=(final * 1e-300,))
    np.testing.assert_allclose(tiny.log_norms, unit.log_norms + math.log(1e-300), rtol=0, atol=1e-12)
    for k, g in unit.params.items():
        np.testing.assert_allclose(tiny.params[k] * 1e300, g, rtol=1e-12, atol=1e-14 * np.abs(g).max(), err_msg=k)


def test_orthogonal_linear_rnn_at_100000_steps():
    """Wa = g Q with Q orthogonal and f linear: ||dL/da_t|| = g^(T-t) ||dL/da_T|| exactly, here down
    to 10^-877, far below float64's smallest number."""
    steps, g = 100_000, 0.98
    result = analyze(cell="rnn", activation="linear", init="orthogonal", init_gain=g, hidden_size=2,
                     batch_size=1, seq_len=steps, input_size=1)
    logs = result.log10_grad_norms * math.log(10.0)
    assert np.all(np.isfinite(logs))
    t = np.arange(1, steps + 1)
    expected = (steps - t) * math.log(g) + logs[-1]
    # rounding accumulates over 10^5 steps: about 1e-16 per step, relative
    np.testing.assert_allclose(logs, expected, rtol=0, atol=1e-11 * abs(expected).max())
    assert result.flow.log10_ratio == pytest.approx((steps - 1) * math.log10(g), rel=1e-11)
    assert result.flow.slope == pytest.approx(math.log(g), rel=1e-11)
    assert result.regime == "vanishing" and result.pascanu.bound_holds
    assert np.count_nonzero(result.grad_norms == 0) > 0  # what float64 alone would have shown
    assert not np.any(np.isnan(result.ratios))


def test_exploding_gradient_stays_measured():
    """Wa = g Q with g > 1, f linear, zero inputs (the states stay 0; the gradient does not depend
    on them): ||dL/da_t|| = g^(T-t) ||dL/da_T|| grows to e^1460, far beyond float64."""
    steps, g = 30_000, 1.05
    cell = make_cell("rnn", "linear")
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    params = {"Wa": g * q, "Wx": np.ones((3, 1)), "b": np.zeros(3), "b_hh": np.zeros(3)}
    traj = run_layer(cell, params, np.zeros((steps, 2, 1)))
    final = np.arange(6.0).reshape(2, 3)
    grads = backprop_layer(cell, params, traj, final=(final,))
    expected = (steps - np.arange(1, steps + 1)) * math.log(g) + math.log(np.linalg.norm(final))
    np.testing.assert_allclose(grads.log_norms, expected, rtol=0, atol=1e-11 * expected.max())
    assert np.isinf(grads.dL_dh[0]).any() and not np.isnan(grads.dL_dh).any()  # true scale: overflowed
    with np.errstate(over="ignore"):
        summary = flow(np.exp(grads.log_norms), grads.log_norms)
    assert summary.regime == "exploding"
    assert summary.log10_ratio == pytest.approx((steps - 1) * math.log10(g), rel=1e-11)


def test_diagonal_tanh_rnn_against_logs_by_hand():
    """Wa = diag(w): each unit's gradient is its own product, summed here in logarithms:
    ln|delta_{t-1,i}| = ln|w_i| + ln(1 - a_{t,i}^2) + ln|delta_{t,i}|."""
    steps, batch, h = 100_000, 1, 2
    rng = np.random.default_rng(3)
    cell = make_cell("rnn", "tanh")
    w = np.array([0.9, -0.6])
    params = {"Wa": np.diag(w), "Wx": rng.standard_normal((h, 1)), "b": np.zeros(h), "b_hh": np.zeros(h)}
    xt = rng.standard_normal((steps, batch, 1))
    traj = run_layer(cell, params, xt)
    final = np.array([[1.0, 2.0]])
    ours = backprop_layer(cell, params, traj, final=(final,))
    a = traj.hidden[1:, 0]  # (T, H)
    slope_logs = np.log(np.abs(w))[None, :] + np.log1p(-a * a)  # ln|w_i f'(z_t,i)|, (T, H)
    # ln|delta_t,i| = ln|final_i| + sum_{s > t} ln|w_i f'(z_s,i)|
    tail = np.concatenate([np.cumsum(slope_logs[::-1], axis=0)[::-1][1:], np.zeros((1, h))])
    by_hand = combine_log_norms(np.log(np.abs(final)) + tail, axis=1)
    assert by_hand[0] < -10_000  # far below float64
    np.testing.assert_allclose(ours.log_norms, by_hand, rtol=1e-11, atol=1e-9)


def test_log_row_norms_of_tiny_huge_and_special_rows():
    d = np.array([[[1e-200, 1e-200]], [[1e200, 1e200]], [[0.0, 0.0]], [[np.inf, 1.0]], [[np.nan, 1.0]],
                  [[3.0, 4.0]]])
    logs = log_row_norms(d)[:, 0]
    assert logs[0] == pytest.approx(math.log(math.sqrt(2) * 1e-200), rel=1e-14)
    assert logs[1] == pytest.approx(math.log(math.sqrt(2) * 1e200), rel=1e-14)
    assert logs[2] == -np.inf and logs[3] == np.inf and np.isnan(logs[4])
    assert logs[5] == pytest.approx(math.log(5.0), rel=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_each_sequence_is_exact_whatever_the_others_in_its_batch(dtype):
    """Every sequence has its own logarithmic unit: a padded sequence's gradient, carried unchanged
    through its pad steps while a long sequence's fades by 1e-400 (float64) or 1e-200 (float32),
    does not drown it. ln||dL/dh_t|| of each sequence is the same in the batch as alone (to the
    rounding of matmuls of another shape: float32's bound over the run, precision.py)."""
    steps = 2000 if dtype is np.float64 else 1000
    tolerance = 1e-9 if dtype is np.float64 else steps * LOG_NORM_ERROR_PER_STEP
    cell, params, xt, rng = _layer("rnn", gain=0.5, t=steps, b=3)
    params = {k: v.astype(dtype) for k, v in params.items()}
    mask = np.ones((steps, 3), dtype=bool)
    mask[steps // 2:, 1] = False  # sequence 1 ends half-way: its pad steps carry its gradient
    final = rng.standard_normal((3, 4)).astype(dtype)
    batch = backprop_layer(cell, params, run_layer(cell, params, xt.astype(dtype), mask), final=(final,), mask=mask)
    for b in range(3):
        alone = backprop_layer(cell, params, run_layer(cell, params, xt[:, b:b + 1].astype(dtype), mask[:, b:b + 1]),
                               final=(final[b:b + 1],), mask=mask[:, b:b + 1])
        if b == 0:
            assert alone.log_rows[0, 0] / math.log(10) < (-400 if dtype is np.float64 else -200)
        np.testing.assert_allclose(batch.log_rows[:, b], alone.log_rows[:, 0], rtol=0, atol=tolerance)
