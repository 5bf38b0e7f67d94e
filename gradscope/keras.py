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

How the model reaches gradscope: it is saved as a temporary .keras archive (its architecture and
current weights) and read as the CLI reads a user's Keras file (io/keras.py, model/keras.py): every
model ``gradscope analyze --weights model.keras`` takes, the callback takes too, computed as Keras
computes it (masking, hard_sigmoid, GRU(reset_after=False), the Bidirectional merges, pooling, a
readout at every step). The loss is the compiled one: binary crossentropy, (sparse) categorical
crossentropy or mean squared error, under a Dense head whose activation is the one that loss
expects (sigmoid, softmax, linear) or a linear one with ``from_logits=True``.

Dropout (layers, dropout=, recurrent_dropout=) is the identity here, as at inference: such a
model's records say ``dropout_left_out``. The loss is the one Keras' TensorFlow backend computes
from the logits; Keras 3's torch backend clips probabilities to [1e-7, 1 - 1e-7] (REFERENCE 4a),
which differs only where |logit| > ~16.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

try:
    import keras
except ImportError as exc:  # pragma: no cover - keras is the user's
    raise ImportError("gradscope.keras needs Keras (pip install keras, and a backend: torch, tensorflow or jax)") from exc

import numpy as np

from .config import RunConfig
from .errors import InputError
from .io.keras_config import OUTPUT_GRADS
from .recording import Record, Skips, checked_schedule, measure_pass, sink_for

__all__ = ["Recorder", "run_config"]

LOSSES = {  # Keras' loss names -> gradscope's loss, and the head activation it takes (or "linear" with logits)
    "binary_crossentropy": ("bce", "sigmoid"), "sparse_categorical_crossentropy": ("ce", "softmax"),
    "categorical_crossentropy": ("ce", "softmax"), "mean_squared_error": ("mse", "linear"), "mse": ("mse", "linear"),
}
DROPOUT = ("Dropout", "SpatialDropout1D", "GaussianDropout", "AlphaDropout")
CLI_ADVICE = re.compile(r"[.;] (?:For other models, |Or )?" + re.escape(OUTPUT_GRADS))


# a loss's options that change what it computes, and the values that leave it as gradscope computes it
NEUTRAL = {"label_smoothing": (0, 0.0, None), "ignore_class": (None,),
           # Keras 3 computes "mean" as "sum_over_batch_size", and "mean_with_sample_weight" too when
           # no sample weights are given (the probe has none)
           "reduction": ("sum_over_batch_size", "mean", "mean_with_sample_weight", "auto", None)}


def _loss_of(model: Any) -> tuple[str, str, bool]:
    """(gradscope's loss, the Keras loss's name, from_logits) of a compiled model; InputError for a
    loss, or an option of it, that gradscope does not compute (so the record is skipped, not wrong)."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, (list, tuple)) and len(loss) == 1:  # one output: Keras takes [loss] too
        loss = loss[0]
    elif isinstance(loss, dict) and len(loss) == 1:
        loss = next(iter(loss.values()))
    if loss is None:
        raise InputError("compile the model with a loss first")
    if isinstance(loss, str):
        name, config = loss, {}
    elif callable(loss) or hasattr(loss, "get_config"):
        config = loss.get_config() if hasattr(loss, "get_config") else {}
        name = config.get("name") or getattr(loss, "name", None) or getattr(loss, "__name__", "")
    else:
        raise InputError(f"the model has {len(loss)} losses (several outputs); "
                         "gradscope reads one recurrent chain under one head")
    if name not in LOSSES:
        raise InputError(f"the loss {name!r} is not one gradscope computes "
                         f"({', '.join(sorted(LOSSES))})")
    for option, neutral in NEUTRAL.items():
        if config.get(option, neutral[0]) not in neutral:
            raise InputError(f"the loss {name} has {option}={config[option]!r}, which "
                             f"gradscope does not compute (its {LOSSES[name][0]} is the plain batch mean)")
    weights = getattr(getattr(model, "_compile_config", None), "config", {}).get("loss_weights")
    if weights is not None and [float(w) for w in (weights if isinstance(weights, (list, tuple)) else [weights])] != [1.0]:
        raise InputError(f"compile(loss_weights={weights!r}) scales the loss, which "
                         "gradscope does not (its loss is the plain batch mean)")
    return LOSSES[name][0], name, bool(config.get("from_logits", False))


def _check_head(model: Any, loss_name: str, logits: bool) -> None:
    """The compiled loss must be what gradscope computes from the head's logits."""
    head = model.layers[-1] if model.layers else None
    if type(head).__name__ == "TimeDistributed":  # the Dense it applies at every step
        head = head.layer
    if type(head).__name__ != "Dense":
        return  # the reader names what it does not take
    activation = head.get_config().get("activation", "linear")
    wanted = "linear" if logits else LOSSES[loss_name][1]
    if activation != wanted:
        raise InputError(f"the loss {loss_name} needs a Dense head with activation "
                         f"{wanted!r}{'' if logits else ' (or a linear one and from_logits=True)'}, got {activation!r}")


def _has_dropout(model: Any) -> bool:
    """Whether training drops units anywhere: a dropout layer, or a recurrent layer's dropout= or
    recurrent_dropout= (a Bidirectional's in its forward and backward layers)."""
    layers = list(model.layers)
    for layer in list(layers):
        layers += [getattr(layer, side) for side in ("forward_layer", "backward_layer") if hasattr(layer, side)]
    return any(type(layer).__name__ in DROPOUT
               or any(float(getattr(layer, name, 0.0) or 0.0) > 0 for name in ("dropout", "recurrent_dropout"))
               for layer in layers)


def run_config(model: Any, x: np.ndarray, y: np.ndarray, folder: str) -> tuple[RunConfig, bool]:
    """The RunConfig of the model as it is now on (x, y), its .keras archive saved in ``folder``,
    and whether its training drops units (left out here: ``dropout_left_out``).

    Raises InputError for a loss gradscope does not compute; the reader raises it for a layer or
    option it does not model (naming the layer)."""
    loss, loss_name, logits = _loss_of(model)
    _check_head(model, loss_name, logits)
    path = os.path.join(folder, "model.keras")
    model.save(path)
    return RunConfig(weights=path, inputs=x, targets=y, loss=loss, seed=0), _has_dropout(model)


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
        every = checked_schedule(every, measure)
        if not isinstance(probe, (tuple, list)) or len(probe) != 2:
            raise ValueError("probe must be a pair (x, y): the inputs and the targets the model's loss takes")
        x, y = probe
        self.x = np.asarray(keras.ops.convert_to_numpy(x))
        self.y = np.asarray(keras.ops.convert_to_numpy(y))
        # what needs no model is checked now, not at every step's record (each would be skipped)
        if self.x.ndim not in (2, 3) or not len(self.x):
            raise ValueError(f"probe x must be a batch of sequences, (B, T) token ids or (B, T, D), got shape "
                             f"{self.x.shape}")
        if self.y.ndim == 0 or len(self.y) != len(self.x):
            raise ValueError(f"probe y must hold one target (or one per step) for each of x's {len(self.x)} "
                             f"sequences, got shape {self.y.shape}")
        self.every, self.measure, self.step = every, measure, 0
        self.records: list[Record] = []
        self._sink, self._file = sink_for(to, self.records)
        self._skip = Skips("keras", "gradscope.keras: step")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step += 1
        if self.step % self.every == 0:
            self._sink(self.record())

    def record(self) -> Record:
        """The Record of the model as it is now, on the probe batch (step: batches seen so far)."""
        name = f"Keras model {self.model.name!r}"
        folder = None
        try:
            with tempfile.TemporaryDirectory(prefix="gradscope-keras-") as folder:
                config, dropout = run_config(self.model, self.x, self.y, folder)
                result = measure_pass(config, self.measure)
            if self.measure == "full":  # not the temporary file's path, gone now
                result.config["weights"] = f"<{name}>"
            return Record(self.step, result.regime, result, None, self.measure, dropout, "keras")
        except Exception as exc:  # the training goes on; the record says why it is missing
            reason = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            if folder is not None:  # the model, not the temporary file (new at every record): one warning
                saved = os.path.join(folder, "model.keras")
                reason = reason.replace(f"Keras file {saved}", name).replace(saved, name)
            reason = CLI_ADVICE.sub("", reason)  # --output-grads is the CLI's way out, not a callback's
        return self._skip(self.step, reason, self.measure)

    def close(self) -> None:
        """Close the NDJSON file (records written so far are on disk already)."""
        if self._file is not None:
            self._file.close()
            self._file = None
