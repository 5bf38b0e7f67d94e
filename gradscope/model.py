"""A recurrent classifier/regressor: a cell, a linear readout on the last step, and a loss.

    h_t    = cell(x_t, h_{t-1})              t = 1..T, h_0 = 0
    logits = Wy h_T + by                     Wy (O, H), by (O,)
    L      = loss(logits, y), batch mean

The parameters live in one dict: the cell's (``Wa``, ``Wx``, ``b`` for the vanilla RNN) and the
readout's ``Wy``, ``by``. Arrays are float64 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import Cell, Params
from .losses import Loss

READOUT = ("Wy", "by")


@dataclass
class Model:
    """A cell with its parameters, the readout and the loss."""

    cell: Cell
    params: Params
    loss: Loss

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
    def recurrent_weight(self) -> np.ndarray:
        """W_hh, (G*H, H): Wa for the vanilla RNN."""
        return self.params[self.cell.recurrent]

    def cell_params(self) -> Params:
        return {k: v for k, v in self.params.items() if k not in READOUT}

    def copy(self) -> "Model":
        return Model(self.cell, {k: v.copy() for k, v in self.params.items()}, self.loss)


def readout_params(hidden_size: int, output_size: int, rng: np.random.Generator) -> Params:
    """Glorot-uniform Wy (O, H) and a zero bias: the readout of every generated model."""
    limit = np.sqrt(6.0 / (hidden_size + output_size))
    return {"Wy": rng.uniform(-limit, limit, (output_size, hidden_size)), "by": np.zeros(output_size)}
