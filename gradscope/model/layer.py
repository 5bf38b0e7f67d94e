"""One layer in one direction: a cell and its parameters, the unit every network is built from.

    h_t = cell(x_t, h_{t-1})        W_ih (G*H, D), W_hh (G*H, H), biases (G*H,)

What the measurements of a single recurrence take (its weights' spectra, its step Jacobians along
a run, Pascanu's bound, the regularisers on W_hh): ``Network.layer(k, d)`` hands one out, sharing
the network's arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import Cell, Params


@dataclass(frozen=True)
class Layer:
    """A cell with the parameters of one layer and direction (the network's own arrays)."""

    cell: Cell
    params: Params

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size(self.params)

    @property
    def input_size(self) -> int:
        return self.cell.input_size(self.params)

    @property
    def dtype(self) -> np.dtype:
        return self.cell.dtype(self.params)

    @property
    def recurrent_weight(self) -> np.ndarray:
        """W_hh, (G*H, H): Wa for the vanilla RNN."""
        return self.params[self.cell.recurrent]

    @property
    def state_size(self) -> int:
        """S, the width of the flattened state: H, or 2H for the LSTM's (h, c)."""
        return self.hidden_size * len(self.cell.state_names)

    def gate_blocks(self) -> dict[str, np.ndarray]:
        """W_hh split into its gates' (H, H) blocks, in PyTorch's row order."""
        return self.cell.gate_blocks(self.params)
