"""The text task's data: labelled texts read, tokenised, encoded, and embedded per batch.

``load_text_dataset(options, seed)`` makes two streaming passes over the source: the first counts
tokens and collects labels, the second encodes each text into a row of the (N, T) id matrix. No
text is kept between records, so memory is the ids (N x T int32), the mask, the labels and the token
counts, whatever the size of the file. With ``path=None`` it reads the built-in corpus of movie
reviews shipped in ``gradscope/text/data/reviews.csv``.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..errors import InputError
from ..io.files import regular_file
from .embeddings import Embedding, OneHotEmbedding, glove_embedding, random_embedding
from .encode import PADDINGS, encode
from .labels import order_classes
from .readers import TextSource, open_examples
from .tokens import tokenize
from .vocab import PAD_ID, Vocabulary, build_vocabulary

BUILTIN_CORPUS = "data/reviews.csv"
EMBEDDINGS = ("random", "onehot")
MAX_CLASSES = 1000
"""More distinct labels than this means the label column holds something else (texts, ids)."""

SPLIT_STREAM = 0x5B1
"""Mixed into the split's seed so that the split is not the same draws as weights seeded alike."""


@dataclass(frozen=True)
class TextOptions:
    """Where the texts come from and how they become inputs. Checked on construction.

    ``path`` None reads the built-in corpus. ``embeddings_file`` (a GloVe-format file) takes
    precedence over ``embedding``, and then D comes from the file, not ``embedding_dim``; for
    "onehot", D is the vocabulary size.
    """

    path: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    seq_len: int = 100
    padding: str = "pre"
    max_vocab: int = 5000
    min_count: int = 1
    embedding: str = "random"
    embedding_dim: int = 16
    embeddings_file: str | None = None

    def __post_init__(self) -> None:
        for name, least in (("seq_len", 1), ("max_vocab", 2), ("min_count", 1), ("embedding_dim", 1)):
            value, option = getattr(self, name), "--" + name.replace("_", "-")
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"{option} must be a whole number (got {value!r})")
            if value < least:
                raise InputError(f"{option} must be at least {least} (got {value})")
        if self.padding not in PADDINGS:
            raise InputError(f"--padding must be 'pre' or 'post' (got {self.padding!r})")
        if self.embedding not in EMBEDDINGS:
            raise InputError(f"--embeddings must be 'random', 'onehot' or a GloVe-format file "
                             f"(got {self.embedding!r})")
        if self.embeddings_file is not None and self.embedding == "onehot":
            raise InputError("--embeddings: give either 'onehot' or a file, not both")
        for name in ("text_column", "label_column"):
            if not str(getattr(self, name)).strip():
                raise InputError(f"--{name.replace('_', '-')} must not be empty")
        if self.text_column == self.label_column:
            raise InputError(f"--text-column and --label-column must differ (both {self.text_column!r})")


@dataclass(frozen=True, eq=False)
class TextDataset:
    """Encoded texts with their labels; inputs are embedded on demand, batch by batch.

    Attributes
    ----------
    ids : ndarray (N, T) int32
        Word ids, 0 (``<pad>``) at padded steps, 1 (``<unk>``) for words outside the vocabulary.
    mask : ndarray (N, T) bool
        True at steps that hold a word.
    labels : ndarray (N,) int64
        Class indices into ``class_names``.
    class_names : tuple of str
        In index order: numeric for integer labels, else sorted (so neg = 0, pos = 1).
    vocab : tuple of str
        ``vocab[i]`` is the token of id i.
    embedding : TableEmbedding or OneHotEmbedding
        ids (..., T) -> x (..., T, D) float64.
    source : str
        Where the texts came from, for display.
    num_truncated : int
        Texts longer than T, cut to fit (see ``gradscope.text.encode`` for which end is kept).
    """

    ids: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    vocab: tuple[str, ...]
    embedding: Embedding
    source: str
    num_truncated: int

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def seq_len(self) -> int:
        return self.ids.shape[1]

    @property
    def input_size(self) -> int:
        """D, the size of one input vector x_t."""
        return self.embedding.dim

    @property
    def num_classes(self) -> int:
        """2 is a binary task (one sigmoid output), more a softmax over classes."""
        return len(self.class_names)

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """ids (n, T) int -> x (n, T, D) float64, zero at padded steps."""
        return self.embedding(ids)

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs x (n, T, D) float64 and class indices y (n,) int64 of the texts ``indices``."""
        return self.embed(self.ids[indices]), self.labels[indices]

    def split(self, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Stratified (train, validation) index arrays, each sorted, the same for the same seed.

        Each class gives round(fraction x its size) texts to validation, so both parts keep the
        class balance of the whole.
        """
        _check_seed(seed)
        if not 0.0 < validation_fraction < 1.0:
            raise InputError(f"the validation fraction must be between 0 and 1, exclusive "
                             f"(got {validation_fraction})")
        rng = np.random.default_rng([seed, SPLIT_STREAM])
        held_out = []
        for c in range(self.num_classes):
            members = np.flatnonzero(self.labels == c)
            held_out.append(rng.permutation(members)[: round(validation_fraction * len(members))])
        validation = np.sort(np.concatenate(held_out))
        train = np.setdiff1d(np.arange(len(self)), validation)
        if not len(validation) or not len(train):
            raise InputError(f"{len(self)} texts are too few to hold out a validation fraction "
                             f"of {validation_fraction}")
        return train, validation

    def majority_baseline(self, indices: np.ndarray, fit_indices: np.ndarray | None = None) -> float:
        """Accuracy on ``indices`` of always predicting the most frequent class of ``fit_indices``
        (default: of ``indices`` themselves). A model that does not beat it has learned nothing."""
        fit = self.labels[indices if fit_indices is None else fit_indices]
        majority = np.bincount(fit, minlength=self.num_classes).argmax()
        return float(np.mean(self.labels[indices] == majority))


def load_text_dataset(options: TextOptions, seed: int) -> TextDataset:
    """Read, tokenise, encode the texts of ``options.path`` (or the built-in corpus).

    ``seed`` draws the random embedding vectors (and those of words missing from an embeddings
    file); the texts and their order do not depend on it.
    """
    _check_seed(seed)
    if options.embeddings_file is not None:
        regular_file(options.embeddings_file, "--embeddings",  # before the texts are read
                     missing=f"{options.embeddings_file}: no such file (--embeddings)")
    if options.path is None:
        corpus = resources.files(__package__).joinpath(BUILTIN_CORPUS)
        with resources.as_file(corpus) as path:  # a real file even when installed as a zip
            source = open_examples(path, options.text_column, options.label_column)
            return _load(source, options, seed, "built-in movie reviews")
    source = open_examples(options.path, options.text_column, options.label_column)
    return _load(source, options, seed, source.description)


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"--seed must be a non-negative whole number (got {seed!r})")


def _load(source: TextSource, options: TextOptions, seed: int, description: str) -> TextDataset:
    counts, labels, class_names = _survey(source)
    vocabulary = build_vocabulary(counts, options.max_vocab, options.min_count)
    del counts  # the largest structure after the ids; not needed for encoding
    ids, num_truncated = _encode_all(source, vocabulary, len(labels), options)
    return TextDataset(
        ids=ids,
        mask=ids != PAD_ID,
        labels=labels,
        class_names=tuple(class_names),
        vocab=vocabulary.tokens,
        embedding=_embedding(options, vocabulary, seed),
        source=description,
        num_truncated=num_truncated,
    )


def _survey(source: TextSource) -> tuple[Counter, np.ndarray, list[str]]:
    """Pass 1: token counts, labels (N,) int64 as class indices, and the class names."""
    counts: Counter[str] = Counter()
    seen: dict[str, int] = {}  # label -> code, in order of first appearance
    codes = array("q")  # 8 bytes a text, not a Python object
    for example in source:
        counts.update(tokenize(example.text))
        code = seen.get(example.label)
        if code is None:
            if len(seen) == MAX_CLASSES:
                raise InputError(f"{example.where}: more than {MAX_CLASSES} different labels; "
                                 "is --label-column the column of labels?")
            code = seen[example.label] = len(seen)
        codes.append(code)
    if not codes:
        raise InputError(f"{source.path}: no labelled texts")
    if len(seen) < 2:
        raise InputError(f"{source.path}: every text has the label {next(iter(seen))!r}; "
                         "a classification task needs at least two classes")
    class_names = order_classes(list(seen))
    index_of_code = np.array([class_names.index(label) for label in seen], dtype=np.int64)
    return counts, index_of_code[np.frombuffer(codes, dtype=np.int64)], class_names


def _encode_all(source: TextSource, vocabulary: Vocabulary, n: int, options: TextOptions
                ) -> tuple[np.ndarray, int]:
    """Pass 2: ids (n, T) int32 and the number of texts truncated."""
    ids = np.zeros((n, options.seq_len), dtype=np.int32)
    num_truncated = 0
    count = 0
    for count, example in enumerate(source, start=1):
        if count > n:
            break
        tokens = tokenize(example.text)
        num_truncated += len(tokens) > options.seq_len
        encode(tokens, vocabulary, options.seq_len, options.padding, out=ids[count - 1])
    if count != n:
        raise InputError(f"{source.path}: the file changed while it was being read")
    return ids, num_truncated


def _embedding(options: TextOptions, vocabulary: Vocabulary, seed: int) -> Embedding:
    if options.embeddings_file is not None:
        return glove_embedding(options.embeddings_file, vocabulary, seed)
    if options.embedding == "onehot":
        return OneHotEmbedding(len(vocabulary))
    return random_embedding(len(vocabulary), options.embedding_dim, seed)
