"""Readout nonlinearities and losses, registered by name.

The readout sits on the last hidden state, logits = a_T Wy^T + by of shape (B, O), or on every
step (single.py), logits (B, T, O). Each loss is the mean over the batch (and over the steps for a
readout at every step), exactly as PyTorch's modules with ``reduction="mean"`` (REFERENCE §4) applied
to the logits flattened to (B*T, O):

    bce  sigmoid readout, O = 1, targets in [0, 1]  nn.BCEWithLogitsLoss
    ce   softmax readout, O = C >= 2, integer targets   nn.CrossEntropyLoss
    mse  identity readout, any O, real targets       nn.MSELoss (mean over B * O elements)

Targets have the logits' shape without the class axis for ce ((B,) or (B, T) class indices) and the
logits' shape for bce and mse ((B, 1) or (B, O); (B, T, 1) or (B, T, O)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InputError


def _bce(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    # log(1 + e^l) - y l, written with logaddexp so large |l| neither overflows nor loses digits.
    y = y.reshape(logits.shape)
    loss = np.mean(np.logaddexp(0.0, logits) - y * logits)
    p = 0.5 * (1.0 + np.tanh(0.5 * logits))
    dlogits = (p - y) / logits.size  # d/dl of the mean
    return float(loss), dlogits


def _ce(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    flat = logits.reshape(-1, logits.shape[-1])  # (B, O) or (B*T, O): every row one prediction
    n = flat.shape[0]
    shifted = flat - flat.max(axis=1, keepdims=True)  # softmax is shift-invariant; avoids overflow
    log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_z
    idx = y.astype(np.int64).reshape(n)
    loss = -np.mean(log_p[np.arange(n), idx])
    dlogits = np.exp(log_p)
    dlogits[np.arange(n), idx] -= 1.0  # softmax minus one-hot
    dlogits /= n
    return float(loss), dlogits.reshape(logits.shape)


def _mse(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    diff = logits - y.reshape(logits.shape)
    return float(np.mean(diff * diff)), 2.0 * diff / diff.size


def _per_step(y: np.ndarray, steps: int, width: int) -> bool:
    """Targets (B, T) or (B, T, width) with ``width`` values at each of the ``steps`` steps."""
    return y.ndim in (2, 3) and y.shape[1] == steps and y.size == y.shape[0] * steps * width


def _check_bce(y: np.ndarray, output_size: int, steps: int | None = None) -> str | None:
    if output_size != 1:
        return f"loss bce needs 1 output, the model has {output_size}"
    if steps is not None and not _per_step(y, steps, 1):
        return f"bce targets at every step must have shape (B, {steps}), got shape {y.shape}"
    if steps is None and y.size != y.shape[0]:
        return f"bce targets must be one value per sequence, (B,) or (B, 1), got shape {y.shape}"
    if y.size and not np.all((y >= 0) & (y <= 1)):  # soft labels too, as nn.BCEWithLogitsLoss and Keras take
        return "bce targets must be probabilities, between 0 and 1 (labels 0 or 1, or soft labels)"
    return None


def _check_ce(y: np.ndarray, output_size: int, steps: int | None = None) -> str | None:
    if output_size < 2:
        return f"loss ce needs at least 2 outputs (classes), the model has {output_size}"
    if steps is not None and (y.ndim != 2 or y.shape[1] != steps):
        return f"ce targets at every step must be classes of shape (B, {steps}), got shape {y.shape}"
    if steps is None and y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        return f"ce targets must be class indices of shape (B,), got shape {y.shape}"
    if y.size and (np.any(y != np.round(y)) or y.min() < 0 or y.max() >= output_size):
        return f"ce targets must be integers in [0, {output_size - 1}]"
    return None


def _check_mse(y: np.ndarray, output_size: int, steps: int | None = None) -> str | None:
    if steps is None:
        if y.size != y.shape[0] * output_size:
            return f"mse targets must have {output_size} value(s) per sequence, got shape {y.shape}"
    elif not _per_step(y, steps, output_size):
        return f"mse targets at every step must have shape (B, {steps}, {output_size}), got {y.shape}"
    return None


@dataclass(frozen=True)
class Loss:
    """A readout + loss.

    ``value_and_grad(logits, y) -> (loss, dL/dlogits)``: logits (B, O), or (B, T, O) for a readout
    at every step, and dL/dlogits of the same shape.
    ``check_targets(y, output_size, steps=None)``: what is wrong with targets y, or None; ``steps``
    given means targets at every one of that many steps.
    """

    name: str
    readout: str
    value_and_grad: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    check_targets: Callable[..., str | None]

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """The readout applied to the logits: probabilities, class probabilities, or values."""
        if self.readout == "sigmoid":
            return 0.5 * (1.0 + np.tanh(0.5 * logits))
        if self.readout == "softmax":
            e = np.exp(logits - logits.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        return logits

    def accuracy(self, logits: np.ndarray, y: np.ndarray) -> float | None:
        """Classification accuracy (per position for logits (B, T, O)), or None for regression."""
        if self.readout == "sigmoid":
            return float(np.mean((logits.reshape(-1) > 0) == (y.reshape(-1) > 0.5)))
        if self.readout == "softmax":
            return float(np.mean(np.argmax(logits, axis=-1).reshape(-1) == y.reshape(-1)))
        return None


LOSSES: dict[str, Loss] = {
    "bce": Loss("bce", "sigmoid", _bce, _check_bce),
    "ce": Loss("ce", "softmax", _ce, _check_ce),
    "mse": Loss("mse", "identity", _mse, _check_mse),
}


def get_loss(name: str) -> Loss:
    """Look a loss up by name; an unknown name is an input error listing the choices."""
    try:
        return LOSSES[name]
    except KeyError:
        raise InputError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None


def default_loss(output_size: int) -> str:
    """bce for one output, ce for several: the classification default when nothing says otherwise."""
    return "bce" if output_size == 1 else "ce"
