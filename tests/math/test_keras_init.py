"""``compare --start init`` on a Keras model starts from Keras' initialisation of it (model/keras.py's
keras_init), not PyTorch's: glorot_uniform kernels, orthogonal recurrent kernels, zero biases but
the LSTM's forget gate's (1, unit_forget_bias), Embedding U(-0.05, 0.05). Each property is checked
on Keras' own freshly initialised model first (so that the test pins what Keras does, not what we
think it does), then on ours."""

from __future__ import annotations

import numpy as np
import pytest
from keras_support import torch_keras, user_example

from gradscope.config import RunConfig
from gradscope.experiment import build
from gradscope.model.reinit import torch_init

pytestmark = pytest.mark.torch
H_LSTM, H_GRU, D, V = 4, 3, 5, 20


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The issue's model (masked tokens, Bidirectional LSTM, GRU, sigmoid head) and one with an LSTM
    whose forget bias Keras leaves at zero, as Keras initialised them, saved; and token inputs."""
    keras = torch_keras()
    folder = tmp_path_factory.mktemp("keras-init")
    issue = user_example(keras, V)
    plain = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(H_LSTM, unit_forget_bias=False),
                              keras.layers.Dense(2)])
    issue.save(folder / "issue.keras")
    plain.save(folder / "plain.keras")
    tokens = np.random.default_rng(0).integers(1, V, (6, 7))
    return folder, tokens


def network_of(path, inputs):
    setup = build(RunConfig(weights=str(path), inputs=inputs, seed=0))
    return setup.network, setup.layout


def check_keras_initialisation(net, forget_bias: bool = True) -> None:
    """The properties of Keras' default initialisers, on a network's arrays."""
    if net.embedding is not None:
        assert np.abs(net.embedding).max() <= 0.05
    for k, d in net.each_layer():
        layer = net.layer(k, d)
        cell, params, h = layer.cell, layer.params, layer.hidden_size
        w_ih, w_hh = params[cell.input_weight], params[cell.recurrent]
        rows = len(cell.gates) * h
        limit = np.sqrt(6.0 / (layer.input_size + rows))  # glorot_uniform on Keras' (D, G*H) kernel
        assert np.abs(w_ih).max() <= limit and np.abs(w_ih).max() > 0.5 * limit
        np.testing.assert_allclose(w_hh.T @ w_hh, np.eye(h), atol=1e-6)  # orthonormal: (H, G*H) rows
        biases = np.concatenate([params[n] for n in params if n not in (cell.input_weight, cell.recurrent)])
        if cell.name == "lstm":
            f = params["b_ih"][h : 2 * h]
            np.testing.assert_array_equal(f, np.full(h, 1.0 if forget_bias else 0.0))
            assert not np.delete(biases, np.arange(h, 2 * h)).any()
        else:
            assert not biases.any()
    wy = net.head["Wy"]
    assert np.abs(wy).max() <= np.sqrt(6.0 / sum(wy.shape)) and not net.head["by"].any()


def test_keras_own_initialisation_has_these_properties(saved):
    folder, tokens = saved
    net, _ = network_of(folder / "issue.keras", tokens)
    check_keras_initialisation(net)
    plain, _ = network_of(folder / "plain.keras", np.random.default_rng(1).standard_normal((6, 7, 3)))
    check_keras_initialisation(plain, forget_bias=False)


def test_start_init_on_a_keras_model_is_keras_initialisation(saved):
    folder, tokens = saved
    net, layout = network_of(folder / "issue.keras", tokens)
    fresh = layout.initialise(net, np.random.default_rng(3))
    check_keras_initialisation(fresh)
    again = layout.initialise(net, np.random.default_rng(3))
    for (k, d) in net.each_layer():  # the same seed, the same weights; new arrays of the same shapes
        for name, value in fresh.layers[k][d].items():
            np.testing.assert_array_equal(value, again.layers[k][d][name])
            assert value.shape == net.layers[k][d][name].shape and value is not net.layers[k][d][name]
    assert not np.array_equal(fresh.embedding, net.embedding)
    plain, plain_layout = network_of(folder / "plain.keras", np.random.default_rng(1).standard_normal((6, 7, 3)))
    check_keras_initialisation(plain_layout.initialise(plain, np.random.default_rng(0)), forget_bias=False)
    # PyTorch's initialisation has none of them: U(-1/sqrt(H), 1/sqrt(H)) everywhere
    torch_like = torch_init(net, np.random.default_rng(3))
    with pytest.raises(AssertionError):
        check_keras_initialisation(torch_like)


def test_compare_from_init_trains_from_keras_initialisation(saved, tmp_path, capsys):
    """What compare's runs start from (commands.train.mitigated_setup, start "init"): Keras'
    initialisation, and a cure's setting on top of it (orthogonal: each gate block orthogonal)."""
    import json

    from gradscope.cli import main
    from gradscope.commands.train import mitigated_setup
    from gradscope.mitigations import NoMitigation, make_mitigation

    folder, tokens = saved
    config = RunConfig(weights=str(folder / "issue.keras"), inputs=tokens, seed=0)
    check_keras_initialisation(mitigated_setup(config, NoMitigation(), "init").network)
    treated = mitigated_setup(config, make_mitigation("orthogonal"), "init").network
    for k, d in treated.each_layer():
        layer = treated.layer(k, d)
        for block in np.split(layer.params[layer.cell.recurrent], len(layer.cell.gates)):
            np.testing.assert_allclose(block.T @ block, np.eye(layer.hidden_size), atol=1e-12)
    np.save(tmp_path / "tokens.npy", tokens)
    np.save(tmp_path / "labels.npy", (tokens[:, 0] > V // 2).astype(float))
    argv = ["compare", "--weights", str(folder / "issue.keras"), "--inputs", str(tmp_path / "tokens.npy"),
            "--targets", str(tmp_path / "labels.npy"), "--steps", "2", "--mitigations", "orthogonal",
            "--start", "init", "--jobs", "1", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["start"] == "init" and [r["mitigation"] for r in doc["runs"]] == ["none", "orthogonal"]


@pytest.mark.parametrize("cure", ["gru", "lstm", "relu"])
def test_a_cell_swap_on_a_keras_model_draws_the_new_layers_as_keras_does(saved, cure):
    """compare's gru, lstm and relu cures on a Keras model: every layer new, as Keras initialises a
    new layer of that class (from either start), with Keras' biases: one for SimpleRNN and LSTM
    (the recurrent bias held at zero, not trained), GRU(reset_after=True)'s two."""
    from gradscope.commands.train import mitigated_setup
    from gradscope.mitigations import make_mitigation

    folder, tokens = saved
    config = RunConfig(weights=str(folder / "issue.keras"), inputs=tokens, seed=0)
    for start in ("init", "trained"):
        swapped = mitigated_setup(config, make_mitigation(cure), start).network
        cell = {"relu": "rnn"}.get(cure, cure)
        assert all(swapped.cell_of(k).name == cell for k in range(swapped.num_layers))
        check_keras_initialisation(swapped)
        recurrent_biases = {f"l{k}{'_reverse' if d else ''}.b_hh"
                            for k, d in swapped.each_layer()}
        assert recurrent_biases <= set(swapped.parameters()) if cell == "gru" else \
            not recurrent_biases & set(swapped.parameters())
