"""``spectrum``: the Lyapunov exponents and the singular values of the Jacobian products.

For every layer and direction of the network, along its forward run over the batch (dynamics.py
gives the method), over each sequence's real steps: a pad step carries the state (its Jacobian is
the identity), so it is skipped, and each sequence's exponents average over its own real steps
after its own transient (the first tenth of them by default). The headline (the top-level
fields) is the top layer's forward direction, as analyze's; ``layers`` has every layer and
direction, bottom first, forward before reverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..bptt.layer import Trajectory
from ..bptt.network import forward
from ..config import RunConfig
from ..dynamics import (
    CellPath, Lyapunov, LyapunovSum, ProductSpectrum, TriangularProduct, _lyapunov, horizon,
    log_abs_diagonal, mask_transients, overflowed, step_jacobians,
)
from ..errors import InputError
from ..experiment import Setup, build
from ..model.layer import Layer
from ..model.network import DIRECTIONS
from ..profile import headline, run_mask
from ..serialize import HIDDEN


@dataclass
class LayerSpectrum:
    """One layer and direction's spectra along its run (the fields of SpectrumResult's headline).

    transient and steps (in ``lyapunov`` and ``product``) are the longest sequences' where
    sequences have different lengths.
    """

    layer: int
    direction: str
    state: list[str]
    state_size: int
    lyapunov: Lyapunov
    product: ProductSpectrum
    cell_path: CellPath | None


@dataclass
class SpectrumResult:
    """What ``gradscope spectrum`` reports.

    config : every setting, defaults resolved (RunConfig fields).
    state : names of the flattened state's parts, ["h"] or ["h", "c"]; state_size : S.
    lyapunov : the Lyapunov spectrum, every exponent (k = S).
    product : the singular values of the Jacobian product over the run.
    cell_path : the memory cell's direct path, for cells with one (LSTM), else None.
    layers : every layer and direction's LayerSpectrum; the fields above repeat the headline's.
    """

    command: ClassVar[str] = "spectrum"

    config: dict
    state: list[str]
    state_size: int
    lyapunov: Lyapunov
    product: ProductSpectrum
    cell_path: CellPath | None
    layers: list[LayerSpectrum]
    setup: Setup = field(metadata=HIDDEN, repr=False)


def layer_spectrum(layer: Layer, run: Trajectory, mask: np.ndarray | None, transient: int | None,
                   k: int = 0, direction: str = "forward") -> LayerSpectrum:
    """Lyapunov spectrum, product singular values and cell path of one layer's run.

    run : the layer's trajectory in processing order; mask : (T, B) real steps in the same order,
    or None (every step real). One pass over the steps computes each J_t once and feeds it to
    three accumulations: the Lyapunov frame (from J_1), the triangular product of J_T ... J_2, and,
    for a cell with a memory cell, ln f_t from the (c, c) block of J_t, which is diag(f_t):
    c_t = f_t c_{t-1} + i_t g_t, and the gates see h_{t-1} but not c_{t-1}.
    """
    steps, h, size = len(run.caches), layer.hidden_size, layer.state_size
    lengths = None if mask is None else mask.sum(axis=0)
    longest = steps if lengths is None else int(lengths.max())
    if steps < 2:
        raise InputError("the Jacobian product needs at least two steps: use --seq-len 2 or more "
                         "(or --inputs of two or more steps)")
    if lengths is not None and int(lengths.min()) < 2:
        raise InputError(f"a sequence of the batch has {int(lengths.min())} real step: the Jacobian product "
                         "of each sequence needs at least two (leave the one-step sequences out)")
    # each sequence's own transient: the first tenth of its real steps, or the one given
    per_transient, transient, longest = mask_transients(mask, transient, steps)
    averaged = steps - transient if lengths is None else (lengths - per_transient)[:, None]
    memory = len(layer.cell.state_names) > 1
    if overflowed(run):
        nan = np.full((1, size), np.nan)
        per_sequence, ln_sigma, sweeps, converged = nan, nan, 0, False
        forget_averaged = forget_product = nan[:, :h]
    else:
        lyap, product = LyapunovSum(per_transient), TriangularProduct()
        forget_averaged, forget_product = 0.0, 0.0
        seen = np.zeros(run.hidden.shape[1], int)
        for t, jac in enumerate(step_jacobians(layer, run), start=1):
            active = None if mask is None else mask[t - 1]
            lyap.add(t, jac, active)
            if active is None:
                later, counted = t >= 2, t > per_transient
            else:
                seen += active
                later, counted = active & (seen >= 2), active & (seen > per_transient)
            if np.any(later):
                product.add(jac, None if active is None else later)
            if memory:
                ln_f = log_abs_diagonal(jac[:, h : 2 * h, h : 2 * h])  # ln f_t,i, (B, H)
                if active is None:
                    forget_averaged = forget_averaged + ln_f / averaged if counted else forget_averaged
                    forget_product = forget_product + ln_f if later else forget_product
                else:
                    forget_averaged = forget_averaged + np.where(counted[:, None], ln_f / averaged, 0.0)
                    forget_product = forget_product + np.where(later[:, None], ln_f, 0.0)
        per_sequence = lyap.per_sequence()
        ln_sigma, sweeps, converged = product.log_singular_values()
    with np.errstate(invalid="ignore"):
        mean = ln_sigma.mean(axis=0)
        # a sequence's finite-time exponents divide by its own number of factors
        factors = (steps - 1) if lengths is None else (lengths - 1)[:, None]
        exponents = mean / (steps - 1) if lengths is None else (ln_sigma / factors).mean(axis=0)
    return LayerSpectrum(
        layer=k,
        direction=direction,
        state=list(layer.cell.state_names),
        state_size=size,
        lyapunov=_lyapunov(per_sequence, transient, longest - transient),
        product=ProductSpectrum(longest - 1, mean / math.log(10.0), exponents, sweeps, converged),
        cell_path=_cell_path(forget_averaged, forget_product) if memory else None,
    )


def spectrum_setup(setup: Setup, transient: int | None = None) -> SpectrumResult:
    """The spectra of every layer and direction of the setup's network along its forward run."""
    net, batch = setup.network, setup.batch
    with np.errstate(all="ignore"):
        traj = forward(net, batch.x, batch.mask, setup.initial)
    layers = []
    for k, d in net.each_layer():
        layers.append(layer_spectrum(net.layer(k, d), traj.runs[k][d], run_mask(traj, k, d), transient, k,
                                     DIRECTIONS[d]))
    top, _ = headline(net)
    head = layers[net.layer_index(top)]
    return SpectrumResult(
        config=setup.config.as_dict(),
        state=head.state,
        state_size=head.state_size,
        lyapunov=head.lyapunov,
        product=head.product,
        cell_path=head.cell_path,
        layers=layers,
        setup=setup,
    )


def _cell_path(exponents: np.ndarray, ln_product: np.ndarray) -> CellPath:
    """Per-unit exponents and ln prod f (B, H) -> sorted per sequence, averaged over the batch."""
    with np.errstate(invalid="ignore"):
        mean = (-np.sort(-exponents, axis=1)).mean(axis=0)
        log10_sv = (-np.sort(-ln_product, axis=1)).mean(axis=0) / math.log(10.0)
    leading = float(mean[0])
    return CellPath(mean, leading, horizon(leading), log10_sv)


def jacobian_spectrum(config: RunConfig | None = None, transient: int | None = None, **settings) -> SpectrumResult:
    """Build the network and batch a config describes and analyse its Jacobian products.

    ``jacobian_spectrum(spectral_radius=1.5, transient=20)`` takes the RunConfig fields as keywords.
    """
    config = config or RunConfig(**settings)
    return spectrum_setup(build(config), transient)
