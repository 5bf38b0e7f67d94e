"""The settings of a run: which model, which data, which seed.

``RunConfig`` is what every command shares (``analyze``, and the commands built on it). Fields that
are None are filled in from the task or from the loaded weights (``experiment.build``). Every
check raises InputError with the command-line flag's name, so the CLI and the Python API report
the same one-line error.
"""

from __future__ import annotations

import math
import typing
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import InputError
from .model.network import READOUTS

DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True, eq=False)
class RunConfig:
    """Model, data and seed. Sizes left as None come from the task or the weights file.

    ``weights`` is a path or, from Python, a state dict (numpy arrays or torch tensors, or a
    checkpoint holding one); ``inputs``, ``targets``, ``lengths`` and ``output_grads`` are paths or
    arrays (``output_grads`` also a mapping with ``output``, ``h_n``, ``c_n``).
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
    loss: str | None = None
    seed: int = 0
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
        for name in ("hidden_size", "input_size", "output_size", "seq_len", "batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise InputError(f"{flag(name)} must be a whole number of at least 1 (got {value})")
        for name in ("init_gain", "spectral_radius"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise InputError(f"{flag(name)} must be a positive finite number (got {value})")
        if self.seed < 0:
            raise InputError(f"--seed must be non-negative (got {self.seed})")
        for name in ("targets", "lengths", "output_grads"):
            if getattr(self, name) is not None and self.inputs is None:
                raise InputError(f"{flag(name)} needs --inputs")
        if self.padding_idx is not None and (isinstance(self.padding_idx, bool) or int(self.padding_idx) != self.padding_idx
                                             or self.padding_idx < 0):
            raise InputError(f"--padding-idx must be a non-negative whole number (got {self.padding_idx})")
        if self.readout is not None and self.readout not in READOUTS:
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
FIELD_TYPES: dict[str, type] = {
    name: _without_none(hint) for name, hint in typing.get_type_hints(RunConfig).items()
    if name in {f.name for f in fields(RunConfig)}
}

TEXT_FIELDS = ("text", "text_column", "label_column", "padding", "max_vocab", "min_count",
               "embeddings", "embedding_dim")
_DEFAULTS = {f.name: f.default for f in fields(RunConfig)}
