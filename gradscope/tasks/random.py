"""The ``random`` task: Gaussian inputs and random targets.

Nothing to learn, which is the point for analysis: the gradient flow at initialisation depends on
the weights and the input statistics, not on any structure in the labels.
x_t ~ N(0, I_D); targets 0/1 (bce), uniform classes (ce) or N(0, 1) values (mse).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..model.losses import default_loss, get_loss
from .base import Batch, Task, TaskShape


class RandomTask(Task):
    name = "random"
    help = "Gaussian inputs, random labels (the default)"

    def resolve(self, input_size: int | None, output_size: int | None, loss: str | None) -> TaskShape:
        if loss is not None:
            get_loss(loss)
        if output_size is None:
            output_size = 2 if loss == "ce" else 1
        loss = loss or default_loss(output_size)
        if loss == "bce" and output_size != 1:
            raise InputError(f"--loss bce needs --output-size 1 (got {output_size})")
        if loss == "ce" and output_size < 2:
            raise InputError(f"--loss ce needs --output-size of at least 2 (got {output_size})")
        return TaskShape(input_size or 8, output_size, loss)

    def sample(self, rng: np.random.Generator, batch_size: int, seq_len: int, shape: TaskShape) -> Batch:
        x = rng.standard_normal((batch_size, seq_len, shape.input_size))
        if shape.loss == "bce":
            y = rng.integers(0, 2, (batch_size, 1)).astype(np.float64)
        elif shape.loss == "ce":
            y = rng.integers(0, shape.output_size, batch_size).astype(np.float64)
        else:
            y = rng.standard_normal((batch_size, shape.output_size))
        return Batch(x, y)

    def baseline_loss(self, shape: TaskShape, seq_len: int) -> float:
        # Uniform labels: predicting the prior costs ln C; N(0,1) targets: predicting 0 costs 1.
        if shape.loss == "bce":
            return float(np.log(2.0))
        if shape.loss == "ce":
            return float(np.log(shape.output_size))
        return 1.0
