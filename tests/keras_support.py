"""What the Keras tests share: Keras 3 on its torch backend, and the issue's model."""

from __future__ import annotations

import os

import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported: Keras 3 runs on torch here


def torch_keras():
    """The keras module on its torch backend, or a skip; its session cleared, so that the layers a
    module builds are named as in a fresh process (lstm, lstm_1, ...), whatever ran before."""
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras was imported with another backend before this module")
    keras.backend.clear_session()
    return keras


def user_example(keras, vocab: int = 20):
    """The issue's model: masked tokens, a Bidirectional LSTM under a GRU, a sigmoid head."""
    L = keras.layers
    return keras.Sequential([
        keras.Input((None,), dtype="int32"),
        L.Embedding(vocab, 5, mask_zero=True),
        L.Bidirectional(L.LSTM(4, return_sequences=True)),
        L.GRU(3),
        L.Dense(1, activation="sigmoid"),
    ])
