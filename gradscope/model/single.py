"""A recurrent classifier/regressor: a cell, a linear readout, and a loss.

    h_t    = cell(x_t, h_{t-1})              t = 1..T, h_0 = 0
    logits = Wy h_T + by                     Wy (O, H), by (O,)      readout "last" (many-to-one)
    L      = loss(logits, y), batch mean

or, for tasks with a target at every step (the copy task; many-to-many), the same Linear on every
hidden state:

    logits_t = Wy h_t + by                   t = 1..T                readout "every"
    L        = mean over batch and steps of loss(logits_t, y_t)

The parameters live in one dict: the cell's (``Wa``, ``Wx``, ``b``, ``b_hh`` for the vanilla RNN)
and the readout's ``Wy``, ``by``. Arrays are float64 throughout, or float32 throughout with
``--dtype float32`` (``dtype``): BPTT computes in the parameters' dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .cells import Cell, Params
from .losses import Loss

READOUT = ("Wy", "by")
READOUT_MODES = ("last", "every")


@dataclass
class Model:
    """A cell with its parameters, the readout and the loss.

    readout : "last" reads a_T out once, logits (B, O); "every" reads out every a_t, logits
        (B, T, O). The parameters are the same one Linear (Wy, by) either way.
    """

    cell: Cell
    params: Params
    loss: Loss
    readout: str = "last"

    def __post_init__(self) -> None:
        if self.readout not in READOUT_MODES:
            raise ValueError(f"readout must be one of {READOUT_MODES}, got {self.readout!r}")

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size(self.params)

    @property
    def input_size(self) -> int:
        return self.cell.input_size(self.params)

    @property
    def output_size(self) -> int:
        return int(self.params["Wy"].shape[0])

    @property
    def dtype(self) -> np.dtype:
        """The dtype BPTT computes in: the parameters' (``--dtype``)."""
        return self.cell.dtype(self.params)

    @property
    def recurrent_weight(self) -> np.ndarray:
        """W_hh, (G*H, H): Wa for the vanilla RNN."""
        return self.params[self.cell.recurrent]

    def cell_params(self) -> Params:
        return {k: v for k, v in self.params.items() if k not in READOUT}

    def copy(self) -> "Model":
        return replace(self, params={k: v.copy() for k, v in self.params.items()})


def readout_params(hidden_size: int, output_size: int, rng: np.random.Generator) -> Params:
    """Glorot-uniform Wy (O, H) and a zero bias: the readout of every generated model."""
    limit = np.sqrt(6.0 / (hidden_size + output_size))
    return {"Wy": rng.uniform(-limit, limit, (output_size, hidden_size)), "by": np.zeros(output_size)}
