"""The recording of the docs' `gradscope history` example, made as a user makes theirs.

Run in an empty folder: trains a 2-layer nn.LSTM (forget-gate bias 2) to remember the sign of the
first of 20 inputs (the rest is noise) for 100 Adam steps, with gradscope.torch.attach recording
every 10th backward pass to grads.ndjson. scripts/examples.py runs it before the documented commands.
"""

import torch
import torch.nn as nn

import gradscope.torch

torch.manual_seed(0)
lstm = nn.LSTM(1, 16, num_layers=2, batch_first=True)
head = nn.Linear(16, 1)
with torch.no_grad():
    for name, p in lstm.named_parameters():
        if name.startswith("bias_ih"):
            p[16:32] = 2.0  # the forget gate's rows (i, f, g, o): start by keeping the memory
opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=0.01)
with gradscope.torch.attach(lstm, every=10, to="grads.ndjson"):
    for step in range(1, 101):
        x = torch.randn(32, 20, 1)
        y = (x[:, 0, 0] > 0).float()  # the label is in the first step only
        _, (h, _) = lstm(x)
        loss = nn.functional.binary_cross_entropy_with_logits(head(h[-1]).squeeze(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0:
            print(f"step {step}: loss {loss.item():.3f}")
