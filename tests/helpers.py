"""Builders shared by the test groups (math, cli, data, contract)."""

from __future__ import annotations

import numpy as np

from gradscope.model.cells import make_cell
from gradscope.model.losses import get_loss
from gradscope.model.network import Network, readout_params


def random_model(cell: str, activation: str, loss: str, d: int, h: int, o: int, seed: int = 0,
                 bias_scale: float = 0.1, init: str = "normal", readout: str = "last") -> Network:
    """A small one-layer network with non-zero biases, so that every gradient term is exercised."""
    rng = np.random.default_rng(seed)
    c = make_cell(cell, activation)
    params = c.init_params(d, h, rng, init, 1.0)
    for name, p in params.items():
        if p.ndim == 1:
            p[:] = bias_scale * rng.standard_normal(p.shape)
    head = readout_params(h, o, rng)
    head["by"][:] = bias_scale * rng.standard_normal(o)
    return Network(c, [[params]], head, readout, get_loss(loss))


def random_targets(loss: str, b: int, o: int, rng: np.random.Generator) -> np.ndarray:
    if loss == "bce":
        return rng.integers(0, 2, (b, 1)).astype(np.float64)
    if loss == "ce":
        return rng.integers(0, o, b).astype(np.float64)
    return rng.standard_normal((b, o))
