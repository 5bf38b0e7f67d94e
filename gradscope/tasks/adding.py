"""The adding problem (Le, Jaitly & Hinton 2015; Arjovsky et al. 2016).

Two input channels per step: a value ~ U[0, 1] and a marker that is 1 at exactly two steps, one in
each half of the sequence, and 0 elsewhere. The target is the sum of the two marked values; the
loss is MSE. Always predicting 1 gives MSE 1/6 (Var of a sum of two U[0,1]): a model that does not
beat that has learned nothing. The first marker sits up to T steps before the readout, so the
task measures how far back the gradient reaches.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import Batch, Task, TaskShape


class AddingTask(Task):
    name = "adding"
    help = "adding problem: sum the two marked values (MSE, baseline 1/6)"

    def resolve(self, input_size: int | None, output_size: int | None, loss: str | None) -> TaskShape:
        if loss not in (None, "mse"):
            raise InputError(f"the adding task is a regression: --loss must be mse (got {loss})")
        return self.fixed_shape(input_size, output_size, loss, TaskShape(2, 1, "mse"))

    def sample(self, rng: np.random.Generator, batch_size: int, seq_len: int, shape: TaskShape) -> Batch:
        if seq_len < 2:
            raise InputError(f"the adding task needs --seq-len of at least 2 (got {seq_len})")
        values = rng.uniform(0.0, 1.0, (batch_size, seq_len))
        half = seq_len // 2
        first = rng.integers(0, half, batch_size)
        second = rng.integers(half, seq_len, batch_size)
        markers = np.zeros((batch_size, seq_len))
        rows = np.arange(batch_size)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        x = np.stack([values, markers], axis=2)
        y = (values[rows, first] + values[rows, second]).reshape(batch_size, 1)
        return Batch(x, y)

    def baseline_loss(self, shape: TaskShape, seq_len: int) -> float:
        return 1.0 / 6.0
