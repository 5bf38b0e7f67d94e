"""gradscope.keras.Recorder: the report of a Keras model's current weights on a probe batch, every
N training batches, against Keras itself (its torch backend in float64, REFERENCE 4a's recipe):
the loss, and every weight's gradient through torch autograd, 1e-9, for the models the CLI reads
(masking, pooling, merges, hard_sigmoid, reset_after=False among them); the records in a file that
gradscope history reads; what it refuses, as skipped records that say why."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
pytest.importorskip("h5py")
pytestmark = pytest.mark.torch

import gradscope.keras as gk  # noqa: E402
from gradscope.commands.analyze import gradient_arrays  # noqa: E402
from gradscope.commands.history import history  # noqa: E402

B, T, D, H = 6, 7, 3, 5


@pytest.fixture(autouse=True)
def fresh_session():
    """Keras names layers by counters over the session: each test leaves them as it found them
    (the reader's tests compare names like "forward_lstm")."""
    keras.utils.clear_session()
    yield
    keras.utils.clear_session()


@pytest.fixture
def float64_keras():
    """Keras computing in float64, restored afterwards (as tests/io/test_keras_files.py does)."""
    from keras.src.backend.common import dtypes

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    narrowed = dtypes.BIT64_TO_BIT32_DTYPE.get("float64")
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"
    yield
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)
    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = narrowed


def data(loss: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((24, T, D))
    if loss == "binary_crossentropy":
        y = (x[:, 0, 0] > 0).astype("float64")[:, None]
    elif loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, 3, 24).astype("float64")
    else:
        y = rng.standard_normal((24, 2))
    return x, y


HEADS = {"binary_crossentropy": (1, "sigmoid"), "sparse_categorical_crossentropy": (3, "softmax"), "mse": (2, None)}
MODELS = {
    "simplernn-tanh": lambda: [keras.layers.SimpleRNN(H)],
    "simplernn-relu-2": lambda: [keras.layers.SimpleRNN(H, activation="relu", return_sequences=True),
                                 keras.layers.SimpleRNN(H, activation="relu")],
    "lstm-2": lambda: [keras.layers.LSTM(H, return_sequences=True), keras.layers.Dropout(0.3), keras.layers.LSTM(H)],
    "gru": lambda: [keras.layers.GRU(H)],
    "bi-lstm-2": lambda: [keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True)),
                          keras.layers.Bidirectional(keras.layers.LSTM(H))],
    "bi-gru": lambda: [keras.layers.Bidirectional(keras.layers.GRU(H))],
    # what the callback took only once it read the model as the CLI does (model/keras.py)
    "masked-lstm": lambda: [keras.layers.Masking(0.0), keras.layers.LSTM(H)],
    "pooled-lstm": lambda: [keras.layers.LSTM(H, return_sequences=True), keras.layers.GlobalAveragePooling1D()],
    "bi-gru-sum": lambda: [keras.layers.Bidirectional(keras.layers.GRU(H), merge_mode="sum")],
    "gru-reset-before": lambda: [keras.layers.GRU(H, reset_after=False)],
    "lstm-hard-sigmoid-relu": lambda: [keras.layers.LSTM(H, activation="relu", recurrent_activation="hard_sigmoid")],
    # stacks that mix a bidirectional and a one-way layer: the headline is still the top layer's forward
    "bi-then-one": lambda: [keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True)),
                            keras.layers.GRU(H)],
    "one-then-bi": lambda: [keras.layers.GRU(H, return_sequences=True), keras.layers.Bidirectional(keras.layers.LSTM(H))],
}
CASES = [("simplernn-tanh", "binary_crossentropy"), ("simplernn-relu-2", "mse"),
         ("lstm-2", "sparse_categorical_crossentropy"), ("gru", "binary_crossentropy"), ("bi-lstm-2", "mse"),
         ("bi-gru", "sparse_categorical_crossentropy"), ("masked-lstm", "mse"), ("pooled-lstm", "binary_crossentropy"),
         ("bi-gru-sum", "sparse_categorical_crossentropy"), ("gru-reset-before", "mse"),
         ("lstm-hard-sigmoid-relu", "mse")]


def model_of(name: str, loss: str):
    units, activation = HEADS[loss]
    model = keras.Sequential([keras.Input((T, D)), *MODELS[name](), keras.layers.Dense(units, activation=activation)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    return model


def keras_gradients(model, x, y) -> tuple[float, dict[str, np.ndarray]]:
    """Keras' loss on (x, y) and its gradient of every weight, by torch autograd, by weight path."""
    loss_fn = keras.losses.get(model.loss)
    pred = model(torch.as_tensor(x), training=False)
    loss = keras.ops.mean(loss_fn(torch.as_tensor(y), pred))
    values = [w.value for w in model.trainable_weights]
    grads = torch.autograd.grad(loss, values)
    return float(loss.detach()), {w.path: g.detach().numpy() for w, g in zip(model.trainable_weights, grads)}


def gradscope_name(path: str) -> str:
    """gradscope's name of a Keras weight (``<layer>/[forward|backward/]<weight>``, as --save-grads
    writes a Keras model's gradients) from its path (``sequential/bidirectional/forward_lstm/lstm_cell/kernel``)."""
    parts = path.split("/")[1:]  # without the model's own name
    side = [p.split("_")[0] for p in parts[1:-1] if p.startswith(("forward_", "backward_"))]
    return "/".join([parts[0], *side, parts[-1]])


@pytest.mark.parametrize("name, loss", CASES, ids=[f"{n}-{l}" for n, l in CASES])
def test_the_record_is_the_gradient_keras_computes(float64_keras, name, loss):
    x, y = data(loss)
    if name == "masked-lstm":
        x[:, -2:] = 0.0  # every sequence's last two steps masked
        x[::2, -4:] = 0.0  # half of them four
    model = model_of(name, loss)
    rec = gk.Recorder(probe=(x[:B], y[:B]), every=2)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[rec])
    assert [r.step for r in rec.records] == [2, 4, 6] and all(r.skipped is None for r in rec.records)
    assert all(r.dropout_left_out == (name == "lstm-2") for r in rec.records)
    record = rec.record()  # the weights as training left them
    want_loss, grads = keras_gradients(model, x[:B], y[:B])
    assert record.result.loss == pytest.approx(want_loss, rel=1e-9)
    ours = gradient_arrays(record.result)
    for path, want in grads.items():
        key = gradscope_name(path)
        if "hard-sigmoid" in name:  # torch's hardsigmoid backward keeps a float32 1/6 (REFERENCE §4a;
            # tests/math/test_keras_network.py's HARD_SIGMOID_TOL)
            np.testing.assert_allclose(ours[key], want, rtol=0, atol=3.6e-8 * max(1.0, np.abs(want).max()), err_msg=key)
        else:
            np.testing.assert_allclose(ours[key], want, rtol=1e-9, atol=1e-12, err_msg=key)


def test_records_in_a_file_are_read_by_history(tmp_path):
    x, y = data("binary_crossentropy")
    model = model_of("lstm-2", "binary_crossentropy")
    path = tmp_path / "keras.ndjson"
    for measure in ("flow", "full"):
        rec = gk.Recorder(probe=(x[:B], y[:B]), every=3, to=path, measure=measure)
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[rec])
        rec.close()
        docs = [json.loads(line) for line in path.read_text().splitlines()]
        assert [d["step"] for d in docs] == [3, 6, 9, 12]
        assert all(d["source"] == "keras" and d["measure"] == measure and d["dropout_left_out"] for d in docs)
        result = history(path)
        assert [p.step for p in result.passes] == [3, 6, 9, 12] and all(p.loss is not None for p in result.passes)
        assert [(k["layer"], k["direction"]) for k in result.layers] == [(0, "forward"), (1, "forward")]


@pytest.mark.parametrize("name", ["bi-lstm-2", "bi-then-one", "one-then-bi"])
def test_a_light_record_is_the_full_records_flow(float64_keras, name):
    """Its verdict too: the top layer's forward direction, also where layers have unlike directions
    (the light record took the entry at (layers - 1) x the top's directions: layer 0 reverse)."""
    x, y = data("mse")
    model = model_of(name, "mse")
    full = gk.Recorder(probe=(x[:B], y[:B]), every=1)
    light = gk.Recorder(probe=(x[:B], y[:B]), every=1, measure="flow")
    full.set_model(model), light.set_model(model)  # noqa: E702
    a, b = full.record(), light.record()
    assert b.result.loss == a.result.loss and b.regime == a.regime
    top = [f for f in b.result.layers if f.layer == max(g.layer for g in b.result.layers)][0]
    assert top.direction == "forward" and b.regime == top.flow.regime
    for got, want in zip(b.result.layers, a.result.layers, strict=True):
        np.testing.assert_array_equal(got.log10_grad_norms, want.log10_grad_norms)
        assert got.flow == want.flow


@pytest.mark.parametrize("layers, loss, head, reason", [
    (lambda: [keras.layers.Conv1D(H, 2), keras.layers.LSTM(H)], "mse", None, "Keras model 'sequential'"),
    (lambda: [keras.layers.Conv1D(H, 2), keras.layers.LSTM(H)], "mse", None, "Conv1D"),
    (lambda: [keras.layers.LSTM(H)], "binary_crossentropy", None, "activation 'sigmoid'"),
    (lambda: [keras.layers.LSTM(H, return_sequences=True)], "binary_crossentropy", "time-distributed",
     "activation 'sigmoid'"),
    (lambda: [keras.layers.LSTM(H)], "huber", None, "is not one gradscope computes"),
    # options that change what the loss computes: skipped, not recorded wrong
    (lambda: [keras.layers.LSTM(H)], "smoothed", "sigmoid", "label_smoothing=0.2"),
    (lambda: [keras.layers.LSTM(H)], "summed", None, "reduction='sum'"),
])
def test_models_it_cannot_reproduce_are_skipped_with_the_reason(layers, loss, head, reason):
    compiled = {"smoothed": keras.losses.BinaryCrossentropy(label_smoothing=0.2),
                "summed": keras.losses.MeanSquaredError(reduction="sum")}.get(loss, loss)
    loss = {"smoothed": "binary_crossentropy", "summed": "mse", "huber": "mse"}.get(loss, loss)
    x, y = data(loss)
    units = 1 if loss == "binary_crossentropy" else 2
    dense = keras.layers.Dense(units, activation=None if head == "time-distributed" else head)
    if head == "time-distributed":  # a linear Dense at every step, under a loss that wants probabilities
        dense = keras.layers.TimeDistributed(dense)
        y = np.repeat(y[:, None], T, axis=1)
    model = keras.Sequential([keras.Input((T, D)), *layers(), dense])
    model.compile(optimizer="adam", loss=compiled)
    rec = gk.Recorder(probe=(x[:B], y[:B]), every=1)
    with pytest.warns(UserWarning, match="not recorded"):
        model.fit(x[:8], y[:8], batch_size=4, epochs=1, verbose=0, callbacks=[rec])
    assert len(rec.records) == 2 and all(r.result is None for r in rec.records)
    assert reason in rec.records[0].skipped, rec.records[0].skipped
    assert rec.records[0].skipped == rec.records[1].skipped  # no temporary path: one reason, one warning
    assert "gradscope-keras-" not in rec.records[0].skipped and "--output-grads" not in rec.records[0].skipped
    assert rec.records[0].as_json()["source"] == "keras"


def test_a_loss_in_a_list_of_one_is_that_loss_and_loss_weights_are_refused(float64_keras):
    x, y = data("mse")
    model = model_of("gru", "mse")
    model.compile(optimizer="adam", loss=["mse"])
    rec = gk.Recorder(probe=(x[:B], y[:B]), every=1)
    rec.set_model(model)
    assert rec.record().skipped is None
    model.compile(optimizer="adam", loss="mse", loss_weights=2.0)
    with pytest.warns(UserWarning, match="not recorded"):
        assert "loss_weights=2.0" in rec.record().skipped


def test_a_full_record_names_the_model_not_a_temporary_file():
    x, y = data("mse")
    model = model_of("gru", "mse")
    rec = gk.Recorder(probe=(x[:B], y[:B]), every=1)
    rec.set_model(model)
    assert rec.record().result.config["weights"] == f"<Keras model {model.name!r}>"


def test_recorder_checks_its_arguments():
    with pytest.raises(ValueError, match=r"probe must be a pair \(x, y\)"):
        gk.Recorder(probe=np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="every"):
        gk.Recorder(probe=(np.zeros((1, 2, 3)), np.zeros(1)), every=0)
    with pytest.raises(ValueError, match="measure"):
        gk.Recorder(probe=(np.zeros((1, 2, 3)), np.zeros(1)), measure="all")
    # a probe whose targets do not match its inputs: at once, not a skipped record at every step
    with pytest.raises(ValueError, match=r"probe y must hold one target .* for each of x's 4 sequences"):
        gk.Recorder(probe=(np.zeros((4, 2, 3)), np.zeros(3)))
    with pytest.raises(ValueError, match="probe x must be a batch of sequences"):
        gk.Recorder(probe=(np.zeros(4), np.zeros(4)))
