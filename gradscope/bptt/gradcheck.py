"""Central finite differences: the reference every analytic gradient in gradscope is checked against.

    dL/dtheta_i ~ (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps)

In float64 with eps ~ 1e-6 the truncation error is O(eps^2) and the rounding error O(1e-16 / eps),
so a correct gradient agrees to a relative error of about 1e-8 to 1e-10.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..model.network import Network
from .layer import to_time_major
from .network import loss_only


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


def numeric_param_grads(net: Network, x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None,
                        eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Finite-difference gradient of the batch-mean loss for every parameter of the network, flat
    under ``Network.parameters``' names."""
    return {
        name: numeric_gradient(lambda: loss_only(net, x, y, mask), p, eps)
        for name, p in net.parameters().items()
    }


def perturbed_logits(net: Network, x: np.ndarray, step: int, perturb: Callable) -> np.ndarray:
    """The logits of a forward run of a one-layer network over x (B, T, D) in which, right after
    step ``step`` (1-based), ``perturb(state, cache) -> state`` replaces the state: how a state
    derivative is checked."""
    cell, params, head = net.cell, net.layers[0][0], net.head
    u = cell.project_inputs(params, to_time_major(x))
    state = cell.initial_state(x.shape[0], net.hidden_size)
    hidden = []
    for t in range(u.shape[0]):
        state, cache = cell.step_forward(params, u[t], state)
        if t + 1 == step:
            state = perturb(state, cache)
        hidden.append(state[0])
    if net.readout == "every":
        return (np.stack(hidden) @ head["Wy"].T + head["by"]).transpose(1, 0, 2)
    return hidden[-1] @ head["Wy"].T + head["by"]


def numeric_state_gradient(
    net: Network, x: np.ndarray, y: np.ndarray, step: int, shift: Callable | None = None,
    eps: float = 1e-6,
) -> np.ndarray:
    """dL/dh_step (B, H) of a one-layer network by central differences, one entry at a time.

    ``shift(state, cache, unit, delta) -> state`` moves another quantity instead (the LSTM's c_t,
    with or without h_t recomputed from it); the default adds delta to h_step[unit].
    """
    def shift_h(state, cache, unit, delta):
        h = state[0].copy()
        h[unit] += delta
        return (h,) + tuple(state[1:])

    shift = shift or shift_h
    y = np.asarray(y, dtype=np.float64)

    def loss(unit, delta):
        logits = perturbed_logits(net, x, step, lambda state, cache: shift(state, cache, unit, delta))
        return net.loss.value_and_grad(logits, y)[0]

    grad = np.zeros((x.shape[0], net.hidden_size))
    for unit in np.ndindex(grad.shape):
        grad[unit] = (loss(unit, eps) - loss(unit, -eps)) / (2 * eps)
    return grad
