"""gradscope's report from inside a Keras training loop: a callback (the user's Keras installed).

    import gradscope.keras
    rec = gradscope.keras.Recorder(probe=(x_probe, y_probe), every=50, to="grads.ndjson")
    model.fit(x, y, epochs=5, callbacks=[rec])
    rec.records[-1]                         # (to=None) the last Record: step, regime, result

Every ``every``-th training batch, the callback reads the model's current weights and runs
``gradscope analyze`` (``measure="full"``) or the light measure (``measure="flow"``) on the probe
batch: BPTT from the model's loss on (x_probe, y_probe) through every layer and direction, the
same Record a ``gradscope.torch.attach`` recorder makes, with ``source`` "keras". The probe is fixed,
so the records follow the model, not the batches.

How the model reaches gradscope: its weights are saved to a temporary .weights.h5 file and read
with its architecture (``model.to_json()``) by gradscope.io.keras, and the recurrent layers put
in PyTorch's layout (io/keras_torch.py) as a state dict. That layout computes what Keras does for
Sequential models of this shape, and only those are taken (an InputError names what is not):

    [InputLayer] [Embedding(mask_zero=False)] recurrent layers [Dropout...] Dense
    recurrent   SimpleRNN (tanh or relu), LSTM, GRU(reset_after=True) (tanh, sigmoid gates), all
                of one class and size, or Bidirectional(merge_mode="concat") of them; every one
                but the last returns sequences, the last does not (the head reads its last output)
    head        Dense(sigmoid) + binary crossentropy, Dense(softmax) + (sparse) categorical
                crossentropy, or a linear Dense with from_logits=True or mean squared error

Masking and other merges need Keras' own masking semantics in the network (another piece of
issue 18); until then they are refused. Dropout (layers, dropout=, recurrent_dropout=) is the
identity here, as at inference: such a model's records say ``dropout_left_out``. The loss is the
one Keras' TensorFlow backend computes from the logits; Keras 3's torch backend clips
probabilities to [1e-7, 1 - 1e-7] (REFERENCE 4a), which differs only where |logit| > ~16.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from typing import Any

try:
    import keras
except ImportError as exc:  # pragma: no cover - keras is the user's
    raise ImportError("gradscope.keras needs Keras (pip install keras, and a backend: torch, tensorflow or jax)") from exc

import numpy as np

from .commands.analyze import analyze
from .config import RunConfig
from .errors import InputError
from .experiment import build
from .io.keras import KerasLayer, read_keras
from .io.keras_torch import to_torch
from .recording import MEASURES, Record, measure_flow, sink_for

__all__ = ["Recorder", "state_dict"]

RECURRENT = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
LOSSES = {  # Keras' loss names -> gradscope's loss, and the head activation it takes (or "linear" with logits)
    "binary_crossentropy": ("bce", "sigmoid"), "sparse_categorical_crossentropy": ("ce", "softmax"),
    "categorical_crossentropy": ("ce", "softmax"), "mean_squared_error": ("mse", "linear"), "mse": ("mse", "linear"),
}


def _loss_of(model: Any) -> tuple[str, str, bool]:
    """(gradscope's loss, the Keras loss's name, from_logits) of a compiled model."""
    loss = getattr(model, "loss", None)
    if loss is None:
        raise InputError("gradscope.keras.Recorder: compile the model with a loss first")
    if isinstance(loss, str):
        name, logits = loss, False
    else:
        config = loss.get_config() if hasattr(loss, "get_config") else {}
        name = config.get("name") or getattr(loss, "name", None) or getattr(loss, "__name__", "")
        logits = bool(config.get("from_logits", False))
    name = {"binary_crossentropy": "binary_crossentropy"}.get(name, name)
    if name not in LOSSES:
        raise InputError(f"gradscope.keras.Recorder: the loss {name!r} is not one gradscope computes "
                         f"({', '.join(sorted(LOSSES))})")
    return LOSSES[name][0], name, logits


def state_dict(model: Any) -> tuple[dict[str, np.ndarray], dict]:
    """The model's current weights in PyTorch's layout (``embedding.weight``, ``rnn.*``, ``fc.*``),
    and the settings that go with them: {"cell", "activation", "loss", "dropout", "categorical"}.

    Raises InputError for a model gradscope cannot reproduce this way (the module docstring).
    """
    loss, loss_name, logits = _loss_of(model)
    with tempfile.TemporaryDirectory(prefix="gradscope-keras-") as folder:
        path = os.path.join(folder, "model.weights.h5")
        model.save_weights(path)
        read = read_keras(path, architecture=json.loads(model.to_json()))
    layers = [layer for layer in read.layers if layer.class_name not in ("InputLayer", "Dropout")]
    dropout = any(layer.class_name == "Dropout" for layer in read.layers)
    arrays: dict[str, np.ndarray] = {}
    if layers and layers[0].class_name == "Embedding":
        if layers[0].config.get("mask_zero"):
            raise InputError("gradscope.keras.Recorder: Embedding(mask_zero=True) masks token 0, which needs Keras' "
                             "masking in gradscope's network (not there yet)")
        arrays["embedding.weight"] = np.array(layers[0].weights["embeddings"])
        layers = layers[1:]
    if len(layers) < 2 or layers[-1].class_name != "Dense":
        raise InputError("gradscope.keras.Recorder takes Sequential models of recurrent layers under a Dense head, "
                         f"got {', '.join(l.class_name for l in read.layers)}")
    head, recurrent = layers[-1], layers[:-1]
    cells = set()
    for k, layer in enumerate(recurrent):
        last = k == len(recurrent) - 1
        parts = _directions(layer)
        for d, part in enumerate(parts):
            cells.add(_check_cell(part, last, backward=d == 1))
            for name, value in to_torch(part).items():
                arrays[f"rnn.{name}_l{k}{'_reverse' if d else ''}"] = value
        dropout |= any(float(p.config.get(n, 0.0) or 0.0) > 0 for p in parts for n in ("dropout", "recurrent_dropout"))
    if len(cells) != 1 or len({_units(l) for l in recurrent}) != 1 or len({len(_directions(l)) for l in recurrent}) != 1:
        raise InputError("gradscope.keras.Recorder: the recurrent layers must be of one class, size and direction count")
    cell, activation = cells.pop()
    _check_head(head, loss, loss_name, logits)
    arrays["fc.weight"] = np.ascontiguousarray(np.array(head.weights["kernel"]).T)
    if "bias" in head.weights:
        arrays["fc.bias"] = np.array(head.weights["bias"])
    return arrays, {"cell": cell, "activation": activation, "loss": loss, "dropout": dropout,
                    "categorical": loss_name == "categorical_crossentropy"}


def _directions(layer: KerasLayer) -> list[KerasLayer]:
    if layer.class_name == "Bidirectional":
        if layer.config.get("merge_mode") != "concat":
            raise InputError(f"gradscope.keras.Recorder: Bidirectional {layer.name!r} merges by "
                             f"{layer.config.get('merge_mode')!r}; gradscope's network concatenates (merge_mode='concat')")
        return [layer.forward, layer.backward]
    return [layer]


def _units(layer: KerasLayer) -> int:
    return _directions(layer)[0].config["units"]


def _check_cell(layer: KerasLayer, last: bool, backward: bool) -> tuple[str, str]:
    """(gradscope's cell, activation) of one recurrent layer (one direction; ``backward``: a
    Bidirectional's backward layer, which reads backwards), or InputError."""
    where = f"gradscope.keras.Recorder: {layer.class_name} {layer.name!r}"
    if layer.class_name not in RECURRENT:
        raise InputError(f"{where} is not a SimpleRNN, LSTM or GRU")
    config = layer.config
    if config.get("return_sequences") == last:
        raise InputError(f"{where}: every recurrent layer but the last returns sequences, and the last does not "
                         "(the head reads its last output)")
    if bool(config.get("go_backwards")) != backward:
        raise InputError(f"{where} reads backwards (go_backwards=True) outside a Bidirectional")
    activation = config.get("activation", "tanh")
    if layer.class_name == "SimpleRNN":
        if activation not in ("tanh", "relu"):
            raise InputError(f"{where}: activation {activation!r}; gradscope's rnn is tanh or relu")
        return "rnn", activation
    if activation != "tanh" or config.get("recurrent_activation", "sigmoid") != "sigmoid":
        raise InputError(f"{where}: activations {activation!r}, {config.get('recurrent_activation')!r}; PyTorch's "
                         "layout computes tanh with sigmoid gates")
    return RECURRENT[layer.class_name], "tanh"


def _check_head(head: KerasLayer, loss: str, loss_name: str, logits: bool) -> None:
    activation = head.config.get("activation", "linear")
    wanted = "linear" if logits else {"bce": "sigmoid", "ce": "softmax", "mse": "linear"}[loss]
    if activation != wanted:
        raise InputError(f"gradscope.keras.Recorder: the loss {loss_name} needs a Dense head with activation "
                         f"{wanted!r}{'' if logits else ' (or a linear one and from_logits=True)'}, got {activation!r}")


class Recorder(keras.callbacks.Callback):
    """Records gradscope's report on a probe batch every ``every`` training batches.

    probe : (x, y), the batch every record is measured on: x (B, T, D) (or (B, T) token ids for a
        model with an Embedding), y the targets as the model's loss takes them.
    every : record after batches every, 2 x every, ... (counted over every fit call).
    to : None keeps the Records in ``records``; a path gets one NDJSON line each (what ``gradscope
        history`` reads); a TensorBoard SummaryWriter, or a callable receiving each Record.
    measure : "full" (analyze's report, float64) or "flow" (the light record).

    A record that cannot be made is a skipped Record with the reason (one warning per reason);
    the training goes on.
    """

    def __init__(self, probe: tuple[Any, Any], every: int = 10, to: Any = None, measure: str = "full") -> None:
        super().__init__()
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise ValueError(f"every must be a whole number of at least 1 (got {every!r})")
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)} (got {measure!r})")
        x, y = probe
        self.x = np.asarray(keras.ops.convert_to_numpy(x))
        self.y = np.asarray(keras.ops.convert_to_numpy(y))
        self.every, self.measure, self.step = int(every), measure, 0
        self.records: list[Record] = []
        self._sink, self._file = sink_for(to, self.records)
        self._warned: set[str] = set()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step += 1
        if self.step % self.every == 0:
            self._sink(self.record())

    def record(self) -> Record:
        """The Record of the model as it is now, on the probe batch (step: batches seen so far)."""
        try:
            weights, settings = state_dict(self.model)
            y = np.argmax(self.y, axis=-1) if settings["categorical"] else self.y
            config = RunConfig(cell=settings["cell"], activation=settings["activation"], weights=weights,
                               inputs=self.x, targets=y, loss=settings["loss"], readout="last", seed=0)
            result = analyze(config) if self.measure == "full" else measure_flow(build(config))
            return Record(self.step, result.regime, result, None, self.measure, settings["dropout"], "keras")
        except Exception as exc:  # the training goes on; the record says why it is missing
            reason = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        if reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(f"gradscope.keras: step {self.step} not recorded: {reason}", stacklevel=2)
        return Record(self.step, None, None, reason, self.measure, source="keras")

    def close(self) -> None:
        """Close the NDJSON file (records written so far are on disk already)."""
        if self._file is not None:
            self._file.close()
            self._file = None
