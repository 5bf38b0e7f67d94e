"""From a RunConfig to a model and a batch: the one place where settings meet data.

Randomness comes from two independent streams spawned from ``--seed``: one for the weights, one for
the data. So two models that differ only in cell, activation or init see the very same batch, which
is what a side-by-side comparison needs, and a run is reproducible byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .model.cells import Cell, Params, make_cell
from .config import DEFAULT_BATCH_SIZE, RunConfig
from .errors import InputError
from .io.arrays import load_npy, load_npz
from .model.initializers import rescale_spectral_radius
from .model.losses import get_loss
from .model.single import Model, readout_params
from .model.statedict import Layout, load_model
from .tasks import Batch, Task, TaskShape, make_task

DEFAULT_HIDDEN_SIZE = 32


@dataclass
class Setup:
    """A built run: the model, one batch, the task, and the config with every None filled in."""

    config: RunConfig
    model: Model
    batch: Batch
    task: Task
    shape: TaskShape
    layout: Layout

    @property
    def baseline_loss(self) -> float:
        return self.task.baseline_loss(self.shape, self.batch.x.shape[1])


def rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(weights stream, data stream), independent and fixed by the seed."""
    weights, data = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(weights), np.random.default_rng(data)


def rescale_recurrent(cell: Cell, params: Params, radius: float) -> None:
    """``--spectral-radius``: scale each gate's (H, H) block of W_hh to that spectral radius, in place.

    Wa itself for the vanilla RNN; each of r, z, n (GRU) or i, f, g, o (LSTM) on its own, since
    a gated cell has no single recurrent matrix and each block drives one gate.
    """
    blocks = cell.gate_blocks(params).values()
    params[cell.recurrent] = np.concatenate([rescale_spectral_radius(b, radius) for b in blocks])


def new_model(config: RunConfig, shape: TaskShape, rng: np.random.Generator) -> Model:
    """A freshly initialised model for the config's cell, sizes and init, read out as the task says."""
    cell = make_cell(config.cell or "rnn", config.activation or "tanh")
    hidden = config.hidden_size or DEFAULT_HIDDEN_SIZE
    params = cell.init_params(shape.input_size, hidden, rng, config.init, config.init_gain)
    if config.spectral_radius is not None:
        rescale_recurrent(cell, params, config.spectral_radius)
    params.update(readout_params(hidden, shape.output_size, rng))
    return Model(cell, params, get_loss(shape.loss), shape.readout)


def _loaded_model(config: RunConfig) -> tuple[Model, Layout]:
    model, layout = load_model(
        load_npz(config.weights, "weights"), str(config.weights), config.cell, config.activation, config.loss
    )
    for name, given, actual in (
        ("hidden-size", config.hidden_size, model.hidden_size),
        ("input-size", config.input_size, model.input_size),
        ("output-size", config.output_size, model.output_size),
    ):
        if given is not None and given != actual:
            raise InputError(f"--{name} {given} disagrees with the weights in {config.weights} ({actual})")
    if config.spectral_radius is not None:
        rescale_recurrent(model.cell, model.params, config.spectral_radius)
    return model, layout


def _file_batch(config: RunConfig, task: Task, shape: TaskShape, rng: np.random.Generator) -> Batch:
    x = load_npy(config.inputs, "inputs")
    if x.ndim != 3:
        raise InputError(f"inputs file {config.inputs} must have shape (B, T, D), got {x.shape}")
    b, t, d = x.shape
    if b == 0 or t == 0:
        raise InputError(f"inputs file {config.inputs} is empty: shape {x.shape}")
    if d != shape.input_size:
        raise InputError(
            f"inputs file {config.inputs} has {d} features per step, the model takes {shape.input_size}"
        )
    for name, given, actual in (("seq-len", config.seq_len, t), ("batch-size", config.batch_size, b)):
        if given is not None and given != actual:
            raise InputError(f"--{name} {given} disagrees with inputs file {config.inputs} ({actual})")
    every = shape.readout == "every"
    if config.targets is None:
        # Only inputs given: targets of the right kind, drawn at random (as the random task does),
        # one per sequence or, for a task read out at every step, one per step.
        y = make_task("random").sample(rng, b * t if every else b, 1, shape).y
        if every:
            y = y.reshape((b, t) + y.shape[1:])
    else:
        y = load_npy(config.targets, "targets")
        if y.shape[0] != b:
            raise InputError(f"targets file {config.targets} has {y.shape[0]} rows, inputs have {b}")
        problem = get_loss(shape.loss).check_targets(y, shape.output_size, t if every else None)
        if problem:
            raise InputError(f"targets file {config.targets}: {problem}")
        if shape.loss == "bce" and not every:
            y = y.reshape(b, 1)
    return Batch(x, y)


def build(config: RunConfig) -> Setup:
    """The model and batch a config describes, with every default resolved in the returned config."""
    task = make_task(config.task, config)
    weights_rng, data_rng = rngs(config.seed)
    if config.weights is not None:
        model, layout = _loaded_model(config)
        # A state dict says nothing of the loss: the flag, else the task's (mse for adding).
        shape = task.resolve(model.input_size, model.output_size, config.loss)
        model.loss = get_loss(shape.loss)
        model.readout = shape.readout  # a state dict holds one Linear; the task says where it reads
    else:
        shape = task.resolve(config.input_size, config.output_size, config.loss)
        model, layout = new_model(config, shape, weights_rng), Layout()
    if config.inputs is not None:
        batch = _file_batch(config, task, shape, data_rng)
    else:
        seq_len = config.seq_len or task.default_seq_len
        batch = task.sample(data_rng, config.batch_size or DEFAULT_BATCH_SIZE, seq_len, shape)
    resolved = replace(
        config,
        cell=model.cell.name,
        activation=model.cell.activation,
        hidden_size=model.hidden_size,
        input_size=model.input_size,
        output_size=model.output_size,
        seq_len=batch.x.shape[1],
        batch_size=batch.x.shape[0],
        loss=model.loss.name,
        init=None if config.weights else config.init,
        init_gain=None if config.weights else config.init_gain,
    )
    return Setup(resolved, model, batch, task, shape, layout)
