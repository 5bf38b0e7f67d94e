"""read_keras: the files Keras writes (.keras, .h5, .weights.h5, by Keras 3 on its torch backend; Keras 2's
.h5, written here by hand in its layout) read back as the chain of layers, configs and weights Keras holds,
exactly; every model gradscope does not model, and every damaged or incomplete file, is an InputError
of one line that names the problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gradscope.errors import InputError
from gradscope.io.keras import KerasLayer, infer_keras_weights, is_keras_file, read_keras
from gradscope.io.weights import read_state_dict
from keras_support import torch_keras, user_example

h5py = pytest.importorskip("h5py")
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:keras"),  # Keras' own numpy 2 habits
    pytest.mark.filterwarnings("ignore:.*does not support masking:UserWarning"),  # GlobalMaxPooling1D's, as meant
]
OUTPUT_GRADS = "--output-grads"


@pytest.fixture(scope="module")
def keras():
    return torch_keras()


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        call(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


# -- models built by Keras -------------------------------------------------------------------------


def simple_rnn_relu(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((None, 3)), L.SimpleRNN(4, activation="relu"), L.Dense(2, "softmax")])


def gru_reset_before(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((None, 3)),
        L.GRU(4, reset_after=False, return_sequences=True),
        L.GRU(3, reset_after=False, use_bias=False),
        L.Dense(1),
    ])


def merge_modes(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((None, 3)),
        L.Masking(0.5),
        L.Bidirectional(L.SimpleRNN(3, return_sequences=True, use_bias=False), merge_mode="sum"),
        L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="ave"),
        L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode="mul"),
        L.GlobalMaxPooling1D(),
        L.Dropout(0.3),
        L.Dense(3, activation="softmax"),
    ])


def average_pooling(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((None,), dtype="int32"),
        L.Embedding(30, 4),
        L.Dropout(0.1),
        L.LSTM(3, return_sequences=True, recurrent_activation="hard_sigmoid", go_backwards=True),
        L.Dropout(0.2),
        L.LSTM(3, return_sequences=True, activation="relu"),
        L.GlobalAveragePooling1D(),
        L.Dense(1, activation="sigmoid"),
    ])


def per_step_head(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((None, 2)), L.SimpleRNN(3, return_sequences=True), L.Dense(4, "softmax")])


def functional(keras):
    L = keras.layers
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = L.Embedding(12, 4, mask_zero=True, name="embed")(tokens)
    x = L.LSTM(3, return_sequences=True, name="encoder")(x)
    x = L.Dropout(0.2)(x)
    x = L.Bidirectional(L.GRU(2), name="bi")(x)
    return keras.Model(tokens, L.Dense(1, activation="sigmoid", name="head")(x))


def functional_masking(keras):
    L = keras.layers
    features = keras.Input((None, 3), name="features")
    x = L.Masking(0.0)(features)
    x = L.Bidirectional(L.SimpleRNN(4, activation="relu", return_sequences=True), merge_mode="sum")(x)
    x = L.LSTM(2, return_sequences=True)(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(features, L.Dense(2, activation="softmax")(x))


MODELS = [user_example, simple_rnn_relu, gru_reset_before, merge_modes, average_pooling, per_step_head,
          functional, functional_masking]


def randomised(model, seed: int = 0):
    """The model with every weight drawn afresh (Keras starts biases at zero, which would prove little)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    """Each model built, randomised and saved in the three formats, once for the module."""
    folder = tmp_path_factory.mktemp("keras")
    out = {}
    for build in MODELS:
        model = randomised(build(keras))
        stem = folder / build.__name__
        model.save(f"{stem}.keras")
        model.save(f"{stem}.h5")
        model.save_weights(f"{stem}.weights.h5")
        out[build.__name__] = (model, stem)
    return out


def keras_weights(layer) -> dict[str, np.ndarray]:
    """A Keras layer's variables under Keras' own names, as numpy."""
    return {w.name: np.asarray(w.numpy()) for w in layer.weights}


def assert_layer_matches(ours: KerasLayer, theirs) -> None:
    """Class, name, every config key Keras has, and every weight exactly (float64, the same values)."""
    assert (ours.class_name, ours.name) == (type(theirs).__name__, theirs.name)
    config = theirs.get_config()
    for key, value in ours.config.items():
        if key in config:
            assert value == (tuple(value) if isinstance(config[key], list) else config[key]), (ours.name, key)
    if ours.class_name == "Bidirectional":
        assert ours.weights == {}
        assert_layer_matches(ours.forward, theirs.forward_layer)
        assert_layer_matches(ours.backward, theirs.backward_layer)
        assert ours.backward.config["go_backwards"] and not ours.forward.config["go_backwards"]
        return
    expected = keras_weights(theirs)
    assert list(ours.weights) == list(expected)
    for name, array in expected.items():
        assert ours.weights[name].dtype == np.float64
        assert np.array_equal(ours.weights[name], array), (ours.name, name)


def assert_model_matches(read, model) -> None:
    theirs = list(model.layers)
    ours = list(read.layers)
    if ours[0].class_name == "InputLayer" and type(theirs[0]).__name__ != "InputLayer":
        ours = ours[1:]  # Sequential's model.layers leaves the InputLayer out; its config keeps it
    assert [(l.class_name, l.name) for l in ours] == [(type(l).__name__, l.name) for l in theirs]
    for mine, layer in zip(ours, theirs):
        assert_layer_matches(mine, layer)
    flat = [a for l in read.layers for part in (l.forward, l.backward, l) if part for a in part.weights.values()]
    assert len(flat) == len(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(flat, model.get_weights()))


@pytest.mark.parametrize("build", MODELS, ids=lambda b: b.__name__)
def test_keras_and_h5_files_read_as_keras_holds_them(keras, saved, build):
    model, stem = saved[build.__name__]
    archive = read_keras(f"{stem}.keras")
    assert (archive.format, archive.keras_version, archive.backend) == ("keras", keras.__version__, None)
    assert_model_matches(archive, model)
    legacy = read_keras(Path(f"{stem}.h5"))
    assert (legacy.format, legacy.keras_version, legacy.backend) == ("h5", keras.__version__, "torch")
    assert_model_matches(legacy, model)


@pytest.mark.parametrize("build", MODELS, ids=lambda b: b.__name__)
def test_weights_file_reads_with_its_architecture(saved, build):
    model, stem = saved[build.__name__]
    for architecture in (model.to_json(), json.loads(model.to_json())):
        read = read_keras(f"{stem}.weights.h5", architecture=architecture)
        assert read.format == "weights.h5" and read.keras_version is None
        assert_model_matches(read, model)


def test_user_example_reads_as_the_chain_it_is(saved):
    model, stem = saved["user_example"]
    read = read_keras(f"{stem}.keras")
    assert [l.class_name for l in read.layers] == ["InputLayer", "Embedding", "Bidirectional", "GRU", "Dense"]
    embedding, bi, gru, head = read.layers[1:]
    assert embedding.config == {"input_dim": 20, "output_dim": 5, "mask_zero": True}
    assert bi.config == {"merge_mode": "concat"}
    assert bi.forward.name == "forward_lstm" and bi.backward.name == "backward_lstm"
    assert bi.forward.config == {
        "units": 4, "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
        "unit_forget_bias": True, "return_sequences": True, "go_backwards": False, "zero_output_for_mask": True,
    }
    assert bi.forward.weights["kernel"].shape == (5, 16) and bi.forward.weights["bias"].shape == (16,)
    assert gru.config["reset_after"] and gru.weights["kernel"].shape == (8, 9) and gru.weights["bias"].shape == (2, 9)
    assert not gru.config["return_sequences"]
    assert head.config == {"units": 1, "activation": "sigmoid", "use_bias": True}


def test_description_is_read_only(saved):
    read = read_keras(f"{saved['user_example'][1]}.keras")
    head = read.layers[-1]
    with pytest.raises(TypeError):
        head.config["activation"] = "relu"
    with pytest.raises(ValueError):
        head.weights["kernel"][0, 0] = 1.0
    with pytest.raises(AttributeError):
        read.layers = ()


def test_activations_are_kept_as_given(saved):
    relu = read_keras(f"{saved['simple_rnn_relu'][1]}.keras").layers[1]
    assert relu.config["activation"] == "relu"
    first, second = [l for l in read_keras(f"{saved['average_pooling'][1]}.h5").layers if l.class_name == "LSTM"]
    assert (first.config["recurrent_activation"], first.config["go_backwards"]) == ("hard_sigmoid", True)
    assert second.config["activation"] == "relu"


def test_functional_chain_is_ordered_by_its_nodes(saved):
    """The config's layer list shuffled: the inbound nodes still give the chain, and each class's one
    group in the weights store still finds its layer."""
    model, stem = saved["functional"]
    config = json.loads(model.to_json())
    config["config"]["layers"] = config["config"]["layers"][::-1]
    read = read_keras(f"{stem}.weights.h5", architecture=config)
    assert [l.name for l in read.layers] == [l.name for l in model.layers]
    assert [l.class_name for l in read.layers] == ["InputLayer", "Embedding", "LSTM", "Dropout", "Bidirectional",
                                                   "Dense"]
    assert_model_matches(read, model)


def test_functional_mask_nodes_are_recognised_and_checked(saved):
    model, stem = saved["functional_masking"]
    config = json.loads(model.to_json())
    ops = [e["class_name"] for e in config["config"]["layers"] if e.get("module", "").startswith("keras.src.ops")]
    assert ops == ["NotEqual", "Any"]  # what Keras 3 records for Masking's mask
    assert [l.class_name for l in read_keras(f"{stem}.keras").layers] == [
        "InputLayer", "Masking", "Bidirectional", "LSTM", "GlobalAveragePooling1D", "Dense"]
    not_equal = next(e for e in config["config"]["layers"] if e["class_name"] == "NotEqual")
    not_equal["inbound_nodes"][0]["args"][1] = 1.0  # a mask other than Masking(0.0)'s
    message = one_line_error(read_keras, f"{stem}.weights.h5", architecture=config)
    assert "is called with a mask other than the one Keras derives" in message and OUTPUT_GRADS in message


# -- models gradscope does not model ---------------------------------------------------------------


def sequential(keras, *layers, inputs=(None, 3), dtype="float32"):
    return keras.Sequential([keras.Input(inputs, dtype=dtype), *layers])


def refused_models(keras):
    L = keras.layers

    @keras.saving.register_keras_serializable(package="gradscope_tests")
    class Scale(L.Layer):
        def call(self, x):
            return 2.0 * x

    features = keras.Input((None, 3), name="features")
    h = L.LSTM(3, return_sequences=True, name="shared")
    branch = L.LSTM(3, name="lstm_a")(features)
    mask = keras.ops.any(keras.ops.not_equal(features, 1.0), axis=-1)
    return {
        "conv": (sequential(keras, L.Conv1D(2, 2, name="conv"), L.LSTM(2), L.Dense(1)), "Conv1D", "conv"),
        "conv_lstm": (sequential(keras, L.ConvLSTM1D(2, 2, name="clstm"), L.Flatten(), L.Dense(1),
                                 inputs=(None, 5, 2)), "ConvLSTM1D", "clstm"),
        "custom": (sequential(keras, Scale(name="scale"), L.LSTM(2), L.Dense(1)), "Scale", "scale"),
        "norm": (sequential(keras, L.LSTM(2, name="rnn"), L.LayerNormalization(name="ln"), L.Dense(1)),
                 "LayerNormalization", "ln"),
        "relu_head": (sequential(keras, L.LSTM(2), L.Dense(3, activation="relu", name="hidden")), "Dense", "hidden"),
        "two_dense": (sequential(keras, L.LSTM(2), L.Dense(3, name="d1"), L.Dense(1, name="d2")), "Dense", "d2"),
        "stateful": (keras.Sequential([keras.Input(batch_shape=(2, None, 3)), L.GRU(2, stateful=True, name="st"),
                                       L.Dense(1)]), "GRU", "st"),
        "no_head": (sequential(keras, L.LSTM(2, name="last")), "LSTM", "last"),
        "no_rnn": (sequential(keras, L.GlobalAveragePooling1D(), L.Dense(1)), None, None),
        "attention": (keras.Model(features, L.Dense(1)(L.GlobalAveragePooling1D()(
            L.Attention(name="att")([h(features), h(features)])))), "Attention", "att"),
        "two_outputs": (keras.Model(features, [L.Dense(1, name="o1")(branch), L.Dense(1, name="o2")(branch)]),
                        None, None),
        "shared": (keras.Model(features, L.Dense(1)(L.GlobalMaxPooling1D()(h(h(features))))), "LSTM", "shared"),
        "own_mask": (keras.Model(features, L.Dense(1)(L.LSTM(2, name="masked")(features, mask=mask))),
                     "LSTM", "masked"),
    }


REFUSED = ["conv", "conv_lstm", "custom", "norm", "relu_head", "two_dense", "stateful", "no_head", "no_rnn",
           "attention", "two_outputs", "shared", "own_mask"]


@pytest.fixture(scope="module")
def refused(keras, tmp_path_factory):
    folder = tmp_path_factory.mktemp("refused")
    out = {}
    for key, (model, cls, name) in refused_models(keras).items():
        model.save(folder / f"{key}.keras")
        out[key] = (folder / f"{key}.keras", cls, name)
    return out


@pytest.mark.parametrize("key", REFUSED)
def test_model_gradscope_does_not_model_is_named(refused, key):
    path, cls, name = refused[key]
    message = one_line_error(read_keras, path)
    assert message.startswith(f"Keras file {path}")
    if name is not None:
        assert repr(name) in message and cls in message
    assert OUTPUT_GRADS in message or "no recurrent layer" in message


def test_refusals_say_why(refused):
    reasons = {
        "relu_head": "has activation 'relu'; gradscope models a Dense head with sigmoid, softmax or linear",
        "two_dense": "Dense layer 'd2' comes after Dense layer 'd1'",
        "stateful": "carries its state over from the previous batch (stateful=True)",
        "no_head": "ends with LSTM layer 'last', not a Dense head",
        "no_rnn": "has no recurrent layer",
        "two_outputs": "functional model of 1 inputs and 2 outputs",
        "shared": "layer 'shared' is called 2 times",
        "own_mask": "layer 'masked' is called with a mask other than the one Keras derives",
        "custom": "Scale layer 'scale' is a custom layer (gradscope_tests>Scale)",
        "conv": "Conv1D layer 'conv' is of a class gradscope does not model",
    }
    for key, reason in reasons.items():
        assert reason in one_line_error(read_keras, refused[key][0]), key


def model_config(layers: list[dict]) -> dict:
    return {"class_name": "Sequential", "config": {"name": "s", "layers": layers}}


def lstm_entry(name="lstm", **config) -> dict:
    return {"class_name": "LSTM", "config": {"name": name, "units": 2, "activation": "tanh",
                                              "recurrent_activation": "sigmoid", **config}}


DENSE = {"class_name": "Dense", "config": {"name": "dense", "units": 1, "activation": "sigmoid"}}


@pytest.mark.parametrize("layers, problem", [
    ([{"class_name": "Bidirectional", "config": {"name": "bi", "merge_mode": None, "layer": lstm_entry()}}, DENSE],
     "returns its two directions as two tensors (merge_mode=None)"),
    ([lstm_entry(return_state=True), DENSE], "returns its state besides its output (return_state=True)"),
    ([lstm_entry(time_major=True), DENSE], "reads time-major input (time_major=True)"),
    ([lstm_entry(activation={"class_name": "function", "config": "mine"}), DENSE], "not the name of one of"),
    ([lstm_entry(), lstm_entry("lstm_1"), DENSE], "returns only its last output (return_sequences=False)"),
    ([lstm_entry(), {"class_name": "GlobalAveragePooling1D", "config": {"name": "pool"}}, DENSE],
     "but the pooling after it reads a sequence"),
    ([lstm_entry(return_sequences=True), {"class_name": "GlobalMaxPooling1D",
                                          "config": {"name": "p", "data_format": "channels_first"}}, DENSE],
     "pools over the features"),
    ([{"class_name": "Dropout", "config": {"name": "drop", "rate": 0.1}},
      {"class_name": "Embedding", "config": {"name": "e", "input_dim": 3, "output_dim": 2}}, lstm_entry(), DENSE],
     "Dropout layer 'drop' comes before the embedding"),
    ([lstm_entry(return_sequences=True), {"class_name": "Masking", "config": {"name": "m"}}, lstm_entry("l2"),
      DENSE], "Masking layer 'm' comes after LSTM layer 'lstm'"),
    ([{"class_name": "GRU", "config": {"name": "old", "units": 2, "activation": "tanh",
                                       "recurrent_activation": "hard_sigmoid"}}, DENSE], "does not say reset_after"),
    ([{"class_name": "Sequential", "config": {"name": "inner", "layers": []}}, DENSE],
     "is a model nested inside the model"),
])
def test_config_refusals_name_layer_and_problem(saved, layers, problem):
    stem = saved["simple_rnn_relu"][1]
    message = one_line_error(read_keras, f"{stem}.weights.h5", architecture=model_config(layers))
    assert problem in message


# -- weights files alone ---------------------------------------------------------------------------


def test_weights_file_alone_names_what_it_does_not_record(saved):
    stem = saved["user_example"][1]
    message = one_line_error(read_keras, f"{stem}.weights.h5")
    assert message == (
        f"Keras file {stem}.weights.h5 holds weights only (save_weights), which do not record "
        "embedding: mask_zero; bidirectional: activation, recurrent_activation; "
        "gru: return_sequences, activation, recurrent_activation, go_backwards; dense: activation; "
        'give the .keras file (model.save("model.keras")), or the architecture as well: '
        "architecture= the JSON of model.to_json()"
    )


def test_weights_file_alone_settles_classes_sizes_and_order(saved):
    model, stem = saved["user_example"]
    inferred = infer_keras_weights(f"{stem}.weights.h5")
    assert [(l.class_name, l.name) for l in inferred.layers] == [(type(l).__name__, l.name) for l in model.layers]
    embedding, bi, gru, head = inferred.layers
    assert embedding.config == {"input_dim": 20, "output_dim": 5}
    assert bi.config == {"merge_mode": "concat"}  # the GRU reads 8 = 2 x 4 columns
    assert bi.forward.class_name == "LSTM" and bi.forward.config == {
        "units": 4, "use_bias": True, "go_backwards": False, "return_sequences": True}
    assert gru.config == {"units": 3, "use_bias": True, "reset_after": True}
    assert head.config == {"units": 1, "use_bias": True}
    for ours, layer in zip(inferred.layers, model.layers):
        for part, theirs in ((ours.forward, getattr(layer, "forward_layer", None)), (ours, layer)):
            if part is not None and theirs is not None and part.weights:
                assert all(np.array_equal(part.weights[k], v) for k, v in keras_weights(theirs).items())


def test_weights_file_alone_of_merges_pooling_and_masking(saved):
    inferred = infer_keras_weights(f"{saved['merge_modes'][1]}.weights.h5")
    bis = [l for l in inferred.layers if l.class_name == "Bidirectional"]
    assert [b.forward.class_name for b in bis] == ["SimpleRNN", "GRU", "LSTM"]
    assert all("merge_mode" not in b.config for b in bis)  # H wide: sum, ave or mul, which shapes do not tell
    assert [l.class_name for l in inferred.layers if not l.weights and not l.forward] == [
        "Masking", "GlobalMaxPooling1D", "Dropout"]
    assert all(b.forward.config["return_sequences"] for b in bis)  # the pooling reads a sequence
    assert f"{inferred.layers[0].name}: mask_value" in inferred.unsettled
    assert f"{bis[0].name}: merge_mode, activation" in inferred.unsettled
    assert not any(fact.startswith("the order") for fact in inferred.unsettled)


def test_weights_file_alone_of_an_older_keras_3(saved, tmp_path):
    """Keras 3 wrote no group for a layer without weights, and no layer names, before it wrote both."""
    path = tmp_path / "old.weights.h5"
    path.write_bytes(Path(f"{saved['merge_modes'][1]}.weights.h5").read_bytes())
    with h5py.File(path, "a") as f:
        for name in list(f["layers"]):
            if not any(hasattr(node, "shape") for node in _nodes(f["layers"][name])):
                del f["layers"][name]
        for node in _nodes(f):
            node.attrs.pop("name", None)
    inferred = infer_keras_weights(path)
    assert [l.name for l in inferred.layers] == ["bidirectional", "bidirectional_1", "bidirectional_2", "dense"]
    assert inferred.unsettled[0] == "which layers without weights (Masking, pooling) the model has: the file lists none"


def _nodes(group) -> list:
    """Every group and dataset below ``group``."""
    found = []
    group.visititems(lambda _name, node: found.append(node))  # a callback returning None visits them all
    return found


def test_weights_file_alone_of_gru_without_bias_and_ambiguous_order(keras, tmp_path):
    L = keras.layers
    gru = infer_keras_weights(write_weights(keras, tmp_path / "g.weights.h5", L.GRU(4, reset_after=False,
                                            return_sequences=True), L.GRU(3, use_bias=False), L.Dense(1)))
    assert gru.layers[0].config["reset_after"] is False
    assert "reset_after" not in gru.layers[1].config
    assert f"{gru.layers[1].name}: return_sequences, activation, recurrent_activation, reset_after, " \
           "go_backwards" in gru.unsettled
    # an LSTM and a GRU of 4 units on 4 features: either could come first
    both = infer_keras_weights(write_weights(keras, tmp_path / "o.weights.h5", L.LSTM(4, return_sequences=True),
                                             L.GRU(4), L.Dense(1), features=4))
    assert any(fact.startswith("the order of") for fact in both.unsettled)


def write_weights(keras, path: Path, *layers, features: int = 3) -> Path:
    randomised(sequential(keras, *layers, inputs=(None, features))).save_weights(path)
    return path


def test_weights_of_another_model_are_refused(keras, saved, tmp_path):
    L = keras.layers
    other = write_weights(keras, tmp_path / "wide.weights.h5", L.SimpleRNN(5, activation="relu"), L.Dense(2, "softmax"))
    architecture = saved["simple_rnn_relu"][0].to_json()
    message = one_line_error(read_keras, other, architecture=architecture)
    assert "SimpleRNN layer 'simple_rnn'" in message and "has shape (3, 5); its config" in message
    extra = write_weights(keras, tmp_path / "more.weights.h5", L.SimpleRNN(4, return_sequences=True),
                          L.SimpleRNN(4, activation="relu"), L.Dense(2, "softmax"))
    message = one_line_error(read_keras, extra, architecture=architecture)
    assert "holds weights of layers the architecture does not have (simple_rnn_1)" in message


def test_architecture_with_a_whole_model_is_refused(saved):
    model, stem = saved["simple_rnn_relu"]
    message = one_line_error(read_keras, f"{stem}.keras", architecture=model.to_json())
    assert message.endswith("holds its own architecture; architecture= is for weights-only files")


def test_architecture_from_a_json_file(saved, tmp_path):
    model, stem = saved["functional"]
    path = tmp_path / "model.json"
    path.write_text(model.to_json())
    assert_model_matches(read_keras(f"{stem}.weights.h5", architecture=path), model)
    path.write_text("{not json")
    assert "is not JSON" in one_line_error(read_keras, f"{stem}.weights.h5", architecture=path)


# -- Keras 2's legacy .h5, written in its layout ---------------------------------------------------


def keras2_rnn(cls: str, name: str, units: int, **extra) -> dict:
    """A Keras 2 (tf.keras 2.x) recurrent layer's config, every key its get_config writes."""
    config = {
        "name": name, "trainable": True, "dtype": "float32", "return_sequences": False, "return_state": False,
        "go_backwards": False, "stateful": False, "unroll": False, "time_major": False, "units": units,
        "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
        "recurrent_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
        "kernel_constraint": None, "recurrent_constraint": None, "bias_constraint": None, "dropout": 0.0,
        "recurrent_dropout": 0.0, "implementation": 2,
    }
    if cls == "LSTM":
        config["unit_forget_bias"] = True
    if cls == "GRU":
        config["reset_after"] = True
    config.update(extra)
    return {"class_name": cls, "config": config}


def keras2_user_example() -> tuple[dict, list[tuple[str, list[tuple[str, np.ndarray]]]]]:
    """Keras 2's config of the user's example, and each layer's weights under Keras 2's names (tf.keras 2.x:
    a recurrent layer's variables live in its cell, 'lstm_cell')."""
    rng = np.random.default_rng(2)

    def w(*shape):
        return rng.normal(size=shape).astype(np.float32)

    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, None], "dtype": "int32",
                                                "sparse": False, "ragged": False, "name": "embedding_input"}},
        {"class_name": "Embedding", "config": {"name": "embedding", "trainable": True, "batch_input_shape": [None, None],
                                               "dtype": "float32", "input_dim": 20, "output_dim": 5,
                                               "embeddings_initializer": {"class_name": "RandomUniform", "config": {}},
                                               "embeddings_regularizer": None, "activity_regularizer": None,
                                               "embeddings_constraint": None, "mask_zero": True, "input_length": None}},
        {"class_name": "Bidirectional", "config": {"name": "bidirectional", "trainable": True, "dtype": "float32",
                                                   "layer": keras2_rnn("LSTM", "lstm", 4, return_sequences=True),
                                                   "merge_mode": "concat"}},
        keras2_rnn("GRU", "gru", 3),
        {"class_name": "Dense", "config": {"name": "dense", "trainable": True, "dtype": "float32", "units": 1,
                                           "activation": "sigmoid", "use_bias": True}},
    ]}}
    weights = [
        ("embedding", [("embedding/embeddings:0", w(20, 5))]),
        ("bidirectional", [(f"bidirectional/{d}_lstm/lstm_cell/{n}:0", w(*s)) for d in ("forward", "backward")
                           for n, s in (("kernel", (5, 16)), ("recurrent_kernel", (4, 16)), ("bias", (16,)))]),
        ("gru", [("gru/gru_cell/kernel:0", w(8, 9)), ("gru/gru_cell/recurrent_kernel:0", w(3, 9)),
                 ("gru/gru_cell/bias:0", w(2, 9))]),
        ("dense", [("dense/kernel:0", w(3, 1)), ("dense/bias:0", w(1))]),
    ]
    return config, weights


def write_keras2_weights(group, weights, version: str = "2.15.0", chunked: str | None = None) -> None:
    """Keras 2's save_weights_to_hdf5_group: layer_names, backend and keras_version as attributes, a group
    per layer (sorted by name) whose weight_names list its datasets, created at those (nested) names."""
    group.attrs["layer_names"] = np.array([name.encode("utf8") for name, _ in weights])
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = version.encode("utf8")
    for layer, arrays in sorted(weights, key=lambda item: item[0]):
        g = group.create_group(layer)
        names = np.array([name.encode("utf8") for name, _ in arrays]) if arrays else np.asarray([])
        if layer == chunked:  # an attribute too long for an HDF5 header: Keras splits it in numbered chunks
            for i, part in enumerate(np.array_split(names, 2)):
                g.attrs[f"weight_names{i}"] = part
        else:
            g.attrs["weight_names"] = names
        for name, value in arrays:
            g.create_dataset(name, data=value)


def write_keras2_h5(path: Path, config: dict, weights, version: str = "2.15.0", chunked: str | None = None) -> Path:
    """What tf.keras 2.x's model.save("m.h5") writes."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = version
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode("utf8")
        f.attrs["training_config"] = json.dumps({"loss": "binary_crossentropy"}).encode("utf8")
        write_keras2_weights(f.create_group("model_weights"), weights, version, chunked)
    return path


def keras22_names(weights):
    """The same weights as Keras 2.2 (before TF 2) named them: no cell in the path."""
    return [(layer, [(name.replace("/lstm_cell", "").replace("/gru_cell", ""), value) for name, value in arrays])
            for layer, arrays in weights]


@pytest.mark.parametrize("names", ["tf.keras", "keras 2.2"])
def test_keras2_h5_reads_every_weight_exactly(tmp_path, names):
    config, weights = keras2_user_example()
    if names == "keras 2.2":
        weights = keras22_names(weights)
    path = write_keras2_h5(tmp_path / "keras2.h5", config, weights, chunked="bidirectional")
    read = read_keras(path)
    assert (read.format, read.keras_version, read.backend) == ("h5", "2.15.0", "tensorflow")
    assert [(l.class_name, l.name) for l in read.layers] == [
        ("InputLayer", "embedding_input"), ("Embedding", "embedding"), ("Bidirectional", "bidirectional"),
        ("GRU", "gru"), ("Dense", "dense")]
    bi = read.layers[2]
    # Keras 2 writes backward_layer only when the user gives one: the forward layer's mirror
    assert (bi.forward.name, bi.backward.name) == ("forward_lstm", "backward_lstm")
    assert (bi.forward.config["go_backwards"], bi.backward.config["go_backwards"]) == (False, True)
    assert bi.forward.config["zero_output_for_mask"] and bi.backward.config["return_sequences"]
    by_layer = dict(weights)
    parts = {"embedding": [read.layers[1]], "bidirectional": [bi.forward, bi.backward], "gru": [read.layers[3]],
             "dense": [read.layers[4]]}
    for layer, owners in parts.items():
        ours = [a for owner in owners for a in owner.weights.values()]
        assert len(ours) == len(by_layer[layer])
        for array, (_name, value) in zip(ours, by_layer[layer]):
            assert array.dtype == np.float64 and np.array_equal(array, value)
    assert list(bi.forward.weights) == ["kernel", "recurrent_kernel", "bias"]


def test_keras2_functional_with_masking(tmp_path):
    rng = np.random.default_rng(3)
    layers = [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, None, 3], "dtype": "float32",
                                                "name": "input_1"}, "name": "input_1", "inbound_nodes": []},
        {"class_name": "Masking", "config": {"name": "masking", "mask_value": 0.0}, "name": "masking",
         "inbound_nodes": [[["input_1", 0, 0, {}]]]},
        dict(keras2_rnn("LSTM", "lstm", 2), name="lstm", inbound_nodes=[[["masking", 0, 0, {}]]]),
        {"class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "softmax", "use_bias": True},
         "name": "dense", "inbound_nodes": [[["lstm", 0, 0, {}]]]},
    ]
    config = {"class_name": "Functional", "config": {"name": "model", "layers": layers,
                                                      "input_layers": [["input_1", 0, 0]],
                                                      "output_layers": [["dense", 0, 0]]}}
    arrays = {"kernel": rng.normal(size=(3, 8)), "recurrent_kernel": rng.normal(size=(2, 8)), "bias": rng.normal(size=8)}
    weights = [("input_1", []), ("masking", []), ("lstm", [(f"lstm/lstm_cell/{k}:0", v) for k, v in arrays.items()]),
               ("dense", [("dense/kernel:0", rng.normal(size=(2, 2))), ("dense/bias:0", rng.normal(size=2))])]
    read = read_keras(write_keras2_h5(tmp_path / "f.h5", config, weights))
    assert [l.class_name for l in read.layers] == ["InputLayer", "Masking", "LSTM", "Dense"]
    assert all(np.array_equal(read.layers[2].weights[k], v) for k, v in arrays.items())
    layers[2]["inbound_nodes"] = [[["masking", 0, 0, {"mask": ["input_1", 0, 0]}]]]  # a mask of the user's
    message = one_line_error(read_keras, write_keras2_h5(tmp_path / "g.h5", config, weights))
    assert "layer 'lstm' is called with a mask other than" in message


def test_keras2_save_weights_h5_needs_the_architecture(tmp_path):
    config, weights = keras2_user_example()
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as f:
        write_keras2_weights(f, weights)
    message = one_line_error(read_keras, path)
    assert "holds weights only (Keras 2's save_weights)" in message and "model.to_json()" in message
    read = read_keras(path, architecture=config)
    assert (read.format, read.keras_version, read.backend) == ("legacy weights.h5", "2.15.0", "tensorflow")
    assert np.array_equal(read.layers[-1].weights["kernel"], weights[-1][1][0][1])


def test_keras2_weights_out_of_place_are_refused(tmp_path):
    config, weights = keras2_user_example()
    weights[3] = ("dense", weights[3][1][::-1])  # bias listed before kernel
    message = one_line_error(read_keras, write_keras2_h5(tmp_path / "swapped.h5", config, weights))
    assert "Dense layer 'dense''s array 'dense/bias:0' is in the place of its kernel" in message


def test_keras1_file_is_refused(tmp_path):
    config, weights = keras2_user_example()
    message = one_line_error(read_keras, write_keras2_h5(tmp_path / "old.h5", config, weights, version="1.2.2"))
    assert "was written by Keras 1" in message


def test_bfloat16_weights_widen_exactly(tmp_path):
    """Keras stores bfloat16 as 2-byte opaque values marked dtype="bfloat16": the top half of a float32."""
    rng = np.random.default_rng(5)
    shapes = {"layers/simple_rnn/cell/vars": [(1, 2), (2, 2), (2,)], "layers/dense/vars": [(2, 1), (1,)]}
    expected = {}
    path = tmp_path / "bf16.weights.h5"
    with h5py.File(path, "w") as f:
        for group, arrays in shapes.items():
            for i, shape in enumerate(arrays):
                bits = (rng.normal(size=shape).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
                f.create_dataset(f"{group}/{i}", data=bits.view("V2")).attrs["dtype"] = "bfloat16"
                expected[f"{group}/{i}"] = (bits.astype(np.uint32) << 16).view(np.float32)
    architecture = model_config([
        {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": [None, None, 1]}},
        {"class_name": "SimpleRNN", "config": {"name": "rnn", "units": 2, "activation": "tanh"}},
        {"class_name": "Dense", "config": {"name": "head", "units": 1, "activation": "linear"}},
    ])
    _x, rnn, head = read_keras(path, architecture=architecture).layers
    for name, array in zip(("kernel", "recurrent_kernel", "bias"), rnn.weights.values()):
        assert np.array_equal(array, expected[f"layers/simple_rnn/cell/vars/{list(rnn.weights).index(name)}"])
    assert np.array_equal(head.weights["kernel"], expected["layers/dense/vars/0"])
    assert head.weights["bias"].dtype == np.float64


# -- files that are not Keras models, or damaged ---------------------------------------------------


def test_damaged_files_are_one_line_errors(saved, tmp_path):
    stem = saved["user_example"][1]
    cases = {}
    for suffix in (".keras", ".h5", ".weights.h5"):
        data = Path(f"{stem}{suffix}").read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: len(data) // 2])
        cases[cut] = "truncated or damaged" if suffix != ".keras" else "damaged .keras archive"
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(bytes(range(256)))
    cases[garbage] = "is neither a .keras archive nor an HDF5 file"
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    cases[empty] = "is empty"
    not_keras = tmp_path / "data.h5"
    with h5py.File(not_keras, "w") as f:
        f.create_dataset("x", data=np.ones(3))
    cases[not_keras] = "is an HDF5 file, but not one Keras wrote"
    other_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "hi")
    cases[other_zip] = "is a zip archive, but not a .keras file"
    bad_config = tmp_path / "bad_config.keras"
    with zipfile.ZipFile(f"{stem}.keras") as src, zipfile.ZipFile(bad_config, "w") as zf:
        for name in src.namelist():
            zf.writestr(name, b"{oops" if name == "config.json" else src.read(name))
    cases[bad_config] = "damaged .keras archive"
    cases[tmp_path / "missing.keras"] = "Keras file not found"
    for path, problem in cases.items():
        assert problem in one_line_error(read_keras, path), path


@pytest.mark.parametrize("suffix", [".h5", ".weights.h5"])
def test_corrupted_bytes_read_or_are_input_errors(saved, tmp_path, suffix):
    """h5py reports damage as OSError, RuntimeError, KeyError, ValueError or UnicodeError, wherever it
    meets it: each is an InputError (a changed weight value, which HDF5 does not checksum, reads)."""
    model, stem = saved["user_example"]
    data = Path(f"{stem}{suffix}").read_bytes()
    rng = np.random.default_rng(7)
    path = tmp_path / f"corrupt{suffix}"
    for _ in range(60):
        damaged = bytearray(data)
        for at in rng.integers(0, len(data), size=4):
            damaged[at] = rng.integers(0, 256)
        path.write_bytes(bytes(damaged))
        try:
            read_keras(path, architecture=model.to_json() if suffix == ".weights.h5" else None)
        except InputError as exc:
            assert "\n" not in str(exc)


def test_missing_h5py_names_the_extra(saved, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    message = one_line_error(read_keras, f"{saved['user_example'][1]}.h5")
    assert "needs h5py: pip install 'gradscope-bptt[keras]'" in message


def test_keras_files_are_recognised_by_content(saved, tmp_path):
    stem = saved["user_example"][1]
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(Path(f"{stem}.keras").read_bytes())
    for path in (f"{stem}.keras", f"{stem}.h5", f"{stem}.weights.h5", renamed):
        assert is_keras_file(path)
    npz = tmp_path / "w.npz"
    np.savez(npz, a=np.ones(2))
    assert not is_keras_file(npz) and not is_keras_file(tmp_path / "nope") and not is_keras_file(tmp_path)
    assert [l.class_name for l in read_keras(renamed).layers][-1] == "Dense"


def test_state_dict_reader_points_keras_files_to_read_keras(saved):
    stem = saved["user_example"][1]
    for suffix, what in ((".keras", "is a Keras model (.keras)"), (".h5", "is an HDF5 file (Keras' .h5")):
        message = one_line_error(read_state_dict, f"{stem}{suffix}")
        assert what in message and message.endswith("Keras models are read by gradscope.io.keras.read_keras")
        assert "neither an .npz" not in message


def test_reading_never_imports_keras(saved):
    code = (
        "import sys\n"
        "from gradscope.io.keras import read_keras\n"
        f"for p in {[f'{saved[m][1]}{s}' for m in ('user_example', 'functional') for s in ('.keras', '.h5')]!r}:\n"
        "    read_keras(p)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'torch', 'tf_keras')]\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
