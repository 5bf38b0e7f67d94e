"""A Keras model through the CLI: every command takes --weights model.keras (or .h5) as it takes a
state dict, exits 0 and writes JSON its schema accepts; the gradients come out under Keras' names, the
weights as a store that model.load_weights reads; what gradscope cannot model is one line naming the
layer, exit 2."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from gradscope.cli import main
from gradscope.schemas import load_schema
from keras_support import torch_keras, user_example

h5py = pytest.importorskip("h5py")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:keras"),
              pytest.mark.filterwarnings("ignore:.*legacy:UserWarning")]
V, B, T = 12, 5, 8


@pytest.fixture(scope="module")
def keras():
    return torch_keras()


def classifier(keras):
    return user_example(keras, V)


def tagger(keras):
    """Features with Masking, a softmax at every step."""
    L = keras.layers
    return keras.Sequential([keras.Input((None, 3)), L.Masking(0.0), L.GRU(4, return_sequences=True, reset_after=False),
                             L.Dense(3, activation="softmax")])


@pytest.fixture(scope="module")
def files(keras, tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_cli")
    rng = np.random.default_rng(0)
    out = {}
    for build in (classifier, tagger):
        model = build(keras)
        model.set_weights([0.5 * rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
        for suffix in (".keras", ".h5", ".weights.h5"):
            path = folder / f"{build.__name__}{suffix}"
            model.save_weights(path) if suffix == ".weights.h5" else model.save(path)
            out[f"{build.__name__}{suffix}"] = str(path)
        out[build.__name__] = model
    x = rng.integers(1, V, (B, T))
    x[0, :3] = 0  # pre-padded
    x[1, 5:] = 0  # post-padded
    np.save(folder / "tokens.npy", x)
    np.save(folder / "labels.npy", rng.integers(0, 2, B).astype(float))
    values = rng.normal(size=(B, T, 3))
    values[2, 6:] = 0.0
    np.save(folder / "values.npy", values)
    np.save(folder / "tags.npy", np.eye(3)[rng.integers(0, 3, (B, T))])  # one-hot, as categorical_crossentropy takes
    out.update({name: str(folder / f"{name}.npy") for name in ("tokens", "labels", "values", "tags")})
    out["folder"] = folder
    return out


def data(files, model: str) -> list[str]:
    if model == "classifier":
        return ["--inputs", files["tokens"], "--targets", files["labels"]]
    return ["--inputs", files["values"], "--targets", files["tags"]]


def run_json(capsys, command: str, *argv) -> dict:
    code = main([command, *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.Draft202012Validator(load_schema(command)).validate(doc)
    return doc


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}: {err}"
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("gradscope: error: "), err
    return err


COMMANDS = {
    "analyze": [], "check": [], "spectrum": [], "train": ["--steps", "3"],
    "compare": ["--steps", "2", "--jobs", "1", "--mitigations", "clip-norm,orthogonal"],
    "sweep": ["--x", "recurrent_scale=0.5,1", "--jobs", "1"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("model", ["classifier", "tagger"])
def test_every_command_takes_a_keras_model(capsys, files, command, model):
    doc = run_json(capsys, command, "--weights", files[f"{model}.keras"], *data(files, model), *COMMANDS[command])
    if command == "analyze":
        loss = {"classifier": "bce", "tagger": "ce"}[model]
        assert doc["config"]["loss"] == loss and doc["network"]["padded"]
        assert doc["network"]["readout"] == {"classifier": "last", "tagger": "every"}[model]


def test_h5_and_keras_files_are_the_same_model(capsys, files):
    docs = [run_json(capsys, "analyze", "--weights", files[f"classifier{s}"], *data(files, "classifier"))
            for s in (".keras", ".h5")]
    assert docs[0]["loss"] == docs[1]["loss"] and docs[0]["network"] == docs[1]["network"]
    embedding, bi, gru, dense = (layer.name for layer in files["classifier"].layers)
    assert docs[0]["network"]["description"] == (
        f"Embedding '{embedding}' 12x5 mask_zero -> Bidirectional '{bi}' concat LSTM H=4 -> GRU '{gru}' H=3 "
        f"-> Dense '{dense}' 3->1 sigmoid")
    assert docs[0]["network"]["lengths"] == [5, 8]


def test_gradients_are_saved_under_keras_names_and_shapes(capsys, files, keras):
    path = files["folder"] / "grads.npz"
    run_json(capsys, "analyze", "--weights", files["classifier.keras"], *data(files, "classifier"),
             "--save-grads", str(path))
    model = files["classifier"]
    with np.load(path) as saved:
        grads = {k: saved[k] for k in saved.files if "/" in k}
    expected = {f"{layer.name}/{part}/{w.name}": w.shape
                for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)
                for part, sub in (("forward", layer.forward_layer), ("backward", layer.backward_layer))
                for w in sub.weights}
    expected.update({f"{layer.name}/{w.name}": w.shape for layer in model.layers
                     if not isinstance(layer, keras.layers.Bidirectional) for w in layer.weights})
    assert {k: g.shape for k, g in grads.items()} == {k: tuple(s) for k, s in expected.items()}
    bi, gru = model.layers[1].name, model.layers[2].name
    assert f"{bi}/backward/recurrent_kernel" in grads and grads[f"{gru}/bias"].shape == (2, 9)


@pytest.mark.parametrize("command, flag, extra", [
    ("analyze", "--save-weights", []), ("train", "--save-weights", ["--steps", "3"]),
    ("compare", "--save-best", ["--steps", "2", "--jobs", "1", "--mitigations", "clip-norm"]),
])
def test_saved_weights_load_into_keras(capsys, files, keras, command, flag, extra):
    path = files["folder"] / f"{command}.weights.h5"
    run_json(capsys, command, "--weights", files["classifier.h5"], *data(files, "classifier"), flag, str(path), *extra)
    model = files["classifier"]
    clone = keras.models.clone_model(model)
    clone.load_weights(path)
    changed = [not np.allclose(a, b) for a, b in zip(clone.get_weights(), model.get_weights())]
    assert any(changed) == (command != "analyze")  # trained weights differ; analyze writes them as read
    if command == "analyze":
        for a, b in zip(clone.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_one_hot_and_integer_labels_are_the_same_loss(capsys, files):
    one_hot = run_json(capsys, "analyze", "--weights", files["tagger.keras"], *data(files, "tagger"))
    classes = files["folder"] / "classes.npy"
    np.save(classes, np.load(files["tags"]).argmax(axis=-1))
    sparse = run_json(capsys, "analyze", "--weights", files["tagger.keras"], "--inputs", files["values"],
                      "--targets", str(classes))
    assert one_hot["loss"] == sparse["loss"]


def test_a_weights_store_alone_says_what_it_lacks(capsys, files):
    err = one_line_error(capsys, ["analyze", "--weights", files["classifier.weights.h5"]])
    assert "holds weights only" in err and "mask_zero" in err and ".keras" in err


@pytest.mark.parametrize("flag, value", [("--lengths", "labels"), ("--padding-idx", "0"), ("--rnn-key", "lstm")])
def test_flags_of_a_state_dict_are_refused(capsys, files, flag, value):
    err = one_line_error(capsys, ["analyze", "--weights", files["classifier.keras"], *data(files, "classifier"),
                                  flag, files.get(value, value)])
    assert f"{flag}: " in err and "is a Keras model" in err


def test_weights_of_a_keras_model_are_written_as_keras_reads_them(capsys, files):
    err = one_line_error(capsys, ["analyze", "--weights", files["classifier.keras"], "--save-weights",
                                  str(files["folder"] / "w.npz")])
    assert "ending in .weights.h5" in err


@pytest.mark.parametrize("layers, named", [
    (lambda L: [L.Conv1D(2, 2, name="conv"), L.LSTM(2), L.Dense(1)], "Conv1D layer 'conv'"),
    (lambda L: [L.LSTM(2, activation="elu", name="odd"), L.Dense(1)], "LSTM layer 'odd'"),
    (lambda L: [L.GRU(2, recurrent_activation="tanh", name="gates"), L.Dense(1)], "GRU layer 'gates'"),
])
def test_what_gradscope_does_not_model_is_one_line_naming_the_layer(capsys, files, keras, layers, named):
    model = keras.Sequential([keras.Input((None, 3)), *layers(keras.layers)])
    path = files["folder"] / "refused.keras"
    model.save(path)
    err = one_line_error(capsys, ["analyze", "--weights", str(path)])
    assert named in err and "--output-grads" in err


def test_a_cell_swap_s_weights_that_a_keras_file_cannot_take_are_refused_before_training(capsys, files):
    err = one_line_error(capsys, ["train", "--weights", files["classifier.keras"], *data(files, "classifier"),
                                  "--mitigation", "gru", "--steps", "100000",
                                  "--save-weights", str(files["folder"] / "swapped.weights.h5")])
    assert err.startswith("gradscope: error: --save-weights: ") and err.rstrip().endswith("nothing was trained")
    assert not (files["folder"] / "swapped.weights.h5").exists()


def test_relu_trained_weights_say_to_set_the_activation(capsys, files, keras):
    """A weights store holds no layer config: weights trained through the relu cure on a tanh
    SimpleRNN say to set activation='relu', and load into such a model."""
    L = keras.layers
    model = keras.Sequential([keras.Input((None, 3)), L.SimpleRNN(4), L.Dense(1)])
    path, saved = files["folder"] / "simple.keras", files["folder"] / "relu.weights.h5"
    model.save(path)
    x = np.random.default_rng(2).normal(size=(6, 5, 3))
    np.save(files["folder"] / "x.npy", x)
    np.save(files["folder"] / "y.npy", x[:, -1, :1])
    argv = ["--weights", str(path), "--inputs", str(files["folder"] / "x.npy"), "--targets",
            str(files["folder"] / "y.npy"), "--loss", "mse"]
    assert main(["train", *argv, "--steps", "3", "--mitigation", "relu", "--save-weights", str(saved)]) == 0
    err = capsys.readouterr().err
    assert "activation='relu' on its SimpleRNN layers" in err and len(err.splitlines()) == 1
    relu = keras.Sequential([keras.Input((None, 3)), L.SimpleRNN(4, activation="relu"), L.Dense(1)])
    relu.load_weights(saved)
    assert not all(np.array_equal(a, b) for a, b in zip(relu.get_weights(), model.get_weights()))


@pytest.mark.parametrize("backward", [
    lambda L: L.SimpleRNN(3, activation="tanh", go_backwards=True),
    lambda L: L.GRU(3, go_backwards=True),
])
def test_a_bidirectional_of_two_unlike_layers_is_refused(capsys, files, keras, backward):
    """gradscope models a Bidirectional of one cell: a backward layer of another activation (its
    label differs) or another class is one line naming the layer, never the forward layer's cell."""
    L = keras.layers
    model = keras.Sequential([keras.Input((None, 3)), L.Bidirectional(
        L.SimpleRNN(3, activation="relu"), backward_layer=backward(L), name="both"), L.Dense(1)])
    path = files["folder"] / "unlike.keras"
    model.save(path)
    err = one_line_error(capsys, ["analyze", "--weights", str(path)])
    assert "Bidirectional layer 'both' has a backward layer unlike its forward one" in err
