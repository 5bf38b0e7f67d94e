"""Real text sequences for the movie-review sentiment task.

``load_text_dataset(TextOptions(...), seed)`` reads labelled texts (CSV/TSV, JSON Lines, aclImdb
or class folders, or the built-in corpus) in two streaming passes and returns a ``TextDataset``:
ids (N, T), mask, labels, and ``batch(indices) -> (x (n, T, D) float64, y (n,))``.
"""

from .dataset import TextDataset, TextOptions, load_text_dataset
from .embeddings import OneHotEmbedding, TableEmbedding, glove_embedding, random_embedding
from .encode import encode
from .labels import order_classes
from .readers import Example, TextSource, open_examples
from .tokens import tokenize
from .vocab import PAD, PAD_ID, UNK, UNK_ID, Vocabulary, build_vocabulary

__all__ = [
    "PAD", "PAD_ID", "UNK", "UNK_ID",
    "Example", "OneHotEmbedding", "TableEmbedding", "TextDataset", "TextOptions", "TextSource",
    "Vocabulary", "build_vocabulary", "encode", "glove_embedding", "load_text_dataset",
    "open_examples", "order_classes", "random_embedding", "tokenize",
]
