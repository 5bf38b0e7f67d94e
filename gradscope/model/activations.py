"""Hidden-state activations f and their slopes, registered by name.

Every slope is written as a function of the activation's *output* a = f(z), which the forward pass
keeps anyway, so BPTT needs no stored pre-activations:

    tanh     f'(z) = 1 - a^2
    sigmoid  f'(z) = a (1 - a)
    relu     f'(z) = 1[a > 0]
    linear   f'(z) = 1

``gamma`` is the bound |f'| <= gamma used in Pascanu et al.'s conditions (REFERENCE §2).
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


def get_activation(name: str) -> Activation:
    """Look an activation up by name; an unknown name is an input error listing the choices."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise InputError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None
