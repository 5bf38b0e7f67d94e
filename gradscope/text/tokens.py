"""Tokenisation: lower-cased words, with HTML tags (IMDB's ``<br />``) removed.

A token is a run of letters or digits, with inner apostrophes kept ("don't", "director's") so that a
negation stays one token. Letters are Unicode letters: "café" is one word, not "caf". Punctuation
and the U+FFFD left by undecodable bytes are separators.
"""

from __future__ import annotations

import re

_TAG = re.compile(r"</?[a-z][^<>]*>")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """The words of ``text``, lower-cased, in order."""
    text = text.lower().replace("\u2019", "'")  # a typographic apostrophe, as in "don’t"
    return _WORD.findall(_TAG.sub(" ", text))
