"""New weights for a network's own architecture: PyTorch's initialisation, a cell swap, and the
initialisations the cures set (what ``compare --weights`` trains from).

PyTorch initialises (torch.nn's reset_parameters):

    nn.Embedding        E ~ N(0, 1), row padding_idx zero
    nn.RNN/GRU/LSTM     every weight and bias ~ U(-k, k), k = 1/sqrt(H)
    nn.Linear           W and b ~ U(-k, k), k = 1/sqrt(fan_in)     (kaiming_uniform(a=sqrt(5)))

A cell swap (rnn -> gru/lstm, gru <-> lstm, or a gated cell -> the rnn) keeps the embedding, the
number of layers, the directions, the hidden sizes, the readout and the head, and gives every layer
new parameters of the new cell, initialised as PyTorch initialises that module (both its biases
trained).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .cells import Cell
from .gate_bias import apply_bias_init
from .initializers import get_initializer
from .network import Network


def _uniform(rng: np.random.Generator, bound: float, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(-bound, bound, shape)


def _torch_layer(cell: Cell, input_size: int, hidden_size: int, rng: np.random.Generator) -> dict:
    """One layer and direction of ``cell``, every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
    shapes = cell.init_params(input_size, hidden_size, np.random.default_rng(0), "normal", 1.0)
    bound = 1.0 / np.sqrt(hidden_size)
    return {name: _uniform(rng, bound, p.shape) for name, p in shapes.items()}


def _zero_biases(net: Network) -> None:
    """A ``bias=False`` network's biases, and the network's fixed arrays, stay zero: they are not
    parameters."""
    for k, d in net.each_layer():
        params = net.layers[k][d]
        for name in [n for n in params if not net.is_trained(k, d, n)]:
            params[name] = np.zeros_like(params[name])
    if net.head is not None and "head.by" in net.fixed:
        net.head["by"] = np.zeros_like(net.head["by"])


def torch_init(net: Network, rng: np.random.Generator) -> Network:
    """The network's architecture with new weights, as PyTorch initialises its modules (module
    docstring), drawn in the order embedding, layers (bottom first, forward first), head."""
    new = net.copy()
    if new.embedding is not None:
        new.embedding = rng.standard_normal(new.embedding.shape)
        if new.padding_idx is not None:
            new.embedding[new.padding_idx] = 0.0
    new.layers = [[_torch_layer(net.cell_of(k), net.layer(k, d).input_size, net.layer(k, d).hidden_size, rng)
                   for d in range(len(layer))] for k, layer in enumerate(net.layers)]
    _zero_biases(new)
    if new.head is not None:
        bound = 1.0 / np.sqrt(new.head["Wy"].shape[1])
        new.head = {"Wy": _uniform(rng, bound, new.head["Wy"].shape), "by": _uniform(rng, bound, new.head["by"].shape)}
    return new


def swap_cell(net: Network, cell: Cell, rng: np.random.Generator,
              draw: Callable[[Cell, int, int, np.random.Generator], dict] = _torch_layer,
              fixed: tuple[str, ...] = ()) -> Network:
    """The network with ``cell`` in every layer and direction, the embedding, the readout and the
    head kept. draw(cell, D, H, rng) gives one layer and direction's parameters (PyTorch's init of
    that module by default; a Keras layer's: model/keras.py); fixed : the cell's parameters held at
    zero in every one, not trained (the recurrent bias beside a Keras layer's one)."""
    new = net.copy()
    new.cell, new.cells = cell, ()
    new.layers = [[draw(cell, net.layer(k, d).input_size, net.layer(k, d).hidden_size, rng)
                   for d in range(len(layer))] for k, layer in enumerate(net.layers)]
    new.fixed = frozenset([name for name in net.fixed if name.startswith("head.")]
                          + [Network.parameter_name(k, d, name) for k, d in new.each_layer() for name in fixed])
    _zero_biases(new)
    return new


def set_recurrent_init(net: Network, init: str, gain: float, rng: np.random.Generator) -> None:
    """Every W_hh's (H, H) gate blocks from the initialiser ``init`` (orthogonal, identity, ...),
    in place: each block on its own, as a gated cell has no single recurrent matrix."""
    initializer = get_initializer(init)
    for k, d in net.each_layer():
        layer = net.layer(k, d)
        h, gates = layer.hidden_size, len(layer.cell.gates)
        layer.params[layer.cell.recurrent] = np.concatenate([initializer(h, h, rng, gain) for _ in range(gates)])


def set_bias_init(net: Network, name: str, t_max: int, rng: np.random.Generator) -> None:
    """The gate-bias initialiser ``name`` (model/gate_bias.py) on every layer and direction, in place."""
    for k, d in net.each_layer():
        apply_bias_init(name, net.cell_of(k).name, net.layers[k][d], t_max, rng)
