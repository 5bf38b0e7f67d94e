"""What a task provides: batches of sequences with targets, and its trivial baseline.

A task fixes or defaults the input size D, the output size O and the loss; ``resolve`` checks the
user's choices against it. ``sample`` draws a batch x (B, T, D) float64 with targets y: (B, 1)
of 0/1 for bce (a user's targets may be probabilities), (B,) class indices for ce, (B, O) values
for mse.

A task with a target at every step (``readout = "every"``, the copy task) has targets with a step
axis: (B, T) class indices for ce, (B, T, O) values for mse; the model then reads out every a_t.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Iterator

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class TaskShape:
    """The sizes, loss and readout a task runs with, once defaults are filled in.

    readout : "last" (one target per sequence, read out at a_T) or "every" (a target per step).
    """

    input_size: int
    output_size: int
    loss: str
    readout: str = "last"


@dataclass(frozen=True)
class Batch:
    """x (B, T, D) float64 (or (B, T) token ids for a network with an embedding) and targets y
    (see the module docstring); mask (B, T) bool, True at real steps, or None where every step
    of every sequence is real (padded texts have one)."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None = None


class Task(ABC):
    """A source of sequences. Subclasses set ``name`` and ``help`` and register in tasks/__init__.

    default_seq_len : the length T drawn when --seq-len is not given.
    readout : where the targets sit, "last" or "every" step; ``resolve`` puts it in the TaskShape.
    """

    name: ClassVar[str]
    help: ClassVar[str]
    default_seq_len: ClassVar[int] = 100
    readout: ClassVar[str] = "last"

    @classmethod
    def from_config(cls, config) -> "Task":
        """The task a RunConfig asks for; a task with options of its own (text) reads them here."""
        return cls()

    @abstractmethod
    def resolve(self, input_size: int | None, output_size: int | None, loss: str | None) -> TaskShape:
        """Fill in defaults; raise InputError where the user's choice contradicts the task."""

    @abstractmethod
    def sample(
        self, rng: np.random.Generator, batch_size: int, seq_len: int, shape: TaskShape
    ) -> Batch:
        """Draw a batch of ``batch_size`` sequences of ``seq_len`` steps.

        A task whose sequences vary in length (temporal-order) documents how ``seq_len`` sets the
        length; one batch always has one length, x.shape[1].
        """

    @abstractmethod
    def baseline_loss(self, shape: TaskShape, seq_len: int) -> float:
        """The loss of the best constant (memoryless) prediction: what a model must beat.

        ``seq_len`` is the length of the batch, x.shape[1].
        """

    def validation_batches(self, shape: TaskShape) -> Iterator[Batch] | None:
        """Held-out data for evaluation, or None where fresh draws of ``sample`` are held out."""
        return None

    def describe(self) -> str:
        """One line on where the sequences come from, for the reports."""
        return self.help

    def baseline_accuracy(self) -> float | None:
        """The accuracy of the trivial (majority-class) prediction, where the task has one."""
        return None

    def fixed_shape(
        self, input_size: int | None, output_size: int | None, loss: str | None, shape: TaskShape
    ) -> TaskShape:
        """``resolve`` for a task fixing D, O and the loss: the user may repeat them, not contradict."""
        if loss is not None and loss != shape.loss:
            raise InputError(f"--loss must be {shape.loss} for the {self.name} task (got {loss})")
        self.fixed("input-size", input_size, shape.input_size, self.name)
        self.fixed("output-size", output_size, shape.output_size, self.name)
        return shape

    @staticmethod
    def fixed(option: str, given: int | None, required: int, task: str) -> int:
        """A size the task fixes: the user may repeat it, not contradict it."""
        if given is not None and given != required:
            raise InputError(f"--{option} must be {required} for the {task} task (got {given})")
        return required
