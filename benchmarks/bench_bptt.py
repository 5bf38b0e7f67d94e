"""gradscope's full diagnostic pass against PyTorch, vanilla RNN, CPU, float64.

For each (B, T, D, H) the same weights and batch go through

- gradscope: forward, BPTT with dL/da_t at every step and every parameter gradient, the per-step
  norms and the per-step contributions to dL/dWa (what ``gradscope analyze`` computes);
- gradscope, plain BPTT: forward and backward for the parameter gradients only (a lean loop
  written here), to price the per-step diagnostics: column "dL/da_t" is the cost of keeping
  dL/da_t for every step with its norms, column "contrib." that of the per-step contributions'
  norms on top (B x B Gram matrices per step);
- torch.nn.RNN forward + backward (parameter gradients only);
- an unrolled torch.nn.RNNCell with ``retain_grad`` on every h_t: how a torch user gets dL/da_t.

Ratios are torch time / gradscope time (> 1: gradscope is faster). Targets (issue 2): at least
1.5x, 4x and 1.2x against nn.RNN at the three sizes; per-step diagnostics at most 10% over plain.
Run: ``python benchmarks/bench_bptt.py`` (``--quick`` for one repeat each).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SIZES, environment, median_time, ms, print_table, ratio  # noqa: E402

from gradscope.commands.analyze import step_norms  # noqa: E402
from gradscope.bptt import bptt, forward  # noqa: E402
from gradscope.bptt.layer import contribution_norms  # noqa: E402
from gradscope.model.losses import get_loss  # noqa: E402
from gradscope.model.statedict import Choices, load_network  # noqa: E402


def load_single(state: dict, cell: str, activation: str = "tanh", loss: str = "bce"):
    """A one-layer network with a BCE head from an ``rnn.*`` + ``fc.*`` state dict."""
    net, _ = load_network(state, "benchmark", Choices(cell, activation))
    net.loss = get_loss(loss)
    return net


def diagnostic_pass(net, x, y, contributions: bool = True) -> None:
    """What ``gradscope analyze`` computes: BPTT with dL/da_t, its norms, the contributions."""
    traj, grads = bptt(net, x, y)
    layer = grads.layers[0][0]
    step_norms(layer.dL_dh)
    if contributions:
        contribution_norms(layer.dv, traj.runs[0][0].hidden[:-1])


def plain_bptt(net, x, y) -> None:
    """Parameter gradients only: no per-step record of dL/da_t, no norms."""
    traj = forward(net, x)
    run = traj.runs[0][0]
    cell, params = net.cell, net.layers[0][0]
    _, dlogits = net.loss.value_and_grad(traj.logits, y)
    steps, batch, _ = run.x.shape
    du = np.empty((steps, batch, params[cell.recurrent].shape[0]))
    dv = du if cell.dv_is_du else np.empty_like(du)
    dstate = (dlogits @ net.head["Wy"],) + tuple(np.zeros_like(s) for s in run.states[0][1:])
    for t in range(steps - 1, -1, -1):
        dstate = cell.step_backward(params, dstate, run.caches[t], du[t], dv[t])
    cell.param_grads(params, run.x, run.hidden[:-1], du, dv)


def torch_setup(b, t, d, h, seed=0):
    import torch

    torch.manual_seed(seed)
    rnn = torch.nn.RNN(d, h, batch_first=True).double()
    fc = torch.nn.Linear(h, 1).double()
    x = torch.randn(b, t, d, dtype=torch.float64)
    y = (torch.rand(b, 1) > 0.5).double()
    return rnn, fc, x, y


def torch_rnn(rnn, fc, x, y) -> None:
    import torch

    rnn.zero_grad(set_to_none=True)
    fc.zero_grad(set_to_none=True)
    out, _ = rnn(x)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(fc(out[:, -1]), y)
    loss.backward()


def torch_unrolled(cell, fc, x, y) -> list:
    import torch

    cell.zero_grad(set_to_none=True)
    fc.zero_grad(set_to_none=True)
    h = torch.zeros(x.shape[0], cell.hidden_size, dtype=torch.float64)
    hs = []
    for t in range(x.shape[1]):
        h = cell(x[:, t], h)
        h.retain_grad()
        hs.append(h)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(fc(h), y)
    loss.backward()
    return [h.grad for h in hs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed repeat per measurement")
    args = parser.parse_args()
    import torch

    repeats = 1 if args.quick else 7
    print(environment())
    rows = []
    for b, t, d, h in SIZES:
        rnn, fc, x, y = torch_setup(b, t, d, h)
        state = {f"rnn.{k}": v.detach().numpy() for k, v in rnn.state_dict().items()}
        state.update({f"fc.{k}": v.detach().numpy() for k, v in fc.state_dict().items()})
        model = load_single(state, "rnn")
        xn, yn = x.numpy(), y.numpy()
        cell = torch.nn.RNNCell(d, h).double()
        with torch.no_grad():
            cell.weight_ih.copy_(rnn.weight_ih_l0)
            cell.weight_hh.copy_(rnn.weight_hh_l0)
            cell.bias_ih.copy_(rnn.bias_ih_l0)
            cell.bias_hh.copy_(rnn.bias_hh_l0)
        ours = median_time(lambda: diagnostic_pass(model, xn, yn), repeats)
        per_step = median_time(lambda: diagnostic_pass(model, xn, yn, contributions=False), repeats)
        plain = median_time(lambda: plain_bptt(model, xn, yn), repeats)
        t_rnn = median_time(lambda: torch_rnn(rnn, fc, x, y), repeats)
        t_cell = median_time(lambda: torch_unrolled(cell, fc, x, y), repeats)
        rows.append([
            f"({b}, {t}, {d}, {h})", ms(ours), ms(plain), f"{(per_step / plain - 1) * 100:+.1f}%",
            f"{(ours / per_step - 1) * 100:+.1f}%", ms(t_rnn), ratio(t_rnn, ours), ms(t_cell),
            ratio(t_cell, ours),
        ])
    print_table(
        ["(B, T, D, H)", "gradscope", "plain BPTT", "dL/da_t", "contrib.", "nn.RNN", "ratio",
         "unrolled", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
