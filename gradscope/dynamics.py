"""The dynamics of gradient flow: products of step Jacobians along the actual run (REFERENCE §3).

The gradient reaching step k is delta_k = P_k^T delta_T with

    P_k = J_T J_{T-1} ... J_{k+1}          J_t = d s_t / d s_{t-1}, (S, S)

the product of the step Jacobians along the trajectory (J_t = diag(f'(z_t)) Wa for the vanilla
RNN; s is the flattened state, (h, c) for the LSTM). P is never formed: its entries under- or
overflow long before a run ends. It is accumulated by QR instead, one step at a time, from Q_0 = I:

    J_t Q_{t-1} = Q_t R_t                so    J_t ... J_1 = Q_t R_t ... R_1

with R_t upper triangular. log|R_t,ii| is how much the i-th direction of the tracked frame grows at
step t beyond the first i-1, so

    lambda_i = (1/n) sum_{t > transient} log|R_t,ii|        the Lyapunov exponents (Engelken, Wolf
                                                            & Abbott 2020), n = T - transient
    log sigma_i(P) ~ sum_t log|R_t,ii|                      the singular values of the product

lambda_1 < 0: perturbations, and with them gradients, shrink like exp(lambda_1 (T - k)), and the
horizon -1/lambda_1 is how many steps back the gradient loses a factor e. lambda_1 > 0: the
dynamics is chaotic and gradients explode. The transient lets Q_t forget its arbitrary start.

One QR sweep gives the singular values only asymptotically. For exact ones the accumulation is
repeated on the transposed triangular product, R_1^T ... R_n^T (Stewart 1995, graded QR
decompositions of products): each sweep is one step of the unshifted QR iteration for the singular
values, so the triangular product tends to a diagonal, which then holds the singular values, each
to full relative accuracy however tiny or huge. Never is a product of the factors formed.

Batches: every sequence has its own trajectory and Jacobians. Exponents and singular values are
computed per sequence and averaged over the batch (logarithms averaged: a geometric mean); the
spread over the batch is reported beside the exponents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Iterable, Iterator

import numpy as np

from .bptt import Trajectory, forward
from .config import RunConfig
from .errors import InputError
from .experiment import Setup, build
from .model import Model
from .serialize import HIDDEN

# |lambda_1| up to this is rounding, not growth: the orthogonal linear RNN and the IRNN sit there.
NEUTRAL_EXPONENT = 1e-9
# Refinement sweeps through the product stop when no ln sigma_i moves more than SWEEP_TOLERANCE,
# or when the moves stop shrinking below ROUNDING_FLOOR: the tiniest singular values of a long run
# are known only to that (their data, the factors, carry rounding errors of their own).
SWEEP_TOLERANCE = 1e-13
ROUNDING_FLOOR = 1e-7
MAX_SWEEPS = 500
# Neighbouring triangular factors are multiplied together while the product's diagonal spans at
# most this ratio: far from underflow, so each sweep runs through a handful of factors, not T.
GRADING_RANGE = 1e100
# Most bytes of triangular factors held at once for the exact singular values; the batch is
# processed in groups of sequences that fit.
PRODUCT_MEMORY = 256 * 2**20


def default_transient(steps: int) -> int:
    """Steps skipped before the exponents are averaged: the first tenth of the run."""
    return steps // 10


@dataclass
class Lyapunov:
    """The Lyapunov spectrum along the run: batch means of each sequence's exponents.

    exponents : (k,) lambda_i per step (natural log) in the QR's column order, which on a long run
        is descending; the mean over the batch.
    exponents_std : (k,) their standard deviation over the sequences of the batch.
    leading_exponent : lambda_1, the first of them.
    horizon : -1 / lambda_1 steps when lambda_1 < 0, else None: the e-folding memory of the gradient.
    regime : "vanishing" (lambda_1 < 0), "exploding" (lambda_1 > 0), or "neutral" (|lambda_1| at
        most NEUTRAL_EXPONENT, rounding).
    transient : steps skipped before averaging; steps : n, the steps averaged.
    """

    exponents: np.ndarray
    exponents_std: np.ndarray
    leading_exponent: float
    horizon: float | None
    regime: str
    transient: int
    steps: int


@dataclass
class ProductSpectrum:
    """Singular values of P = J_T ... J_2, the map from a_1 to a_T, so that delta_1 = P^T delta_T.

    steps : T - 1, the number of factors.
    log10_singular_values : (S,) descending, log10 sigma_i(P), the mean over the batch.
    exponents : (S,) ln sigma_i(P) / steps, the finite-time exponents (mean over the batch).
    sweeps : QR sweeps through the product until the singular values settled (the most over the
        batch); converged : whether they settled within MAX_SWEEPS.
    """

    steps: int
    log10_singular_values: np.ndarray
    exponents: np.ndarray
    sweeps: int
    converged: bool


@dataclass
class CellPath:
    """The LSTM's direct memory path, c_{t-1} -> c_t with h held: dc_t/dc_{t-1} = diag(f_t).

    Its product over steps is diagonal, so each unit i has its own exponent, the mean of
    ln f_t,i; sorted descending per sequence, then averaged over the batch.

    exponents : (H,) per step; leading_exponent : the first; horizon : -1 / leading_exponent steps.
    log10_singular_values : (H,) log10 of prod_{t=2..T} f_t,i, descending: the product over the run.
    """

    exponents: np.ndarray
    leading_exponent: float
    horizon: float | None
    log10_singular_values: np.ndarray


@dataclass
class SpectrumResult:
    """What ``gradscope spectrum`` reports.

    config : every setting, defaults resolved (RunConfig fields).
    state : names of the flattened state's parts ("h", or "h", "c"); state_size : S.
    lyapunov : the Lyapunov spectrum, every exponent (k = S).
    product : the singular values of the Jacobian product over the run.
    cell_path : the memory cell's direct path, for cells with one (LSTM), else None.
    """

    command: ClassVar[str] = "spectrum"

    config: dict
    state: list[str]
    state_size: int
    lyapunov: Lyapunov
    product: ProductSpectrum
    cell_path: CellPath | None
    setup: Setup = field(metadata=HIDDEN, repr=False)


class _NonFinite(Exception):
    """A step Jacobian held inf or nan (the trajectory overflowed): no exponents to speak of."""


def step_jacobians(model: Model, traj: Trajectory, start: int = 1) -> Iterator[np.ndarray]:
    """J_t = d s_t / d s_{t-1} for t = start..T (1-based), each (B, S, S), one at a time."""
    for cache in traj.caches[start - 1 :]:
        with np.errstate(all="ignore"):
            jac = model.cell.step_jacobian(model.params, cache)
        if not np.all(np.isfinite(jac)):
            raise _NonFinite
        yield jac


def qr_accumulate(factors: Iterable[np.ndarray], columns: int | None = None) -> Iterator[np.ndarray]:
    """R_1, R_2, ... of J_t Q_{t-1} = Q_t R_t from Q_0 = I; factors (b, S, S), each R (b, k, k).

    ``columns`` k <= S tracks only the leading k directions (reduced QR): k = 1 is the power
    iteration that gives lambda_1 alone, at a fraction of the cost.
    """
    q = None
    for jac in factors:
        if q is None:
            size = jac.shape[-1]
            k = size if columns is None else min(columns, size)
            q = np.broadcast_to(np.eye(size, k), (jac.shape[0], size, k))
        q, r = np.linalg.qr(jac @ q)  # J_t Q_{t-1} = Q_t R_t
        yield r


def log_abs_diagonal(r: np.ndarray) -> np.ndarray:
    """ln |R_ii| of a stack of triangular factors, (b, k, k) -> (b, k); -inf where R_ii = 0."""
    with np.errstate(divide="ignore"):
        return np.log(np.abs(np.diagonal(r, axis1=-2, axis2=-1)))


def lyapunov_exponents(factors: Iterable[np.ndarray], transient: int, columns: int | None = None) -> np.ndarray:
    """Per-sequence exponents (b, k): (1/n) sum_{t > transient} ln|R_t,ii| over the factors J_1..J_T."""
    total, n = None, 0
    for t, r in enumerate(qr_accumulate(factors, columns), start=1):
        if t > transient:
            logs = log_abs_diagonal(r)
            total = logs if total is None else total + logs
            n += 1
    if total is None:
        raise InputError(f"--transient {transient} leaves no steps to average over")
    return total / n


def _change(new: np.ndarray, old: np.ndarray) -> float:
    """The largest move of a ln sigma_i between sweeps; inf while the zero ones still change."""
    if not np.array_equal(np.isneginf(new), np.isneginf(old)):
        return math.inf
    finite = np.isfinite(new) & np.isfinite(old)
    return float(np.max(np.abs(new[finite] - old[finite]), initial=0.0))


def _graded(product: np.ndarray) -> bool:
    """Whether every sequence's triangular product keeps its nonzero diagonal within GRADING_RANGE
    of its largest entry: nothing near underflow yet, so the multiplication lost nothing."""
    with np.errstate(all="ignore"):
        top = np.max(np.abs(product), axis=(1, 2))
        diag = np.abs(np.diagonal(product, axis1=1, axis2=2))
        low = np.min(np.where(diag > 0, diag, np.inf), axis=1)
    return bool(np.all(np.isfinite(top) & ((top == 0) | (low == np.inf) | (low * GRADING_RANGE >= top))))


def collapse(rs: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Fewer triangular factors (b, S, S) with the same product, each scaled to max |entry| 1.

    Returns (factors, ln scale (b,)): R_n ... R_1 = exp(scale) F_m ... F_1. The diagonal of a
    product of triangular matrices is the product of their diagonals, and the trailing block
    depends only on the trailing blocks, so grouping keeps tiny singular values as exact as
    before, as long as nothing underflows: ``_graded`` decides where a group ends.
    """
    scale = np.zeros(rs[0].shape[0])
    out, group = [], None
    for r in rs:
        trial = r if group is None else r @ group
        if group is not None and not _graded(trial):
            out.append(group)
            trial = r
        top = np.max(np.abs(trial), axis=(1, 2))
        top = np.where(top > 0, top, 1.0)  # an all-zero factor stays as it is: its sigma are 0
        group = trial / top[:, None, None]
        scale += np.log(top)
    out.append(group)
    return out, scale


def product_log_singular_values(factors: Iterable[np.ndarray]) -> tuple[np.ndarray, int, bool]:
    """ln sigma_i of the product J_n ... J_1 of factors (b, S, S), never formed.

    Returns (ln sigma (b, S) descending, sweeps, converged). The first sweep is the QR accumulation;
    each further one accumulates the transposed triangular product R_1^T ... R_n^T (applied from
    the right, R_n^T first), which has the same singular values, until its diagonal settles.
    """
    rs = list(qr_accumulate(factors))
    if not rs:
        raise InputError("the Jacobian product needs at least one step: use --seq-len 2 or more")
    rs, scale = collapse(rs)
    logs = scale[:, None] + sum(log_abs_diagonal(r) for r in rs)
    sweeps, converged, last_change = 1, False, math.inf
    while sweeps < MAX_SWEEPS and not converged:
        rs, more = collapse(list(qr_accumulate(r.transpose(0, 2, 1) for r in reversed(rs))))
        scale = scale + more
        new = scale[:, None] + sum(log_abs_diagonal(r) for r in rs)
        sweeps += 1
        change = _change(new, logs)
        converged = change <= SWEEP_TOLERANCE or (change <= ROUNDING_FLOOR and change >= last_change)
        logs, last_change = new, change
    return -np.sort(-logs, axis=1), sweeps, converged


def _regime(leading: float) -> str:
    if math.isnan(leading):
        return "exploding"  # the trajectory overflowed
    if leading < -NEUTRAL_EXPONENT:
        return "vanishing"
    return "exploding" if leading > NEUTRAL_EXPONENT else "neutral"


def horizon(leading: float) -> float | None:
    """-1 / lambda_1 steps when the gradient fades (0 when lambda_1 = -inf), else None."""
    return abs(-1.0 / leading) if leading < -NEUTRAL_EXPONENT else None


def _lyapunov(per_sequence: np.ndarray, transient: int, steps: int) -> Lyapunov:
    with np.errstate(invalid="ignore"):
        mean, std = per_sequence.mean(axis=0), per_sequence.std(axis=0)
    leading = float(mean[0])
    return Lyapunov(mean, std, leading, horizon(leading), _regime(leading), transient, steps)


def _nan_lyapunov(columns: int, transient: int, steps: int) -> Lyapunov:
    nan = np.full(columns, np.nan)
    return Lyapunov(nan, nan.copy(), math.nan, None, _regime(math.nan), transient, steps)


def resolve_transient(transient: int | None, steps: int) -> int:
    """The transient to use for a run of ``steps`` steps: given, or the default; checked."""
    transient = default_transient(steps) if transient is None else transient
    if transient < 0 or transient >= steps:
        raise InputError(f"--transient must be between 0 and T - 1 = {steps - 1} (got {transient})")
    return transient


def lyapunov(model: Model, traj: Trajectory, transient: int | None = None, columns: int | None = 1) -> Lyapunov:
    """The leading ``columns`` Lyapunov exponents along a forward trajectory (all S with None).

    The default, lambda_1 alone, is what ``analyze``'s verdict and ``sweep`` report.
    """
    steps = len(traj.caches)
    transient = resolve_transient(transient, steps)
    size = _state_size(model)
    k = size if columns is None else min(columns, size)
    try:
        per_sequence = lyapunov_exponents(step_jacobians(model, traj), transient, k)
    except _NonFinite:
        return _nan_lyapunov(k, transient, steps - transient)
    return _lyapunov(per_sequence, transient, steps - transient)


def _state_size(model: Model) -> int:
    return model.hidden_size * len(model.cell.state_names)


def product_spectrum(model: Model, traj: Trajectory) -> ProductSpectrum:
    """The singular values of J_T ... J_2 for every sequence, averaged over the batch."""
    steps, batch = len(traj.caches) - 1, traj.x.shape[1]
    if steps < 1:
        raise InputError("the Jacobian product needs at least two steps: use --seq-len 2 or more")
    size = _state_size(model)
    group = max(1, PRODUCT_MEMORY // (steps * size * size * 8))
    logs, sweeps, converged = [], 0, True
    try:
        for lo in range(0, batch, group):
            chunk = (jac[lo : lo + group] for jac in step_jacobians(model, traj, start=2))
            ln_sigma, used, ok = product_log_singular_values(chunk)
            logs.append(ln_sigma)
            sweeps, converged = max(sweeps, used), converged and ok
    except _NonFinite:
        nan = np.full(size, np.nan)
        return ProductSpectrum(steps, nan, nan.copy(), 0, False)
    ln_sigma = np.concatenate(logs)
    with np.errstate(invalid="ignore"):
        mean = ln_sigma.mean(axis=0)
    return ProductSpectrum(steps, mean / math.log(10.0), mean / steps, sweeps, converged)


def cell_path(model: Model, traj: Trajectory, transient: int) -> CellPath | None:
    """The memory cell's direct path diag(f_t), read off the (c, c) block of each step Jacobian.

    c_t = f_t c_{t-1} + i_t g_t with gates that see h_{t-1} but not c_{t-1}: that block is diag(f_t).
    None for cells whose state is h alone. The run needs T >= 2 and transient < T.
    """
    if len(model.cell.state_names) < 2:
        return None
    h = model.hidden_size
    steps = len(traj.caches)
    averaged, product = 0.0, 0.0
    try:
        for t, jac in enumerate(step_jacobians(model, traj), start=1):
            logs = log_abs_diagonal(jac[:, h : 2 * h, h : 2 * h])  # ln|f_t,i|, (B, H)
            if t > transient:
                averaged = averaged + logs
            if t >= 2:
                product = product + logs
    except _NonFinite:
        nan = np.full(h, np.nan)
        return CellPath(nan, math.nan, None, nan.copy())
    with np.errstate(invalid="ignore"):
        exponents = (-np.sort(-averaged / (steps - transient), axis=1)).mean(axis=0)
        log10_sv = (-np.sort(-product, axis=1)).mean(axis=0) / math.log(10.0)
    leading = float(exponents[0])
    return CellPath(exponents, leading, horizon(leading), log10_sv)


def spectrum_setup(setup: Setup, transient: int | None = None) -> SpectrumResult:
    """The Jacobian-product analysis of a built setup's forward run."""
    model = setup.model
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        traj = forward(model, setup.batch.x)
    steps = len(traj.caches)
    if steps < 2:
        raise InputError("the Jacobian product needs at least two steps: use --seq-len 2 or more")
    transient = resolve_transient(transient, steps)
    return SpectrumResult(
        config=setup.config.as_dict(),
        state=list(model.cell.state_names),
        state_size=_state_size(model),
        lyapunov=lyapunov(model, traj, transient, columns=None),
        product=product_spectrum(model, traj),
        cell_path=cell_path(model, traj, transient),
        setup=setup,
    )


def jacobian_spectrum(config: RunConfig | None = None, transient: int | None = None, **settings) -> SpectrumResult:
    """Build the model and batch a config describes and analyse its Jacobian products.

    ``gradscope.jacobian_spectrum(spectral_radius=1.5, transient=20)`` takes the RunConfig fields
    as keywords.
    """
    config = config or RunConfig(**settings)
    return spectrum_setup(build(config), transient)
