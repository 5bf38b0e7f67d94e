"""Encoding texts as fixed-length id sequences: truncation and padding to ``seq_len`` steps.

One option, ``padding``, decides which end of the window the text is anchored to, and so both
where the pads go and which part of a long text survives:

- "pre": pads first, text last, and a long text keeps its END. The last real token sits at step T,
  right before the readout, and the end of a review (often its verdict) is kept. This matches
  Keras's ``pad_sequences`` defaults (padding="pre", truncating="pre").
- "post": text first, pads last, and a long text keeps its START. The readout then sees the text
  through T - len trailing pad steps: the gradient of the loss must cross those steps to reach any
  word, which is itself a vanishing-gradient experiment.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .vocab import PAD_ID, Vocabulary

PADDINGS = ("pre", "post")


def encode(tokens: list[str], vocabulary: Vocabulary, seq_len: int, padding: str,
           out: np.ndarray | None = None) -> np.ndarray:
    """The ids of ``tokens`` fitted to ``seq_len`` steps.

    Parameters
    ----------
    tokens : list of str
    vocabulary : Vocabulary
    seq_len : int
        T, the number of steps.
    padding : {"pre", "post"}
        Where the pads go and which end of a long text is kept (see the module docstring).
    out : ndarray (T,) int32, optional
        A row to write into (a row of the dataset's id matrix); a new one when omitted.

    Returns
    -------
    ndarray (T,) int32
        Word ids, ``PAD_ID`` (0) at padded steps.
    """
    if padding not in PADDINGS:
        raise InputError(f"--padding must be 'pre' or 'post' (got {padding!r})")
    kept = tokens[-seq_len:] if padding == "pre" else tokens[:seq_len]
    row = np.empty(seq_len, dtype=np.int32) if out is None else out
    n = len(kept)
    if padding == "pre":
        row[: seq_len - n] = PAD_ID
        row[seq_len - n:] = vocabulary.ids(kept)
    else:
        row[:n] = vocabulary.ids(kept)
        row[n:] = PAD_ID
    return row
