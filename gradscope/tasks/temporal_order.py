"""The temporal-order problem (Hochreiter & Schmidhuber 1997, LSTM paper, Experiment 6a).

Each step is one symbol, one-hot over 8 (D = 8, in this order):

    a b c d     distractors, drawn uniformly at every other step
    X Y         the two relevant symbols, at steps t1 and t2
    B E         E opens the sequence (step 1), B closes it (step T, the "trigger symbol")

The class, read out at the last step, is the order of the two relevant symbols: XX, XY, YX, YY
(classes 0..3, the paper's Q, R, S, U); ce over 4 classes. Nothing before t2 tells the class,
so a model must carry the symbol at t1 over at least T/3 steps. Guessing gives ln 4 whatever
the data: that is the baseline.

The original draws the length in [100, 110], t1 in [10, 20] and t2 in [50, 60] (steps
counted from 1). Here ``--seq-len L`` (default 100) sets the shortest length and every range
scales with it: lengths L .. L + L//10, t1 in [L//10, L//5], t2 in [L//2, 3L//5], which is the
original at L = 100. A batch must have one length, so the length is drawn once per batch, not per
sequence (``layout`` gives the ranges).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .base import Batch, Task, TaskShape

SYMBOLS = ("a", "b", "c", "d", "X", "Y", "B", "E")
DISTRACTORS = 4  # a, b, c, d are symbols 0..3
X, Y, B, E = (SYMBOLS.index(s) for s in "XYBE")
CLASSES = ("XX", "XY", "YX", "YY")
MIN_SEQ_LEN = 20  # the shortest L where t1 >= 2, after the opening E


@dataclass(frozen=True)
class Layout:
    """Where things go for ``--seq-len L``: inclusive ranges, steps counted from 1.

    lengths : (L, L + L//10), the batch's length T is drawn from it.
    first : (L//10, L//5), the range of t1.
    second : (L//2, 3L//5), the range of t2.
    """

    lengths: tuple[int, int]
    first: tuple[int, int]
    second: tuple[int, int]


def layout(seq_len: int) -> Layout:
    """The original's ranges (L = 100: lengths 100-110, t1 10-20, t2 50-60), scaled to L."""
    if seq_len < MIN_SEQ_LEN:
        raise InputError(
            f"the temporal-order task needs --seq-len of at least {MIN_SEQ_LEN} (got {seq_len})"
        )
    return Layout(
        (seq_len, seq_len + seq_len // 10),
        (seq_len // 10, seq_len // 5),
        (seq_len // 2, 3 * seq_len // 5),
    )


class TemporalOrderTask(Task):
    name = "temporal-order"
    help = "order of two symbols X/Y among distractors, lengths L..1.1L (ce, 4 classes, baseline ln 4)"

    def resolve(self, input_size: int | None, output_size: int | None, loss: str | None) -> TaskShape:
        shape = TaskShape(len(SYMBOLS), len(CLASSES), "ce")
        return self.fixed_shape(input_size, output_size, loss, shape)

    def sample(self, rng: np.random.Generator, batch_size: int, seq_len: int, shape: TaskShape) -> Batch:
        """x (B, T, 8) one-hot with T drawn from ``layout(seq_len).lengths``; y (B,) classes 0..3."""
        lay = layout(seq_len)
        steps = int(rng.integers(lay.lengths[0], lay.lengths[1] + 1))
        symbols = rng.integers(0, DISTRACTORS, (batch_size, steps))
        symbols[:, 0] = E
        symbols[:, -1] = B
        t1 = rng.integers(lay.first[0], lay.first[1] + 1, batch_size)
        t2 = rng.integers(lay.second[0], lay.second[1] + 1, batch_size)
        is_y = rng.integers(0, 2, (batch_size, 2))  # 0: X, 1: Y, for t1 and t2
        rows = np.arange(batch_size)
        symbols[rows, t1 - 1] = X + is_y[:, 0]  # steps count from 1, columns from 0
        symbols[rows, t2 - 1] = X + is_y[:, 1]
        x = np.eye(len(SYMBOLS))[symbols]
        y = (2 * is_y[:, 0] + is_y[:, 1]).astype(np.float64)  # XX 0, XY 1, YX 2, YY 3
        return Batch(x, y)

    def baseline_loss(self, shape: TaskShape, seq_len: int) -> float:
        # The four classes are equally likely whatever the length: the best guess costs ln 4.
        return float(np.log(len(CLASSES)))
