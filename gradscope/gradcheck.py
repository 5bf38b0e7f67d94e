"""Central finite differences: the reference every analytic gradient in gradscope is checked against.

    dL/dtheta_i ~ (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps)

In float64 with eps ~ 1e-6 the truncation error is O(eps^2) and the rounding error O(1e-16 / eps),
so a correct gradient agrees to a relative error of about 1e-8 to 1e-10.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .bptt import loss_only
from .model import Model


def relative_error(analytic: np.ndarray, numeric: np.ndarray, floor: float = 1e-300) -> float:
    """||a - n|| / max(||a|| + ||n||, floor): 0 when both vanish, scale-free otherwise.

    The difference quotient carries a rounding error of about 1e-16 |L| / eps ~ 1e-10 absolute,
    so a gradient of 1e-5 cannot be checked to 1e-6 relative: pass ``floor`` (1e-3 allows an
    absolute error of 1e-9 at a tolerance of 1e-6) when the drawn gradients may be that small.
    """
    denom = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return float(np.linalg.norm(analytic - numeric) / max(denom, floor))


def numeric_gradient(f: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f / d array by central differences, perturbing ``array`` in place (and restoring it)."""
    grad = np.zeros_like(array)
    for i in np.ndindex(array.shape):
        old = array[i]
        array[i] = old + eps
        up = f()
        array[i] = old - eps
        down = f()
        array[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def numeric_param_grads(model: Model, x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Finite-difference gradient of the batch-mean loss for every parameter of the model."""
    return {
        name: numeric_gradient(lambda: loss_only(model, x, y), p, eps)
        for name, p in model.params.items()
    }
