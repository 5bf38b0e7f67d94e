"""Recurrent cells, registered by name. A new cell is one module here and one line in CELLS."""

from __future__ import annotations

from ...errors import InputError
from .base import Cell, Params, State
from .gru import GRUCell
from .gru_reset_before import GRUResetBeforeCell
from .lstm import LSTMCell
from .rnn import RNNCell

CELLS: dict[str, type[Cell]] = {
    RNNCell.name: RNNCell,
    GRUCell.name: GRUCell,
    GRUResetBeforeCell.name: GRUResetBeforeCell,
    LSTMCell.name: LSTMCell,
}

# What --cell offers: PyTorch's cells, which a model built from flags has; the others (Keras' GRU with
# the reset gate before the product) come with a saved model.
FLAG_CELLS = tuple(name for name, cls in CELLS.items() if cls.torch_module is not None)


def make_cell(name: str, activation: str = "tanh", gate_activation: str | None = None, *,
              saved: bool = False) -> Cell:
    """An instance of the cell registered as ``name``; unknown names are input errors.

    gate_activation : the gated cells' gate activation (sigmoid by default); saved : the cell of a
    saved model, which may use any activation the cell computes (``Cell.saved_activations``)."""
    try:
        cls = CELLS[name]
    except KeyError:
        raise InputError(f"unknown cell {name!r}; choose one of {', '.join(CELLS)}") from None
    return cls(activation, gate_activation, saved=saved)


__all__ = ["CELLS", "FLAG_CELLS", "Cell", "Params", "State", "make_cell"]
