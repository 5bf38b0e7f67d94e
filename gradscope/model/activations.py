"""Hidden-state activations f and their slopes, registered by name.

Every slope is written as a function of the activation's *output* a = f(z), which the forward pass
keeps anyway, so BPTT needs no stored pre-activations:

    tanh     f'(z) = 1 - a^2
    sigmoid  f'(z) = a (1 - a)
    relu     f'(z) = 1[a > 0]
    linear   f'(z) = 1

``gamma`` is the bound |f'| <= gamma used in Pascanu et al.'s conditions (REFERENCE §2).

The gates of the GRU and the LSTM squash with a gate activation s (``GATE_ACTIVATIONS``): the
sigmoid, or one of the two piecewise-linear ones Keras has called hard_sigmoid (REFERENCE §4a):

    hard_sigmoid         clip(x/6 + 1/2, 0, 1) = relu6(x + 3) / 6   Keras 3, torch.nn.Hardsigmoid
    hard_sigmoid_keras2  clip(0.2 x + 1/2, 0, 1)                    Keras 2
    slope                k on the linear part (0 < a < 1), 0 where it is clipped
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InputError


def _sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # 0.5 * (1 + tanh(z/2)) is exact and never overflows, unlike 1 / (1 + exp(-z)).
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def _relu(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(z, 0.0, out=out)


def _linear(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return z.copy()
    out[...] = z
    return out


def _tanh(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.tanh(z, out=out)


@dataclass(frozen=True)
class Activation:
    """An elementwise activation: ``forward(z, out=None)`` and ``slope(a)`` from the output a."""

    name: str
    forward: Callable[..., np.ndarray]
    slope: Callable[[np.ndarray], np.ndarray]
    gamma: float


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", _tanh, lambda a: 1.0 - a * a, 1.0),
    "relu": Activation("relu", _relu, lambda a: (a > 0).astype(a.dtype), 1.0),
    "sigmoid": Activation("sigmoid", _sigmoid, lambda a: a * (1.0 - a), 0.25),
    "linear": Activation("linear", _linear, lambda a: np.ones_like(a), 1.0),
}


def _hard_sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.add(z, 3.0, out=out)  # relu6(x + 3) / 6, as torch computes it
    np.clip(out, 0.0, 6.0, out=out)
    out /= 6.0
    return out


def _hard_sigmoid_keras2(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.multiply(z, 0.2, out=out)
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


def _linear_part(a: np.ndarray, slope: float) -> np.ndarray:
    """slope where 0 < a < 1 (the unclipped part), else 0."""
    return np.where((a > 0.0) & (a < 1.0), a.dtype.type(slope), a.dtype.type(0.0))


GATE_ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": ACTIVATIONS["sigmoid"],
    "hard_sigmoid": Activation("hard_sigmoid", _hard_sigmoid, lambda a: _linear_part(a, 1.0 / 6.0), 1.0 / 6.0),
    "hard_sigmoid_keras2": Activation("hard_sigmoid_keras2", _hard_sigmoid_keras2,
                                      lambda a: _linear_part(a, 0.2), 0.2),
}


def get_activation(name: str) -> Activation:
    """Look an activation up by name; an unknown name is an input error listing the choices."""
    return _lookup(ACTIVATIONS, "activation", name)


def get_gate_activation(name: str) -> Activation:
    """Look a gate activation up by name; an unknown name is an input error listing the choices."""
    return _lookup(GATE_ACTIVATIONS, "gate activation", name)


def _lookup(registry: dict[str, Activation], what: str, name: str) -> Activation:
    try:
        return registry[name]
    except KeyError:
        raise InputError(f"unknown {what} {name!r}; choose one of {', '.join(registry)}") from None
