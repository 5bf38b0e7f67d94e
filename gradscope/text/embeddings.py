"""Word embeddings: id sequences (n, T) -> float64 inputs x (n, T, D), applied batch by batch.

The dataset keeps only the int32 ids; an embedding turns a batch of them into inputs when a batch is
drawn, so a corpus of 100,000 reviews never needs its (N, T, D) tensor in memory. In every kind
the ``<pad>`` id maps to the zero vector, so padded steps feed the cell no input: a_t = f(Wa a_{t-1} + b).

Kinds:

- random: a fixed table of N(0, 1/D) vectors (variance 1/D keeps ||x_t|| near 1, whatever D).
- onehot: D = vocabulary size; x_t is the indicator of the word (built per batch, never as a V x V
  table).
- a GloVe-format text file (``word v1 ... vD`` per line; a word2vec "count dim" first line is
  skipped): the vectors of the vocabulary's words. Words missing from the file get seeded random
  vectors with the spread of the loaded ones, so that they neither stand out nor vanish.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.files import regular_file
from .readers import check_text_file, open_text
from .vocab import PAD_ID, UNK_ID, Vocabulary

EMBEDDING_STREAM = 0x7E1
"""Mixed into the seed so that embedding vectors are not the same draws as weights seeded alike."""


@dataclass(frozen=True, eq=False)
class TableEmbedding:
    """A lookup table: row i is the vector of word id i.

    Attributes
    ----------
    table : ndarray (V, D) float64
        Row ``PAD_ID`` is zero.
    description : str
        What the table is, for display.
    """

    table: np.ndarray
    description: str

    @property
    def dim(self) -> int:
        return self.table.shape[1]

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """ids (..., T) int -> x (..., T, D) float64 (a new array)."""
        return self.table[ids]


@dataclass(frozen=True)
class OneHotEmbedding:
    """x_t = e_{id_t}, the indicator of the word, in D = V dimensions; zero at pads."""

    vocab_size: int

    @property
    def dim(self) -> int:
        return self.vocab_size

    @property
    def description(self) -> str:
        return f"one-hot, D={self.vocab_size}"

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """ids (..., T) int -> x (..., T, V) float64."""
        ids = np.asarray(ids)
        x = np.zeros(ids.shape + (self.vocab_size,))
        np.put_along_axis(x, ids[..., None], 1.0, axis=-1)
        x[..., PAD_ID] = 0.0
        return x


Embedding = TableEmbedding | OneHotEmbedding


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, EMBEDDING_STREAM])


def random_embedding(vocab_size: int, dim: int, seed: int) -> TableEmbedding:
    """A (vocab_size, dim) table of N(0, 1/dim) vectors drawn from ``seed``; the pad row is zero."""
    table = _rng(seed).normal(0.0, 1.0 / math.sqrt(dim), size=(vocab_size, dim))
    table[PAD_ID] = 0.0
    return TableEmbedding(table, f"random N(0, 1/{dim}), D={dim}")


def glove_embedding(path: str | os.PathLike, vocabulary: Vocabulary, seed: int) -> TableEmbedding:
    """The vectors of ``vocabulary``'s words from a GloVe-format text file.

    The file is streamed and only the vocabulary's vectors are kept, so a 5 GB file costs
    (V, D) floats. Every line's number of values is checked against the first's; values are
    parsed (and checked numeric and finite) for the lines whose word is used. A line with extra
    leading fields is a word containing spaces (glove.840B has some), not an error.

    Returns
    -------
    TableEmbedding
        table (V, D) float64 with D from the file.
    """
    p = Path(path)
    regular_file(p, "--embeddings", missing=f"{p}: no such file (--embeddings)")  # a FIFO must not be opened
    check_text_file(p)
    dim, first = None, ""
    found: dict[int, np.ndarray] = {}
    with open_text(p) as stream:
        for number, line in enumerate(stream, start=1):
            parts = line.split()
            if not parts:
                continue
            where = f"{p}, line {number}"
            if dim is None:
                if number == 1 and len(parts) == 2 and all(s.isdigit() for s in parts):
                    # word2vec's text format starts with "<count> <dim>"
                    dim, first = int(parts[1]), "the header line"
                    continue
                dim, first = len(parts) - 1, where
                if dim < 1:
                    raise InputError(f"{where}: a word without a vector")
            if len(parts) - 1 < dim or (len(parts) - 1 > dim and _is_number(parts[-dim - 1])):
                raise InputError(f"{where}: {len(parts) - 1} values, but {first} has {dim}")
            word = " ".join(parts[:-dim])
            i = vocabulary.index.get(word)
            if i is None or i == PAD_ID or i in found:
                continue
            found[i] = _vector(parts[-dim:], where)
    if dim is None:
        raise InputError(f"{p}: no vectors in the file (--embeddings)")
    if not found:
        raise InputError(f"{p}: none of the {len(vocabulary) - 2} vocabulary words has a vector "
                         "(is it a word-vector file for this language, in lower case?)")
    loaded = np.array(list(found.values()))
    table = _rng(seed).normal(0.0, float(loaded.std()) or 1.0 / math.sqrt(dim),
                              size=(len(vocabulary), dim))
    table[list(found)] = loaded
    table[PAD_ID] = 0.0
    words = len(vocabulary) - 2
    hits = len(found) - (UNK_ID in found)  # the file may define <unk>; do not count it as a word
    return TableEmbedding(table, f"{p.name}: {hits} of {words} words found, D={dim}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _vector(values: list[str], where: str) -> np.ndarray:
    try:
        vector = np.array([float(v) for v in values])
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise InputError(f"{where}: {bad!r} is not a number") from None
    if not np.isfinite(vector).all():
        raise InputError(f"{where}: the vector has a NaN or infinite value")
    return vector
