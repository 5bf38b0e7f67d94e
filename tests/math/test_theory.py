"""Theory that must hold on every run: Pascanu's bound, norm preservation, the initialisers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradscope import analyze
from gradscope.model.activations import ACTIVATIONS
from gradscope.bptt import bptt
from gradscope.flow import flow, regime
from gradscope.model.initializers import INITIALIZERS, orthogonal, rescale_spectral_radius, spectral_radius
from gradscope.errors import InputError
from helpers import random_model, random_targets


@settings(max_examples=40, deadline=None)
@given(
    activation=st.sampled_from(sorted(ACTIVATIONS)),
    radius=st.floats(0.2, 3.0),
    seq_len=st.integers(2, 60),
    hidden=st.integers(2, 12),
    init=st.sampled_from(["normal", "xavier", "orthogonal"]),
    seed=st.integers(0, 1000),
)
def test_pascanu_bound_holds(activation, radius, seq_len, hidden, init, seed):
    """||dL/da_k|| / ||dL/da_T|| <= (gamma sigma_max(Wa))^(T-k), for every step of every run."""
    r = analyze(activation=activation, spectral_radius=radius, seq_len=seq_len,
                hidden_size=hidden, init=init, seed=seed, batch_size=3)
    p = r.pascanu
    assert p.gamma == ACTIVATIONS[activation].gamma
    ok = np.isfinite(r.ratios) & np.isfinite(p.bound)
    assert np.all(r.ratios[ok] <= p.bound[ok] * (1 + 1e-9))
    assert p.bound_holds
    if p.vanishing_guaranteed:  # sufficient condition: vanishing at least geometrically
        assert r.ratios[0] <= p.gamma_sigma_max ** (seq_len - 1) * (1 + 1e-9)


@pytest.mark.parametrize("gain", [0.9, 1.0, 1.1])
@pytest.mark.parametrize("batch", [1, 4])
def test_orthogonal_linear_rnn_scales_the_norm_by_exactly_gain_per_step(gain, batch):
    """Linear f and Wa = g Q: delta_{k-1} = g Q^T delta_k, so ||delta_k|| = g^(T-k) ||delta_T||."""
    steps = 40
    r = analyze(activation="linear", init="orthogonal", init_gain=gain, seq_len=steps,
                batch_size=batch, hidden_size=16, seed=3)
    expected = gain ** np.arange(steps - 1, -1, -1)
    np.testing.assert_allclose(r.ratios, expected, rtol=1e-10)
    assert r.flow.slope == pytest.approx(math.log(gain), abs=1e-10)
    assert r.spectrum.max_singular_value == pytest.approx(gain, rel=1e-12)
    assert r.spectrum.min_singular_value == pytest.approx(gain, rel=1e-12)
    assert r.spectrum.spectral_radius == pytest.approx(gain, rel=1e-10)


def test_orthogonal_init_is_orthogonal():
    rng = np.random.default_rng(0)
    for shape in [(16, 16), (8, 20), (20, 8)]:
        q = orthogonal(*shape, rng)
        small = min(shape)
        gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
        np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)


def test_identity_init_and_its_error_for_non_square():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(INITIALIZERS["identity"](5, 5, rng, 1.0), np.eye(5))
    with pytest.raises(InputError, match="square"):
        INITIALIZERS["identity"](5, 4, rng, 1.0)


@pytest.mark.parametrize("init", ["normal", "xavier", "orthogonal", "identity"])
def test_spectral_radius_rescaling(init):
    rng = np.random.default_rng(1)
    w = INITIALIZERS[init](30, 30, rng, 1.0)
    assert spectral_radius(rescale_spectral_radius(w, 0.7)) == pytest.approx(0.7, rel=1e-10)


def test_circular_law_for_the_normal_init():
    """Entries N(0, g^2/H): the eigenvalues fill a disk of radius ~g."""
    rng = np.random.default_rng(5)
    for gain in (0.5, 1.5):
        eig = np.linalg.eigvals(INITIALIZERS["normal"](400, 400, rng, gain))
        assert np.max(np.abs(eig)) == pytest.approx(gain, rel=0.1)
        # uniform on the disk: a quarter of them inside radius g/2
        assert np.mean(np.abs(eig) < gain / 2) == pytest.approx(0.25, abs=0.05)


def test_irnn_step_jacobians_at_init_are_diagonal_masks():
    """relu with Wa = I: J_t = diag(1[z_t > 0]), singular values 0 or 1."""
    model = random_model("rnn", "relu", "bce", d=3, h=6, o=1, init="identity", bias_scale=0.0)
    rng = np.random.default_rng(0)
    traj, _ = bptt(model, rng.standard_normal((2, 5, 3)), random_targets("bce", 2, 1, rng))
    for cache in traj.runs[0][0].caches:
        for jac in model.cell.step_jacobian(model.layers[0][0], cache):
            assert set(np.round(np.linalg.svd(jac, compute_uv=False), 12)) <= {0.0, 1.0}


def test_flow_slope_rate_and_horizon():
    steps = np.arange(1, 21)
    norms = 0.5 ** (20 - steps)  # halves per step back from T = 20
    f = flow(norms)
    assert f.slope == pytest.approx(math.log(0.5))
    assert f.rate_per_step == pytest.approx(0.5)
    assert f.horizon == pytest.approx(1 / math.log(2))
    assert f.ratio_first_last == pytest.approx(0.5 ** 19)
    assert f.regime == "vanishing"
    growing = flow(2.0 ** (20 - steps))
    assert growing.horizon is None and growing.regime == "exploding"


@pytest.mark.parametrize("ratio,nonfinite,expected", [
    (1e-3, False, "vanishing"), (0.011, False, "stable"), (1.0, False, "stable"),
    (99.0, False, "stable"), (101.0, False, "exploding"), (1.0, True, "exploding"),
    (float("nan"), False, "exploding"),
])
def test_regime_thresholds(ratio, nonfinite, expected):
    assert regime(ratio, nonfinite) == expected


def test_no_gradient_at_the_readout_end_is_vanishing_not_exploding():
    """n_T = 0 leaves the ratio undefined (x / 0): nothing flows back from the readout end, the
    extreme of vanishing; it was called exploding. Only nan or a true inf is exploding."""
    late = flow(np.array([0.3, 0.2, 0.0, 0.0]))  # a gradient that reaches only the far end
    assert late.regime == "vanishing" and late.log10_ratio is None
    assert flow(np.zeros(5)).regime == "vanishing"  # none at all
    assert flow(np.array([0.3, np.nan, 0.0])).regime == "exploding"
    assert flow(np.array([np.inf, 1.0, 0.0])).regime == "exploding"


def test_a_gradient_that_blows_up_and_then_dies_is_exploding():
    """Dead relu units can zero the gradient by step 1 after it grew a millionfold on the way:
    the end-to-end ratio alone (0) would call that vanishing."""
    norms = np.array([0.0, 1e6, 1e4, 1e2, 1.0])
    f = flow(norms)
    assert f.ratio_first_last == 0.0 and f.regime == "exploding"
    assert flow(np.array([1e-6, 1e-4, 1e-2, 1.0])).regime == "vanishing"  # monotone: as before
    assert flow(np.array([0.5, 50.0, 1.0])).regime == "stable"  # a peak under the threshold
