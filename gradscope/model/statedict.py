"""PyTorch state dicts <-> gradscope models (REFERENCE §4).

A model saved as ``np.savez(path, **{k: v.detach().numpy() for k, v in model.state_dict().items()})``
loads as is: the recurrent module's keys may carry a prefix (``rnn.weight_hh_l0``), the cell is
recognised from the shape of weight_hh_l0 ((H, H) nn.RNN, (3H, H) nn.GRU, (4H, H) nn.LSTM), and the
readout is the one remaining Linear layer (``fc.weight`` (O, H), ``fc.bias`` (O,)).
Exports use the prefix ``rnn.`` and the readout ``fc.``, and load into the matching torch modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .cells import CELLS, Cell, Params, make_cell
from ..errors import InputError
from .network import Network
from .reinit import swap_cell, torch_init

if TYPE_CHECKING:  # the gradients' type only; the model layer does not import BPTT
    from ..bptt.network import NetworkGradients

RECURRENT_PREFIX = "rnn."
READOUT_PREFIX = "fc."

# <prefix>weight_ih_l0, bias_hh_l1_reverse, weight_hr_l0 (a projection): the recurrent module's keys
RECURRENT_KEY = re.compile(r"^(?P<prefix>.*?)(?P<kind>weight|bias)_(?P<which>ih|hh|hr)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


@dataclass(frozen=True)
class Layout:
    """Where a model's parameters sit in a state dict: module prefixes, with their dots.

    recurrent : the nn.RNN/GRU/LSTM's prefix; readout : the Linear head's, or None (no head);
    embedding : the nn.Embedding's, or None; ignored : keys of other modules, left unread;
    others : the prefixes of other recurrent modules in the state dict (``--rnn-key`` chose).
    keras : False: a PyTorch state dict's layout (model/keras.py's KerasLayout says True).
    """

    keras: ClassVar[bool] = False

    recurrent: str = RECURRENT_PREFIX
    readout: str | None = READOUT_PREFIX
    readout_bias: bool = True
    embedding: str | None = None
    ignored: tuple[str, ...] = ()
    others: tuple[str, ...] = ()

    def export(self, network: Network) -> dict[str, np.ndarray]:
        """The network's parameters under this layout's keys (``export_network``)."""
        return export_network(network, self)

    def export_grads(self, network: Network, grads: "NetworkGradients") -> dict[str, np.ndarray]:
        """The gradients under this layout's keys (``export_network_grads``)."""
        return export_network_grads(network, grads, self)

    def initialise(self, network: Network, rng: np.random.Generator) -> Network:
        """The architecture with new weights, as PyTorch initialises its modules (``reinit.torch_init``)."""
        return torch_init(network, rng)

    def swap_cell(self, network: Network, cell: Cell, rng: np.random.Generator) -> Network:
        """The network with ``cell`` in every layer, as PyTorch initialises that module (``reinit.swap_cell``)."""
        return swap_cell(network, cell, rng)

    def describe(self, network: Network) -> str:
        return network.describe()

    def head_label(self, network: Network) -> str:
        return f"Linear({network.feature_size}, {network.output_size})"


@dataclass(frozen=True)
class Choices:
    """What the user said where a state dict alone is ambiguous (flags of the same names).

    rnn_key, head_key, embedding_key : module prefixes (``encoder.lstm``, with or without the dot).
    """

    cell: str | None = None
    activation: str | None = None
    rnn_key: str | None = None
    head_key: str | None = None
    embedding_key: str | None = None


def layer_key(name: str, layer: int, reverse: bool) -> str:
    """PyTorch's name of a layer-0 parameter for layer k and direction: weight_hh_l0 -> weight_hh_l1_reverse."""
    return f"{name[:-3]}_l{layer}" + ("_reverse" if reverse else "")


def _dotted(prefix: str | None) -> str | None:
    if prefix is None or prefix == "" or prefix.endswith("."):
        return prefix
    return prefix + "."


def _recurrent_prefixes(arrays: dict[str, np.ndarray]) -> list[str]:
    """The prefixes of every recurrent module in a state dict, sorted."""
    return sorted({m["prefix"] for k in arrays if (m := RECURRENT_KEY.match(k))})


def _recurrent_prefix(arrays: dict[str, np.ndarray], source: str, chosen: str | None) -> str:
    prefixes = _recurrent_prefixes(arrays)
    if chosen is not None:
        if chosen not in prefixes:
            found = ", ".join(repr(p.rstrip(".")) for p in prefixes) or "none"
            raise InputError(f"{source}: --rnn-key {chosen.rstrip('.')!r} names no recurrent module (found {found})")
        return chosen
    if not prefixes:
        raise InputError(f"{source}: no recurrent module found (no '*weight_hh_l0' key of an nn.RNN, nn.GRU or nn.LSTM)")
    if len(prefixes) > 1:
        found = ", ".join(repr(p.rstrip(".")) for p in prefixes)
        raise InputError(f"{source}: holds {len(prefixes)} recurrent modules ({found}); choose one with --rnn-key")
    return prefixes[0]


def _recurrent_keys(arrays: dict[str, np.ndarray], source: str, prefix: str) -> tuple[int, int, bool]:
    """(num_layers, directions, bias) of the recurrent module, its keys checked like
    ``load_state_dict(strict=True)``: nothing missing, nothing it does not model."""
    found: dict[tuple[int, bool], set[str]] = {}
    for key in arrays:
        if not key.startswith(prefix):
            continue
        m = RECURRENT_KEY.match(key)
        if m is None or m["prefix"] != prefix:
            continue
        if m["which"] == "hr":
            raise InputError(
                f"{source}: {key} is an LSTM projection (proj_size > 0), which gradscope does not model"
            )
        found.setdefault((int(m["layer"]), bool(m["reverse"])), set()).add(f"{m['kind']}_{m['which']}")
    layers = 1 + max(k for k, _ in found)
    directions = 2 if any(rev for _, rev in found) else 1
    bias = any("bias_ih" in names or "bias_hh" in names for names in found.values())
    expected = {"weight_ih", "weight_hh"} | ({"bias_ih", "bias_hh"} if bias else set())
    for k in range(layers):
        for reverse in (False, True)[:directions]:
            have = found.get((k, reverse), set())
            missing = [n for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if n in expected - have]
            if missing:
                name = layer_key(missing[0] + "_l0", k, reverse)
                raise InputError(f"{source}: missing {prefix}{name} (the module has {layers} layer(s)"
                                 f"{', bidirectional' if directions == 2 else ''})")
    return layers, directions, bias


def _linear_candidates(arrays: dict[str, np.ndarray], keys: list[str], width: int) -> list[str]:
    """Prefixes of 2-D '<name>.weight' arrays whose second axis is ``width``."""
    out = []
    for k in keys:
        if k.endswith("weight") and (k == "weight" or k.endswith(".weight")):
            w = arrays[k]
            if w.ndim == 2 and w.shape[1] == width:
                out.append(k[: -len("weight")])
    return out


def _pick(candidates: list[str], chosen: str | None, flag: str, what: str, source: str,
          hint: str) -> str | None:
    """One module prefix among candidates: the flag's, the only one, or the one named like ``hint``."""
    if chosen is not None:
        if chosen not in candidates:
            found = ", ".join(repr(c.rstrip(".")) for c in candidates) or "none"
            raise InputError(f"{source}: {flag} {chosen.rstrip('.')!r} is not {what} (candidates: {found})")
        return chosen
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    named = [c for c in candidates if hint and hint in c.lower()]
    if len(named) == 1:
        return named[0]
    found = ", ".join(repr(c.rstrip(".")) for c in candidates)
    advice = "; or give your head's gradient with --output-grads" if flag == "--head-key" else ""
    raise InputError(f"{source}: {len(candidates)} modules could be {what} ({found}); choose one with {flag}{advice}")


def _refuse_deeper_heads(arrays: dict[str, np.ndarray], used: set[str], head: str, embedding: str | None,
                         source: str) -> None:
    """A Linear that reads the head's output makes the head a hidden layer of an MLP head, which
    gradscope does not model: refuse rather than analyse the first layer as if it were the head."""
    out = arrays[head + "weight"].shape[0]
    for k in arrays:
        if k in used or not k.endswith("weight") or k == head + "weight" or k == (embedding or "") + "weight":
            continue
        w = arrays[k]
        if w.ndim == 2 and w.shape[1] == out and (k == "weight" or k.endswith(".weight")):
            raise InputError(
                f"{source}: {k} reads the {out} outputs of {head}weight: a head of several layers, which "
                f"gradscope does not model; give its gradient with --output-grads (dL/d(output)), or name "
                "the Linear that reads the recurrent module with --head-key"
            )


def load_network(arrays: dict[str, np.ndarray], source: str, choices: Choices = Choices(),
                 readout: str = "last") -> tuple[Network, Layout]:
    """A Network from a state dict's arrays; every inconsistency is an InputError naming ``source``.

    The recurrent module is recognised by its keys (REFERENCE §4), its cell by the shape of
    weight_hh_l0 ((H, H) nn.RNN, (3H, H) nn.GRU, (4H, H) nn.LSTM); an nn.Embedding in front by a
    2-D '<name>.weight' (V, D) without bias whose D is layer 0's input width; the head by a
    Linear '<name>.weight' (O, F), F = H x directions. Other keys are listed in ``Layout.ignored``.
    The loss is left to the caller (``Network.loss`` None).
    """
    prefix = _recurrent_prefix(arrays, source, _dotted(choices.rnn_key))
    layers_n, directions, bias = _recurrent_keys(arrays, source, prefix)
    w_hh = arrays[prefix + "weight_hh_l0"]
    if w_hh.ndim != 2 or w_hh.shape[1] == 0 or w_hh.shape[0] % w_hh.shape[1]:
        raise InputError(f"{source}: {prefix}weight_hh_l0 has shape {w_hh.shape}, not (G*H, H)")
    by_gates = {len(cls.gates): name for name, cls in CELLS.items() if cls.torch_module is not None}
    gates = w_hh.shape[0] // w_hh.shape[1]
    if gates not in by_gates:
        raise InputError(f"{source}: {prefix}weight_hh_l0 of shape {w_hh.shape} matches no known cell")
    detected = by_gates[gates]
    if choices.cell is not None and choices.cell != detected:
        raise InputError(f"{source} holds a {detected} model, but --cell {choices.cell} was given")
    cell = make_cell(detected, choices.activation or "tanh")
    hidden = w_hh.shape[1]
    width = hidden * directions

    used: set[str] = set()
    layers: list[list[Params]] = []
    for k in range(layers_n):
        layer = []
        for reverse in (False, True)[:directions]:
            tensors: Params = {}
            for name in cell.required_torch_names():
                key = prefix + layer_key(name, k, reverse)
                if key in arrays:  # _recurrent_keys saw every one there but a bias=False module's biases
                    tensors[name] = arrays[key]
                    used.add(key)
                else:
                    tensors[name] = np.zeros(w_hh.shape[0])  # bias=False: fixed zeros
            try:
                params = cell.from_torch(tensors)
            except InputError as exc:
                where = f"layer {k}{' reverse' if reverse else ''}"
                raise InputError(f"{source}: {where}: {exc}") from None
            if cell.hidden_size(params) != hidden:
                raise InputError(f"{source}: layer {k} has {cell.hidden_size(params)} hidden units, layer 0 has {hidden}")
            if k > 0 and cell.input_size(params) != width:
                raise InputError(
                    f"{source}: {prefix}{layer_key('weight_ih_l0', k, reverse)} takes {cell.input_size(params)} inputs; "
                    f"layer {k} reads layer {k - 1}'s output, {width} wide"
                )
            layer.append(params)
        layers.append(layer)

    rest = [k for k in arrays if k not in used]
    input_size = cell.input_size(layers[0][0])
    heads = _linear_candidates(arrays, rest, width)
    embeddings = [p for p in _linear_candidates(arrays, rest, input_size) if p + "bias" not in arrays]
    head_choice, emb_choice = _dotted(choices.head_key), _dotted(choices.embedding_key)
    if emb_choice is None and head_choice is None:
        # a Linear without bias (O, F) looks like an embedding (V, D) when D = F: names decide
        both = set(heads) & set(embeddings)
        embeddings = [p for p in embeddings if p not in both or "emb" in p.lower()]
        heads = [p for p in heads if p not in both or "emb" not in p.lower()]
    embedding_prefix = _pick(embeddings, emb_choice, "--embedding-key", f"an embedding (V, {input_size})",
                             source, "emb")
    heads = [p for p in heads if p != embedding_prefix]
    # no guess by name here: two Linears that fit (an attention scorer and a classifier) could be
    # either, and a wrong guess would analyse a model the user never trained
    head_prefix = _pick(heads, head_choice, "--head-key", f"a Linear head reading {width} features",
                        source, None)
    if head_prefix is not None and head_choice is None:
        _refuse_deeper_heads(arrays, used, head_prefix, embedding_prefix, source)
    head, has_bias = None, False
    if head_prefix is not None:
        wy = arrays[head_prefix + "weight"]
        has_bias = head_prefix + "bias" in arrays
        by = arrays[head_prefix + "bias"] if has_bias else np.zeros(wy.shape[0])
        if by.shape != (wy.shape[0],):
            raise InputError(f"{source}: {head_prefix}bias has shape {by.shape}, expected ({wy.shape[0]},)")
        head = {"Wy": np.asarray(wy, np.float64), "by": np.asarray(by, np.float64)}
        used.update({head_prefix + "weight"} | ({head_prefix + "bias"} if has_bias else set()))
    embedding = None
    if embedding_prefix is not None:
        embedding = np.asarray(arrays[embedding_prefix + "weight"], np.float64)
        used.add(embedding_prefix + "weight")
    ignored = tuple(sorted(k for k in arrays if k not in used))
    network = Network(cell, layers, head, readout, None, embedding, None, bias)
    others = tuple(p.rstrip(".") for p in _recurrent_prefixes(arrays) if p != prefix)
    layout = Layout(prefix, head_prefix, has_bias, embedding_prefix, ignored, others)
    return network, layout


def export_network(network: Network, layout: Layout = Layout()) -> dict[str, np.ndarray]:
    """The network's parameters as a PyTorch state dict (numpy arrays), under the layout's keys."""
    return _export(network, layout, [[network.cell.to_torch(p) for p in layer] for layer in network.layers],
                   network.head, network.embedding)


def export_network_grads(network: Network, grads: "NetworkGradients", layout: Layout = Layout()) -> dict[str, np.ndarray]:
    """Gradients under the very keys their parameters have in the user's state dict."""
    cells = [[network.cell.grads_to_torch(g.params) for g in layer] for layer in grads.layers]
    return _export(network, layout, cells, grads.head, grads.embedding)


def _export(network: Network, layout: Layout, cells: list[list[Params]], head: Params | None,
            embedding: np.ndarray | None) -> dict[str, np.ndarray]:
    if network.cell.torch_module is None:
        raise InputError(f"the {network.cell.name} cell has no PyTorch module, so no state dict holds its weights")
    out: dict[str, np.ndarray] = {}
    if embedding is not None and layout.embedding is not None:
        out[layout.embedding + "weight"] = embedding
    for k, layer in enumerate(cells):
        for d, tensors in enumerate(layer):
            for name, value in tensors.items():
                if network.bias or not name.startswith("bias"):
                    out[layout.recurrent + layer_key(name, k, d == 1)] = value
    if head is not None and layout.readout is not None:
        out[layout.readout + "weight"] = head["Wy"]
        if layout.readout_bias:
            out[layout.readout + "bias"] = head["by"]
    return out
