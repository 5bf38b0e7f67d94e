"""One training step of a user's own network: gradscope's against PyTorch's fused module, float64, CPU.

The network of bench_network.py (nn.Embedding -> nn.LSTM or nn.GRU, 2 layers, bidirectional,
batch_first -> nn.Linear on cat(h_n[-2], h_n[-1]); a padded batch of token ids, lengths in
[T/4, T], run packed), and one step of training with Adam:

- gradscope: ``commands.train.train_step``, what ``gradscope train --weights`` runs at every step:
  forward, exact BPTT through every layer and direction (the log domain included), the gradient's
  global norm, the recurrent radius it logs, and Adam's update of every parameter.
- torch: ``opt.zero_grad(); loss = bce(fc(...packed nn.LSTM...)); loss.backward(); opt.step()``
  with the fused module, as a torch user trains.

Both start from the same weights and take the same batch; the step is repeated on copies so that
every timed call sees the same weights. Ratios are torch time / gradscope time (> 1: gradscope is
faster); the contenders run in turn in every round (interleaved, after an untimed call each).
Run: ``python benchmarks/bench_train_step.py`` (``--quick``: fewer rounds); on a machine where
OPENBLAS_CORETYPE is set, ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` lets numpy use its
fastest kernels (docs/development.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_network import SIZES, VOCAB, torch_fused, torch_model  # noqa: E402
from common import environment, interleaved_timings, ms_spread, print_table  # noqa: E402

from gradscope.commands.train import train_step  # noqa: E402
from gradscope.mitigations import NoMitigation  # noqa: E402
from gradscope.model.losses import get_loss  # noqa: E402
from gradscope.model.statedict import Choices, load_network  # noqa: E402
from gradscope.optimizers import make_optimizer  # noqa: E402
from gradscope.tasks import Batch  # noqa: E402


def batch(b: int, t: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(1, t // 4), t + 1, b)
    tokens = rng.integers(1, VOCAB, (b, t))
    for i, n in enumerate(lengths):
        tokens[i, n:] = 0
    return tokens, lengths, rng.integers(0, 2, (b, 1)).astype(np.float64)


def contenders(cell: str, b: int, t: int, d: int, h: int):
    import torch

    model = torch_model(cell, d, h)
    tokens, lengths, y = batch(b, t)
    arrays = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    net, _ = load_network(arrays, "the benchmark's model", Choices(cell))
    net.loss, net.padding_idx = get_loss("bce"), 0
    mask = np.arange(t)[None, :] < lengths[:, None]
    data = Batch(tokens, y, mask)
    optimizer = make_optimizer("adam", 0.001, 0.9)
    state = optimizer.init(net.parameters())
    held = {}

    def fresh_net():  # untimed: every timed step starts from the same weights
        held["net"] = net.copy()

    def ours():
        train_step(held["net"], data, NoMitigation(), optimizer, state)

    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    x, lens, target = torch.tensor(tokens), torch.tensor(lengths), torch.tensor(y)

    def fresh_model():
        model.load_state_dict(saved)
        opt.state.clear()

    def theirs():
        torch_fused(model, x, lens, target)  # zero_grad, the packed fused forward, backward
        opt.step()

    return ours, theirs, fresh_net, fresh_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 9")
    parser.add_argument("--cells", default="lstm,gru", help="comma-separated: lstm, gru")
    args = parser.parse_args()
    import torch

    torch.set_default_dtype(torch.float64)
    print(environment())
    rounds = 5 if args.quick else 9
    rows = []
    for cell in args.cells.split(","):
        for b, t, d, h in SIZES:
            ours, theirs, fresh_net, fresh_model = contenders(cell, b, t, d, h)
            g, th = interleaved_timings([ours, theirs], rounds, before=[fresh_net, fresh_model])
            rows.append([cell, f"({b}, {t}, {d}, {h})", ms_spread(g), ms_spread(th), f"{th.median / g.median:.2f}x"])
    print_table(["cell", "(B, T, D, H)", "gradscope step (ms)", "torch step (ms)", "ratio"], rows)
    print("ratio: torch / gradscope (> 1: gradscope faster); the same weights before every timed step of each")


if __name__ == "__main__":
    main()
