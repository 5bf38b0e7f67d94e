"""The whole ``analyze`` report: gradscope against PyTorch producing the same report, CPU, float64.

For each cell and (B, T, D, H) (issue 11; benchmarks/common.py SIZES), torch.manual_seed(0) makes an
nn.RNN / nn.GRU / nn.LSTM (tanh for the RNN), an nn.Linear(H, 1) head and a batch x ~ N(0, 1),
y in {0, 1}, BCE-with-logits on the head of the last h_T. Timed, in the same process, the four
contenders taking turns in every round (common.interleaved_timings):

- gradscope report: ``analyze_setup(setup)``, everything ``gradscope analyze`` computes: BPTT with
  dL/dh_t at every step (and dL/dc_t for the LSTM), its log-domain norms, the per-step contributions
  ||dv_t^T h_{t-1}||_F to dL/dW_hh, the spectra, Pascanu's bound (RNN), the flow fit, and the leading
  Lyapunov exponent lambda_1 along the run. The setup is built once, untimed, from the torch
  modules' state dicts and the batch; gradscope's cache of spectra (gradscope/linalg.py) is
  emptied (untimed) before every run, so that rounds on the same weights do not flatter it.
- torch report, the same report as a torch user would write it: an unrolled nn.RNNCell /
  GRUCell / LSTMCell (weights copied from the module) with ``retain_grad`` on every h_t (and c_t),
  the loss, ``backward``; then under ``torch.no_grad``: the per-step norms (the stacked grads, one
  norm per step), the contributions from B x B Gram matrices (||A^T C||_F^2 = <A A^T, C C^T>, as
  B < H at every size), the ratios n_t / n_T, the flow slope (least squares of ln n_t against
  T - t), Pascanu's bound (sigma_max)^(T-k) (RNN), and lambda_1 by power iteration
  q_t = J_t q_{t-1} / ||J_t q_{t-1}|| from q_0 = e_1, one (B, H) @ (H, G*H) product per step,
  averaged over the steps after gradscope's transient (T // 10, dynamics.default_transient) and
  over the batch. Norms and contributions whose squares leave float64 are recomputed scaled by
  the step's largest entry, as gradscope does: torch's vector_norm gives 0 below ~1e-154, and the
  RNN's gradient at (1, 1000, 8, 64) falls to 1e-217, where gradscope reports it exactly.
  Spectra: the RNN's are torch.linalg.eigvals and svdvals of W_hh. A gated cell's are those of the
  mean step Jacobian d s_t / d s_{t-1} over steps and batch ((H, H) for the GRU, (2H, 2H) over
  (h, c) for the LSTM) and of each gate's (H, H) block of W_hh. The step Jacobian is
  sum_g diag(alpha_g) W_hg + diag(direct) (the cell is elementwise but for W_hh h_{t-1}); alpha and
  direct, for every step at once, are one torch.func.vjp with unit cotangents of the cell's
  elementwise update at the recorded states, so the mean Jacobian is assembled from their means,
  J_t q costs one product per step, and dL/dv_t for the contributions is the same vjp applied to
  the retained grads. (jacrev/vmap over the B x T step Jacobians would need 13 GB at the largest
  size.)
- gradscope core: ``gradscope.bptt.bptt`` alone (forward and backward, every gradient);
- fused: nn.RNN / nn.GRU / nn.LSTM forward + backward, parameter gradients only.

Before timing, both reports are computed once and compared ("same report": the per-step norms,
ratios and contributions, each entry to its own size, the loss and the flow slope, to 1e-9
relative; the spectral radius, the singular values and eigenvalue moduli (relative to the largest),
the gate spectra and lambda_1 to 1e-6; Pascanu's verdict equal), so the table compares two
computations of one report.
Ratios are torch time / gradscope time (> 1: gradscope is faster). Targets (issue 11, RNN): the
report 1.5x / 3x / 1.2x at the three sizes; the core 1.3x against the fused module at the largest
(every cell). Times are medians over the rounds, ± half the interquartile range.
torch runs on its default threads (all cores), as a user's would; on a machine with more runnable
processes than cores its OpenMP threads wait for each other (LAPACK above all) and ``--torch-threads 1``
shows what torch does without that.
Run: ``python benchmarks/bench_report.py`` (``--quick`` for 3 rounds, ``--cell rnn|gru|lstm|all``,
``--size B,T,D,H`` to pick sizes, ``--rounds N``, ``--torch-threads N``).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bptt import torch_rnn as torch_fused  # noqa: E402  (any nn.RNN/GRU/LSTM + nn.Linear)
from common import SIZES, environment, interleaved_timings, ms_spread, print_table, torch_modules  # noqa: E402

import gradscope.spectrum  # noqa: E402
from gradscope.bptt import bptt  # noqa: E402
from gradscope.linalg import clear_cache  # noqa: E402
from gradscope.commands.analyze import AnalyzeResult, analyze_setup  # noqa: E402
from gradscope.config import RunConfig  # noqa: E402
from gradscope.dynamics import default_transient  # noqa: E402
from gradscope.experiment import build  # noqa: E402

REPORT_TARGETS = dict(zip(SIZES, (1.5, 3.0, 1.2)))  # the RNN's whole report against torch's
CORE_TARGET = (SIZES[-1], 1.3)  # gradscope's BPTT against the fused module, every cell
NORM_RTOL, SPECTRUM_RTOL = 1e-9, 1e-6
# Norms whose squares stay within float64 (as gradscope's safe_squares, bptt/logdomain.py); the others are recomputed
# scaled by the step's largest entry, as gradscope does and as a vanishing run at T = 1000 needs.
SAFE_NORMS = (1e-140, 1e140)


@dataclass
class Case:
    """One cell at one size: the torch modules, the batch, and gradscope's setup built from them."""

    cell: str
    size: tuple[int, int, int, int]
    module: torch.nn.Module
    step: torch.nn.Module
    fc: torch.nn.Linear
    x: torch.Tensor
    y: torch.Tensor
    setup: object


def make_case(cell: str, size: tuple[int, int, int, int], seed: int = 0) -> Case:
    module, step, fc, x, y = torch_modules(cell, *size, seed=seed)
    state = {f"rnn.{k}": v.detach().numpy() for k, v in module.state_dict().items()}
    state.update({f"fc.{k}": v.detach().numpy() for k, v in fc.state_dict().items()})
    setup = build(RunConfig(weights=state, inputs=x.numpy(), targets=y.numpy(), loss="bce"))
    return Case(cell, size, module, step, fc, x, y, setup)


# --- torch's report -------------------------------------------------------------------------------


@dataclass
class TorchReport:
    """What ``gradscope analyze`` reports, computed with torch (shapes as AnalyzeResult's)."""

    loss: float
    grad_norms: torch.Tensor
    cell_grad_norms: torch.Tensor | None
    ratios: torch.Tensor
    contributions: torch.Tensor
    spectrum: tuple[torch.Tensor, torch.Tensor]  # eigenvalues, singular values
    gate_spectra: dict[str, tuple[torch.Tensor, torch.Tensor]] | None
    pascanu_holds: bool | None
    slope: float
    leading_exponent: float


def unrolled(step: torch.nn.Module, fc: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor):
    """Forward through the unrolled cell keeping every h_t (and c_t) with its grad, and backward.

    Returns the loss, the states (T, B, H) and their grads dL/dh_t (and c_t, dL/dc_t, else None).
    """
    step.zero_grad(set_to_none=True)
    fc.zero_grad(set_to_none=True)
    zeros = torch.zeros(x.shape[0], step.hidden_size, dtype=torch.float64)
    lstm = isinstance(step, torch.nn.LSTMCell)
    state = (zeros, zeros) if lstm else zeros
    hs, cs = [], []
    for t in range(x.shape[1]):
        state = step(x[:, t], state)
        h = state[0] if lstm else state
        h.retain_grad()
        hs.append(h)
        if lstm:
            state[1].retain_grad()
            cs.append(state[1])
    loss = F.binary_cross_entropy_with_logits(fc(h), y)
    loss.backward()
    with torch.no_grad():
        states, dh = torch.stack(hs), torch.stack([h.grad for h in hs])
        cells = torch.stack(cs) if lstm else None
        dc = torch.stack([c.grad for c in cs]) if lstm else None
    return loss.item(), states, dh, cells, dc


def step_norms(g: torch.Tensor) -> torch.Tensor:
    """||g_t||_F of each step of g (T, B, H)."""
    norms = torch.linalg.vector_norm(g, dim=(1, 2))
    unsafe = ~((norms > SAFE_NORMS[0]) & (norms < SAFE_NORMS[1]))
    if unsafe.any():  # vector_norm sums unscaled squares: below ~1e-154 they underflow to 0
        top = largest(g[unsafe])
        norms[unsafe] = top * torch.linalg.vector_norm(g[unsafe] / top[:, None, None], dim=(1, 2))
    return norms


def gram_norms(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """||a_t^T c_t||_F for a (T, B, G*H), c (T, B, H): sqrt <a a^T, c c^T>, B x B Gram matrices."""
    def norms_of(a, c):
        return (a @ a.transpose(1, 2) * (c @ c.transpose(1, 2))).sum(dim=(1, 2)).clamp_min(0.0).sqrt()

    norms = norms_of(a, c)
    unsafe = ~((norms > SAFE_NORMS[0]) & (norms < SAFE_NORMS[1]))
    if unsafe.any():  # as step_norms: the squares of a tiny summand underflow
        top_a, top_c = largest(a[unsafe]), largest(c[unsafe])
        norms[unsafe] = top_a * top_c * norms_of(a[unsafe] / top_a[:, None, None], c[unsafe] / top_c[:, None, None])
    return norms


def largest(g: torch.Tensor) -> torch.Tensor:
    """max |g| of each step (n, B, .), at least the smallest normal float (a zero step stays 0)."""
    return g.abs().amax(dim=(1, 2)).clamp_min(torch.finfo(torch.float64).tiny)


def leading_exponent(jacobian_times, batch: int, size: int, steps: int, transient: int) -> float:
    """lambda_1 by power iteration from q_0 = e_1: mean over t > transient of ln||J_t q_{t-1}||,
    then over the batch. jacobian_times(t, q) gives J_t q for q (B, S), t 0-based."""
    q = torch.zeros(batch, size, dtype=torch.float64)
    q[:, 0] = 1.0
    total = torch.zeros(batch, dtype=torch.float64)
    for t in range(steps):
        q = jacobian_times(t, q)
        r = torch.linalg.vector_norm(q, dim=1)
        q = q / r[:, None]
        if t >= transient:
            total += r.log()
    return (total / (steps - transient)).mean().item()


def flow_slope(log_norms: torch.Tensor) -> float:
    """Least-squares slope of ln n_t against the distance back T - t."""
    back = torch.arange(len(log_norms) - 1, -1, -1, dtype=torch.float64)
    back = back - back.mean()
    return ((back * (log_norms - log_norms.mean())).sum() / (back * back).sum()).item()


def pascanu_holds(log_norms: torch.Tensor, sigma_max: torch.Tensor, gamma: float = 1.0) -> bool:
    """ln n_k - ln n_T <= (T - k) ln(gamma sigma_max) at every step, with gradscope's slack."""
    back = torch.arange(len(log_norms) - 1, -1, -1, dtype=torch.float64)
    log_bound = back * torch.log(gamma * sigma_max)
    slack = gradscope.spectrum.BOUND_RTOL * (1.0 + log_bound.abs())
    return bool(((log_norms - log_norms[-1]) <= log_bound + slack).all())


def rnn_report(case: Case) -> TorchReport:
    loss, states, dh, _, _ = unrolled(case.step, case.fc, case.x, case.y)
    steps, batch, hidden = states.shape
    with torch.no_grad():
        norms = step_norms(dh)
        logs = norms.log()
        slope = 1.0 - states * states  # tanh'(z_t) from h_t
        prev = torch.cat((torch.zeros_like(states[:1]), states[:-1]))  # h_{t-1}, h_0 = 0
        contributions = gram_norms(dh * slope, prev)  # dz_t = dL/dh_t * (1 - h_t^2)
        w = case.step.weight_hh
        eig, sv = torch.linalg.eigvals(w), torch.linalg.svdvals(w)
        lam = leading_exponent(lambda t, q: slope[t] * (q @ w.T), batch, hidden, steps,
                               default_transient(steps))
        return TorchReport(loss, norms, None, norms / norms[-1], contributions, (eig, sv), None,
                           pascanu_holds(logs, sv[0]), flow_slope(logs), lam)


def gru_update(u: torch.Tensor, v: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
    """nn.GRUCell's step from u = W_ih x + b_ih and v = W_hh h_{t-1} + b_hh, gates (r, z, n)."""
    h = h_prev.shape[-1]
    r = torch.sigmoid(u[..., :h] + v[..., :h])
    z = torch.sigmoid(u[..., h : 2 * h] + v[..., h : 2 * h])
    n = torch.tanh(u[..., 2 * h :] + r * v[..., 2 * h :])
    return (1.0 - z) * n + z * h_prev


def lstm_update(u: torch.Tensor, v: torch.Tensor, c_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.LSTMCell's step from u and v, gates (i, f, g, o): (h_t, c_t)."""
    i, f, g, o = (u + v).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gated_report(case: Case) -> TorchReport:
    lstm = case.cell == "lstm"
    loss, states, dh, cells, dc = unrolled(case.step, case.fc, case.x, case.y)
    steps, batch, hidden = states.shape
    step = case.step
    w_ih, w_hh, b_ih, b_hh = (p.detach() for p in (step.weight_ih, step.weight_hh, step.bias_ih, step.bias_hh))
    gates = w_hh.shape[0] // hidden
    with torch.no_grad():
        norms = step_norms(dh)
        logs = norms.log()
        cell_norms = step_norms(dc) if lstm else None
        zeros = torch.zeros_like(states[:1])
        prev = torch.cat((zeros, states[:-1]))  # h_{t-1}
        u = F.linear(case.x.transpose(0, 1), w_ih, b_ih)  # (T, B, G*H), every step at once
        v = F.linear(prev, w_hh, b_hh)
        ones = torch.ones_like(states)
        if lstm:
            c_prev = torch.cat((zeros, cells[:-1]))
            _, pullback = torch.func.vjp(lambda v_, c_: lstm_update(u, v_, c_), v, c_prev)
            alpha_h, direct_hc = pullback((ones, torch.zeros_like(ones)))  # d h_t / d (v_t, c_{t-1})
            alpha_c, direct_cc = pullback((torch.zeros_like(ones), ones))  # d c_t / d (v_t, c_{t-1}): f_t
            # c_t.grad is the total dL/dc_t; into the update's output c_t comes only what flows back
            # from c_{t+1}, f_{t+1} dL/dc_{t+1} (h_t takes its own share through dL/dh_t)
            dc_later = torch.cat((direct_cc[1:] * dc[1:], zeros))
            dv = pullback((dh, dc_later))[0]
        else:
            _, pullback = torch.func.vjp(lambda v_, h_: gru_update(u, v_, h_), v, prev)
            alpha_h, direct_hh = pullback(ones)  # d h_t / d v_t (per gate), d h_t / d h_{t-1} direct: z_t
            dv = pullback(dh)[0]
        contributions = gram_norms(dv, prev)
        blocks = w_hh.view(gates, hidden, hidden)

        def through_w(alpha: torch.Tensor) -> torch.Tensor:  # sum_g diag(alpha_g) W_hg
            return (alpha.view(gates, hidden, 1) * blocks).sum(dim=0)

        def gated_times(alpha: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:  # sum_g alpha_g (W_hg q_h)
            return (alpha.view(batch, gates, hidden) * moved).sum(dim=1)

        if lstm:
            mean = [t.mean(dim=(0, 1)) for t in (alpha_h, direct_hc, alpha_c, direct_cc)]
            jacobian = torch.cat((torch.cat((through_w(mean[0]), torch.diag(mean[1])), dim=1),
                                  torch.cat((through_w(mean[2]), torch.diag(mean[3])), dim=1)))

            def jacobian_times(t: int, q: torch.Tensor) -> torch.Tensor:
                q_h, q_c = q[:, :hidden], q[:, hidden:]
                moved = (q_h @ w_hh.T).view(batch, gates, hidden)
                return torch.cat((gated_times(alpha_h[t], moved) + direct_hc[t] * q_c,
                                  gated_times(alpha_c[t], moved) + direct_cc[t] * q_c), dim=1)
        else:
            jacobian = through_w(alpha_h.mean(dim=(0, 1))) + torch.diag(direct_hh.mean(dim=(0, 1)))

            def jacobian_times(t: int, q: torch.Tensor) -> torch.Tensor:
                moved = (q @ w_hh.T).view(batch, gates, hidden)
                return gated_times(alpha_h[t], moved) + direct_hh[t] * q

        spectra = {name: (torch.linalg.eigvals(block), torch.linalg.svdvals(block))
                   for name, block in zip(("i", "f", "g", "o") if lstm else ("r", "z", "n"), blocks)}
        size = jacobian.shape[0]
        lam = leading_exponent(jacobian_times, batch, size, steps, default_transient(steps))
        return TorchReport(loss, norms, cell_norms, norms / norms[-1], contributions,
                           (torch.linalg.eigvals(jacobian), torch.linalg.svdvals(jacobian)), spectra,
                           None, flow_slope(logs), lam)


def torch_report(case: Case) -> TorchReport:
    return rnn_report(case) if case.cell == "rnn" else gated_report(case)


# --- the check: both sides computed the same report -----------------------------------------------


def rel_diff(ours, theirs) -> float:
    """max over entries of |a - b| / max(|a|, |b|) (0 where both are 0): every norm to its own size,
    however many orders of magnitude the run spans."""
    a, b = np.atleast_1d(np.asarray(ours, dtype=np.float64)), np.atleast_1d(np.asarray(theirs, dtype=np.float64))
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(invalid="ignore"):
        return float(np.max(np.where(scale > 0, np.abs(a - b) / np.where(scale > 0, scale, 1.0), 0.0)))


def spread_diff(ours, theirs) -> float:
    """max |a - b| / max|a|: relative to the largest entry, as LAPACK's accuracy is (spectra)."""
    a, b = np.atleast_1d(np.asarray(ours, dtype=np.float64)), np.atleast_1d(np.asarray(theirs, dtype=np.float64))
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def spectrum_diff(spectrum, eig_sv) -> float:
    """Spectral radius, every singular value, every eigenvalue modulus (both sorted)."""
    eig, sv = eig_sv
    moduli = np.sort(np.abs(eig.numpy()))[::-1]
    return max(rel_diff(spectrum.spectral_radius, moduli[0]),
               spread_diff(spectrum.singular_values, sv.numpy()),
               spread_diff(np.abs(spectrum.eigenvalues), moduli))


def compare(ours: AnalyzeResult, theirs: TorchReport) -> tuple[bool, dict[str, float]]:
    """Whether both reports agree (within NORM_RTOL / SPECTRUM_RTOL), and the largest differences."""
    norms = {"norms": rel_diff(ours.grad_norms, theirs.grad_norms),
             "ratios": rel_diff(ours.ratios, theirs.ratios),
             "contrib.": rel_diff(ours.contributions, theirs.contributions),
             "loss": rel_diff(ours.loss, theirs.loss),
             "slope": rel_diff(ours.flow.slope, theirs.slope)}
    if theirs.cell_grad_norms is not None:
        norms["dL/dc norms"] = rel_diff(ours.cell_grad_norms, theirs.cell_grad_norms)
    spectral = {"spectrum": spectrum_diff(ours.spectrum, theirs.spectrum),
                "lambda_1": rel_diff(ours.lyapunov.leading_exponent, theirs.leading_exponent)}
    if theirs.gate_spectra is not None:
        spectral["gate spectra"] = max(spectrum_diff(ours.gate_spectra[g], s) for g, s in theirs.gate_spectra.items())
    same = all(d <= NORM_RTOL for d in norms.values()) and all(d <= SPECTRUM_RTOL for d in spectral.values())
    if theirs.pascanu_holds is not None:
        same = same and theirs.pascanu_holds == ours.pascanu.bound_holds
    return same, {**norms, **spectral}


# --- timing ---------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int, int, int]:
    try:
        b, t, d, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected B,T,D,H, got {text!r}") from None
    return b, t, d, h


def target_cell(ratio: float, target: float | None) -> str:
    return "-" if target is None else f">= {target:g}x {'yes' if ratio >= target else 'NO'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed rounds (default 7)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 7, --quick 3)")
    parser.add_argument("--cell", choices=["rnn", "gru", "lstm", "all"], default="rnn",
                        help="cell to run; the targets are the RNN's (default rnn)")
    parser.add_argument("--size", type=parse_size, action="append", metavar="B,T,D,H",
                        help="a size to run (repeatable; default the three of common.SIZES)")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (default: torch's own)")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    clear = clear_cache
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    print(environment())
    print("load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1, 5, 15 min)")
    print("gradscope's cache of spectra: emptied by gradscope.linalg.clear_cache() before every gradscope run")
    rows = []
    for cell in ["rnn", "gru", "lstm"] if args.cell == "all" else [args.cell]:
        for size in args.size or SIZES:
            case = make_case(cell, size)
            if case.setup.checkpointed:
                print(f"note: {cell} {size}: gradscope checkpoints BPTT here (the full path does not fit)")
            x, y = case.setup.batch.x, case.setup.batch.y
            clear()
            ours, theirs = analyze_setup(case.setup), torch_report(case)
            same, diffs = compare(ours, theirs)
            pascanu = "" if ours.pascanu is None else (
                f"; Pascanu's bound holds: gradscope {'yes' if ours.pascanu.bound_holds else 'no'}, "
                f"torch {'yes' if theirs.pascanu_holds else 'no'}")
            print(f"same report ({cell}, {size}): {'yes' if same else 'NO'}, max rel diff "
                  + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()) + pascanu)
            report, theirs, core, fused = interleaved_timings([
                lambda: analyze_setup(case.setup),
                lambda: torch_report(case),
                lambda: bptt(case.setup.network, x, y),
                lambda: torch_fused(case.module, case.fc, case.x, case.y),
            ], rounds, warmup=1, before=[clear, None, None, None])  # the check warmed both reports
            report_ratio, core_ratio = theirs.median / report.median, fused.median / core.median
            report_target = REPORT_TARGETS.get(size) if cell == "rnn" else None
            core_target = CORE_TARGET[1] if size == CORE_TARGET[0] else None
            rows.append([cell, "(" + ", ".join(map(str, size)) + ")", ms_spread(report), ms_spread(theirs),
                         f"{report_ratio:.2f}x", target_cell(report_ratio, report_target),
                         ms_spread(core), ms_spread(fused), f"{core_ratio:.2f}x", target_cell(core_ratio, core_target)])
    print()
    print_table(["cell", "(B, T, D, H)", "gradscope report ms", "torch report ms", "ratio", "target",
                 "core ms", "fused ms", "ratio", "target"], rows)
    print(f"median ± half the interquartile range over {rounds} rounds; ratio = torch / gradscope; "
          "fused = nn.RNN/GRU/LSTM forward + backward; core = gradscope.bptt.bptt")
    load = os.getloadavg()
    print("load average: " + ", ".join(f"{v:.2f}" for v in load) + " (1, 5, 15 min)")
    if max(load) > (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print("note: more runnable processes than cores: torch's OpenMP threads wait for each other's "
              "cores (gradscope runs small loops on one BLAS thread); compare --torch-threads 1")


if __name__ == "__main__":
    main()
