"""The terminal view of a SpectrumResult: the leading exponents, the product's singular values, the
LSTM's cell path, and the verdict of lambda_1.

Every number shown is a field of the result's JSON document (serialize.py).
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..commands.spectrum import SpectrumResult
from .common import growth_time, num, print_header, step_count, steps_of

REGIME_STYLE = {"vanishing": "bold yellow", "exploding": "bold red", "neutral": "bold green"}


def exponent_table(result: SpectrumResult, rows: int) -> Table:
    """The leading exponents: Lyapunov (with the spread over the batch) and of the product."""
    lyap, product = result.lyapunov, result.product
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("i", "lambda_i", "std over batch", "log10 sigma_i(P)", "ln sigma_i(P) / steps"):
        table.add_column(name, justify="right")
    for i in range(min(rows, result.state_size)):
        table.add_row(str(i + 1), num(lyap.exponents[i]), num(lyap.exponents_std[i]),
                      num(product.log10_singular_values[i]), num(product.exponents[i]))
    return table


def cell_path_table(result: SpectrumResult, rows: int) -> Table:
    """The LSTM's direct memory path: per-unit exponents of diag(f_t) and of its product."""
    path = result.cell_path
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("i", "mean ln f_t,i", "log10 prod f_t,i"):
        table.add_column(name, justify="right")
    for i in range(min(rows, len(path.exponents))):
        table.add_row(str(i + 1), num(path.exponents[i]), num(path.log10_singular_values[i]))
    return table


def layers_table(result: SpectrumResult) -> Table:
    """Every layer and direction: lambda_1, its horizon and verdict, the largest singular value."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("layer", "direction", "lambda_1", "horizon", "log10 sigma_1(P)", "verdict"):
        table.add_column(name, justify="left" if name in ("direction", "verdict") else "right")
    for layer in result.layers:
        lyap = layer.lyapunov
        table.add_row(str(layer.layer), layer.direction, num(lyap.leading_exponent),
                      "-" if lyap.horizon is None else step_count(lyap.horizon),
                      num(layer.product.log10_singular_values[0]),
                      Text(lyap.regime, style=REGIME_STYLE[lyap.regime]))
    return table


def out_of_order(exponents: np.ndarray) -> int | None:
    """The first i (1-based) with lambda_{i+1} > lambda_i, or None when the finite ones descend."""
    finite = exponents[np.isfinite(exponents)]
    rises = np.flatnonzero(np.diff(finite) > 0)
    return int(rises[0]) + 1 if rises.size else None


def order_note(result: SpectrumResult) -> Text | None:
    """Why lambda_i may not descend: the QR frame aligns with the leading directions at a rate set
    by the gaps between exponents, so on a short run the columns' order is not yet theirs."""
    lyap = result.lyapunov
    first = out_of_order(lyap.exponents)
    if first is None:
        return None
    return Text(f"lambda_{first + 1} > lambda_{first}: over {steps_of(lyap.steps)} the QR frame has not "
                "aligned with the ordered directions (it aligns at the rate of the gaps between "
                "exponents), so lambda_i is the growth rate of its i-th column, not yet the i-th largest; "
                "longer sequences order them. ln sigma_i(P) / steps is ordered by construction.", style="yellow")


def verdict_text(result: SpectrumResult) -> Text:
    lyap = result.lyapunov
    text = Text("Verdict: ")
    text.append(lyap.regime.upper(), style=REGIME_STYLE[lyap.regime])
    text.append(f"  lambda_1 = {num(lyap.leading_exponent)} per step")
    if lyap.horizon is not None:
        text.append(f", horizon {step_count(lyap.horizon)} steps")
    text.append(growth_time(lyap.leading_exponent))
    if result.cell_path is not None and result.cell_path.horizon is not None:
        text.append(f"\n  cell path: {num(result.cell_path.leading_exponent)} per step, "
                    f"horizon {step_count(result.cell_path.horizon)} steps")
    return text


def render_spectrum(result: SpectrumResult, console: Console, rows: int = 8) -> None:
    """Print the Jacobian-product analysis for a person."""
    print_header(console, "spectrum", result.config)
    lyap, product = result.lyapunov, result.product
    state = ", ".join(result.state)
    console.print(f"state ({state}), S = {result.state_size}; exponents per step (natural log), "
                  "mean over the batch")
    console.print(f"Lyapunov exponents over {steps_of(lyap.steps)} after a {lyap.transient}-step transient")
    console.print(f"singular values of the product P = J_T ... J_2 of {steps_of(product.steps)}")
    console.print()
    console.print(exponent_table(result, rows))
    if not product.converged:
        console.print(f"the singular values did not settle in {product.sweeps} Jacobi sweeps", style="red")
    note = order_note(result)
    if note is not None:
        console.print(note)
    if result.cell_path is not None:
        console.print()
        console.print(Text("Cell path c_{t-1} -> c_t: diag(f_t)", style="bold"))
        console.print(cell_path_table(result, rows))
    if len(result.layers) > 1:
        console.print()
        console.print(Text("Every layer and direction (the tables above: the top layer's forward)", style="bold"))
        console.print(layers_table(result))
    console.print()
    console.print(verdict_text(result))
