"""PyTorch state dicts <-> gradscope models (REFERENCE §4).

A model saved as ``np.savez(path, **{k: v.detach().numpy() for k, v in model.state_dict().items()})``
loads as is: the recurrent module's keys may carry a prefix (``rnn.weight_hh_l0``), the cell is
recognised from the shape of weight_hh_l0 ((H, H) nn.RNN, (3H, H) nn.GRU, (4H, H) nn.LSTM), and the
readout is the one remaining Linear layer (``fc.weight`` (O, H), ``fc.bias`` (O,)).
Exports use the prefix ``rnn.`` and the readout ``fc.``, and load into the matching torch modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import CELLS, Params, make_cell
from ..errors import InputError
from .losses import default_loss, get_loss
from .single import Model

RECURRENT_PREFIX = "rnn."
READOUT_PREFIX = "fc."


@dataclass(frozen=True)
class Layout:
    """Where a model's parameters sit in a state dict: module prefixes, with their dots."""

    recurrent: str = RECURRENT_PREFIX
    readout: str = READOUT_PREFIX
    readout_bias: bool = True


def _split_prefix(keys: list[str], suffix: str) -> list[str]:
    return [k[: -len(suffix)] for k in keys if k.endswith(suffix)]


def load_model(
    arrays: dict[str, np.ndarray],
    source: str,
    cell: str | None,
    activation: str | None,
    loss: str | None,
) -> tuple[Model, Layout]:
    """A Model from a state dict's arrays; every inconsistency is an InputError naming ``source``."""
    keys = sorted(arrays)
    for k in keys:
        if "_reverse" in k or any(k.endswith(f"_l{n}") for n in range(1, 10)):
            raise InputError(
                f"{source}: {k!r} belongs to a multi-layer or bidirectional network; "
                "gradscope analyses single-layer, one-directional cells"
            )
    prefixes = _split_prefix(keys, "weight_hh_l0")
    if len(prefixes) != 1:
        found = "none" if not prefixes else ", ".join(p + "weight_hh_l0" for p in prefixes)
        raise InputError(f"{source}: expected exactly one recurrent weight '*weight_hh_l0', found {found}")
    prefix = prefixes[0]
    w_hh = arrays[prefix + "weight_hh_l0"]
    if w_hh.ndim != 2 or w_hh.shape[1] == 0 or w_hh.shape[0] % w_hh.shape[1]:
        raise InputError(f"{source}: {prefix}weight_hh_l0 has shape {w_hh.shape}, not (G*H, H)")
    by_gates = {len(cls.gates): name for name, cls in CELLS.items()}
    gates = w_hh.shape[0] // w_hh.shape[1]
    if gates not in by_gates:
        raise InputError(f"{source}: {prefix}weight_hh_l0 of shape {w_hh.shape} matches no known cell")
    detected = by_gates[gates]
    if cell is not None and cell != detected:
        raise InputError(f"{source} holds a {detected} model, but --cell {cell} was given")
    model_cell = make_cell(detected, activation or "tanh")

    tensors: Params = {}
    for name in model_cell.required_torch_names():
        if prefix + name not in arrays:
            raise InputError(f"{source}: missing {prefix + name}")
        tensors[name] = arrays[prefix + name]
    params = model_cell.from_torch(tensors)
    hidden = model_cell.hidden_size(params)

    rest = [k for k in keys if not k.startswith(prefix) or k[len(prefix):] not in tensors]
    readouts = [p for p in _split_prefix(rest, "weight") if p.endswith(".") or p == ""]
    readouts = [p for p in readouts if arrays[p + "weight"].ndim == 2 and arrays[p + "weight"].shape[1] == hidden]
    if len(readouts) != 1:
        found = "none" if not readouts else ", ".join(p + "weight" for p in readouts)
        raise InputError(
            f"{source}: expected exactly one readout Linear layer '<name>.weight' of shape (O, {hidden}), "
            f"found {found}"
        )
    readout = readouts[0]
    wy = arrays[readout + "weight"]
    has_bias = readout + "bias" in arrays
    by = arrays[readout + "bias"] if has_bias else np.zeros(wy.shape[0])
    if by.shape != (wy.shape[0],):
        raise InputError(f"{source}: {readout}bias has shape {by.shape}, expected ({wy.shape[0]},)")
    params.update({"Wy": wy, "by": by})
    loss_fn = get_loss(loss or default_loss(wy.shape[0]))
    return Model(model_cell, params, loss_fn), Layout(prefix, readout, has_bias)


def export(model: Model, layout: Layout = Layout()) -> dict[str, np.ndarray]:
    """The model's parameters as a PyTorch state dict (numpy arrays)."""
    out = {layout.recurrent + k: v for k, v in model.cell.to_torch(model.cell_params()).items()}
    out[layout.readout + "weight"] = model.params["Wy"]
    if layout.readout_bias:
        out[layout.readout + "bias"] = model.params["by"]
    return out


def export_grads(model: Model, grads: Params, layout: Layout = Layout()) -> dict[str, np.ndarray]:
    """Gradients under the very keys their parameters have in the state dict."""
    cell_grads = {k: v for k, v in grads.items() if k not in ("Wy", "by")}
    out = {layout.recurrent + k: v for k, v in model.cell.grads_to_torch(cell_grads).items()}
    out[layout.readout + "weight"] = grads["Wy"]
    if layout.readout_bias:
        out[layout.readout + "bias"] = grads["by"]
    return out
