"""Run in the folder where docs/examples/make_model.py saved its files. What `gradscope train --weights model.pt --inputs tokens.npy --targets labels.npy --padding-idx 0
--steps 200` does, written in PyTorch: the same model, data, Adam(lr=0.01), 200 full-batch steps,
the loss before and after (float64, as gradscope computes)."""
import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

torch.set_default_dtype(torch.float64)


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


model = Sentiment()
model.load_state_dict(torch.load("model.pt"))
x = torch.tensor(np.load("tokens.npy"))
lengths = (x != 0).sum(dim=1)
y = torch.tensor(np.load("labels.npy"), dtype=torch.float64)[:, None]
loss_fn = nn.BCEWithLogitsLoss()
opt = torch.optim.Adam(model.parameters(), lr=0.01)
with torch.no_grad():
    before = loss_fn(model(x, lengths), y).item()
for _ in range(200):
    opt.zero_grad()
    loss = loss_fn(model(x, lengths), y)
    loss.backward()
    opt.step()
with torch.no_grad():
    print(before, loss_fn(model(x, lengths), y).item())
