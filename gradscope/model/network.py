"""The one model of gradscope: a recurrent network as PyTorch builds it (REFERENCE §4).

The model a command builds from flags is a network of one layer and one direction with a head;
a user's own model may add an embedding, stacked and bidirectional layers, padding and another
readout. Every command takes either.

    x_t          = E[token_t]                  an nn.Embedding in front (optional), E (V, D)
    h^k_t        = cell(h^{k-1}_t, h^k_{t-1})  layer k = 0..L-1, h^{-1}_t = x_t
    reverse      the same over t = T..1        bidirectional: each layer's output is
                                               cat(forward h^k_t, reverse h^k_t), (H x 2) wide
    features     readout of the top layer:
                   last   cat(h_n[-2], h_n[-1])            (the final states; one of them if unidirectional)
                   mean   sum_t m_t h_t / sum_t m_t        (over the real steps)
                   max    max over the real steps, per feature
                   every  h_t itself, a target at every step
                   last-output  h_T, the output at step T: fc(output[:, -1]) of a padded batch run
                          unpacked (the reverse half of a bidirectional layer is its first step)
    logits       = Wy features + by            one nn.Linear (the head), or no head at all:
                                               the caller gives dL/d(output) instead

Padding: a mask m (B, T), True at a sequence's real steps. At a pad step every layer carries its
state unchanged, so each sequence runs over its own real steps only, exactly as
``pack_padded_sequence(..., enforce_sorted=False)`` runs it: the forward direction's final state is
the one at its last real step, the reverse direction starts there and ends at its first, and the
output at pad steps is zero.

Every layer and direction has its own parameters in the cell's names (``W_ih``, ``W_hh``, ...,
``Wx``, ``Wa``, ... for the vanilla RNN); ``bias=False`` networks hold zero biases that are not
parameters (never exported, never counted), and so do the ones named in ``fixed`` (a Keras layer
has one bias where PyTorch's cell has two: b_hh is held at zero).

Where a model computes otherwise than PyTorch (Keras, REFERENCE §4a), the network says so:

    cells[k]     layer k's cell, where the layers differ (a Keras LSTM under a GRU): each layer
                 has its own cell, hidden size and number of directions; ``cell`` alone serves
                 every layer of a PyTorch module
    wiring[k]    layer k's Wiring: how a bidirectional layer merges its directions (concat, sum,
                 ave, mul), what a masked step outputs (zero, or the previous output), and
                 whether a one-direction layer reads backwards (go_backwards)
    own_mask     the mask the model computes from its inputs (Embedding(mask_zero=True) masks
                 token 0, Masking(v) the steps whose features all equal v)
    max-all      GlobalMaxPooling1D's readout: the max over every step, masked ones included
    last-output  output[:, -1], the output sequence at step T (a padded batch run unpacked, as
                 fc(output[:, -1]) reads it; for a bidirectional layer the reverse half is its
                 first processed step)

A masked step carries the state either way; with ``pad_output="previous"`` its output is the
state it carries, the output of the last real step before it (0 before the first), so that its
gradient flows to that step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .cells import Cell, Params
from .layer import Layer
from .losses import Loss

READOUTS = ("last", "mean", "max", "every", "last-output")  # what --readout offers
# Keras' GlobalMaxPooling1D, the max over every step, masked ones included: a Keras model's readout
MODEL_READOUTS = READOUTS + ("max-all",)
DIRECTIONS = ("forward", "reverse")
MERGES = ("concat", "sum", "ave", "mul")
PAD_OUTPUTS = ("zero", "previous")


@dataclass(frozen=True)
class Wiring:
    """How one layer's directions run and combine, where a model differs from PyTorch's (Keras).

    merge : a bidirectional layer's output from its directions' f and b: concat [f, b] (PyTorch's,
        Keras' default), sum f + b, ave (f + b) / 2, mul f * b (each H wide).
    pad_output : what a masked step outputs: "zero" (pad_packed_sequence; Keras inside a
        Bidirectional that returns sequences) or "previous", the output of the real step before
        it, 0 before the first (Keras' default).
    backwards : a one-direction layer that reads the sequence from its end and outputs in the
        order it reads (Keras' go_backwards=True outside a Bidirectional): its output at step t is
        its state after reading steps T..T-t+1; the next layer reads that order.
    """

    merge: str = "concat"
    pad_output: str = "zero"
    backwards: bool = False

    def __post_init__(self) -> None:
        if self.merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {self.merge!r}")
        if self.pad_output not in PAD_OUTPUTS:
            raise ValueError(f"pad_output must be one of {PAD_OUTPUTS}, got {self.pad_output!r}")


PYTORCH_WIRING = Wiring()


@dataclass(frozen=True)
class OwnMask:
    """The mask a model computes from its inputs (Keras' masking), True at real steps.

    token : steps holding this token id are masked (Embedding(mask_zero=True): 0), or None.
    value : steps whose features all equal it are masked (Masking(value)), judged on layer 0's
        input (the embedded vectors where there is an embedding), or None.
    """

    token: int | None = None
    value: float | None = None


@dataclass
class Network:
    """Embedding, stacked (bidirectional) layers of one cell type, and a head.

    layers : layers[k][d], the parameters of layer k in direction d (0 forward, 1 reverse).
    head : {"Wy": (O, F), "by": (O,)}, F = H x directions; None when the gradient comes from the
        caller (``--output-grads``).
    readout : how the head reads the top layer (READOUTS).
    loss : the loss on the head's logits; None without a head.
    embedding : (V, D) or None; padding_idx : its row whose gradient is held at zero (nn.Embedding).
    bias : False for a network built with ``bias=False`` (its zero biases are not parameters).
    wiring : one Wiring per layer, or () for PyTorch's in every layer.
    fixed : ``parameters``' names of arrays held at zero, not trained (Keras' absent biases:
        ``l0.b_hh`` beside Keras' one bias, ``head.by`` of a Dense without bias).
    own_mask : the mask the model computes from its inputs, or None (the caller's mask, if any).
    cells : one cell per layer where the layers' cells differ, or () for ``cell`` in every layer
        (then ``cell`` is layer 0's).
    """

    cell: Cell
    layers: list[list[Params]]
    head: Params | None
    readout: str = "last"
    loss: Loss | None = None
    embedding: np.ndarray | None = None
    padding_idx: int | None = None
    bias: bool = True
    wiring: tuple[Wiring, ...] = ()
    fixed: frozenset[str] = frozenset()
    own_mask: OwnMask | None = None
    cells: tuple[Cell, ...] = ()

    def __post_init__(self) -> None:
        if self.readout not in MODEL_READOUTS:
            raise ValueError(f"readout must be one of {MODEL_READOUTS}, got {self.readout!r}")
        for name, per_layer in (("wiring", self.wiring), ("cells", self.cells)):
            if per_layer and len(per_layer) != len(self.layers):
                raise ValueError(f"{name} must have one entry per layer ({len(self.layers)}), got {len(per_layer)}")

    def cell_of(self, k: int) -> Cell:
        """Layer k's cell."""
        return self.cells[k] if self.cells else self.cell

    @property
    def uniform(self) -> bool:
        """Whether every layer has the same cell, hidden size and directions (a PyTorch module)."""
        first = (self.cell.name, self.cell.activation, self.cell.gate_activation, self.hidden_size, len(self.layers[0]))
        return all((c.name, c.activation, c.gate_activation, self.layer(k).hidden_size, len(self.layers[k])) == first
                   for k, c in ((k, self.cell_of(k)) for k in range(self.num_layers)))

    def layer_index(self, k: int, d: int = 0) -> int:
        """The position of (k, d) in ``each_layer``'s order."""
        return sum(len(layer) for layer in self.layers[:k]) + d

    def wiring_of(self, k: int) -> Wiring:
        """Layer k's Wiring (PyTorch's where the network gives none)."""
        return self.wiring[k] if self.wiring else PYTORCH_WIRING

    def reads_backwards(self, k: int, d: int) -> bool:
        """Whether layer k's direction d processes the sequence from its end: the reverse direction,
        or a one-direction layer that reads backwards."""
        return d == 1 or self.wiring_of(k).backwards

    def layer_width(self, k: int) -> int:
        """The width of layer k's output: H x directions merged by concatenation, else H."""
        directions = len(self.layers[k]) if self.wiring_of(k).merge == "concat" else 1
        return self.layer(k).hidden_size * directions

    @property
    def pytorch_semantics(self) -> bool:
        """Whether the network computes as PyTorch's modules do: no wiring of another framework,
        no mask of its own."""
        return all(w == PYTORCH_WIRING for w in self.wiring) and self.own_mask is None

    def input_mask(self, x: np.ndarray) -> np.ndarray | None:
        """(B, T) bool, the mask the model computes from x ((B, T) token ids or (B, T, D) inputs),
        True at real steps; None where it computes none."""
        rule = self.own_mask
        if rule is None:
            return None
        mask = np.ones(x.shape[:2], bool)
        if rule.token is not None and x.ndim == 2:
            mask &= x != rule.token  # Embedding(mask_zero=True)
        if rule.value is not None:
            features = self.embedding[x.astype(np.int64)] if x.ndim == 2 else x
            mask = np.any(features != rule.value, axis=-1)  # Masking(v) replaces the embedding's mask
        return mask
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def directions(self) -> int:
        """The top layer's directions (every layer's in a PyTorch module)."""
        return len(self.layers[-1])

    @property
    def hidden_size(self) -> int:
        """Layer 0's H (every layer's in a PyTorch module)."""
        return self.cell.hidden_size(self.layers[0][0])

    @property
    def input_size(self) -> int:
        """D, the width of layer 0's input (the embedding's vectors where there is one)."""
        return self.cell.input_size(self.layers[0][0])

    @property
    def feature_size(self) -> int:
        """F, the width of the top layer's output: H x directions (H where a bidirectional layer's
        directions merge otherwise than by concatenation)."""
        return self.layer_width(self.num_layers - 1)

    @property
    def output_size(self) -> int | None:
        return None if self.head is None else int(self.head["Wy"].shape[0])

    @property
    def dtype(self) -> np.dtype:
        """The dtype BPTT computes in: the parameters' (``--dtype``)."""
        return self.cell.dtype(self.layers[0][0])

    def cast(self, dtype: np.dtype | type) -> bool:
        """Every parameter (cells, head, embedding) in ``dtype``, in place; arrays already in it
        are kept, so float64 to float64 copies nothing. Returns whether every value stayed finite
        (a weight beyond float32's range becomes inf)."""
        finite = True

        def cast(params: Params) -> None:
            nonlocal finite
            for name, p in params.items():
                with np.errstate(over="ignore"):
                    params[name] = np.asarray(p, dtype=dtype)
                finite = finite and bool(np.all(np.isfinite(params[name])))

        for layer in self.layers:
            for params in layer:
                cast(params)
        if self.head is not None:
            cast(self.head)
        if self.embedding is not None:
            embedding = {"embedding": self.embedding}
            cast(embedding)
            self.embedding = embedding["embedding"]
        return finite

    @property
    def vocab_size(self) -> int | None:
        return None if self.embedding is None else int(self.embedding.shape[0])

    def parameter_count(self) -> int:
        """Trained parameters: cells (biases only where the network has them), head, embedding."""
        return int(sum(p.size for p in self.parameters().values()))

    def is_trained(self, k: int, d: int, name: str) -> bool:
        """Whether the cell parameter ``name`` of layer k, direction d is trained (not a zero bias of
        a ``bias=False`` network, nor one of the network's fixed arrays)."""
        return ((self.bias or name not in _bias_names(self.cell_of(k)))
                and self.parameter_name(k, d, name) not in self.fixed)

    @property
    def embedding_trained(self) -> bool:
        """Whether the embedding is a parameter (a loaded nn.Embedding is; there is none otherwise)."""
        return self.embedding is not None

    @staticmethod
    def parameter_name(layer: int, direction: int, name: str) -> str:
        """The flat name of a cell parameter: ``l0.Wa``, ``l1_reverse.W_hh``."""
        return f"l{layer}{'_reverse' if direction else ''}.{name}"

    def parameters(self) -> Params:
        """Every trained parameter, flat: ``embedding``, ``l{k}[_reverse].<cell name>``,
        ``head.Wy``, ``head.by``. The arrays themselves (no copies); ``load_parameters`` puts
        new ones in their places. The zero biases of a ``bias=False`` network are not parameters."""
        flat: Params = {}
        if self.embedding_trained:
            flat["embedding"] = self.embedding
        for k, layer in enumerate(self.layers):
            biases = _bias_names(self.cell_of(k))
            for d, params in enumerate(layer):
                flat.update((self.parameter_name(k, d, name), p) for name, p in params.items()
                            if self.bias or name not in biases)
        if self.head is not None:
            flat.update(("head." + name, p) for name, p in self.head.items())
        return {name: p for name, p in flat.items() if name not in self.fixed} if self.fixed else flat

    def load_parameters(self, flat: Params) -> None:
        """Put the arrays of a flat dict (``parameters``' names) in their places, in place."""
        for key, value in flat.items():
            if key == "embedding":
                self.embedding = value
                continue
            where, name = key.split(".", 1)
            if where == "head":
                self.head[name] = value
                continue
            k, _, reverse = where[1:].partition("_")
            self.layers[int(k)][1 if reverse else 0][name] = value

    def copy(self) -> "Network":
        """A network with copies of every array (what training changes), the rest shared."""
        return replace(
            self,
            layers=[[{name: p.copy() for name, p in params.items()} for params in layer] for layer in self.layers],
            head=None if self.head is None else {name: p.copy() for name, p in self.head.items()},
            embedding=None if self.embedding is None else self.embedding.copy(),
        )

    def step_weights(self) -> list[np.ndarray]:
        """W_ih and W_hh of the layer with the largest W_hh: what sizes a step's products (the
        BLAS threads are chosen by them: runtime.blas_threads_for)."""
        widest = max((self.layer(k, d) for k, d in self.each_layer()), key=lambda layer: layer.recurrent_weight.size)
        return [widest.params[widest.cell.input_weight], widest.recurrent_weight]

    def layer(self, k: int, d: int = 0) -> Layer:
        """Layer k in direction d (0 forward, 1 reverse), sharing the network's arrays."""
        return Layer(self.cell_of(k), self.layers[k][d])

    def each_layer(self):
        """(k, d) for every layer and direction, bottom first, forward before reverse."""
        for k, layer in enumerate(self.layers):
            for d in range(len(layer)):
                yield k, d

    def describe(self) -> str:
        """'embedding 50x16, 2-layer bidirectional lstm H=32, last -> Linear(64, 1)'; layers that
        differ are listed bottom first: '... bidirectional lstm H=4 / gru H=3, ...'."""
        if self.uniform:
            text = _describe_layers(self, range(self.num_layers), f"{self.num_layers}-layer" if self.num_layers > 1 else "")
        else:
            text = " / ".join(_describe_layers(self, [k], "") for k in range(self.num_layers))
        text += "" if self.bias else " no bias"
        if self.embedding is not None:
            text = f"embedding {self.embedding.shape[0]}x{self.embedding.shape[1]}, " + text
        head = "upstream gradient" if self.head is None else f"{self.readout} -> Linear({self.feature_size}, {self.output_size})"
        return f"{text}, {head}"


def _bias_names(cell: Cell) -> set[str]:
    return {ours for ours, theirs in cell.torch_names.items() if theirs.startswith("bias")}


def _describe_layers(net: Network, ks, count: str) -> str:
    """'2-layer bidirectional lstm H=32' for layers ks of one cell, size and directions."""
    k = ks[0]
    merges = {net.wiring_of(j).merge for j in ks}
    bidirectional = len(net.layers[k]) == 2
    merged = "bidirectional" + ("" if merges <= {"concat"} else f" ({'/'.join(sorted(merges))})")
    backwards = any(net.wiring_of(j).backwards for j in ks)
    parts = [count, merged if bidirectional else "", "backwards" if backwards else "", net.cell_of(k).label,
             f"H={net.layer(k).hidden_size}"]
    return " ".join(p for p in parts if p)


def readout_params(feature_size: int, output_size: int, rng: np.random.Generator) -> Params:
    """Glorot-uniform Wy (O, F) and a zero bias: the head of every model gradscope builds."""
    limit = np.sqrt(6.0 / (feature_size + output_size))
    return {"Wy": rng.uniform(-limit, limit, (output_size, feature_size)), "by": np.zeros(output_size)}
