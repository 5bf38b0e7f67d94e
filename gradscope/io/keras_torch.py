"""Keras recurrent weights in PyTorch's layout, where PyTorch has the same cell (REFERENCE 4a).

Keras multiplies x @ kernel with kernel (D, G*H); PyTorch W_ih @ x with weight_ih (G*H, D): each
matrix is transposed. Keras keeps one bias where PyTorch keeps two that add up: bias_ih takes it and
bias_hh is zero, except for GRU(reset_after=True), whose two bias rows are exactly PyTorch's two
(the recurrent one sits inside r * (W_hn h + b_hn)). GRU's gates are reordered from Keras' (z, r, h)
to PyTorch's (r, z, n); LSTM's (i, f, c, o) are PyTorch's (i, f, g, o) already.
GRU(reset_after=False) applies the reset gate before the recurrent product, n = tanh(a_h + (r h) U_h),
a cell PyTorch does not have.

The layout says nothing about activations: PyTorch's cells fix theirs (nn.RNN tanh or relu, the gated
cells sigmoid and tanh), and a Keras layer may use others ("hard_sigmoid", "relu" in an LSTM).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .keras import KerasLayer


class NoTorchTwin(InputError):
    """A Keras layer whose cell PyTorch does not have (GRU with reset_after=False)."""


def simple_rnn_to_torch(layer: KerasLayer) -> dict[str, np.ndarray]:
    """nn.RNN's weight_ih (H, D) = kernel^T, weight_hh (H, H) = recurrent_kernel^T, bias_ih (H,) = bias,
    bias_hh (H,) = 0 (no biases where use_bias is False, as nn.RNN(bias=False))."""
    return _transposed(layer, "SimpleRNN", order=None)


def lstm_to_torch(layer: KerasLayer) -> dict[str, np.ndarray]:
    """nn.LSTM's weight_ih (4H, D), weight_hh (4H, H), bias_ih (4H,) = bias, bias_hh (4H,) = 0; gate
    order (i, f, c/g, o) in both."""
    return _transposed(layer, "LSTM", order=None)


def gru_to_torch(layer: KerasLayer) -> dict[str, np.ndarray]:
    """nn.GRU's weight_ih (3H, D), weight_hh (3H, H), bias_ih = bias[0], bias_hh = bias[1], gates
    reordered (z, r, h) -> (r, z, n). Raises NoTorchTwin for reset_after=False."""
    if not layer.config["reset_after"]:
        raise NoTorchTwin(f"GRU layer {layer.name!r} has reset_after=False (the reset gate before the recurrent "
                          f"product), a cell PyTorch does not have: nn.GRU is Keras' reset_after=True")
    return _transposed(layer, "GRU", order=(1, 0, 2))


def to_torch(layer: KerasLayer) -> dict[str, np.ndarray]:
    """The PyTorch layout of one SimpleRNN, LSTM or GRU layer (a Bidirectional's forward or backward
    layer, for the keys PyTorch suffixes with nothing and ``_reverse``): weight_ih, weight_hh and,
    with use_bias, bias_ih and bias_hh, float64."""
    convert = {"SimpleRNN": simple_rnn_to_torch, "LSTM": lstm_to_torch, "GRU": gru_to_torch}.get(layer.class_name)
    if convert is None:
        raise InputError(f"{layer.class_name} layer {layer.name!r} is not a SimpleRNN, LSTM or GRU; a "
                         f"Bidirectional's directions are its forward and backward layers")
    return convert(layer)


def _transposed(layer: KerasLayer, cls: str, order: tuple[int, ...] | None) -> dict[str, np.ndarray]:
    """Each matrix transposed, its gate blocks (H rows each, after transposing) put in ``order``."""
    if layer.class_name != cls:
        raise InputError(f"{layer.class_name} layer {layer.name!r} is not a {cls}")

    def gates(matrix: np.ndarray) -> np.ndarray:  # (..., G*H) -> the G slices of H in PyTorch's order
        if order is None:
            return matrix
        blocks = np.split(matrix, len(order), axis=-1)
        return np.concatenate([blocks[i] for i in order], axis=-1)

    out = {"weight_ih": np.ascontiguousarray(gates(layer.weights["kernel"]).T),
           "weight_hh": np.ascontiguousarray(gates(layer.weights["recurrent_kernel"]).T)}
    if "bias" in layer.weights:
        bias = gates(layer.weights["bias"])
        if bias.ndim == 2:  # GRU reset_after: input and recurrent rows
            out["bias_ih"], out["bias_hh"] = bias[0].copy(), bias[1].copy()
        else:
            out["bias_ih"], out["bias_hh"] = bias.copy(), np.zeros_like(bias)
    return out
