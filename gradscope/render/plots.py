"""Pictures, through matplotlib: the optional ``plot`` extra, imported only when a picture is drawn.

Each picture is a function that takes the result object the terminal view renders and returns a
matplotlib Figure, drawn on the Agg canvas directly (no pyplot, so no global state and no display
needed). ``save`` writes one for --plot (PNG or SVG by the file's extension); ``svg`` gives its SVG
text for --report (render/report.py). The pictures:

    analyze_figure          log10 ||dL/da_t|| against t with Pascanu's bound; the eigenvalues of Wa
                            (or of a gated cell's mean step Jacobian) with the unit circle
    gradient_heatmap_figure log10 ||dL/da_t,i|| over the batch, for every step t and hidden unit i
    spectrum_figure         the Lyapunov exponents and the product's finite-time exponents against i
    sweep_figure            the phase diagram: one heatmap per cell and activation, 0 (the boundary) white
    training_losses_figure  the logged training loss of each run (mitigation) against the step
    loss_curves_figure      loss curves given as name -> (steps, losses)
    history_figure          a recording: log10 ||dL/dh_t|| over training step x time step, and the
                            end-to-end ratio of each layer and direction over training
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..extras import install_hint
from ..io.arrays import check_output
from ..io.atomic import atomic_write
from .common import thin

FORMATS = (".png", ".svg")
INSTALL_HINT = install_hint("plot")


def prepare(path: str | Path) -> Path:
    """Check --plot FILE before any work is done: its extension, and that matplotlib is there."""
    path = check_output(path, "--plot", FORMATS)
    _matplotlib()
    return path


def available() -> bool:
    """Whether matplotlib can be imported, so that pictures can be drawn."""
    try:
        _matplotlib()
    except InputError:
        return False
    return True


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


def save(fig: Any, path: Path) -> None:
    """--plot FILE: the figure as PNG or SVG, by the extension ``prepare`` checked."""
    import matplotlib

    fmt = path.suffix.lower().lstrip(".")
    # No dates and fixed element ids: the same run draws the same bytes.
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    # whole or not at all (io/atomic.py): an OSError is an InputError naming --plot and the path
    with atomic_write(path, "--plot") as fh, matplotlib.rc_context({"svg.hashsalt": "gradscope"}):
        fig.savefig(fh, format=fmt, dpi=120, metadata=metadata)


def svg(fig: Any) -> str:
    """The figure as SVG text, to be placed inline in a page: text kept as text (searchable, and
    small), no metadata, element ids fixed, so that the same run gives the same text."""
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "gradscope", "svg.fonttype": "none"}):
        fig.savefig(out, format="svg", dpi=120,
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return out.getvalue()


def _log10(values: Any) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(np.asarray(values, dtype=np.float64))
    return np.where(np.isfinite(logs), logs, np.nan)  # gaps where a norm is 0, inf or nan


def analyze_figure(result: Any) -> Any:
    """log10 ||dL/da_t|| against t with Pascanu's bound, and the eigenvalues with the unit circle."""
    from ..profile import headline_of
    from .analyze import counted_from

    fig = _figure(11, 4.2)
    left, right = fig.subplots(1, 2, width_ratios=[1.6, 1])
    state = "a" if result.gate_spectra is None else "h"
    padded = result.network.padded  # then the flow profile, counted back from each sequence's end,
    start = counted_from(result)  # from the longest sequence's first step, as the text view
    norms = result.flow_norms[start:] if padded else result.grad_norms
    steps = np.arange(1, len(norms) + 1)
    headline = headline_of(result.layers)
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
        bound = np.asarray(result.pascanu.bound)[start:] * norms[-1]
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
    return fig


def hidden_gradients(result: Any) -> np.ndarray:
    """(T, B, H) dL/da_t of the analyzed run: the top layer's forward ``dL_dh`` (the layer the
    headline norms are of)."""
    grads = result.gradients
    if not hasattr(grads, "layers"):
        raise InputError("the gradient heatmap needs dL/da_t of every step, which a checkpointed run "
                         "(the full path does not fit in memory) does not keep; lower --seq-len")
    return grads.layers[-1][0].dL_dh


def unit_norms(d: np.ndarray) -> np.ndarray:
    """(T, B, H) -> (T, H): ||dL/da_t,i|| over the batch, scaled by the largest entry so that no
    square under- or overflows; inf or nan where an entry is."""
    a = np.abs(np.asarray(d, dtype=np.float64))
    with np.errstate(all="ignore"):
        top = a.max(axis=1)  # (T, H)
        unit = np.where(np.isfinite(top) & (top > 0), top, 1.0)
        scaled = top * np.sqrt(np.sum((a / unit[:, None, :]) ** 2, axis=1))
    return np.where(np.isfinite(top), scaled, top)


def gradient_heatmap_figure(result: Any) -> Any:
    """log10 ||dL/da_t,i|| (norm over the batch) as a heatmap: step t across, hidden unit i up."""
    import matplotlib

    logs = _log10(unit_norms(hidden_gradients(result)))  # (T, H); nan where 0 or not finite
    steps, units = logs.shape
    fig = _figure(9, 4.2)
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(logs.T), origin="lower", aspect="auto", cmap=cmap,
                      interpolation="nearest", extent=(0.5, steps + 0.5, 0.5, units + 0.5))
    state = "a" if result.gate_spectra is None else "h"
    where = ", top layer fwd" if len(result.layers) > 1 else ""
    ax.set_xlabel("step t" + (" (absolute; pad steps have no gradient)" if result.network.padded else ""))
    ax.set_ylabel("hidden unit i")
    ax.set_title(f"|dL/d{state}_t| per hidden unit{where}")
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("log10 norm over the batch (grey: 0 or not finite)")
    return fig


def spectrum_figure(result: Any) -> Any:
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
    return fig


def sweep_figure(result: Any) -> Any:
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
        marks = [(_column(c, xs), i) for i, c in enumerate(heatmap.crossings) if c is not None]
        marks = [(x, i) for x, i in marks if x is not None]
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
    return fig


def _increasing(values: Sequence[float]) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


def _column(x: float, xs: Sequence[float]) -> float | None:
    """x in column units of an axis given up or down (2:1:3 as 1:2:3), None for one in no order."""
    columns = np.arange(len(xs), dtype=float)
    if _increasing(xs):
        return float(np.interp(x, xs, columns))
    if _increasing(xs[::-1]):
        return float(np.interp(x, xs[::-1], columns[::-1]))
    return None


def training_losses_figure(histories: Mapping[str, Sequence[Any]], config: dict, baseline: float | None) -> Any:
    """The logged training loss of each run (name -> its StepRecords) against the step, the trivial
    baseline dashed: the picture of ``train`` and ``compare``."""
    curves = {name: ([r.step for r in h], [r.loss for r in h]) for name, h in histories.items()}
    return loss_curves_figure(curves, f"{config['task']}, T={config['seq_len']}: training loss", baseline)


def loss_curves_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str,
                       baseline: float | None = None) -> Any:
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
    return fig


def history_figure(result: Any, layer: int, direction: str) -> Any:
    """``gradscope history``: log10 ||dL/dh_t|| of one layer and direction over recorded pass x time
    step (the first run's, or the one run), and below it the end-to-end ratio of every layer and
    direction (of that layer and direction in every run, where there are several) over training."""
    import matplotlib
    import matplotlib.ticker

    from ..commands.history import heatmap
    from ..flow import EXPLODING_RATIO, VANISHING_RATIO

    h = heatmap(result, layer, direction, result.runs[0])
    fig = _figure(9, 7.5)
    top, bottom = fig.subplots(2, 1, height_ratios=[1.3, 1])
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    shown = np.ma.masked_invalid(h.values)
    image = top.imshow(shown, origin="upper", aspect="auto", cmap=cmap, interpolation="nearest",
                       extent=(0.5, result.seq_len + 0.5, len(h.steps) - 0.5, -0.5))
    ticks = thin(len(h.steps), 8)
    top.set_yticks(ticks, [str(h.steps[i]) for i in ticks])
    top.set_ylabel("training step")
    top.set_xlabel("time step t" + (" (end-aligned: t = T is the readout's step)" if result.padded else ""))
    where = f", run {h.run}" if h.run is not None else ""
    top.set_title(f"log10 ||dL/dh_t||, layer {layer} {direction}{where}")
    padding = h.padding  # the columns before a shorter pass's first step
    grey = ["0 or not finite"] if np.any(shown.mask & ~padding) else []
    grey += ["before a shorter pass's first step"] if padding.any() else []
    fig.colorbar(image, ax=top).set_label("log10 norm" + (f" (grey: {'; '.join(grey)})" if grey else ""))

    curves = ([(run, layer, direction) for run in result.runs] if len(result.runs) > 1
              else [(result.runs[0], k["layer"], k["direction"]) for k in result.layers])
    for run, k, d in curves:
        passes = [p for p in result.passes if p.run == run]
        flows = [next(f for f in p.layers if (f.layer, f.direction) == (k, d)) for p in passes]
        ratios = [np.nan if f.log10_ratio is None else f.log10_ratio for f in flows]
        name = run if len(result.runs) > 1 else f"layer {k} {'fwd' if d == 'forward' else 'rev'}"
        chosen = (k, d) == (layer, direction)
        bottom.plot([p.step for p in passes], ratios, marker="o", ms=3, lw=2 if chosen else 1,
                    alpha=1 if chosen or len(result.runs) > 1 else 0.7, label=name)
    bottom.axhline(math.log10(VANISHING_RATIO), color="grey", ls="--", lw=1, label="vanishing below")
    bottom.axhline(math.log10(EXPLODING_RATIO), color="grey", ls=":", lw=1, label="exploding above")
    bottom.set_xlabel("training step")
    steps = sorted({p.step for p in result.passes})
    if len(steps) <= 8:  # steps are whole numbers: few of them, each its own tick
        bottom.set_xticks(steps)
    else:
        bottom.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    bottom.set_ylabel("log10 ||dL/dh_1|| / ||dL/dh_T||")
    bottom.set_title("The end-to-end ratio over training" + (f", layer {layer} {direction}" if len(result.runs) > 1 else ""))
    bottom.grid(alpha=0.3)
    bottom.legend(loc="best", fontsize="small")
    return fig
