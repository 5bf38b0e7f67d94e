"""Gate-bias initialisers for the gated cells, registered by name (``--bias-init``).

A gated cell keeps its memory for about 1 / (1 - f) steps, where f is the gate that carries the
state across a step: the LSTM's forget gate f (c_t = f c_{t-1} + i g) or, in PyTorch's GRU
convention h_t = (1 - z) n + z h_{t-1}, the update gate z. With every bias 0, f = sigmoid(0) = 0.5
at initialisation, and the cell path diag(f_t) halves the gradient at every step back: after 200
steps, 2^-200. A positive bias opens the gate:

    zero         both biases 0: f = 0.5 at init (gradscope's and a zero-initialised nn.LSTM's)
    forget-bias  LSTM: b_f = 1, f ~ sigmoid(1) = 0.73 (Gers, Schmidhuber & Cummins 2000;
                 Jozefowicz, Zaremba & Sutskever 2015)
    chrono       Tallec & Ollivier 2018: per unit b_f ~ ln U[1, T_max - 1] and b_i = -b_f for the
                 LSTM, so the units' memories 1 / (1 - f) ~ U[2, T_max] span the time scales up to
                 T_max; for the GRU b_z ~ ln U[1, T_max - 1] (z plays f's role in PyTorch's blend)

PyTorch splits every bias in two, bias_ih and bias_hh, and only their sum acts: the target goes
into b_ih and b_hh's block of the same gate is 0, so the exported state dict means what it says.
Gates are stacked by rows, (i, f, g, o) for the LSTM and (r, z, n) for the GRU (REFERENCE §4).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .cells.base import Params

FORGET_BIAS = 1.0
BIAS_INITS = ("zero", "forget-bias", "chrono")
# The gate each initialiser targets, by cell: (its row block, the block set to minus it or None).
_TARGETS = {
    ("forget-bias", "lstm"): (1, None),
    ("chrono", "lstm"): (1, 0),
    ("chrono", "gru"): (1, None),
}


def check_bias_init(name: str, cell: str) -> None:
    """Raise InputError unless the initialiser ``name`` applies to ``cell``."""
    if name not in BIAS_INITS:
        raise InputError(f"unknown bias init {name!r}; choose one of {', '.join(BIAS_INITS)}")
    if name == "zero" or (name, cell) in _TARGETS:
        return
    cells = [c for (n, c) in _TARGETS if n == name]
    raise InputError(f"--bias-init {name} applies to the {' and the '.join(cells)} cell"
                     f"{'s' if len(cells) > 1 else ''}, not the {cell}")


def chrono_biases(hidden_size: int, t_max: int, rng: np.random.Generator) -> np.ndarray:
    """(H,) b = ln u, u ~ U[1, T_max - 1]: each in [0, ln(T_max - 1)]."""
    if t_max < 2:
        raise InputError(f"--chrono-max must be at least 2 (got {t_max})")
    return np.log(rng.uniform(1.0, t_max - 1.0, hidden_size))


def apply_bias_init(name: str, cell: str, params: Params, t_max: int, rng: np.random.Generator) -> None:
    """Set the gate biases of a freshly initialised gated cell in place (``zero`` leaves them).

    params : the cell's parameters, b_ih and b_hh (G*H,) in PyTorch's row order.
    t_max : chrono's T_max, the longest dependency the gates should keep.
    """
    check_bias_init(name, cell)
    if name == "zero":
        return
    h = params["b_ih"].shape[0] // (4 if cell == "lstm" else 3)
    block, opposite = _TARGETS[(name, cell)]
    target = np.full(h, FORGET_BIAS) if name == "forget-bias" else chrono_biases(h, t_max, rng)
    params["b_ih"][block * h : (block + 1) * h] = target
    params["b_hh"][block * h : (block + 1) * h] = 0.0
    if opposite is not None:  # chrono's b_i = -b_f: the input gate closes as the forget gate opens
        params["b_ih"][opposite * h : (opposite + 1) * h] = -target
        params["b_hh"][opposite * h : (opposite + 1) * h] = 0.0
