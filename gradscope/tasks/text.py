"""The ``text`` task: sentiment (or any labels) of real texts, the lesson's starting point.

Texts come from ``--text PATH`` (CSV/TSV, JSON Lines, an aclImdb-style directory) or the built-in
corpus of movie reviews; gradscope/text/ reads, tokenises, encodes and embeds them. A fixed
fraction (VALIDATION_FRACTION, stratified by class) is held out: training batches are drawn from
the rest, and ``validation_batches`` yields the held-out texts for evaluation.

Two classes give one sigmoid output (bce), more a softmax (ce). The trivial baseline loss is the
entropy of the training labels (the cross-entropy of always predicting the class prior); the
trivial accuracy is the majority class's share.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..errors import InputError
from .base import Batch, Task, TaskShape

if TYPE_CHECKING:  # gradscope.text is imported when a text task is built, not when the registry is
    from ..text import TextDataset, TextOptions

VALIDATION_FRACTION = 0.2
EVAL_CHUNK = 64  # texts per evaluation batch: one-hot inputs are (n, T, V) floats


@lru_cache(maxsize=4)
def _dataset(options: TextOptions, seed: int) -> TextDataset:
    # A compare or sweep builds many models on the same texts: read the file once per process.
    from ..text import load_text_dataset

    return load_text_dataset(options, seed)


class TextTask(Task):
    name = "text"
    help = "labelled texts: --text FILE or DIR, or the built-in movie reviews"

    def __init__(self, options: TextOptions | None = None, seed: int = 0) -> None:
        from ..text import TextOptions

        self.options = options or TextOptions()
        self.dataset = _dataset(self.options, seed)
        self.train_idx, self.val_idx = self.dataset.split(VALIDATION_FRACTION, seed)

    @classmethod
    def from_config(cls, config) -> "TextTask":
        from ..text import TextOptions
        from ..text.dataset import EMBEDDINGS

        named = config.embeddings in EMBEDDINGS  # random or onehot; anything else is a file
        options = TextOptions(
            path=config.text,
            text_column=config.text_column,
            label_column=config.label_column,
            seq_len=config.seq_len or cls.default_seq_len,
            padding=config.padding,
            max_vocab=config.max_vocab,
            min_count=config.min_count,
            embedding=config.embeddings if named else "random",
            embedding_dim=config.embedding_dim,
            embeddings_file=None if named else config.embeddings,
        )
        return cls(options, config.seed)

    def resolve(self, input_size: int | None, output_size: int | None, loss: str | None) -> TaskShape:
        classes = self.dataset.num_classes
        shape = TaskShape(self.dataset.input_size, 1 if classes == 2 else classes,
                          "bce" if classes == 2 else "ce")
        if loss == "mse":
            raise InputError("the text task is a classification: --loss must be bce or ce")
        if loss == "ce" and classes == 2:
            shape = TaskShape(shape.input_size, 2, "ce")  # two softmax outputs work too
        return self.fixed_shape(input_size, output_size, loss, shape)

    def _targets(self, labels: np.ndarray, shape: TaskShape) -> np.ndarray:
        y = labels.astype(np.float64)
        return y.reshape(-1, 1) if shape.loss == "bce" else y

    def sample(self, rng: np.random.Generator, batch_size: int, seq_len: int, shape: TaskShape) -> Batch:
        if seq_len != self.dataset.seq_len:
            raise InputError(f"the texts were encoded to --seq-len {self.dataset.seq_len}, not {seq_len}")
        idx = rng.choice(self.train_idx, size=batch_size, replace=batch_size > len(self.train_idx))
        x, labels = self.dataset.batch(idx)
        return Batch(x, self._targets(labels, shape), self.dataset.mask[idx])

    def validation_batches(self, shape: TaskShape) -> Iterator[Batch]:
        """The held-out texts, EVAL_CHUNK at a time."""
        for start in range(0, len(self.val_idx), EVAL_CHUNK):
            idx = self.val_idx[start : start + EVAL_CHUNK]
            x, labels = self.dataset.batch(idx)
            yield Batch(x, self._targets(labels, shape), self.dataset.mask[idx])

    def baseline_loss(self, shape: TaskShape, seq_len: int) -> float:
        prior = np.bincount(self.dataset.labels[self.train_idx], minlength=self.dataset.num_classes)
        p = prior[prior > 0] / prior.sum()
        return float(-np.sum(p * np.log(p)))

    def baseline_accuracy(self) -> float:
        """Majority-class accuracy on the validation texts, the class chosen on the training texts."""
        return self.dataset.majority_baseline(self.val_idx, self.train_idx)

    def describe(self) -> str:
        d = self.dataset
        return (f"{d.source}: {len(d)} texts, {d.num_classes} classes, {len(d.vocab)} words, "
                f"{len(self.train_idx)}/{len(self.val_idx)} train/validation")
