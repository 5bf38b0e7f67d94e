"""Class labels: normalise what a file holds, then order the classes deterministically.

A label is kept as a string ("pos", "3"). Integer labels are normalised ("01", " 1", 1 and 1.0 are
all "1") so that one class is not split in two by formatting, and integer classes are ordered by
value, not as text ("2" before "10").
"""

from __future__ import annotations

import re

from ..errors import InputError

_INTEGER = re.compile(r"[+-]?\d+")


def normalise_label(raw: object, where: str) -> str:
    """The label as a class name; ``where`` ("file, line 3") names the record in errors.

    Strings are stripped, integer strings and JSON integers become their decimal form, and a
    missing or empty label is an InputError.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InputError(f"{where}: no label")
    if isinstance(raw, bool):  # bool is an int subclass, but true/false is rarely meant as 1/0
        raise InputError(f"{where}: label must be a string or an integer (got {str(raw).lower()})")
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float) and raw.is_integer():  # 1.0 from a pandas export
        return str(int(raw))
    if isinstance(raw, str):
        label = raw.strip()
        return str(int(label)) if _INTEGER.fullmatch(label) else label
    raise InputError(f"{where}: label must be a string or an integer (got {type(raw).__name__})")


def order_classes(labels: set[str] | list[str]) -> list[str]:
    """Class names in index order: numeric order when every label is an integer, else sorted text.

    Sorted text puts "neg" before "pos" (and "negative" before "positive"), so the usual binary
    sentiment labels give neg = 0 and pos = 1, as in aclImdb and Keras's IMDB loader.
    """
    if all(_INTEGER.fullmatch(label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)
