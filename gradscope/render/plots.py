"""Pictures, through matplotlib: the optional ``plot`` extra, imported only when --plot is used.

Each figure is drawn on matplotlib's Agg canvas directly (no pyplot, so no global state and no
display needed) and saved as PNG or SVG by the file's extension:

    plot_analyze    log10 ||dL/da_t|| against t with Pascanu's bound; the eigenvalues of Wa (or of
                    a gated cell's mean step Jacobian) in the complex plane with the unit circle
    plot_spectrum   the Lyapunov exponents and the product's finite-time exponents against i
    plot_sweep      the phase diagram: one heatmap per cell and activation, 0 (the boundary) white
    plot_losses     loss curves, one per run (mitigation), against the training step

Every function takes the result object the terminal view renders, and the path from ``prepare``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..extras import install_hint
from ..io.arrays import check_output
from ..io.atomic import atomic_write

FORMATS = (".png", ".svg")
INSTALL_HINT = install_hint("plot")


def prepare(path: str | Path) -> Path:
    """Check --plot FILE before any work is done: its extension, and that matplotlib is there."""
    path = check_output(path, "--plot", FORMATS)
    _matplotlib()
    return path


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise InputError(f"--plot needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    return matplotlib


def _figure(width: float, height: float) -> Any:
    """A Figure on the Agg canvas."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    import matplotlib

    fmt = path.suffix.lower().lstrip(".")
    # No dates and fixed element ids: the same run draws the same bytes.
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    # whole or not at all (io/atomic.py): an OSError is an InputError naming --plot and the path
    with atomic_write(path, "--plot") as fh, matplotlib.rc_context({"svg.hashsalt": "gradscope"}):
        fig.savefig(fh, format=fmt, dpi=120, metadata=metadata)


def _log10(values: Any) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(np.asarray(values, dtype=np.float64))
    return np.where(np.isfinite(logs), logs, np.nan)  # gaps where a norm is 0, inf or nan


def plot_analyze(result: Any, path: Path) -> None:
    """log10 ||dL/da_t|| against t with Pascanu's bound, and the eigenvalues with the unit circle."""
    fig = _figure(11, 4.2)
    left, right = fig.subplots(1, 2, width_ratios=[1.6, 1])
    steps = np.arange(1, len(result.grad_norms) + 1)
    state = "a" if result.gate_spectra is None else "h"
    padded = result.network.padded  # then the flow profile, counted back from each sequence's end
    norms = result.flow_norms if padded else result.grad_norms
    headline = result.layers[len(result.layers) - result.network.directions]  # top layer, forward
    where = f", layer {headline.layer} fwd" if len(result.layers) > 1 else ""
    left.plot(steps, _log10(norms), color="tab:blue",
              label=f"||dL/d{state}_t||{where}" + (", steps back from each end" if padded else ""))
    if len(result.layers) > 1 and not padded:  # the other layers and directions, fainter
        for r in result.layers:
            if r is not headline:
                left.plot(steps, _log10(r.grad_norms), lw=0.8, alpha=0.6,
                          label=f"layer {r.layer} {'fwd' if r.direction == 'forward' else 'rev'}")
    if result.cell_grad_norms is not None and not padded:
        left.plot(steps, _log10(result.cell_grad_norms), label="||dL/dc_t||", color="tab:purple")
    if result.pascanu is not None:
        # The bound is on the ratio to step T: scale it by ||dL/da_T|| to compare with the norms.
        bound = np.asarray(result.pascanu.bound) * norms[-1]
        left.plot(steps, _log10(bound), "--", color="tab:red",
                  label=f"Pascanu bound (gamma sigma_max = {result.pascanu.gamma_sigma_max:.3g})^(T-t)")
    if not np.any(np.isfinite(_log10(result.grad_norms))):
        left.text(0.5, 0.5, "every gradient norm overflowed", transform=left.transAxes, ha="center")
    left.set_xlabel("step t")
    left.set_ylabel("log10 norm")
    left.set_title(f"Gradient back through time: {result.regime}")
    left.grid(alpha=0.3)
    left.legend(loc="best", fontsize="small")

    eig = np.asarray(result.spectrum.eigenvalues)
    circle = np.linspace(0, 2 * math.pi, 361)
    right.plot(np.cos(circle), np.sin(circle), color="grey", lw=1, label="unit circle")
    finite = np.isfinite(eig)
    right.scatter(eig[finite].real, eig[finite].imag, s=14, color="tab:blue", label="eigenvalues")
    right.axhline(0, color="grey", lw=0.5)
    right.axvline(0, color="grey", lw=0.5)
    right.set_aspect("equal", adjustable="datalim")
    of = "Wa" if result.spectrum_of == "recurrent_weight" else "the mean step Jacobian"
    right.set_title(f"Eigenvalues of {of}\n(radius {result.spectrum.spectral_radius:.3g})")
    right.set_xlabel("Re")
    right.set_ylabel("Im")
    right.legend(loc="upper right", fontsize="small")
    _save(fig, path)


def plot_spectrum(result: Any, path: Path) -> None:
    """The Lyapunov spectrum and the product's finite-time exponents against their index."""
    fig = _figure(8, 4.2)
    ax = fig.subplots()
    index = np.arange(1, result.state_size + 1)
    ax.plot(index, result.lyapunov.exponents, "o-", ms=3, label="Lyapunov lambda_i")
    ax.plot(index, result.product.exponents, "s--", ms=3, label="ln sigma_i(J_T...J_2) / steps")
    if result.cell_path is not None:
        units = np.arange(1, len(result.cell_path.exponents) + 1)
        ax.plot(units, result.cell_path.exponents, "^:", ms=3, label="cell path: mean ln f_t,i")
    ax.axhline(0, color="grey", lw=1)
    ax.set_xlabel("i")
    ax.set_ylabel("exponent per step")
    ax.set_title(f"lambda_1 = {result.lyapunov.leading_exponent:.4g} per step: {result.lyapunov.regime}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    _save(fig, path)


def plot_sweep(result: Any, path: Path) -> None:
    """One heatmap per cell and activation on a shared diverging scale, 0 white; crossings marked."""
    import matplotlib

    count = len(result.maps)
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig = _figure(4.6 * cols + 1, 3.6 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    limit = max(result.scale.limit, result.scale.stable[1], 1e-12)
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="black")
    xs, ys = result.x.values, result.y.values
    image = None
    for ax, heatmap in zip(axes, result.maps):
        values = np.array(heatmap.values, dtype=np.float64)
        values[np.isneginf(values)] = -limit  # gradient exactly 0: the deepest vanishing
        shown = np.ma.masked_invalid(values)  # overflowed (inf, nan): black
        image = ax.imshow(shown, origin="lower", aspect="auto", cmap=cmap, vmin=-limit, vmax=limit,
                          interpolation="nearest")
        ticks = np.unique(np.linspace(0, len(xs) - 1, min(len(xs), 6)).round().astype(int))
        ax.set_xticks(ticks, [f"{xs[i]:g}" for i in ticks])
        ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
        # A crossing's x in column units, where the columns run in increasing order of x.
        marks = [(np.interp(c, xs, np.arange(len(xs))), i)
                 for i, c in enumerate(heatmap.crossings) if c is not None and _increasing(xs)]
        if marks:
            ax.plot(*zip(*marks), "kx", ms=7, label="crosses 0")
            ax.legend(loc="upper left", fontsize="x-small")
        ax.set_xlabel(result.x.name)
        ax.set_ylabel(result.y.name)
        ax.set_title(f"{heatmap.cell} / {heatmap.activation}")
    for ax in axes[count:]:
        ax.set_visible(False)
    bar = fig.colorbar(image, ax=axes[:count].tolist(), shrink=0.9)
    bar.set_label(result.quantity + " (black: overflowed)")
    _save(fig, path)


def _increasing(values: Sequence[float]) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


def plot_losses(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: Path,
                title: str, baseline: float | None = None) -> None:
    """Loss against training step, one curve per run: name -> (steps, losses); the trivial baseline
    dashed. Non-finite losses (a diverged run) leave a gap."""
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    for name, (steps, losses) in curves.items():
        losses = np.asarray(losses, dtype=np.float64)
        ax.plot(steps, np.where(np.isfinite(losses), losses, np.nan), label=name)
    if baseline is not None and math.isfinite(baseline):
        ax.axhline(baseline, color="grey", ls="--", label=f"trivial baseline {baseline:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize="small")
    _save(fig, path)
