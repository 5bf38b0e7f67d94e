"""The vocabulary: token <-> id, built from token counts.

Ids 0 and 1 are reserved: 0 = ``<pad>`` (the filler of short texts, masked out) and 1 = ``<unk>``
(any token outside the vocabulary). Words follow by decreasing count; ties are broken
alphabetically so that the same corpus always gives the same ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


@dataclass(frozen=True)
class Vocabulary:
    """``tokens[i]`` is the token with id i; ``index`` maps back."""

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {token: i for i, token in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, tokens: list[str]) -> list[int]:
        """The id of each token, ``UNK_ID`` for a token outside the vocabulary."""
        get = self.index.get
        return [get(token, UNK_ID) for token in tokens]


def build_vocabulary(counts: Mapping[str, int], max_vocab: int, min_count: int) -> Vocabulary:
    """The ``max_vocab - 2`` most frequent tokens seen at least ``min_count`` times, after the two
    reserved ids. ``max_vocab`` counts ``<pad>`` and ``<unk>``, so the result has at most
    ``max_vocab`` entries (as Keras's ``num_words``)."""
    frequent = [(-n, token) for token, n in counts.items() if n >= min_count]
    frequent.sort()
    return Vocabulary((PAD, UNK, *(token for _, token in frequent[: max_vocab - 2])))
