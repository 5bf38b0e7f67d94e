"""The copy-memory problem (Arjovsky, Shah & Bengio 2016, "Unitary evolution RNNs").

Ten symbols, one-hot over 10 (D = 10): 0 blank, 1..8 data, 9 the delimiter. A sequence with
delay T is T + 20 steps long:

    inputs   s_1 .. s_10   blank x (T-1)   delimiter   blank x 10        s_i uniform over 1..8
    targets  blank x (T + 10)                          s_1 .. s_10

so the model must hold ten symbols over T + 10 steps and write them out after the delimiter. There
is a target at every step (many-to-many): the model reads out every a_t (readout "every"), ce over
9 classes (blank and the 8 data symbols; the delimiter is never a target), mean over batch and
steps. The memoryless strategy, blanks and then a uniform guess among the 8 symbols, costs
10 ln 8 / (T + 20): the baseline.

``--seq-len`` is the whole length T + 20, as for every task (the batch's x.shape[1], the length of
every per-step figure), so the delay is T = seq_len - 20: the default 120 is the paper's T = 100.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import Batch, Task, TaskShape

BLANK, DELIMITER = 0, 9
DATA_SYMBOLS = 8  # symbols 1..8
MEMORY = 10  # symbols to remember, and steps to recall them
INPUT_SIZE = DATA_SYMBOLS + 2  # blank, data, delimiter
OUTPUT_SIZE = DATA_SYMBOLS + 1  # blank, data


def delay(seq_len: int) -> int:
    """The delay T of a copy sequence of ``seq_len`` = T + 20 steps; at least 1."""
    if seq_len < 2 * MEMORY + 1:
        raise InputError(
            f"the copy task needs --seq-len of at least {2 * MEMORY + 1} "
            f"({MEMORY} symbols, a delay of at least 1, {MEMORY} recall steps; got {seq_len})"
        )
    return seq_len - 2 * MEMORY


class CopyTask(Task):
    name = "copy"
    help = "copy memory: recall 10 symbols after seq-len - 20 steps (ce at every step)"
    default_seq_len = 100 + 2 * MEMORY  # delay T = 100, the paper's shortest
    readout = "every"

    def resolve(self, input_size: int | None, output_size: int | None, loss: str | None) -> TaskShape:
        return self.fixed_shape(
            input_size, output_size, loss, TaskShape(INPUT_SIZE, OUTPUT_SIZE, "ce", self.readout)
        )

    def sample(self, rng: np.random.Generator, batch_size: int, seq_len: int, shape: TaskShape) -> Batch:
        """x (B, T + 20, 10) one-hot; y (B, T + 20) classes, blank (0) but for the last 10 steps."""
        delay(seq_len)
        data = rng.integers(1, DATA_SYMBOLS + 1, (batch_size, MEMORY))
        symbols = np.full((batch_size, seq_len), BLANK)
        symbols[:, :MEMORY] = data
        symbols[:, seq_len - MEMORY - 1] = DELIMITER  # after the 10 symbols and T - 1 blanks
        y = np.full((batch_size, seq_len), float(BLANK))
        y[:, -MEMORY:] = data
        return Batch(np.eye(INPUT_SIZE)[symbols], y)

    def baseline_loss(self, shape: TaskShape, seq_len: int) -> float:
        # Blanks are certain except at the 10 recall steps, where a guess among 8 costs ln 8 each.
        return MEMORY * float(np.log(DATA_SYMBOLS)) / seq_len
