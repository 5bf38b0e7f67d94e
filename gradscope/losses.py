"""Readout nonlinearities and losses, registered by name.

The readout sits on the last hidden state only: logits = a_T Wy^T + by, shape (B, O). Each loss is
the mean over the batch, exactly as PyTorch's modules with ``reduction="mean"`` (REFERENCE §4):

    bce  sigmoid readout, O = 1, targets 0/1        nn.BCEWithLogitsLoss
    ce   softmax readout, O = C >= 2, integer targets   nn.CrossEntropyLoss
    mse  identity readout, any O, real targets       nn.MSELoss (mean over B * O elements)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import InputError


def _bce(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    # log(1 + e^l) - y l, written with logaddexp so large |l| neither overflows nor loses digits.
    y = y.reshape(logits.shape)
    loss = np.mean(np.logaddexp(0.0, logits) - y * logits)
    p = 0.5 * (1.0 + np.tanh(0.5 * logits))
    dlogits = (p - y) / logits.size  # d/dl of the mean
    return float(loss), dlogits


def _ce(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    b = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)  # softmax is shift-invariant; avoids overflow
    log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_z
    idx = y.astype(np.int64).reshape(b)
    loss = -np.mean(log_p[np.arange(b), idx])
    dlogits = np.exp(log_p)
    dlogits[np.arange(b), idx] -= 1.0  # softmax minus one-hot
    dlogits /= b
    return float(loss), dlogits


def _mse(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    diff = logits - y.reshape(logits.shape)
    return float(np.mean(diff * diff)), 2.0 * diff / diff.size


def _check_bce(y: np.ndarray, output_size: int) -> str | None:
    if output_size != 1:
        return f"loss bce needs 1 output, the model has {output_size}"
    if y.size and not np.all((y == 0) | (y == 1)):
        return "bce targets must be 0 or 1"
    return None


def _check_ce(y: np.ndarray, output_size: int) -> str | None:
    if output_size < 2:
        return f"loss ce needs at least 2 outputs (classes), the model has {output_size}"
    if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        return f"ce targets must be class indices of shape (B,), got shape {y.shape}"
    if y.size and (np.any(y != np.round(y)) or y.min() < 0 or y.max() >= output_size):
        return f"ce targets must be integers in [0, {output_size - 1}]"
    return None


def _check_mse(y: np.ndarray, output_size: int) -> str | None:
    if y.size != y.shape[0] * output_size:
        return f"mse targets must have {output_size} value(s) per sequence, got shape {y.shape}"
    return None


@dataclass(frozen=True)
class Loss:
    """A readout + loss. ``value_and_grad(logits (B,O), y) -> (loss, dL/dlogits (B,O))``."""

    name: str
    readout: str
    value_and_grad: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    check_targets: Callable[[np.ndarray, int], str | None]

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """The readout applied to the logits: probabilities, class probabilities, or values."""
        if self.readout == "sigmoid":
            return 0.5 * (1.0 + np.tanh(0.5 * logits))
        if self.readout == "softmax":
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return logits

    def accuracy(self, logits: np.ndarray, y: np.ndarray) -> float | None:
        """Classification accuracy, or None for regression."""
        if self.readout == "sigmoid":
            return float(np.mean((logits.reshape(-1) > 0) == (y.reshape(-1) > 0.5)))
        if self.readout == "softmax":
            return float(np.mean(np.argmax(logits, axis=1) == y.reshape(-1)))
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
