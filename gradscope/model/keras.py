"""Keras models <-> gradscope networks (REFERENCE §4a): what statedict.py is for PyTorch's state dicts.

A KerasModel (io/keras.py: the chain of layers, configs and float64 weights that a .keras, .h5 or
.weights.h5 file holds) becomes the one Network, layer by layer:

    Embedding(V, D)           the embedding E = embeddings; mask_zero=True masks token 0 (own_mask)
    Masking(v)                masks the steps whose features all equal v (own_mask)
    SimpleRNN                 rnn:  Wx = K^T, Wa = U^T, b = bias, b_hh fixed at 0
    LSTM                      lstm: W_ih = K^T, W_hh = U^T (gates i, f, c, o in both), b_ih = bias, b_hh fixed at 0
    GRU(reset_after=True)     gru:  gates (z, r, h) -> (r, z, n), b_ih = bias[0], b_hh = bias[1]
    GRU(reset_after=False)    gru-reset-before: gates reordered, b_ih = bias, b_hh fixed at 0
    activation, recurrent_activation   the cell's activation and gate activation; hard_sigmoid is
                              the formula of the file's keras_version (Keras 2: 0.2x + 0.5)
    use_bias=False            the layer's biases fixed at 0 (not parameters)
    Bidirectional(merge_mode) two directions merged (Wiring.merge); a masked step outputs 0 where it
                              returns sequences (zero_output_for_mask), else the previous output
    go_backwards (alone)      a layer that reads backwards and outputs in that order (Wiring.backwards)
    the readout               GlobalAveragePooling1D: mean; GlobalMaxPooling1D: max-all; the last
                              recurrent layer's return_sequences=True without pooling: every; else last
    Dense(activation)         the head: Wy = kernel^T, by = bias; sigmoid -> bce, softmax -> ce,
                              linear -> mse (the loss Keras computes from the logits)
    Dropout                   the identity (inference)

and back: ``KerasLayout`` names every array as Keras does, for the gradients (``<layer>/<weight>``
in Keras' shapes) and for a weights store that ``model.load_weights`` reads (Keras 3's layout:
``layers/<group>/[cell/]vars/<i>``, a Bidirectional's under ``forward_layer`` and ``backward_layer``).
The file itself is read and written in io/ (keras.py, keras_h5.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import InputError
from ..io.keras_config import OUTPUT_GRADS, RECURRENT, WRAPPERS  # words of a Keras chain (that module reads no file)
from .cells import Cell, Params, make_cell
from .initializers import orthogonal, xavier
from .network import Network, OwnMask, Wiring
from .reinit import swap_cell

if TYPE_CHECKING:  # the description's types only: the model layer reads no file
    from ..bptt.network import NetworkGradients
    from ..io.keras import KerasLayer, KerasModel

POOLING_READOUTS = {"GlobalAveragePooling1D": "mean", "GlobalMaxPooling1D": "max-all"}
HEAD_LOSSES = {"sigmoid": "bce", "softmax": "ce", "linear": "mse"}
# Keras' (z, r, h) slices <-> our (r, z, n) blocks: the same swap both ways
GRU_ORDER = (1, 0, 2)


@dataclass(frozen=True)
class KerasLayout:
    """Where a network's arrays sit in the Keras model it was read from.

    model : the KerasModel read (io/keras.py). embedding : its Embedding layer, or None.
    recurrent : per network layer, its recurrent layer (or Bidirectional). head : the Dense layer.
    loss : the loss the head's activation implies (bce, ce, mse).
    """

    keras: ClassVar[bool] = True  # a Keras model's layout (statedict.Layout says False)

    model: Any
    embedding: Any
    recurrent: tuple[Any, ...]
    head: Any
    loss: str
    ignored: tuple[str, ...] = ()  # the layers gradscope reads are all of a Keras model's weights
    others: tuple[str, ...] = ()

    def export(self, network: Network) -> dict[str, np.ndarray]:
        """The network's arrays as Keras 3's weights store holds them: HDF5 dataset paths
        (``layers/lstm/cell/vars/0``) -> arrays in Keras' shapes."""
        return export_keras_weights(network, self)

    def export_grads(self, network: Network, grads: "NetworkGradients") -> dict[str, np.ndarray]:
        """Every trained array's gradient under ``<layer name>/<weight name>`` in Keras' shape."""
        return export_keras_grads(network, grads, self)

    def describe(self, network: Network) -> str:
        """'Embedding 'embedding' 20x5 mask_zero -> Bidirectional 'bidirectional' LSTM H=4 concat ->
        GRU 'gru' H=3 -> Dense 'dense' 3->1 sigmoid'."""
        return " -> ".join(_describe(layer, network, self) for layer in self.model.layers
                           if layer.class_name not in ("InputLayer", "Dropout"))

    def head_label(self, network: Network) -> str:
        head = self.head
        kind = "Dense" if head.wrapper is None else f"{head.wrapper}(Dense)"
        return f"{kind} '{head.name}' ({network.feature_size}, {network.output_size}, {head.config['activation']})"

    def initialise(self, network: Network, rng: np.random.Generator) -> Network:
        """The architecture with new weights, as Keras initialises its layers (``keras_init``)."""
        return keras_init(network, self, rng)

    def swap_cell(self, network: Network, cell: Cell, rng: np.random.Generator) -> Network:
        """The network with ``cell`` in every layer, as Keras initialises that layer (``keras_swap``)."""
        return keras_swap(network, cell, rng)


# -- Keras -> network ------------------------------------------------------------------------------


def load_keras_network(model: "KerasModel", source: str) -> tuple[Network, KerasLayout]:
    """The Network a KerasModel computes, and where its arrays sit; InputError for what the one
    network does not compute (naming the layer). The loss is left to the caller (the layout's is
    the head's)."""
    layers = [layer for layer in model.layers if layer.class_name != "Dropout"]
    embedding = next((l for l in layers if l.class_name == "Embedding"), None)
    masking = next((l for l in layers if l.class_name == "Masking"), None)
    recurrent = [l for l in layers if l.class_name in RECURRENT + ("Bidirectional",)]
    pooling = next((l for l in layers if l.class_name in POOLING_READOUTS), None)
    head = layers[-1]
    if head.class_name != "Dense" or not recurrent:
        raise InputError(f"{source}: not a chain of recurrent layers and a Dense head; {OUTPUT_GRADS}")
    own_mask = None
    if (embedding is not None and embedding.config["mask_zero"]) or masking is not None:
        own_mask = OwnMask(0 if embedding is not None and embedding.config["mask_zero"] else None,
                           None if masking is None else masking.config["mask_value"])
    gates = "hard_sigmoid_keras2" if (model.keras_version or "").startswith("2.") else "hard_sigmoid"
    cells, stack, wiring, fixed = [], [], [], set()
    for k, layer in enumerate(recurrent):
        parts = (layer.forward, layer.backward) if layer.class_name == "Bidirectional" else (layer,)
        cell = _cell(parts[0], gates, source)
        for part in parts[1:]:
            if _cell(part, gates, source).label != cell.label or part.class_name != parts[0].class_name:
                raise InputError(f"{source}: {_label(layer)} has a backward layer unlike its forward one; gradscope "
                                 f"models a Bidirectional of one cell. Or {OUTPUT_GRADS}")
        wiring.append(_wiring(layer, parts, own_mask is not None, source))
        stack.append([_params(cell, part) for part in parts])
        for d, part in enumerate(parts):
            fixed |= {Network.parameter_name(k, d, name) for name in _fixed(cell, part)}
        cells.append(cell)
    returns_sequences = (recurrent[-1].forward or recurrent[-1]).config["return_sequences"]
    readout = POOLING_READOUTS[pooling.class_name] if pooling else ("every" if returns_sequences else "last")
    if head.config["activation"] not in HEAD_LOSSES:
        raise InputError(f"{source}: {_label(head)} has activation {head.config['activation']!r}; {OUTPUT_GRADS}")
    head_params = {"Wy": np.array(head.weights["kernel"].T),
                   "by": np.array(head.weights["bias"]) if "bias" in head.weights
                   else np.zeros(head.config["units"])}
    if "bias" not in head.weights:
        fixed.add("head.by")
    same = all(c.label == cells[0].label for c in cells)
    network = Network(
        cells[0], stack, head_params, readout, None,
        None if embedding is None else np.array(embedding.weights["embeddings"]),
        wiring=tuple(wiring), fixed=frozenset(fixed), own_mask=own_mask, cells=() if same else tuple(cells),
    )
    _check_widths(network, recurrent, head, source)
    layout = KerasLayout(model, embedding, tuple(recurrent), head, HEAD_LOSSES[head.config["activation"]])
    return network, layout


def keras_init(network: Network, layout: KerasLayout, rng: np.random.Generator) -> Network:
    """The network's architecture with new weights, as Keras 3 initialises its layers by default,
    drawn in the order embedding, layers (bottom first, forward first), head:

        Embedding           E ~ U(-0.05, 0.05)
        SimpleRNN/LSTM/GRU  kernel glorot_uniform (U(-l, l), l = sqrt(6 / (D + G*H)));
                            recurrent_kernel orthogonal ((H, G*H) of orthonormal rows: W_hh^T W_hh = I);
                            biases zero, the LSTM's forget gate's 1 (unit_forget_bias, its default)
        Dense               kernel glorot_uniform, bias zero

    A layer configured with other initialisers is drawn with these too (the file does not keep
    them). The arrays a Keras layer does not have (the recurrent bias beside Keras' one) stay zero.
    """
    new = network.copy()
    if new.embedding is not None:
        new.embedding = rng.uniform(-0.05, 0.05, new.embedding.shape)
    layers = []
    for k, layer in enumerate(layout.recurrent):
        parts = (layer.forward, layer.backward) if layer.class_name == "Bidirectional" else (layer,)
        cell = network.cell_of(k)
        layers.append([_keras_layer(cell, network.layer(k, d).input_size, network.layer(k, d).hidden_size, rng,
                                    bool(part.config.get("unit_forget_bias") and part.config["use_bias"]))
                       for d, part in enumerate(parts)])
    new.layers = layers
    if new.head is not None:
        new.head = {"Wy": xavier(*new.head["Wy"].shape, rng), "by": np.zeros_like(new.head["by"])}
    return new


def keras_swap(network: Network, cell: Cell, rng: np.random.Generator) -> Network:
    """The network with ``cell`` in every layer and direction, each drawn as Keras initialises a new
    layer of that class with its defaults (``keras_init``'s draws, the LSTM's forget bias 1), and
    with its biases: one for SimpleRNN and LSTM (the recurrent bias beside it held at zero, not a
    parameter), GRU(reset_after=True)'s two. The embedding, readout and head are kept."""
    def draw(c: Cell, input_size: int, hidden_size: int, r: np.random.Generator) -> Params:
        return _keras_layer(c, input_size, hidden_size, r, unit_forget_bias=c.name == "lstm")

    return swap_cell(network, cell, rng, draw, () if cell.name == "gru" else (_names(cell)[3],))


def _keras_layer(cell: Cell, input_size: int, hidden_size: int, rng: np.random.Generator,
                 unit_forget_bias: bool) -> Params:
    """One layer and direction as Keras draws it: kernel glorot_uniform, then recurrent_kernel
    orthogonal, biases zero but the forget gate's 1 with ``unit_forget_bias``."""
    rows = len(cell.gates) * hidden_size
    w_ih, w_hh, b_ih, b_hh = _names(cell)
    params = {w_ih: xavier(rows, input_size, rng), w_hh: orthogonal(rows, hidden_size, rng),
              b_ih: np.zeros(rows), b_hh: np.zeros(rows)}
    if unit_forget_bias:
        params[b_ih][hidden_size : 2 * hidden_size] = 1.0  # (i, f, c, o): f's rows
    return params


def _label(layer: "KerasLayer") -> str:
    kind = layer.class_name if layer.wrapper is None else f"{layer.wrapper}({layer.class_name})"
    return f"{kind} layer {layer.name!r}"


def _cell(layer: "KerasLayer", gates: str, source: str) -> Cell:
    """The cell of a SimpleRNN, LSTM or GRU layer, with its activations."""
    config = layer.config
    name = {"SimpleRNN": "rnn", "LSTM": "lstm"}.get(layer.class_name)
    if layer.class_name == "GRU":
        name = "gru" if config["reset_after"] else "gru-reset-before"
    gate = config.get("recurrent_activation")
    gate = gates if gate == "hard_sigmoid" else gate
    try:
        return make_cell(name, config["activation"], gate, saved=True)
    except InputError as exc:
        raise InputError(f"{source}: {_label(layer)}: {exc}; for other activations, {OUTPUT_GRADS}") from None


def _wiring(layer: "KerasLayer", parts: tuple, masked: bool, source: str) -> Wiring:
    config = parts[0].config
    if layer.class_name == "Bidirectional" and config["go_backwards"]:
        raise InputError(f"{source}: {_label(layer)} wraps a layer with go_backwards=True (its forward layer reads "
                         f"backwards); gradscope models the usual Bidirectional. Or {OUTPUT_GRADS}")
    if masked and config["zero_output_for_mask"] and not config["return_sequences"]:
        raise InputError(f"{source}: {_label(layer)} has zero_output_for_mask=True without return_sequences (its "
                         f"last output is 0 when the last step is masked), which gradscope does not model. "
                         f"Or {OUTPUT_GRADS}")
    pad = "zero" if config["zero_output_for_mask"] else "previous"
    if layer.class_name == "Bidirectional":
        return Wiring(layer.config["merge_mode"], pad, False)
    return Wiring("concat", pad, bool(config["go_backwards"]))


def _reorder(a: np.ndarray, order: tuple[int, ...] | None) -> np.ndarray:
    """The gate slices of a's last axis put in ``order`` (None: as they are)."""
    if order is None:
        return a
    blocks = np.split(a, len(order), axis=-1)
    return np.concatenate([blocks[i] for i in order], axis=-1)


def _order(cell: Cell) -> tuple[int, ...] | None:
    return GRU_ORDER if len(cell.gates) == 3 else None


def _names(cell: Cell) -> tuple[str, str, str, str]:
    """Our (input weight, recurrent weight, input bias, recurrent bias) names."""
    return cell.input_weight, cell.recurrent, *(n for n in cell.torch_names if n not in (cell.input_weight, cell.recurrent))


def _params(cell: Cell, layer: "KerasLayer") -> Params:
    """A recurrent layer's arrays as the cell's parameters (module docstring)."""
    w_ih, w_hh, b_ih, b_hh = _names(cell)
    order, weights = _order(cell), layer.weights
    rows = _reorder(weights["recurrent_kernel"], order).shape[1]
    bias = weights.get("bias", np.zeros(rows))
    if bias.ndim == 2:  # GRU(reset_after=True): input and recurrent rows, PyTorch's two biases
        biases = _reorder(bias[0], order), _reorder(bias[1], order)
    else:
        biases = _reorder(bias, order), np.zeros(rows)
    params = {w_ih: np.ascontiguousarray(_reorder(weights["kernel"], order).T),
              w_hh: np.ascontiguousarray(_reorder(weights["recurrent_kernel"], order).T),
              b_ih: np.array(biases[0]), b_hh: np.array(biases[1])}
    cell.check_shapes(params)
    return params


def _fixed(cell: Cell, layer: "KerasLayer") -> list[str]:
    """The cell's arrays a Keras layer does not have: every bias without use_bias, else the
    recurrent bias beside Keras' one (all but GRU(reset_after=True))."""
    _, _, b_ih, b_hh = _names(cell)
    if not layer.config["use_bias"]:
        return [b_ih, b_hh]
    return [] if layer.weights["bias"].ndim == 2 else [b_hh]


def _check_widths(network: Network, recurrent: list, head: "KerasLayer", source: str) -> None:
    """Each layer reads the width the one before outputs (the reader checked the file's shapes;
    this checks what the network makes of them)."""
    for k in range(1, network.num_layers):
        if network.layer(k).input_size != network.layer_width(k - 1):
            raise InputError(f"{source}: {_label(recurrent[k])} reads {network.layer(k).input_size} features; "
                             f"{_label(recurrent[k - 1])} outputs {network.layer_width(k - 1)}")
    if network.head["Wy"].shape[1] != network.feature_size:
        raise InputError(f"{source}: {_label(head)} reads {network.head['Wy'].shape[1]} features; the recurrent "
                         f"layers output {network.feature_size}")


# -- network -> Keras ------------------------------------------------------------------------------


def _keras_cell_arrays(cell: Cell, layer: "KerasLayer", params: Params, grads: bool) -> dict[str, np.ndarray]:
    """One recurrent layer's kernel, recurrent_kernel and bias in Keras' shapes, from the cell's
    parameters or their gradients (``grads``: the fixed recurrent bias has none)."""
    expected = {"SimpleRNN": ("rnn",), "LSTM": ("lstm",), "GRU": ("gru", "gru-reset-before")}[layer.class_name]
    if cell.name not in expected:
        raise InputError(f"{_label(layer)} is a {layer.class_name}; the network's layer is now a {cell.name} cell "
                         f"(a cell swap), whose weights the Keras model cannot take")
    w_ih, w_hh, b_ih, b_hh = _names(cell)
    order = _order(cell)
    out = {"kernel": _reorder(params[w_ih].T, order), "recurrent_kernel": _reorder(params[w_hh].T, order)}
    if layer.config["use_bias"]:
        if layer.weights["bias"].ndim == 2:
            out["bias"] = np.stack([_reorder(params[b_ih], order), _reorder(params[b_hh], order)])
        else:  # one bias: b_ih (+ the fixed b_hh, zero)
            out["bias"] = _reorder(params[b_ih] if grads else params[b_ih] + params[b_hh], order)
    return out


def _keras_arrays(network: Network, layout: KerasLayout, cells: list[list[Params]], head: Params | None,
                  embedding: np.ndarray | None, grads: bool) -> list[tuple["KerasLayer", str | None, dict]]:
    """(layer, part, {weight name: array}) for every Keras layer with weights, in model.layers order;
    part is "forward" or "backward" within a Bidirectional, else None."""
    out = []
    if layout.embedding is not None and embedding is not None:
        out.append((layout.embedding, None, {"embeddings": embedding}))
    for k, layer in enumerate(layout.recurrent):
        cell = network.cell_of(k)
        if layer.class_name == "Bidirectional":
            for d, (part, sub) in enumerate((("forward", layer.forward), ("backward", layer.backward))):
                out.append((layer, part, _keras_cell_arrays(cell, sub, cells[k][d], grads)))
        else:
            out.append((layer, None, _keras_cell_arrays(cell, layer, cells[k][0], grads)))
    if head is not None:
        arrays = {"kernel": head["Wy"].T}
        if "bias" in layout.head.weights:
            arrays["bias"] = head["by"]
        out.append((layout.head, None, arrays))
    return out


def export_keras_weights(network: Network, layout: KerasLayout) -> dict[str, np.ndarray]:
    """The network's arrays under the HDF5 paths of Keras 3's weights store (``save_weights``):
    ``layers/<group>/vars/<i>``, a recurrent layer's under ``cell/vars``, a Bidirectional's under
    ``forward_layer/cell/vars`` and ``backward_layer/cell/vars``, each array in the order Keras
    creates them (kernel, recurrent_kernel, bias)."""
    out = {}
    for layer, part, arrays in _keras_arrays(network, layout, network.layers, network.head, network.embedding, False):
        base = f"layers/{layer.store}"
        if part is not None:
            base += f"/{part}_layer/cell"
        elif layer.class_name in RECURRENT:
            base += "/cell"
        elif layer.wrapper is not None:
            base += f"/{WRAPPERS[layer.wrapper]}"  # TimeDistributed(Dense): the Dense's arrays
        for i, array in enumerate(arrays.values()):
            out[f"{base}/vars/{i}"] = np.ascontiguousarray(array)
    return out


def export_keras_grads(network: Network, grads: "NetworkGradients", layout: KerasLayout) -> dict[str, np.ndarray]:
    """Each trained array's gradient as ``<layer name>/<weight name>`` (``gru/recurrent_kernel``,
    ``bidirectional/forward/kernel``, ``dense/bias``), in the shape of Keras' variable."""
    cells = [[g.params for g in layer] for layer in grads.layers]
    out = {}
    for layer, part, arrays in _keras_arrays(network, layout, cells, grads.head, grads.embedding, True):
        prefix = layer.name + ("" if part is None else f"/{part}")
        out.update((f"{prefix}/{name}", np.ascontiguousarray(array)) for name, array in arrays.items())
    return out


def _describe(layer: "KerasLayer", network: Network, layout: KerasLayout) -> str:
    """One Keras layer in a few words."""
    cls, name, config = layer.class_name, layer.name, layer.config
    if cls == "Embedding":
        return f"Embedding '{name}' {config['input_dim']}x{config['output_dim']}" + (
            " mask_zero" if config["mask_zero"] else "")
    if cls == "Masking":
        return f"Masking '{name}' ({config['mask_value']:g})"
    if cls == "Dense":
        kind = cls if layer.wrapper is None else f"{layer.wrapper}(Dense)"
        return f"{kind} '{name}' {network.feature_size}->{config['units']} {config['activation']}"
    if cls in RECURRENT or cls == "Bidirectional":
        k = layout.recurrent.index(layer)
        inner = layer.forward or layer
        options = [network.cell_of(k).label.partition("(")[2].rstrip(")")] if "(" in network.cell_of(k).label else []
        if inner.class_name == "GRU" and not inner.config["reset_after"]:
            options.append("reset_after=False")
        if cls != "Bidirectional" and config["go_backwards"]:
            options.append("go_backwards")
        size = f"H={inner.config['units']}" + (f" ({', '.join(options)})" if options else "")
        if cls == "Bidirectional":
            return f"Bidirectional '{name}' {config['merge_mode']} {inner.class_name} {size}"
        return f"{cls} '{name}' {size}"
    return f"{cls} '{name}'" if cls != "InputLayer" else name
