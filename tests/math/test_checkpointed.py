"""Checkpointed BPTT (bptt/checkpointed.py) gives what the full path gives, in bounded memory."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gradscope.bptt import bptt
from gradscope.bptt.checkpointed import checkpointed_bptt, segment_length
from gradscope.bptt.layer import contribution_norms
from gradscope.commands.analyze import analyze, analyze_setup, gradient_arrays
from gradscope.config import RunConfig
from gradscope.dynamics import lyapunov
from gradscope.errors import InputError
from gradscope.experiment import build
from gradscope.memory import LIMIT_ENV, checkpointed_run_bytes, run_bytes

RTOL = 1e-12


def _setup(cell="rnn", activation="tanh", seq_len=50, **settings):
    return build(RunConfig(cell=cell, activation=activation, seq_len=seq_len, batch_size=3, hidden_size=5, seed=1,
                           **settings))


@pytest.mark.parametrize("cell,activation", [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")])
@pytest.mark.parametrize("seq_len,segment", [(50, None), (50, 7), (10, 20), (1, None), (37, 1)])
def test_checkpointed_equals_full_path(cell, activation, seq_len, segment):
    setup = _setup(cell, activation, seq_len)
    net, batch = setup.network, setup.batch
    traj, full = bptt(net, batch.x, batch.y)
    run = checkpointed_bptt(net, batch.x, batch.y, segment=segment)
    ours = run.layers[0][0]
    layer, path = full.layers[0][0], traj.runs[0][0]
    assert run.checkpoints == -(-seq_len // run.segment)
    assert run.loss == pytest.approx(full.loss, rel=RTOL)
    np.testing.assert_allclose(ours.log_norms, layer.log_norms, rtol=RTOL)
    np.testing.assert_allclose(ours.contributions, contribution_norms(layer.dv, path.hidden[:-1]), rtol=RTOL)
    if layer.log_cell_norms is None:
        assert ours.log_cell_norms is None
    else:
        np.testing.assert_allclose(ours.log_cell_norms, layer.log_cell_norms, rtol=RTOL)
    assert ours.params.keys() == layer.params.keys()
    assert run.head.keys() == full.head.keys()
    for mine, theirs in ((ours.params, layer.params), (run.head, full.head)):
        for name, g in theirs.items():
            np.testing.assert_allclose(mine[name], g, rtol=RTOL, atol=1e-15 * np.abs(g).max(), err_msg=name)
    np.testing.assert_allclose(run.lyapunov.exponents, lyapunov(net.layer(0), path).exponents, rtol=RTOL)
    if len(net.cell.gates) > 1:
        mean = net.cell.mean_step_jacobian(net.layers[0][0], path.caches)
        np.testing.assert_allclose(ours.mean_jacobian, mean, rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_log_domain_carried_across_segments(cell):
    # the gradient leaves float64 within the run: its unit is carried from segment to segment
    setup = _setup(cell, "tanh", 3000, spectral_radius=0.3)
    net, batch = setup.network, setup.batch
    traj, full = bptt(net, batch.x, batch.y)
    layer = full.layers[0][0]
    assert layer.log_norms[0] < -745  # e^-745 underflows: only the log domain holds it
    run = checkpointed_bptt(net, batch.x, batch.y)
    ours = run.layers[0][0]
    np.testing.assert_allclose(ours.log_norms, layer.log_norms, rtol=RTOL)
    np.testing.assert_allclose(ours.contributions, contribution_norms(layer.dv, traj.runs[0][0].hidden[:-1]),
                               rtol=RTOL)
    for name, g in layer.params.items():
        np.testing.assert_allclose(ours.params[name], g, rtol=RTOL, atol=1e-15 * np.abs(g).max(), err_msg=name)


def test_segment_length_is_ceil_sqrt():
    assert [segment_length(t) for t in (1, 2, 4, 5, 100, 101, 10**6)] == [1, 2, 2, 3, 10, 11, 1000]


def test_checkpointed_estimate_is_sqrt_t():
    t = 10**6
    full = run_bytes(t, 1, 16, 1)
    checkpointed = checkpointed_run_bytes(t, 1, 16, 1)
    assert checkpointed < full / 3
    # O(T) scalars plus O(sqrt(T) B H): a hidden layer 100 times wider adds little at T = 10^6
    assert checkpointed_run_bytes(t, 1, 1600, 1) < 2 * checkpointed


def test_long_run_completes(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "64M")  # the full path (about 180 MB) does not fit
    result = analyze(RunConfig(seq_len=200_000, batch_size=1, hidden_size=4, seed=0))
    assert result.setup.checkpointed
    assert "checkpointed BPTT" in result.data
    assert result.log10_grad_norms.shape == (200_000,)
    assert np.isfinite(result.log10_grad_norms[-1])
    assert np.isfinite(result.lyapunov.leading_exponent)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_small_max_memory_chooses_checkpointed_with_same_report(monkeypatch, cell):
    config = RunConfig(cell=cell, seq_len=300, batch_size=2, hidden_size=6, seed=3)
    full = analyze(config)
    assert not full.setup.checkpointed
    monkeypatch.setenv(LIMIT_ENV, "200K")
    ours = analyze(config)
    assert ours.setup.checkpointed and "checkpointed BPTT" in ours.data
    for name in ("grad_norms", "log10_grad_norms", "ratios", "contributions", "flow_norms"):
        np.testing.assert_allclose(getattr(ours, name), getattr(full, name), rtol=RTOL, err_msg=name)
    if cell == "lstm":
        np.testing.assert_allclose(ours.cell_grad_norms, full.cell_grad_norms, rtol=RTOL)
    for name in ("slope", "log10_ratio", "horizon"):
        assert getattr(ours.flow, name) == pytest.approx(getattr(full.flow, name), rel=RTOL)
    assert ours.flow.regime == full.flow.regime
    assert ours.lyapunov.leading_exponent == pytest.approx(full.lyapunov.leading_exponent, rel=RTOL)
    np.testing.assert_allclose(ours.spectrum.eigenvalues, full.spectrum.eigenvalues, rtol=RTOL, atol=1e-14)
    if full.pascanu is not None:
        theirs = dataclasses.asdict(full.pascanu)
        for name, value in dataclasses.asdict(ours.pascanu).items():
            if isinstance(value, (float, np.ndarray)):
                np.testing.assert_allclose(value, theirs[name], rtol=RTOL, err_msg=name)
            else:
                assert value == theirs[name], name
    theirs = full.gradients
    assert ours.gradients.layers[0][0].params.keys() == theirs.layers[0][0].params.keys()
    for mine, reference in ((ours.gradients.layers[0][0].params, theirs.layers[0][0].params),
                            (ours.gradients.head, theirs.head)):
        for name, g in reference.items():
            np.testing.assert_allclose(mine[name], g, rtol=RTOL, atol=1e-15 * np.abs(g).max(), err_msg=name)
    with pytest.raises(InputError, match="checkpointed"):
        gradient_arrays(ours)


def test_refused_when_even_checkpointed_does_not_fit(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "1K")
    with pytest.raises(InputError, match="even checkpointed BPTT"):
        analyze(RunConfig(seq_len=300, batch_size=2, hidden_size=6))


def test_only_analyze_runs_checkpointed(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "200K")
    with pytest.raises(InputError, match="memory"):
        build(RunConfig(seq_len=300, batch_size=2, hidden_size=6))  # train and the rest: refused as before
    with pytest.raises(InputError, match="memory"):  # a readout at every step: not checkpointed
        analyze(RunConfig(seq_len=300, batch_size=2, hidden_size=6, readout="every"))


def test_forced_checkpointed_setup_gives_same_report():
    setup = _setup("rnn", "relu", 40)
    full = analyze_setup(setup)
    ours = analyze_setup(dataclasses.replace(setup, checkpointed=True))
    np.testing.assert_allclose(ours.log10_grad_norms, full.log10_grad_norms, rtol=RTOL)


def _network(cell: str, layers: int, bidirectional: bool, embedding: bool, seed: int = 0):
    """A network of the user's kind, built in PyTorch's layout with numpy (no torch needed)."""
    from gradscope.model.losses import get_loss
    from gradscope.model.statedict import Choices, load_network

    rng = np.random.default_rng(seed)
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    d, h, vocab = 4, 5, 11
    arrays = {}
    if embedding:
        arrays["embedding.weight"] = rng.standard_normal((vocab, d))
        arrays["embedding.weight"][0] = 0.0
    for k in range(layers):
        for suffix in ("", "_reverse") if bidirectional else ("",):
            width = d if k == 0 else h * (2 if bidirectional else 1)
            arrays[f"rnn.weight_ih_l{k}{suffix}"] = rng.standard_normal((gates * h, width)) * 0.5
            arrays[f"rnn.weight_hh_l{k}{suffix}"] = rng.standard_normal((gates * h, h)) * 0.5
            arrays[f"rnn.bias_ih_l{k}{suffix}"] = rng.standard_normal(gates * h) * 0.1
            arrays[f"rnn.bias_hh_l{k}{suffix}"] = rng.standard_normal(gates * h) * 0.1
    arrays["fc.weight"] = rng.standard_normal((1, h * (2 if bidirectional else 1)))
    arrays["fc.bias"] = np.zeros(1)
    net, _ = load_network(arrays, "test", Choices(cell))
    net.loss, net.padding_idx = get_loss("bce"), 0 if embedding else None
    return net


@pytest.mark.parametrize("cell, layers, bidirectional, embedding, readout", [
    ("lstm", 2, True, True, "last"), ("gru", 2, True, False, "mean"), ("rnn", 3, False, True, "max"),
])
def test_a_network_checkpointed_equals_its_full_path(cell, layers, bidirectional, embedding, readout):
    from gradscope.bptt.network import bptt as full_bptt

    net = _network(cell, layers, bidirectional, embedding)
    net.readout = readout
    rng = np.random.default_rng(1)
    b, t = 5, 37
    lengths = rng.integers(3, t + 1, b)
    mask = np.arange(t)[None, :] < lengths[:, None]
    x = rng.integers(1, 11, (b, t)) * mask if embedding else rng.standard_normal((b, t, 4)) * mask[:, :, None]
    y = rng.integers(0, 2, (b, 1)).astype(float)
    traj, full = full_bptt(net, x, y, mask)
    run = checkpointed_bptt(net, x, y, mask, segment=6)
    assert run.loss == pytest.approx(full.loss, rel=RTOL)
    for k in range(layers):
        for d in range(net.directions):
            ours, theirs = run.layers[k][d], full.layers[k][d]
            real = np.isfinite(theirs.log_rows)
            assert np.array_equal(real, np.isfinite(ours.log_rows))  # -inf at the same (pad) steps
            np.testing.assert_allclose(ours.log_rows[real], theirs.log_rows[real], rtol=RTOL)
            for name, g in theirs.params.items():
                np.testing.assert_allclose(ours.params[name], g, rtol=RTOL, atol=1e-15 * np.abs(g).max(),
                                           err_msg=f"{name} l{k}d{d}")
    for name, g in full.head.items():
        np.testing.assert_allclose(run.head[name], g, rtol=RTOL, atol=1e-15)
    if embedding:
        np.testing.assert_allclose(run.embedding, full.embedding, rtol=RTOL, atol=1e-15)


def test_a_network_too_large_for_the_full_path_is_analysed_checkpointed(monkeypatch, tmp_path):
    net = _network("lstm", 2, True, True)
    from gradscope.model.statedict import Layout, export_network

    np.savez(tmp_path / "m.npz", **export_network(net, Layout(embedding="embedding.")))
    rng = np.random.default_rng(2)
    tokens = rng.integers(1, 11, (3, 400))
    np.save(tmp_path / "x.npy", tokens)
    np.save(tmp_path / "y.npy", np.array([0, 1, 1]))
    config = RunConfig(weights=str(tmp_path / "m.npz"), inputs=str(tmp_path / "x.npy"),
                       targets=str(tmp_path / "y.npy"))
    full = analyze(config)
    monkeypatch.setenv(LIMIT_ENV, "400K")
    ours = analyze(config)
    assert not full.setup.checkpointed and ours.setup.checkpointed and "checkpointed BPTT" in ours.data
    for a, b in zip(ours.layers, full.layers):
        np.testing.assert_allclose(a.log10_grad_norms, b.log10_grad_norms, rtol=RTOL)
        np.testing.assert_allclose(a.contributions, b.contributions, rtol=RTOL)
        assert a.flow.regime == b.flow.regime and a.flow.slope == pytest.approx(b.flow.slope, rel=RTOL)
    assert ours.lyapunov.leading_exponent == pytest.approx(full.lyapunov.leading_exponent, rel=RTOL)
    assert ours.depth.ratio == pytest.approx(full.depth.ratio, rel=RTOL)
