"""Run in the folder where docs/examples/make_model.py saved its files. What `gradscope train --weights model.pt --inputs tokens.npy --targets labels.npy --padding-idx 0
--steps 200` does, written in PyTorch: the same model, data, Adam(lr=0.01), 200 full-batch steps,
the loss before and after (float64, as gradscope computes)."""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "examples"))
from make_model import Sentiment  # noqa: E402  the model make_model.py saved

torch.set_default_dtype(torch.float64)

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
