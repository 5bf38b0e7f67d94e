"""The model and batch of the docs' "A Keras model" example, saved as a Keras user saves theirs.

Run in an empty folder: writes keras_model.keras (an untrained Embedding(mask_zero=True) + Bidirectional
LSTM + GRU + Dense(sigmoid) sentiment model), keras_tokens.npy (8 sequences of token ids, pre-padded with
0 as pad_sequences pads them) and keras_labels.npy. scripts/examples.py runs it before the documented
commands.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # any backend: gradscope reads the file, not Keras

import keras  # noqa: E402
import numpy as np  # noqa: E402

L = keras.layers
keras.utils.set_random_seed(0)  # an untrained model, saved as a user saves theirs
model = keras.Sequential([
    keras.Input((None,), dtype="int32"),
    L.Embedding(50, 16, mask_zero=True),
    L.Bidirectional(L.LSTM(32, return_sequences=True)),
    L.GRU(32),
    L.Dense(1, activation="sigmoid"),
])
model.save("keras_model.keras")
rng = np.random.default_rng(0)
texts = [rng.integers(1, 50, n) for n in rng.integers(5, 41, 8)]  # token ids, 0 is the pad
np.save("keras_tokens.npy", keras.utils.pad_sequences(texts, maxlen=40))  # padding="pre", Keras' default
np.save("keras_labels.npy", rng.integers(0, 2, 8))
