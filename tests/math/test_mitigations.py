"""The mitigations: clipping as Pascanu's Algorithm 1 and torch, the inits they set, and the
regularisers' gradients against central finite differences and torch autograd (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradscope.bptt import bptt
from gradscope.bptt.gradcheck import numeric_gradient, relative_error
from gradscope.config import RunConfig
from gradscope.errors import InputError
from gradscope.experiment import build
from gradscope.mitigations import (
    MITIGATIONS, Strengths, clip_by_norm, clip_by_value, global_norm, l2_penalty, make_mitigation, treat,
    omega_penalty, parse_mitigations, resolve_strengths,
)

SMALL = RunConfig(task="adding", seq_len=12, hidden_size=6, batch_size=4)


def grads_from(seed: int, scale: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"Wa": scale * rng.standard_normal((4, 4)), "Wx": scale * rng.standard_normal((4, 2)),
            "b": scale * rng.standard_normal(4)}


def flat(grads: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([g.ravel() for g in grads.values()])


# --- clipping ---------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e6), threshold=st.floats(1e-2, 1e2))
def test_clip_norm_keeps_the_direction_and_bounds_the_norm(seed, scale, threshold):
    grads = grads_from(seed, scale)
    norm = global_norm(grads)
    clipped, fired = clip_by_norm(grads, threshold)
    coef = threshold / (norm + 1e-6)  # torch's clip_grad_norm_
    assert fired == (coef < 1)
    assert global_norm(clipped) <= threshold * (1 + 1e-12) or not fired
    if fired:
        assert global_norm(clipped) == pytest.approx(norm * coef, rel=1e-12)
        # The same direction: a positive multiple of g, parameter by parameter.
        np.testing.assert_allclose(flat(clipped) / coef, flat(grads), rtol=1e-12)
    else:
        assert all(clipped[k] is grads[k] for k in grads)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3), limit=st.floats(1e-3, 10))
def test_clip_value_bounds_each_element_and_changes_the_direction(seed, scale, limit):
    grads = grads_from(seed, scale)
    clipped, fired = clip_by_value(grads, limit)
    assert np.all(np.abs(flat(clipped)) <= limit)
    assert fired == bool(np.any(np.abs(flat(grads)) > limit))
    untouched = np.abs(flat(grads)) <= limit
    np.testing.assert_array_equal(flat(clipped)[untouched], flat(grads)[untouched])


def test_global_norm_survives_entries_whose_squares_overflow():
    grads = {"a": np.array([3e200, 4e200]), "b": np.zeros(3)}
    assert global_norm(grads) == pytest.approx(5e200, rel=1e-14)
    assert global_norm({"a": np.array([1.0, np.inf])}) == np.inf
    assert np.isnan(global_norm({"a": np.array([1.0, np.nan])}))


@pytest.mark.torch
def test_clipping_matches_torch():
    torch = pytest.importorskip("torch")
    grads = grads_from(3, 10.0)
    tensors = {k: torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for k, g in grads.items()}
    for k, t in tensors.items():
        t.grad = torch.tensor(grads[k])
    torch.nn.utils.clip_grad_norm_(list(tensors.values()), max_norm=2.0)
    ours, fired = clip_by_norm(grads, 2.0)
    assert fired
    for k in grads:  # c = threshold / (||g|| + 1e-6), as torch computes it
        np.testing.assert_allclose(ours[k], tensors[k].grad.numpy(), rtol=1e-13)
    for k, t in tensors.items():
        t.grad = torch.tensor(grads[k])
    torch.nn.utils.clip_grad_value_(list(tensors.values()), clip_value=0.5)
    ours, _ = clip_by_value(grads, 0.5)
    for k in grads:
        np.testing.assert_array_equal(ours[k], tensors[k].grad.numpy())


def test_clipping_mitigations_clip_and_the_others_do_not():
    grads = grads_from(1, 100.0)
    _, fired = make_mitigation("clip-norm", Strengths(clip_threshold=1.0)).clip(grads)
    assert fired
    _, fired = make_mitigation("clip-value", Strengths(clip_value=1.0)).clip(grads)
    assert fired
    for name in ("orthogonal", "l2", "omega", "relu"):
        same, fired = make_mitigation(name).clip(grads)
        assert same is grads and not fired


# --- what the model-changing mitigations build ------------------------------------------------------


def built(name: str, config: RunConfig = SMALL):
    return build(make_mitigation(name).configure(config)).network


def test_orthogonal_gives_an_orthogonal_wa_even_with_a_spectral_radius_asked_for():
    model = built("orthogonal", RunConfig(task="adding", seq_len=12, hidden_size=7, spectral_radius=3.0,
                                          init_gain=2.0))
    wa = model.layers[0][0]["Wa"]
    np.testing.assert_allclose(wa.T @ wa, np.eye(7), atol=1e-12)


def test_orthogonal_on_a_gated_cell_gives_orthogonal_gate_blocks():
    model = built("orthogonal", RunConfig(task="adding", seq_len=12, hidden_size=5, cell="gru"))
    for block in model.layer(0).gate_blocks().values():
        np.testing.assert_allclose(block.T @ block, np.eye(5), atol=1e-12)


def test_identity_relu_is_the_irnn():
    model = built("identity-relu", RunConfig(task="adding", seq_len=12, hidden_size=6, activation="tanh",
                                             init="normal", spectral_radius=0.5))
    np.testing.assert_array_equal(model.layers[0][0]["Wa"], np.eye(6))
    assert model.cell.name == "rnn" and model.cell.activation == "relu"


@pytest.mark.parametrize("name, cell, activation", [("relu", "rnn", "relu"), ("gru", "gru", "tanh"),
                                                     ("lstm", "lstm", "tanh")])
def test_cell_and_activation_mitigations(name, cell, activation):
    model = built(name, RunConfig(task="adding", seq_len=12, hidden_size=6, cell="rnn", activation="sigmoid"))
    assert (model.cell.name, model.cell.activation) == (cell, activation)


def test_a_model_changing_mitigation_changes_the_loaded_network_not_the_config():
    config = RunConfig(weights="model.npz")
    assert make_mitigation("orthogonal").configure(config) is config  # the file fixes the model's settings
    net = built("lstm")
    rng = np.random.default_rng(0)
    treated = treat(net, make_mitigation("orthogonal"), "trained", rng, 10)
    w = treated.layers[0][0]["W_hh"]
    h = net.hidden_size
    for g in range(4):  # each gate block orthogonal, the rest of the trained weights kept
        block = w[g * h:(g + 1) * h]
        np.testing.assert_allclose(block @ block.T, np.eye(h), atol=1e-12)
    np.testing.assert_array_equal(treated.layers[0][0]["W_ih"], net.layers[0][0]["W_ih"])
    np.testing.assert_array_equal(treated.head["Wy"], net.head["Wy"])
    swapped = treat(net, make_mitigation("gru"), "trained", rng, 10)
    assert swapped.cell.name == "gru" and swapped.layers[0][0]["W_hh"].shape == (3 * h, h)
    np.testing.assert_array_equal(swapped.head["Wy"], net.head["Wy"])  # embedding and head kept
    fresh = treat(net, make_mitigation("clip-norm"), "init", np.random.default_rng(1), 10)
    bound = 1 / np.sqrt(h)  # PyTorch's U(-1/sqrt(H), 1/sqrt(H))
    assert np.all(np.abs(fresh.layers[0][0]["W_hh"]) <= bound) and not np.array_equal(
        fresh.layers[0][0]["W_hh"], net.layers[0][0]["W_hh"])
    with pytest.raises(InputError, match="forget-bias applies to the lstm cell, not the gru"):
        treat(swapped, make_mitigation("forget-bias"), "trained", rng, 10)


# --- the regularisers -------------------------------------------------------------------------------


def test_l2_penalty_gradient_by_finite_differences():
    w = np.random.default_rng(0).standard_normal((5, 5))
    value, grad = l2_penalty(w, 0.3)
    assert value == pytest.approx(0.15 * np.sum(w * w))
    assert relative_error(grad, numeric_gradient(lambda: l2_penalty(w, 0.3)[0], w)) <= 1e-6


def test_l2_acts_on_the_recurrent_weight_only():
    model = built("lstm")
    traj, grads = bptt(model, *_batch())
    value, extra = make_mitigation("l2", Strengths(l2=0.5)).penalty(model, traj, grads)
    assert list(extra) == ["l0.W_hh"]
    np.testing.assert_allclose(extra["l0.W_hh"], 0.5 * model.layers[0][0]["W_hh"])
    assert value == pytest.approx(0.25 * np.sum(model.layers[0][0]["W_hh"] ** 2))


def omega_inputs(seed: int = 0, steps: int = 7, batch: int = 3, hidden: int = 5):
    rng = np.random.default_rng(seed)
    wa = rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)
    slopes = rng.uniform(0.0, 1.0, (steps, batch, hidden))
    deltas = rng.standard_normal((steps, batch, hidden)) * 10.0 ** rng.uniform(-8, 3, (steps, batch, 1))
    deltas[2, 1] = 0.0  # ||delta|| = 0: that term is skipped
    return wa, slopes, deltas


def test_omega_value_is_pascanus_definition():
    wa, slopes, deltas = omega_inputs()
    expected = 0.0
    for t in range(deltas.shape[0]):
        for b in range(deltas.shape[1]):
            d = deltas[t, b]
            if np.linalg.norm(d) == 0:
                continue
            jacobian = np.diag(slopes[t, b]) @ wa  # J = diag(f'(z)) Wa
            expected += (np.linalg.norm(d @ jacobian) / np.linalg.norm(d) - 1.0) ** 2
    value, _ = omega_penalty(wa, slopes, deltas)
    assert value == pytest.approx(expected / deltas.shape[1], rel=1e-12)


def test_omega_gradient_by_finite_differences_with_the_deltas_held_fixed():
    wa, slopes, deltas = omega_inputs(1)
    _, grad = omega_penalty(wa, slopes, deltas)
    numeric = numeric_gradient(lambda: omega_penalty(wa, slopes, deltas)[0], wa)
    assert relative_error(grad, numeric) <= 1e-6


@pytest.mark.torch
def test_omega_gradient_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    wa, slopes, deltas = omega_inputs(2)
    w = torch.tensor(wa, requires_grad=True)
    s, d = torch.tensor(slopes), torch.tensor(deltas)
    norms = d.norm(dim=2)
    kept = norms > 0
    ratio = ((s * d) @ w).norm(dim=2) / torch.where(kept, norms, torch.ones_like(norms))
    omega = torch.where(kept, (ratio - 1) ** 2, torch.zeros_like(ratio)).sum() / d.shape[1]
    omega.backward()
    value, grad = omega_penalty(wa, slopes, deltas)
    assert value == pytest.approx(omega.item(), rel=1e-12)
    np.testing.assert_allclose(grad, w.grad.numpy(), rtol=1e-10, atol=1e-14)


def _batch():
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(4, 12, 2))
    return x, rng.uniform(size=(4, 1))


def test_omega_on_a_model_uses_the_step_jacobians_of_the_run():
    """The slopes and deltas the mitigation picks from a BPTT pass are those of J_t = d a_t / d a_{t-1}."""
    model = built("omega")
    traj, grads = bptt(model, *_batch())
    value, extra = make_mitigation("omega", Strengths(omega=2.0)).penalty(model, traj, grads)
    run, dL_dh, params = traj.runs[0][0], grads.layers[0][0].dL_dh, model.layers[0][0]
    expected = 0.0
    for t in range(1, run.hidden.shape[0] - 1):  # t = 2..T (0-based caches index t)
        jacobians = model.cell.step_jacobian(params, run.caches[t])  # (B, H, H)
        for b, jac in enumerate(jacobians):
            d = dL_dh[t, b]
            expected += (np.linalg.norm(d @ jac) / np.linalg.norm(d) - 1.0) ** 2
    assert value == pytest.approx(2.0 * expected / 4, rel=1e-10)
    assert list(extra) == ["l0.Wa"] and extra["l0.Wa"].shape == params["Wa"].shape


@pytest.mark.parametrize("pads", [0, 3])
def test_omega_of_a_padded_batch_is_the_mean_of_each_sequence_alone(pads):
    """Each sequence's terms from its second real step on, whatever pads the batch holds: for the
    reverse direction of a post-padded sequence the first real step is not at position 1 (its term,
    a Jacobian into the initial state, was counted, so pads changed Omega; audit of 2026-12-05)."""
    rng = np.random.default_rng(4)
    sd = {}
    for suffix in ("", "_reverse"):
        sd[f"rnn.weight_ih_l0{suffix}"] = rng.standard_normal((4, 3))
        sd[f"rnn.weight_hh_l0{suffix}"] = 0.8 * rng.standard_normal((4, 4))
        sd[f"rnn.bias_ih_l0{suffix}"], sd[f"rnn.bias_hh_l0{suffix}"] = np.zeros(4), np.zeros(4)
    sd["fc.weight"], sd["fc.bias"] = rng.standard_normal((1, 8)), np.zeros(1)
    lengths = np.array([6, 4, 2])
    x = rng.standard_normal((3, 6 + pads, 3))
    x[np.arange(6 + pads)[None, :] >= lengths[:, None]] = 0.0
    y = np.array([[0.0], [1.0], [1.0]])
    omega = make_mitigation("omega", Strengths(omega=1.0))

    def penalty(inputs, targets, lens):
        setup = build(RunConfig(weights=sd, inputs=inputs, targets=targets, lengths=lens))
        traj, grads = bptt(setup.network, setup.batch.x, setup.batch.y, setup.batch.mask)
        return omega.penalty(setup.network, traj, grads)[0]

    alone = [penalty(x[b:b + 1, :n], y[b:b + 1], None) for b, n in enumerate(lengths)]
    assert penalty(x, y, lengths) == pytest.approx(np.mean(alone), rel=1e-12)


def test_omega_needs_the_vanilla_rnn():
    with pytest.raises(InputError, match="omega needs the vanilla rnn"):
        make_mitigation("omega").check(built("gru"))


# --- names and strengths ----------------------------------------------------------------------------


def test_every_mitigation_of_the_issue_is_registered():
    assert set(MITIGATIONS) == {"clip-norm", "clip-value", "orthogonal", "identity-relu", "l2", "omega",
                                "relu", "gru", "lstm", "forget-bias", "chrono"}


def test_unknown_names_and_bad_strengths_are_input_errors():
    with pytest.raises(InputError, match="unknown mitigation 'nope'; choose one of clip-norm"):
        parse_mitigations("clip-norm,nope")
    with pytest.raises(InputError, match="twice"):
        parse_mitigations("l2,l2")
    assert parse_mitigations(None) == list(MITIGATIONS) and parse_mitigations(" l2 , gru") == ["l2", "gru"]
    with pytest.raises(InputError, match="--clip-threshold must be a positive"):
        Strengths(clip_threshold=0.0)
    with pytest.raises(InputError, match="--l2 applies only to the l2 mitigation"):
        resolve_strengths(["clip-norm"], l2=0.1)
    assert resolve_strengths(["l2"], l2=0.1, omega=None) == Strengths(l2=0.1)
