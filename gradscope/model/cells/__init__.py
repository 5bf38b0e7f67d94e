"""Recurrent cells, registered by name. A new cell is one module here and one line in CELLS."""

from __future__ import annotations

from ...errors import InputError
from .base import Cell, Params, State
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import RNNCell

CELLS: dict[str, type[Cell]] = {
    RNNCell.name: RNNCell,
    GRUCell.name: GRUCell,
    LSTMCell.name: LSTMCell,
}


def make_cell(name: str, activation: str = "tanh") -> Cell:
    """An instance of the cell registered as ``name``; unknown names are input errors."""
    try:
        cls = CELLS[name]
    except KeyError:
        raise InputError(f"unknown cell {name!r}; choose one of {', '.join(CELLS)}") from None
    return cls(activation)


__all__ = ["CELLS", "Cell", "Params", "State", "make_cell"]
