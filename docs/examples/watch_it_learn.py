"""The docs' "watch it learn" example (docs/python-api.md), made as a user makes theirs.

Run in an empty folder: trains a 2-layer nn.LSTM (forget-gate bias 2) with dropout between its layers
to remember the sign
of the first of 30 inputs (the rest is noise), carrying its state from batch to batch (the next
batch starts from the last one's final state, detached: truncated BPTT), for 200 Adam steps, with
gradscope.torch.attach recording every 20th pass, light records, to grads.ndjson.
`gradscope history grads.ndjson` then shows the flow over training.
"""

import torch
import torch.nn as nn

import gradscope.torch

torch.manual_seed(0)
lstm = nn.LSTM(1, 32, num_layers=2, dropout=0.2, batch_first=True)
head = nn.Linear(32, 1)
with torch.no_grad():
    for name, p in lstm.named_parameters():
        if name.startswith("bias_ih"):
            p[32:64] = 2.0  # the forget gate's rows (i, f, g, o): start by keeping the memory
opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=0.01)
state = None
with gradscope.torch.attach(lstm, every=20, to="grads.ndjson", measure="flow") as rec:
    for step in range(1, 201):
        x = torch.randn(64, 30, 1)
        y = (x[:, 0, 0] > 0).float()  # the label is in the first step only
        out, state = lstm(x, state)  # from the last batch's final state: the records start there too
        loss = nn.functional.binary_cross_entropy_with_logits(head(out[:, -1]).squeeze(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        state = tuple(s.detach() for s in state)
        if step % 50 == 0:
            print(f"step {step}: loss {loss.item():.3f}")
print(f"{len(open('grads.ndjson').readlines())} records; the last: {rec.step} passes seen")
