"""The settings of a run: which model, which data, which seed.

``RunConfig`` is what every command shares (``analyze``, and the commands built on it). Fields that
are None are filled in from the task or from the loaded weights (``experiment.build``). Every
check raises InputError with the command-line flag's name, so the CLI and the Python API report
the same one-line error.
"""

from __future__ import annotations

import math
import numbers
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import InputError
from .model.gate_bias import BIAS_INITS
from .model.network import MODEL_READOUTS, READOUTS
from .precision import DTYPES

DEFAULT_BATCH_SIZE = 16
MAX_INTEGER = 2**63 - 1


@dataclass(frozen=True, eq=False)
class RunConfig:
    """Model, data and seed. Sizes left as None come from the task or the weights file.

    ``weights`` is a path or, from Python, a state dict (numpy arrays or torch tensors, or a
    checkpoint holding one); ``inputs``, ``targets``, ``lengths`` and ``output_grads`` are paths or
    arrays (``output_grads`` also a mapping with ``output``, ``h_n``, ``c_n``); ``initial_state`` an
    .npz path, a mapping with ``h_0`` (and ``c_0``), or torch's ``hx``: a tuple ``(h_0, c_0)`` or
    ``(h_0,)``, or ``h_0`` alone.
    """

    cell: str | None = None
    activation: str | None = None
    hidden_size: int | None = None
    input_size: int | None = None
    output_size: int | None = None
    seq_len: int | None = None
    batch_size: int | None = None
    task: str = "random"
    init: str | None = "normal"
    init_gain: float | None = 1.0
    spectral_radius: float | None = None
    # every W_hh (each gate block alike) times this factor, after init or loading: where the model
    # would sit with larger or smaller recurrent weights (sweep's axis around a trained model)
    recurrent_scale: float | None = None
    # the gated cells' gate biases at init (model/gate_bias.py), and chrono's T_max (None: seq_len)
    bias_init: str = "zero"
    chrono_max: int | None = None
    loss: str | None = None
    seed: int = 0
    # what BPTT computes in (precision.py): the model and the batch are cast to it after loading
    dtype: str = "float64"
    weights: str | Any | None = None
    inputs: str | Any | None = None
    targets: str | Any | None = None
    # a user's own network (model/network.py): padding, the readout, an upstream gradient, and the
    # module prefixes that settle an ambiguous state dict
    lengths: str | Any | None = None
    padding_idx: int | None = None
    readout: str | None = None
    output_grads: str | Any | None = None
    rnn_key: str | None = None
    head_key: str | None = None
    embedding_key: str | None = None
    # the state every layer and direction starts from (PyTorch's hx): h_0, c_0 (L x directions, B, H)
    initial_state: str | Any | None = None
    # the text task's own settings (gradscope/text): where the texts are and how they are encoded
    text: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    padding: str = "pre"
    max_vocab: int = 5000
    min_count: int = 1
    embeddings: str = "random"
    embedding_dim: int = 16

    def __post_init__(self) -> None:
        for name, kind in FIELD_TYPES.items():
            value = getattr(self, name)
            if kind in (int, float) and value is not None:
                value = plain_number(flag(name), value)  # a numpy scalar: a plain one, as JSON writes it
                object.__setattr__(self, name, value)
            if kind is int and isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{flag(name)} must be a whole number (got {value!r})")
            # numpy's sizes and seeds are 64-bit: a larger number would overflow inside it
            if kind is int and isinstance(value, (int, float)) and not abs(value) <= MAX_INTEGER:
                raise InputError(f"{flag(name)} {value} is too large (at most {MAX_INTEGER}, 2^63 - 1)")
        for name in ("hidden_size", "input_size", "output_size", "seq_len", "batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise InputError(f"{flag(name)} must be a whole number of at least 1 (got {value!r})")
        for name in ("init_gain", "spectral_radius", "recurrent_scale"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise InputError(f"{flag(name)} must be a positive finite number (got {value})")
        if self.bias_init not in BIAS_INITS:
            raise InputError(f"--bias-init must be one of {', '.join(BIAS_INITS)} (got {self.bias_init!r})")
        if self.chrono_max is not None:
            if self.bias_init != "chrono":
                raise InputError("--chrono-max is a setting of --bias-init chrono")
            if isinstance(self.chrono_max, bool) or int(self.chrono_max) != self.chrono_max or self.chrono_max < 2:
                raise InputError(f"--chrono-max must be a whole number of at least 2 (got {self.chrono_max})")
        if self.bias_init != "zero" and self.weights is not None:
            raise InputError(f"--bias-init {self.bias_init} sets the biases at initialisation, which --weights fixes")
        if self.seed < 0 or int(self.seed) != self.seed:
            raise InputError(f"--seed must be a whole number of at least 0 (got {self.seed!r})")
        object.__setattr__(self, "seed", int(self.seed))  # 3.0 from Python is seed 3 (numpy takes ints only)
        if isinstance(self.dtype, str):  # as the flag takes it: FLOAT32 is float32
            object.__setattr__(self, "dtype", self.dtype.lower())
        if self.dtype not in DTYPES:
            raise InputError(f"--dtype must be one of {', '.join(DTYPES)} (got {self.dtype!r})")
        for name in ("targets", "lengths", "output_grads", "initial_state"):
            if getattr(self, name) is not None and self.inputs is None:
                raise InputError(f"{flag(name)} needs --inputs")
        if self.padding_idx is not None and (isinstance(self.padding_idx, bool) or int(self.padding_idx) != self.padding_idx
                                             or self.padding_idx < 0):
            raise InputError(f"--padding-idx must be a non-negative whole number (got {self.padding_idx})")
        if self.readout is not None and self.readout not in MODEL_READOUTS:  # max-all: a Keras model's, resolved
            raise InputError(f"--readout must be one of {', '.join(READOUTS)} (got {self.readout!r})")
        if self.task != "text":
            for name in TEXT_FIELDS:
                if getattr(self, name) != _DEFAULTS[name]:
                    raise InputError(f"{flag(name)} is a setting of --task text (the task is {self.task})")

    def as_dict(self) -> dict:
        """The settings as JSON values: an array or state dict given from Python is described,
        not copied (a report must not carry the user's whole batch)."""
        return {f.name: _described(getattr(self, f.name)) for f in fields(self)}


def _described(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return f"<state dict of {len(value)} entries>"
    shape = getattr(value, "shape", None)
    return f"<array {tuple(shape)}>" if shape is not None else f"<{type(value).__name__}>"


def flag(field_name: str) -> str:
    """The command-line flag for a config field: hidden_size -> --hidden-size."""
    return "--" + field_name.replace("_", "-")


def _without_none(hint: object) -> type:
    """int | None -> int."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


# Each setting's type, None left out: what a settings file and a sweep axis must give.
def plain_number(label: str, value: object) -> int | float:
    """``value`` as a Python int or float (a numpy scalar's ``item()``); a setting given from Python
    may be anything, and one that is no number (a string, a bool, None) is refused by ``label``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{label} must be a number (got {value!r})")
    if isinstance(value, (int, float)):
        return value
    return value.item() if hasattr(value, "item") else float(value)


FIELD_TYPES: dict[str, type] = {
    name: _without_none(hint) for name, hint in typing.get_type_hints(RunConfig).items()
    if name in {f.name for f in fields(RunConfig)}
}

TEXT_FIELDS = ("text", "text_column", "label_column", "padding", "max_vocab", "min_count",
               "embeddings", "embedding_dim")
_DEFAULTS = {f.name: f.default for f in fields(RunConfig)}
