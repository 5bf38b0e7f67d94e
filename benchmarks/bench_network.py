"""A user's own network: gradscope's exact pass against PyTorch, side by side, float64, CPU.

The model of docs/own-model.md ("Your own PyTorch model"): nn.Embedding -> nn.LSTM (or nn.GRU), 2 layers,
bidirectional, batch_first -> nn.Linear on cat(h_n[-2], h_n[-1]), a padded batch of token ids
(lengths drawn in [T/4, T]) run as ``pack_padded_sequence(..., enforce_sorted=False)``.

- gradscope: ``bptt`` (forward, BPTT through every layer and direction, every parameter
  gradient and dL/dh_t of every layer at every step) plus the per-step norms of every layer, the
  part of ``analyze`` that PyTorch can be asked for. Spectra and the Lyapunov exponent, which
  torch does not compute, are timed apart ("whole analyze").
- torch, fused: the packed nn.LSTM forward + backward (parameter gradients only; the fused kernel
  keeps no per-step gradient: pytorch/pytorch#1407).
- torch, unrolled: the same network stepped by nn.LSTMCell per layer and direction with
  ``retain_grad`` on every h_t, a pad step carrying the state: how a torch user gets dL/dh_t.

Ratios are torch time / gradscope time (> 1: gradscope is faster); the contenders run in turn in
every round (interleaved medians). Run: ``python benchmarks/bench_network.py`` (``--quick``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, interleaved_medians, ms, print_table, ratio  # noqa: E402

from gradscope.bptt import bptt  # noqa: E402
from gradscope.commands.analyze import analyze_setup, step_norms  # noqa: E402
from gradscope.config import RunConfig  # noqa: E402
from gradscope.experiment import build  # noqa: E402

SIZES = [(32, 100, 32, 128), (8, 400, 32, 64)]  # (B, T, D, H)
VOCAB = 1000


def torch_model(cell: str, d: int, h: int):
    import torch

    torch.manual_seed(0)
    module = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell]
    return torch.nn.ModuleDict({
        "embedding": torch.nn.Embedding(VOCAB, d, padding_idx=0),
        "rnn": module(d, h, num_layers=2, bidirectional=True, batch_first=True),
        "fc": torch.nn.Linear(2 * h, 1),
    }).double()


def torch_fused(model, tokens, lengths, y) -> None:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    model.zero_grad(set_to_none=True)
    packed = pack_padded_sequence(model["embedding"](tokens), lengths, batch_first=True, enforce_sorted=False)
    _, state = model["rnn"](packed)
    h_n = state[0] if isinstance(state, tuple) else state
    logits = model["fc"](torch.cat([h_n[-2], h_n[-1]], dim=1))
    torch.nn.functional.binary_cross_entropy_with_logits(logits, y).backward()


def torch_unrolled(model, cells, tokens, lengths, y) -> list:
    """Layer by layer, direction by direction, step by step, keeping every h_t's gradient."""
    import torch

    model.zero_grad(set_to_none=True)
    for c in cells.values():
        c.zero_grad(set_to_none=True)
    b, steps = tokens.shape
    mask = (torch.arange(steps)[None, :] < lengths[:, None]).double()[:, :, None]
    layer_in = model["embedding"](tokens)
    kept, finals = [], []
    lstm = isinstance(next(iter(cells.values())), torch.nn.LSTMCell)
    for k in range(2):
        outs = []
        for d in range(2):
            cell = cells[(k, d)]
            zeros = torch.zeros(b, cell.hidden_size, dtype=torch.float64)
            state = (zeros, zeros) if lstm else zeros
            out = [None] * steps
            for t in (range(steps - 1, -1, -1) if d else range(steps)):
                new = cell(layer_in[:, t], state)
                m = mask[:, t]
                state = tuple(m * n + (1 - m) * s for n, s in zip(new, state)) if lstm else m * new + (1 - m) * state
                h = state[0] if lstm else state
                h.retain_grad()
                kept.append(h)
                out[t] = h * m
            outs.append(torch.stack(out, dim=1))
            finals.append(state[0] if lstm else state)
        layer_in = torch.cat(outs, dim=2)
    logits = model["fc"](torch.cat(finals[-2:], dim=1))
    torch.nn.functional.binary_cross_entropy_with_logits(logits, y).backward()
    return [h.grad for h in kept]


def unrolled_cells(model, cell: str):
    import torch

    step = {"gru": torch.nn.GRUCell, "lstm": torch.nn.LSTMCell}[cell]
    rnn, cells = model["rnn"], {}
    for k in range(2):
        for d in range(2):
            c = step(rnn.input_size if k == 0 else 2 * rnn.hidden_size, rnn.hidden_size).double()
            suffix = f"_l{k}" + ("_reverse" if d else "")
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(c, name).copy_(getattr(rnn, name + suffix))
            cells[(k, d)] = c
    return cells


def gradscope_pass(setup) -> None:
    net, batch = setup.network, setup.batch
    _, grads = bptt(net, batch.x, batch.y, batch.mask)
    for layer in grads.layers:
        for g in layer:
            step_norms(g.dL_dh)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed round")
    args = parser.parse_args()
    repeats = 1 if args.quick else 5
    print(environment())
    rows = []
    for cell in ("lstm", "gru"):
        for b, t, d, h in SIZES:
            model = torch_model(cell, d, h)
            rng = np.random.default_rng(0)
            lengths = rng.integers(t // 4, t + 1, b)
            tokens = rng.integers(1, VOCAB, (b, t))
            tokens[np.arange(t)[None, :] >= lengths[:, None]] = 0
            y = rng.integers(0, 2, (b, 1)).astype(float)
            state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
            setup = build(RunConfig(weights=state, inputs=tokens, targets=y, lengths=lengths))
            tt, tl, ty = torch.tensor(tokens), torch.tensor(lengths), torch.tensor(y)
            cells = unrolled_cells(model, cell)
            ours, whole, fused, unrolled = interleaved_medians([
                lambda: gradscope_pass(setup),
                lambda: analyze_setup(setup),
                lambda: torch_fused(model, tt, tl, ty),
                lambda: torch_unrolled(model, cells, tt, tl, ty),
            ], repeats)
            rows.append([cell, f"({b}, {t}, {d}, {h})", ms(ours), ms(fused), ratio(fused, ours),
                         ms(unrolled), ratio(unrolled, ours), ms(whole)])
    print_table(["cell", "(B, T, D, H)", "gradscope", "torch fused", "ratio", "unrolled", "ratio",
                 "whole analyze"], rows)


if __name__ == "__main__":
    main()
