"""gradscope's full diagnostic pass against PyTorch, GRU and LSTM, CPU, float64.

For each cell and each (B, T, D, H) the same weights and batch go through

- gradscope: forward, BPTT with dL/dh_t (and dL/dc_t for the LSTM) at every step and every
  parameter gradient, the per-step norms and the per-step contributions to dL/dW_hh (what
  ``gradscope analyze`` computes before its spectra);
- torch.nn.GRU / torch.nn.LSTM forward + backward (parameter gradients only);
- an unrolled torch.nn.GRUCell / LSTMCell with ``retain_grad`` on every h_t (and c_t): how a torch
  user gets dL/dh_t.

Ratios are torch time / gradscope time (> 1: gradscope is faster). Target (issue 3): faster than
torch at the two smaller sizes, no slower at the largest. Each timing is the median of several
rounds, the contenders taking turns within each round; the thread pools are left to go idle before
every run, so that none measures another's spinning threads.
Run: ``python benchmarks/bench_gated.py`` (``--quick`` for one repeat each, ``--cell lstm`` for one cell).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bptt import load_single  # noqa: E402
from bench_bptt import torch_rnn as torch_module  # noqa: E402  (any nn.RNN/GRU/LSTM + nn.Linear)
from common import SIZES, environment, interleaved_medians, ms, print_table, ratio, torch_modules  # noqa: E402

from gradscope.commands.analyze import step_norms  # noqa: E402
from gradscope.bptt import bptt  # noqa: E402
from gradscope.bptt.layer import contribution_norms  # noqa: E402


def diagnostic_pass(net, x, y) -> None:
    traj, grads = bptt(net, x, y)
    layer = grads.layers[0][0]
    step_norms(layer.dL_dh)
    if layer.dL_dc is not None:
        step_norms(layer.dL_dc)
    contribution_norms(layer.dv, traj.runs[0][0].hidden[:-1])


def torch_unrolled(step, fc, x, y) -> list:
    import torch

    step.zero_grad(set_to_none=True)
    fc.zero_grad(set_to_none=True)
    zeros = torch.zeros(x.shape[0], step.hidden_size, dtype=torch.float64)
    lstm = isinstance(step, torch.nn.LSTMCell)
    state = (zeros, zeros) if lstm else zeros
    kept = []
    for t in range(x.shape[1]):
        state = step(x[:, t], state)
        for s in state if lstm else (state,):
            s.retain_grad()
            kept.append(s)
    h = state[0] if lstm else state
    torch.nn.functional.binary_cross_entropy_with_logits(fc(h), y).backward()
    return [s.grad for s in kept]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed repeat per measurement")
    parser.add_argument("--cell", choices=["gru", "lstm"], action="append", help="cells to run (default: both)")
    args = parser.parse_args()

    repeats = 1 if args.quick else 7
    print(environment())
    rows = []
    for cell in args.cell or ["gru", "lstm"]:
        for b, t, d, h in SIZES:
            rnn, unrolled, fc, x, y = torch_modules(cell, b, t, d, h)
            state = {f"rnn.{k}": v.detach().numpy() for k, v in rnn.state_dict().items()}
            state.update({f"fc.{k}": v.detach().numpy() for k, v in fc.state_dict().items()})
            model = load_single(state, cell)
            xn, yn = x.numpy(), y.numpy()
            ours, t_module, t_unrolled = interleaved_medians([
                lambda: diagnostic_pass(model, xn, yn),
                lambda: torch_module(rnn, fc, x, y),
                lambda: torch_unrolled(unrolled, fc, x, y),
            ], repeats)
            rows.append([cell, f"({b}, {t}, {d}, {h})", ms(ours), ms(t_module), ratio(t_module, ours),
                         ms(t_unrolled), ratio(t_unrolled, ours)])
    print_table(["cell", "(B, T, D, H)", "gradscope", "nn.GRU/LSTM", "ratio", "unrolled", "ratio"], rows)


if __name__ == "__main__":
    main()
