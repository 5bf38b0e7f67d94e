"""The model and batch of the docs' "Your own PyTorch model" example, saved as a user saves theirs.

Run in an empty folder: writes model.pt (an untrained embedding + 2-layer bidirectional LSTM +
Linear sentiment model), tokens.npy (8 post-padded sequences of token ids, 0 the pad) and
labels.npy. scripts/examples.py runs it before the documented commands.
"""

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence


class Sentiment(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(50, 16, padding_idx=0)
        self.lstm = nn.LSTM(16, 32, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(64, 1)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(self.embedding(x), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.fc(torch.cat([h[-2], h[-1]], dim=1))


if __name__ == "__main__":  # benchmarks/train_as_torch.py imports Sentiment
    torch.manual_seed(0)  # the docs example (docs/own-model.md): an untrained model, saved as a user saves theirs
    torch.save(Sentiment().state_dict(), "model.pt")
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 50, (8, 40))               # token ids, 0 is the pad
    lengths = rng.integers(5, 41, 8)
    for b in range(8):
        tokens[b, lengths[b]:] = 0                        # post-padded, as pack_padded_sequence takes them
    np.save("tokens.npy", tokens)
    np.save("labels.npy", rng.integers(0, 2, 8))
