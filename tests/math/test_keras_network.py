"""A Keras model's network against Keras itself: the loss and the gradient of every trainable variable
to 1e-9, float64 on Keras' torch backend (REFERENCE §4a), for every layer and option gradscope
reads: SimpleRNN, LSTM, GRU with the reset gate after and before the product, activations and hard
sigmoid gates, Bidirectional merges, go_backwards, Embedding(mask_zero=True) and Masking with pre-,
post- and inner padding, both poolings, a head at every step, the three heads and their losses;
files written by Keras as .keras and .h5 (and .weights.h5 with the architecture).

Keras computes a probability loss from the head's logits on its TensorFlow backend (and in Keras 2):
the oracle takes the logits (the head's activation set to linear) and torch's logits losses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gradscope.bptt import bptt
from gradscope.config import RunConfig
from gradscope.errors import InputError
from gradscope.experiment import build
from gradscope.io.keras import read_keras
from gradscope.model.keras import load_keras_network
from keras_support import torch_keras, user_example

h5py = pytest.importorskip("h5py")
torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:keras"),
    pytest.mark.filterwarnings("ignore:.*does not support masking:UserWarning"),  # GlobalMaxPooling1D's, as meant
    pytest.mark.filterwarnings("ignore:.*legacy:UserWarning"),
]
B, T, V = 4, 7, 11
TOL = 1e-9
HARD_SIGMOID_TOL = 3.6e-8  # torch's hardsigmoid backward keeps a float32 1/6 (REFERENCE §4a)


@pytest.fixture(scope="module")
def keras():
    keras = torch_keras()
    from keras.src.backend.common import dtypes

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    before = dtypes.BIT64_TO_BIT32_DTYPE.get("float64")
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")  # the global policy keeps the floatx of its first use
    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"  # else float64 products run in float32 (2e-6)
    yield keras
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)
    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = before


# -- the models: (builder, inputs: "tokens" | "features", mask: None | "zero" | value) -----------------


def issue_example(keras):
    return user_example(keras, V)


def simple_rnn_relu(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((None, 3)), L.SimpleRNN(4, activation="relu"), L.Dense(3, "softmax")])


def mixed_activations(keras):
    """SimpleRNNs of two activations in one stack: each layer computes with its own."""
    L = keras.layers
    return keras.Sequential([keras.Input((None, 3)), L.SimpleRNN(4, activation="relu", return_sequences=True),
                             L.SimpleRNN(3), L.Dense(2)])


def gru_reset_before(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((None, 3)), L.Masking(0.5),
        L.GRU(4, reset_after=False, return_sequences=True), L.GRU(3, reset_after=False, use_bias=False),
        L.Dense(2),
    ])


def merge_modes(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((None, 3)), L.Masking(0.5),
        L.Bidirectional(L.SimpleRNN(3, return_sequences=True, use_bias=False), merge_mode="sum"),
        L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="ave"),
        L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode="mul"),
        L.GlobalMaxPooling1D(), L.Dropout(0.3), L.Dense(3, activation="softmax"),
    ])


def backwards_average(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((None,), dtype="int32"), L.Embedding(V, 4, mask_zero=True), L.Dropout(0.1),
        L.LSTM(3, return_sequences=True, go_backwards=True), L.Dropout(0.2),
        L.LSTM(3, return_sequences=True, activation="relu"), L.GlobalAveragePooling1D(),
        L.Dense(1, activation="sigmoid"),
    ])


def hard_sigmoid_gates(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((None,), dtype="int32"), L.Embedding(V, 4),
        L.LSTM(3, return_sequences=True, recurrent_activation="hard_sigmoid"),
        L.GRU(3, recurrent_activation="hard_sigmoid", activation="sigmoid"), L.Dense(2, activation="softmax"),
    ])


def per_step_head(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((None, 2)), L.Masking(0.0), L.SimpleRNN(3, return_sequences=True),
                             L.Dense(4, "softmax")])


def time_distributed_head(keras):
    """TimeDistributed(Dense): the Dense at every step, its arrays a group deeper in the files."""
    L = keras.layers
    return keras.Sequential([keras.Input((None, 2)), L.Masking(0.0), L.LSTM(3, return_sequences=True),
                             L.TimeDistributed(L.Dense(4, "softmax"))])


def max_over_repeats(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((None,), dtype="int32"), L.Embedding(V, 3, mask_zero=True),
        L.GRU(3, return_sequences=True, activation="linear"), L.GlobalMaxPooling1D(), L.Dense(2),
    ])


def functional(keras):
    L = keras.layers
    ids = keras.Input((None,), dtype="int32", name="ids")
    h = L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="ave", name="bi")(
        L.Embedding(V, 4, mask_zero=True, name="embed")(ids))
    h = L.SimpleRNN(2, activation="sigmoid", name="top")(L.Dropout(0.2)(h))
    return keras.Model(ids, L.Dense(1, activation="sigmoid", name="head")(h))


def functional_masking(keras):
    """zero_output_for_mask on a layer of its own, and a GRU reading backwards, under a mean."""
    L = keras.layers
    values = keras.Input((None, 3), name="values")
    h = L.LSTM(3, return_sequences=True, zero_output_for_mask=True)(L.Masking(0.0)(values))
    h = L.GlobalAveragePooling1D()(L.GRU(2, return_sequences=True, go_backwards=True)(h))
    return keras.Model(values, L.Dense(2)(h))


MODELS = {
    issue_example: ("tokens", "zero"), simple_rnn_relu: ("features", None), mixed_activations: ("features", None),
    gru_reset_before: ("features", 0.5),
    merge_modes: ("features", 0.5), backwards_average: ("tokens", "zero"), hard_sigmoid_gates: ("tokens", None),
    per_step_head: ("features", 0.0), time_distributed_head: ("features", 0.0),
    max_over_repeats: ("tokens", "zero"), functional: ("tokens", "zero"),
    functional_masking: ("features", 0.0),
}
HARD_SIGMOID = {hard_sigmoid_gates}


def padded() -> np.ndarray:
    """(B, T) real steps: sequence 0 pre-padded, 1 post-padded, 2 with a masked step inside, 3 whole."""
    real = np.ones((B, T), bool)
    real[0, :2] = real[1, -3:] = real[2, 3] = False
    return real


def tokens(mask, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and their real steps; without a mask, pads are real token-0 inputs."""
    x, real = rng.integers(1, V, (B, T)), padded()
    x[~real] = 0
    return x, real if mask == "zero" else np.ones((B, T), bool)


def features(model, rng, mask) -> tuple[np.ndarray, np.ndarray]:
    """Feature vectors, the masked steps' features all Masking's value."""
    x, real = rng.normal(size=(B, T, model.inputs[0].shape[-1])), padded()
    if mask is None:
        return x, np.ones((B, T), bool)
    x[~real] = mask
    return x, real


def targets(model, rng, real) -> tuple[np.ndarray, str, bool]:
    head = getattr(model.layers[-1], "layer", model.layers[-1])  # TimeDistributed(Dense): the Dense
    units, activation = head.units, head.activation.__name__
    per_step = len(model.outputs[0].shape) == 3
    shape = (B, T) if per_step else (B,)
    if activation == "sigmoid":
        return rng.integers(0, 2, shape + (1,)).astype(float), "bce", per_step
    if activation == "softmax":
        return rng.integers(0, units, shape).astype(float), "ce", per_step
    return rng.normal(size=shape + (units,)), "mse", per_step


def randomised(model, seed: int):
    rng = np.random.default_rng(seed)
    model.set_weights([0.6 * rng.normal(size=w.shape) for w in model.get_weights()])
    return model


def named_variables(keras, model) -> dict:
    """Keras' trainable variables under gradscope's names for their gradients: <layer>/<weight>, a
    Bidirectional's <layer>/forward/<weight> and <layer>/backward/<weight>."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            for part, sub in (("forward", layer.forward_layer), ("backward", layer.backward_layer)):
                out.update((f"{layer.name}/{part}/{w.name}", w) for w in sub.trainable_weights)
        else:
            out.update((f"{layer.name}/{w.name}", w) for w in layer.trainable_weights)
    return out


def keras_loss_and_grads(keras, model, x, y, loss: str, per_step: bool, real: np.ndarray):
    """Keras' loss from the head's logits (as its TensorFlow backend computes it) and the gradient of
    every trainable variable by torch autograd."""
    import torch.nn.functional as F

    head = getattr(model.layers[-1], "layer", model.layers[-1])  # TimeDistributed(Dense): the Dense
    activation = head.activation
    head.activation = keras.activations.linear
    try:
        logits = model(keras.ops.convert_to_tensor(x))
    finally:
        head.activation = activation
    target = torch.tensor(y)
    if per_step:  # Keras' loss of a masked sequence output: the mean over its real positions
        valid = torch.tensor(real)
        logits, target = logits[valid], target[valid]
    if loss == "bce":
        value = F.binary_cross_entropy_with_logits(logits, target.reshape(logits.shape))
    elif loss == "ce":
        value = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1).long())
    else:
        value = F.mse_loss(logits, target.reshape(logits.shape))
    variables = named_variables(keras, model)
    grads = torch.autograd.grad(value, [w.value for w in variables.values()])
    return float(value.detach()), {name: g.detach().numpy() for name, g in zip(variables, grads)}


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    """Each model built in float64, randomised, saved as .keras, .h5 and .weights.h5, with a batch."""
    folder = tmp_path_factory.mktemp("keras_network")
    out = {}
    for seed, (builder, (kind, mask)) in enumerate(MODELS.items()):
        model = randomised(builder(keras), seed)
        stem = folder / builder.__name__
        model.save(f"{stem}.keras")
        model.save(f"{stem}.h5")
        model.save_weights(f"{stem}.weights.h5")
        rng = np.random.default_rng(100 + seed)
        x, real = tokens(mask, rng) if kind == "tokens" else features(model, rng, mask)
        y, loss, per_step = targets(model, rng, real)
        out[builder.__name__] = (model, stem, x, y, loss, per_step, real)
    return out


def ours(path: str, x: np.ndarray, y: np.ndarray):
    """gradscope's loss and gradients (Keras' names and shapes) of the model file, as every command builds it."""
    setup = build(RunConfig(weights=path, inputs=x, targets=y))
    _, grads = bptt(setup.network, setup.batch.x, setup.batch.y, setup.batch.mask)
    return setup, grads.loss, setup.layout.export_grads(setup.network, grads)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("name", [b.__name__ for b in MODELS])
def test_loss_and_every_gradient_equal_keras(keras, saved, name, suffix):
    model, stem, x, y, loss, per_step, real = saved[name]
    setup, value, grads = ours(f"{stem}{suffix}", x, y)
    assert setup.network.loss.name == loss
    expected_loss, expected = keras_loss_and_grads(keras, model, x, y, loss, per_step, real)
    tol = HARD_SIGMOID_TOL if name in {b.__name__ for b in HARD_SIGMOID} else TOL
    assert value == pytest.approx(expected_loss, rel=TOL, abs=TOL)
    assert set(grads) == set(expected)
    for key, g in expected.items():
        assert grads[key].shape == g.shape, key
        np.testing.assert_allclose(grads[key], g, rtol=0, atol=tol * max(1.0, np.abs(g).max()), err_msg=key)


def test_masks_are_the_models_own(saved):
    """The mask each model computes: token 0 under mask_zero, Masking's value, none otherwise."""
    for name, (model, stem, x, y, *_rest, real) in saved.items():
        setup = build(RunConfig(weights=f"{stem}.keras", inputs=x, targets=y))
        mask = np.ones(x.shape[:2], bool) if setup.batch.mask is None else setup.batch.mask
        np.testing.assert_array_equal(mask, real, err_msg=name)


def test_pre_padding_is_the_unpadded_run(keras, saved):
    """Keras' pre-padding (pad_sequences' default) changes nothing: a masked step before the first real
    one carries the zero state and outputs zero."""
    model, stem, x, y, *_ = saved["issue_example"]
    setup, _, _ = ours(f"{stem}.keras", x, y)
    from gradscope.bptt import forward

    padded = forward(setup.network, x[:1], setup.network.input_mask(x[:1])).logits
    alone = forward(setup.network, x[:1, 2:], None).logits
    np.testing.assert_allclose(padded, alone, rtol=1e-13)


def test_weights_file_with_its_architecture_is_the_same_network(keras, saved):
    for name, (model, stem, *_rest) in saved.items():
        whole, layout = load_keras_network(read_keras(f"{stem}.keras"), name)
        alone, _ = load_keras_network(read_keras(f"{stem}.weights.h5", architecture=model.to_json()), name)
        for (a_name, a), (b_name, b) in zip(whole.parameters().items(), alone.parameters().items()):
            assert a_name == b_name and np.array_equal(a, b), (name, a_name)
        assert whole.describe() == alone.describe()


def test_saved_weights_load_into_keras(keras, saved, tmp_path):
    """--save-weights' store: model.load_weights takes it, and every variable is what gradscope held."""
    from gradscope.io.arrays import save_weights

    for name, (model, stem, *_rest) in saved.items():
        network, layout = load_keras_network(read_keras(f"{stem}.h5"), name)
        for params in network.parameters().values():
            params *= -1.5  # weights gradscope changed (training does this)
        path = tmp_path / f"{name}.weights.h5"
        save_weights(path, layout.export(network), "--save-weights", keras=True)
        clone = keras.models.clone_model(model)
        clone.load_weights(path)
        again, _ = load_keras_network(read_keras(path, architecture=model.to_json()), name)
        for (key, a), b in zip(network.parameters().items(), again.parameters().values()):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} {key}")
        for w, v in zip(clone.get_weights(), model.get_weights()):
            np.testing.assert_allclose(w, -1.5 * v, rtol=1e-15, atol=0)


def test_keras2_hard_sigmoid_is_keras2s_formula(keras, saved):
    """A file of Keras 2 gets Keras 2's hard_sigmoid, clip(0.2x + 0.5, 0, 1): against Keras 3 computing
    that formula as the layers' recurrent activation."""
    model, stem, x, y, loss, per_step, real = saved["hard_sigmoid_gates"]
    read = read_keras(f"{stem}.keras")
    network, layout = load_keras_network(dataclasses.replace(read, keras_version="2.15.0"), "keras 2")
    assert {network.cell_of(k).gate_activation for k in range(2)} == {"hard_sigmoid_keras2"}

    def keras2_hard_sigmoid(z):
        return keras.ops.clip(0.2 * z + 0.5, 0.0, 1.0)

    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    for layer in twin.layers:
        if hasattr(layer, "cell"):
            layer.cell.recurrent_activation = keras2_hard_sigmoid
    from gradscope.model.losses import get_loss

    network.loss = get_loss(loss)
    _, grads = bptt(network, x, y, network.input_mask(x))
    expected_loss, expected = keras_loss_and_grads(keras, twin, x, y, loss, per_step, real)
    assert grads.loss == pytest.approx(expected_loss, rel=TOL)
    for key, g in layout.export_grads(network, grads).items():
        np.testing.assert_allclose(g, expected[key], rtol=0, atol=TOL * max(1.0, np.abs(expected[key]).max()),
                                   err_msg=key)


def test_unsupported_activation_names_the_layer(keras, tmp_path):
    L = keras.layers
    model = keras.Sequential([keras.Input((None, 2)), L.LSTM(2, activation="elu", name="odd"), L.Dense(1)])
    model.save(tmp_path / "odd.keras")
    with pytest.raises(InputError) as err:
        build(RunConfig(weights=str(tmp_path / "odd.keras")))
    message = str(err.value)
    assert "\n" not in message and "LSTM layer 'odd'" in message and "elu" in message and "--output-grads" in message
