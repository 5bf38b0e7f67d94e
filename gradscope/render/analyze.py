"""The terminal view of an AnalyzeResult: configuration, step table, sparkline, spectrum, verdict.

Every number shown is a field of the result's JSON document (serialize.py).
"""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..commands.analyze import AnalyzeResult
from ..profile import headline
from .common import REGIME_STYLE, chain_lines, growth_time, num_log10, complex_num, num, print_header, select_steps, sparkline, step_count


def symbols(result: AnalyzeResult) -> tuple[str, str]:
    """The hidden state and recurrent weight as the reader knows them: the lesson's a_t and Wa for
    the vanilla RNN, PyTorch's h_t and W_hh for the gated cells."""
    return ("a", "Wa") if result.gate_spectra is None else ("h", "W_hh")


def counted_from(result: AnalyzeResult) -> int:
    """Where a padded run's end-aligned profile starts to hold a sequence: its entries before the
    longest sequence's first step (T minus its length) hold none, so the text view counts
    t (end-aligned) = 1 from there, the step the verdict's ratio starts at (0 unpadded)."""
    return len(result.flow_norms) - result.network.lengths[1] if result.network.padded else 0


def step_table(result: AnalyzeResult, max_rows: int) -> Table:
    """||dL/da_t|| at chosen steps with its ratio to T, the bound and the contribution to dL/dWa."""
    state, weight = symbols(result)
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("step t" if not result.network.padded else "t (end-aligned)", justify="right")
    table.add_column(f"||dL/d{state}_t||", justify="right")
    table.add_column("ratio to T", justify="right")
    if result.pascanu is not None:
        table.add_column("Pascanu bound", justify="right")
    # per-step columns at absolute steps do not line up with end-aligned rows: JSON has them
    aligned = result.network.padded
    if result.cell_grad_norms is not None and not aligned:
        table.add_column("||dL/dc_t||", justify="right")
    if not aligned:
        table.add_column(f"||dL/d{weight}_t||", justify="right")
    # grad_norms, or end-aligned where sequences are padded: from the longest one's first step
    start = counted_from(result)
    norms, ratios = result.flow_norms[start:], result.ratios[start:]
    logs = None if aligned else np.asarray(result.log10_grad_norms, dtype=np.float64)  # exact at any depth
    steps = len(norms)
    for t in select_steps(steps, max_rows):
        if logs is None:
            row = [str(t), num(norms[t - 1]), num(ratios[t - 1])]
        else:
            row = [str(t), num_log10(logs[t - 1]), num_log10(logs[t - 1] - logs[-1])]
        if result.pascanu is not None:
            c = result.pascanu.gamma_sigma_max
            bound = (steps - t) * math.log10(c) if c > 0 and math.isfinite(c) else None
            row.append(num_log10(bound) if bound is not None else num(result.pascanu.bound[start + t - 1]))
        if result.cell_grad_norms is not None and not aligned:
            row.append(num(result.cell_grad_norms[t - 1]))
        if not aligned:
            row.append(num(result.contributions[t - 1]))
        table.add_row(*row)
    return table


def spectrum_lines(result: AnalyzeResult, eigen_count: int = 3) -> list[str]:
    s = result.spectrum
    if s is None:
        return []
    lines = [  # two lines: one would wrap at 80 columns
        f"  spectral radius {num(s.spectral_radius)}   sigma max {num(s.max_singular_value)}",
        f"  sigma min {num(s.min_singular_value)}   condition {num(s.condition_number)}",
        "  leading eigenvalues: " + ", ".join(complex_num(z) for z in s.eigenvalues[:eigen_count]),
    ]
    p = result.pascanu
    if p is not None:
        if p.vanishing_guaranteed:
            verdict = "< 1: vanishing guaranteed"
        elif p.exploding_possible:
            verdict = "> 1: exploding possible"
        else:
            verdict = "= 1: the boundary"
        lines.append(f"  Pascanu: gamma x sigma max = {num(p.gamma)} x {off_one(s.max_singular_value)} = "
                     f"{off_one(p.gamma_sigma_max)} {verdict}")
        lines.append(
            "  ratio to T <= (gamma sigma max)^(T-k): "
            + ("holds at every step" if p.bound_holds else "VIOLATED (please report this)")
        )
    return lines


def off_one(x: float) -> str:
    """``num(x)``, with the digits that tell x from 1 where three do not: the verdict beside it
    compares x with 1 exactly ('1.0000002 > 1', never '1 > 1')."""
    digits, shown = 3, num(x)
    while shown == "1" and x != 1 and digits < 17:
        digits += 1
        shown = num(x, digits)
    return shown


def spectrum_title(result: AnalyzeResult) -> str:
    """What ``spectrum`` is of: Wa, or a gated cell's mean step Jacobian over its state."""
    if result.spectrum_of == "recurrent_weight":
        return "Spectrum of Wa"
    top, _ = headline(result.setup.network)
    if len(result.setup.network.cell_of(top).state_names) == 2:
        return "Spectrum of the mean step Jacobian d(h_t, c_t)/d(h_{t-1}, c_{t-1})"
    return "Spectrum of the mean step Jacobian dh_t/dh_{t-1}"


def gate_table(result: AnalyzeResult) -> Table:
    """One row per gate block W_h<gate> of W_hh: its radius, extreme singular values, condition."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("block of W_hh", "radius", "sigma max", "sigma min", "condition"):
        table.add_column(name, justify="left" if name.startswith("block") else "right")
    for gate, s in result.gate_spectra.items():
        table.add_row(f"W_h{gate}", num(s.spectral_radius), num(s.max_singular_value),
                      num(s.min_singular_value), num(s.condition_number))
    return table


def verdict_text(result: AnalyzeResult) -> Text:
    f, th = result.flow, result.thresholds
    text = Text("Verdict: ")
    text.append(result.regime.upper(), style=REGIME_STYLE[result.regime])
    if result.regime == "vanishing":
        why = f"ratio < {num(th.vanishing_ratio)}"
    elif result.regime == "exploding":
        why = (f"ratio > {num(th.exploding_ratio)}" if np.isfinite(f.ratio_first_last) or f.log10_ratio is not None
               else "gradients overflowed")
    else:
        why = f"{num(th.vanishing_ratio)} <= ratio <= {num(th.exploding_ratio)}"
    state, _ = symbols(result)
    ratio = num(f.ratio_first_last)
    if f.log10_ratio is not None and not 1e-300 < f.ratio_first_last < 1e300:
        ratio = f"10^{f.log10_ratio:.6g}"  # beyond float64, exact from the log-domain adjoint
    text.append(f"  ||dL/d{state}_1|| / ||dL/d{state}_T|| = {ratio} ({why})\n")
    rate = f"x{num(f.rate_per_step)}/step" if f.rate_per_step is not None else "-"
    # the slope is of ln||dL/da_t|| (natural log, as the JSON's slope); log10 beside it, as the table's
    if f.slope is None:  # flow.fit_slope: no line through fewer than two points
        text.append("  slope - (fewer than two steps with a nonzero, finite gradient to fit)")
    else:
        text.append(f"  slope {num(f.slope)}/step back in ln (log10 {num(f.slope / math.log(10))}, {rate})")
    if f.horizon is not None:
        text.append(f", horizon {step_count(f.horizon)} steps")
    lyap = result.lyapunov
    text.append(f"\n  Lyapunov lambda_1 {num(lyap.leading_exponent)} per step (natural log)")
    if lyap.horizon is not None:
        text.append(f", horizon {step_count(lyap.horizon)} steps")
    else:
        text.append(f" ({lyap.regime}{growth_time(lyap.leading_exponent)})")
    return text


def layer_table(result: AnalyzeResult) -> Table:
    """One row per layer and direction: what reaches it, how it flows back, the verdict."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("layer", "dir", "||dL/dh||", "ratio 1/T", "slope", "radius", "log10 ||dL/dh_t||", "verdict"):
        table.add_column(name, justify="left" if name in ("dir", "log10 ||dL/dh_t||", "verdict") else "right")
    for r in result.layers:
        with np.errstate(all="ignore"):  # padded: the end-aligned profile, as the ratio and slope
            logs = np.log10(r.ratios[counted_from(result):] if result.network.padded else r.grad_norms)
        table.add_row(str(r.layer), "fwd" if r.direction == "forward" else "rev", num(r.total_grad_norm),
                      num(r.flow.ratio_first_last), num(r.flow.slope), num(r.spectrum.spectral_radius),
                      sparkline(logs, 16), Text(r.flow.regime, style=REGIME_STYLE[r.flow.regime]))
    return table


def initial_state_table(result: AnalyzeResult) -> Table:
    """One row per layer and direction: the gradient reaching its initial state (--initial-state)."""
    cell = result.layers[0].initial_state.cell_grad_norm is not None
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("layer", "dir", "||dL/dh_0||") + (("||dL/dc_0||",) if cell else ()):
        table.add_column(name, justify="left" if name == "dir" else "right")
    for r in result.layers:
        g = r.initial_state
        row = [str(r.layer), "fwd" if r.direction == "forward" else "rev", num_log10(g.log10_grad_norm)]
        if cell:
            row.append(num_log10(g.log10_cell_grad_norm))
        table.add_row(*row)
    return table


def render_analyze(result: AnalyzeResult, console: Console, max_rows: int = 16) -> None:
    """Print the analysis for a person."""
    print_header(console, "analyze", result.config)
    net = result.network
    described = len(result.layers) > 1 or net.embedding is not None or net.padded or net.head is None
    drawn = result.config.get("inputs") is not None and result.config.get("targets") is None
    if (result.config["task"] == "text" or drawn) and not described:  # the data line: where it says more
        console.print(result.data)  # than the header (a text's vocabulary; targets drawn at random)
    if result.loss is None:
        console.print(f"no loss: the gradient comes from --output-grads   {result.parameter_count} parameters")
    else:
        console.print(
            f"loss {num(result.loss, 4)}  (trivial baseline {num(result.baseline_loss, 4)})   "
            f"{result.parameter_count} parameters"
        )
    if described:
        console.print(Text(chain_lines("model: ", net.description, console.width)))
        console.print(result.data)
        if net.ignored_keys:
            shown = ", ".join(net.ignored_keys[:6]) + (", ..." if len(net.ignored_keys) > 6 else "")
            console.print(f"not modelled, left unread: {shown}")
    if net.readout == "every" and len(result.layers) == 1 and not net.padded:
        console.print("read out at every step: the norms follow the gradient from the readout at T")
    if len(result.layers) > 1:
        console.print()
        console.print(Text(f"Layers (the steps below: layer {result.layers[-1].layer}, forward)", style="bold"))
        console.print(Padding(layer_table(result), (0, 0, 0, 2), expand=False))
        if result.depth is not None:
            d = result.depth
            console.print(f"  depth: ||dL/dh|| at layer 0 / at layer {result.layers[-1].layer} = {num(d.ratio)}")
    if result.layers[0].initial_state is not None:
        console.print()
        console.print(Text("Gradient reaching the initial state (--initial-state; --save-grads: dL_dh_0)",
                           style="bold"))
        console.print(Padding(initial_state_table(result), (0, 0, 0, 2), expand=False))
    if net.padded:
        console.print(f"padded: t counted back from each sequence's last real step, T = {net.lengths[1]} "
                      "(the longest)")
    console.print()
    console.print(step_table(result, max_rows))
    console.print()
    with np.errstate(all="ignore"):  # exact logs; end-aligned norms where sequences are padded
        logs = (result.log10_flow_norms[counted_from(result):] if result.network.padded
                else np.asarray(result.log10_grad_norms, float))
    steps = len(logs)
    finite = logs[np.isfinite(logs)]
    span = f"  {num(finite.min())} .. {num(finite.max())}" if finite.size else ""
    where = "t (end-aligned)" if result.network.padded else "t"
    console.print(f"log10 ||dL/d{symbols(result)[0]}_t||, {where} = 1..{steps}:{span}")
    console.print("  " + sparkline(logs, 60))
    lines = spectrum_lines(result)
    if lines:
        console.print()
        console.print(Text(spectrum_title(result), style="bold"))
        if result.gate_spectra is not None:
            console.print("  (mean over the steps and the batch of this run)")
        for line in lines:
            console.print(line)
    if result.gate_spectra is not None:
        console.print()
        console.print(Text("Gate blocks of the recurrent weight W_hh", style="bold"))
        console.print(Padding(gate_table(result), (0, 0, 0, 2), expand=False))
    overflowed = int(np.sum(~np.isfinite(result.grad_norms)))
    if overflowed:
        console.print(
            f"{overflowed} of {steps} gradient norms overflowed float64 (inf/nan here, null in --json)",
            style="red",
        )
    console.print()
    console.print(verdict_text(result))
