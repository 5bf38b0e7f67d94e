"""The dynamics of gradient flow: products of step Jacobians along the actual run (REFERENCE §3).

The gradient reaching step k is delta_k = P_k^T delta_T with

    P_k = J_T J_{T-1} ... J_{k+1}          J_t = d s_t / d s_{t-1}, (S, S)

the product of the step Jacobians along the trajectory (J_t = diag(f'(z_t)) Wa for the vanilla
RNN; s is the flattened state, (h, c) for the LSTM). P is never formed: its entries under- or
overflow long before a run ends. It is accumulated by QR instead, one step at a time, from Q_0 = I:

    J_t Q_{t-1} = Q_t R_t                so    J_t ... J_1 = Q_t R_t ... R_1

with R_t upper triangular. ln|R_t,ii| is how much the i-th direction of the tracked frame grows at
step t beyond the first i-1, so

    lambda_i = (1/n) sum_{t > transient} ln|R_t,ii|         the Lyapunov exponents (Engelken, Wolf
                                                            & Abbott 2020), n = T - transient
    ln sigma_i(P) ~ sum_t ln|R_t,ii|                        the singular values, asymptotically

lambda_1 < 0: perturbations, and with them gradients, shrink like exp(lambda_1 (T - k)), and the
horizon -1/lambda_1 is how many steps back the gradient loses a factor e. lambda_1 > 0: the
dynamics is chaotic and gradients explode. The transient lets Q_t forget its arbitrary start.

The sums of ln|R_t,ii| are the singular values only in the limit of a long run (on T = 100 steps
they can be off by a factor e^7). The exact ones come from the triangular product R_n ... R_1
itself, which has the singular values of P (Q_n is orthogonal). It is kept with each row scaled
to unit length and its scale as a logarithm, X = diag(e^l) U, so nothing under- or overflows;
and because the factors are triangular, a row only ever mixes with the rows below it, which are
smaller: the tiny singular values are not drowned by the large ones. A one-sided Jacobi method
(Hestenes; Demmel & Veselic 1992), written in those logarithms, then orthogonalises the rows:
their lengths are the singular values, each to high relative accuracy however tiny or huge.

Batches: every sequence has its own trajectory and Jacobians. Exponents and singular values are
computed per sequence and averaged over the batch (logarithms averaged: a geometric mean); the
spread over the batch is reported beside the exponents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator

import numpy as np

from .bptt.layer import Trajectory
from .errors import InputError
from .model.layer import Layer

# |lambda_1| up to this is rounding, not growth: the orthogonal linear RNN and the IRNN sit there.
NEUTRAL_EXPONENT = 1e-9
# The Jacobi method stops when every pair of rows is orthogonal to this (cosine, per unit of S)...
JACOBI_TOLERANCE = 4 * np.finfo(np.float64).eps
# ...or after this many sweeps over all pairs; it converges quadratically, in 5 to 10.
MAX_JACOBI_SWEEPS = 40


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
    regime : "vanishing" (lambda_1 < 0), "exploding" (lambda_1 > 0, or the run overflowed), or
        "neutral" (|lambda_1| at most NEUTRAL_EXPONENT: rounding).
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
    sweeps : Jacobi sweeps until the rows were orthogonal (the most over the batch).
    converged : whether they were, within MAX_JACOBI_SWEEPS.
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
    ln f_t,i after the transient; sorted descending per sequence, then averaged over the batch.

    exponents : (H,) per step; leading_exponent : the first; horizon : -1 / leading_exponent steps.
    log10_singular_values : (H,) log10 of prod_{t=2..T} f_t,i, descending: the product over the run.
    """

    exponents: np.ndarray
    leading_exponent: float
    horizon: float | None
    log10_singular_values: np.ndarray


# --- the step Jacobians and the QR accumulation --------------------------------------------------


def step_jacobians(layer: Layer, traj: Trajectory) -> Iterator[np.ndarray]:
    """J_t = d s_t / d s_{t-1} for t = 1..T, each (B, S, S), one at a time."""
    for cache in traj.caches:
        yield layer.cell.step_jacobian(layer.params, cache)


@dataclass(frozen=True)
class StepJacobian:
    """J_t as a linear map, shape (B, S, S): ``J @ q`` is the cell's ``jacobian_times``, which
    never forms the matrix. What tracking a few leading directions needs (QRFrame)."""

    layer: Layer
    cache: object
    shape: tuple[int, int, int]

    def __matmul__(self, q: np.ndarray) -> np.ndarray:
        return self.layer.cell.jacobian_times(self.layer.params, self.cache, q)


def step_maps(layer: Layer, traj: Trajectory) -> Iterator[StepJacobian]:
    """J_t for t = 1..T as linear maps (StepJacobian)."""
    size = layer.state_size
    for cache in traj.caches:
        yield StepJacobian(layer, cache, (traj.hidden.shape[1], size, size))


def overflowed(traj: Trajectory) -> bool:
    """Whether a state of the forward run is inf or nan: then the Jacobians along it are not the
    derivatives of anything, and every exponent is undefined (nan, null in JSON)."""
    return not all(np.all(np.isfinite(part)) for state in traj.states for part in state)


def log_abs_diagonal(r: np.ndarray) -> np.ndarray:
    """ln |R_ii| of a stack of matrices, (b, k, k) -> (b, k); -inf where R_ii = 0."""
    with np.errstate(divide="ignore"):
        return np.log(np.abs(np.diagonal(r, axis1=-2, axis2=-1)))


class QRFrame:
    """The orthonormal frame Q_t of J_t Q_{t-1} = Q_t R_t, from Q_0 = I: ``step(J_t)`` gives R_t.

    ``columns`` k <= S tracks the leading k directions only (reduced QR, R_t (b, k, k)): k = 1 is
    the power iteration that gives lambda_1 alone, at a fraction of the cost.

    ``step(J_t, active)``: a sequence whose step is not ``active`` (b,) (a pad step, where the state
    is carried and J_t is the identity) keeps its frame; its R_t is then meaningless.
    """

    def __init__(self, columns: int | None = None) -> None:
        self.columns = columns
        self.q: np.ndarray | None = None

    def step(self, jac: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        if self.q is None:
            size = jac.shape[-1]
            k = size if self.columns is None else min(self.columns, size)
            self.q = np.broadcast_to(np.eye(size, k), (jac.shape[0], size, k))
        before = self.q
        moved = jac @ self.q
        if moved.shape[-1] == 1:
            # One column: QR is normalisation, R = ||J_t q||; a vector J_t annihilates keeps q.
            r = np.linalg.norm(moved, axis=1, keepdims=True)
            self.q = np.where(r > 0, moved / np.where(r > 0, r, 1.0), self.q)
        else:
            self.q, r = np.linalg.qr(moved)  # J_t Q_{t-1} = Q_t R_t
        if active is not None:
            self.q = np.where(active[:, None, None], self.q, before)
        return r


class LyapunovSum:
    """Accumulates sum_{t > transient} ln|R_t,ii| over J_1, J_2, ...; ``per_sequence`` (b, k).

    With padding, ``add(t, J_t, active)`` counts each sequence's own real steps: its sum runs over
    those after its own ``transient`` ((b,) then), and its mean divides by their number.
    """

    def __init__(self, transient: int | np.ndarray, columns: int | None = None) -> None:
        self.frame = QRFrame(columns)
        self.transient = transient
        self.total: np.ndarray | float = 0.0
        self.steps: int | np.ndarray = 0
        self.seen: np.ndarray | int = 0

    def add(self, t: int, jac: np.ndarray, active: np.ndarray | None = None) -> None:
        r = self.frame.step(jac, active)  # the frame is carried through the transient too
        if active is None:
            if t > self.transient:
                self.total = self.total + log_abs_diagonal(r)
                self.steps += 1
            return
        self.seen = self.seen + active
        counted = active & (self.seen > self.transient)
        self.total = self.total + np.where(counted[:, None], log_abs_diagonal(r), 0.0)
        self.steps = self.steps + counted

    def per_sequence(self) -> np.ndarray:
        steps = self.steps if np.isscalar(self.steps) else np.asarray(self.steps)[:, None]
        return self.total / steps


class TriangularProduct:
    """R_n ... R_1 of the QR accumulation of the factors added, row-scaled: diag(e^l) U.

    U (b, S, S) has unit rows (or zero ones) and l (b, S) their logarithmic lengths (-inf for zero
    rows). With X = R X_prev, row i of X is sum_{k >= i} R_ik e^{l_k} u_k: each coefficient is
    taken relative to the row's largest, e^{ln|R_ik| + l_k - max}, which cannot overflow.
    """

    def __init__(self) -> None:
        self.frame = QRFrame()
        self.u: np.ndarray | None = None
        self.l: np.ndarray | None = None

    def add(self, jac: np.ndarray, active: np.ndarray | None = None) -> None:
        """J_t, applied to the sequences ``active`` (b,) at this step (None: all)."""
        r = self.frame.step(jac, active)
        if self.u is None:
            b, s = r.shape[0], r.shape[-1]
            self.u, self.l = np.broadcast_to(np.eye(s), (b, s, s)), np.zeros((b, s))
        u, l = self.u, self.l
        self._multiply(r)
        if active is not None:  # the others' product is unchanged (a pad step is the identity)
            self.u = np.where(active[:, None, None], self.u, u)
            self.l = np.where(active[:, None], self.l, l)

    def _multiply(self, r: np.ndarray) -> None:
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(np.abs(r)) + self.l[:, None, :]  # ln|R_ik e^{l_k}|, -inf where 0
            top = np.max(logs, axis=2)
            shift = np.where(np.isfinite(top), top, 0.0)
            coef = np.sign(r) * np.exp(logs - shift[:, :, None])  # R_ik e^{l_k} / e^{top_i}
            rows = coef @ self.u
            norms = np.linalg.norm(rows, axis=2)
            self.u = rows / np.where(norms > 0, norms, 1.0)[:, :, None]
            self.l = shift + np.log(norms)  # a zero row: ln 0 = -inf

    def log_singular_values(self) -> tuple[np.ndarray, int, bool]:
        """ln sigma_i (b, S) descending, with the Jacobi sweeps taken and whether they converged."""
        return jacobi_log_singular_values(self.u, self.l)


@lru_cache(maxsize=16)
def round_robin(n: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The n - 1 rounds of the circle method (n even): n/2 disjoint pairs each, every pair once."""
    ring = list(range(1, n))
    rounds = []
    for _ in range(n - 1):
        order = [0] + ring
        rounds.append((np.array(order[: n // 2]), np.array(order[n // 2 :][::-1])))
        ring = ring[-1:] + ring[:-1]
    return tuple(rounds)


def jacobi_log_singular_values(u: np.ndarray, l: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """ln sigma (b, S) descending of X = diag(e^l) U by one-sided Jacobi on its rows, in logarithms.

    Rows a (the longer, length e^{l_a}) and b (e^{l_b} = rho e^{l_a}, rho <= 1) with unit directions
    u_a, u_b and cosine c = u_a . u_b are rotated to orthogonal ones. Hestenes' rotation, with
    zeta = (rho^2 - 1) / (2 rho c) and t = sign(zeta) / (|zeta| + sqrt(1 + zeta^2)), written in
    tau = t / rho so that rho -> 0 stays finite (there it is Gram-Schmidt, tau = -c):

        h = (1 - rho^2) / (2 |c|)       tau = -sign(c) / (h + sqrt(rho^2 + h^2))
        cs = 1 / sqrt(1 + tau^2 rho^2)
        row a <- e^{l_a} cs (u_a - tau rho^2 u_b)      row b <- e^{l_b} cs (tau u_a + u_b)

    Pairs are rotated n/2 at a time in round-robin order, over the whole batch at once.
    """
    u, l = np.array(u, dtype=np.float64), np.array(l, dtype=np.float64)
    b, s, _ = u.shape
    if s % 2:  # an odd count: a zero row as partner, which no rotation ever touches
        u = np.concatenate([u, np.zeros((b, 1, s))], axis=1)
        l = np.concatenate([l, np.full((b, 1), -np.inf)], axis=1)
    tolerance = JACOBI_TOLERANCE * s
    sweeps, converged = 0, False
    with np.errstate(all="ignore"):
        while sweeps < MAX_JACOBI_SWEEPS and not converged:
            sweeps += 1
            converged = True
            for p, q in round_robin(u.shape[1]):
                swap = l[:, q] > l[:, p]  # a is the longer row of each pair
                ia = np.where(swap, q[None, :], p[None, :])
                ib = np.where(swap, p[None, :], q[None, :])
                rows = np.arange(b)[:, None]
                ua, ub, la, lb = u[rows, ia], u[rows, ib], l[rows, ia], l[rows, ib]
                cos = np.einsum("bks,bks->bk", ua, ub)  # zero rows give 0: never rotated
                active = np.abs(cos) > tolerance
                if not active.any():
                    continue
                converged = False
                rho = np.exp(lb - la)
                rho = np.where(np.isfinite(rho), rho, 0.0)
                h = (1.0 - rho * rho) / (2.0 * np.where(active, np.abs(cos), 1.0))
                tau = -np.sign(cos) / (h + np.sqrt(rho * rho + h * h))
                cs = 1.0 / np.sqrt(1.0 + (tau * rho) ** 2)
                new_a = ua - (tau * rho * rho)[:, :, None] * ub
                new_b = tau[:, :, None] * ua + ub
                norm_a = np.linalg.norm(new_a, axis=2)
                norm_b = np.linalg.norm(new_b, axis=2)
                keep = ~active[:, :, None]
                u[rows, ia] = np.where(keep, ua, new_a / np.where(norm_a > 0, norm_a, 1.0)[:, :, None])
                u[rows, ib] = np.where(keep, ub, new_b / np.where(norm_b > 0, norm_b, 1.0)[:, :, None])
                l[rows, ia] = np.where(active, la + np.log(cs * norm_a), la)
                l[rows, ib] = np.where(active, lb + np.log(cs * norm_b), lb)
    return -np.sort(-l[:, :s], axis=1), sweeps, converged


def product_log_singular_values(factors: Iterable[np.ndarray]) -> tuple[np.ndarray, int, bool]:
    """ln sigma_i (b, S) descending of J_n ... J_1 for factors (b, S, S) in the order applied.

    Returns (ln sigma, Jacobi sweeps, converged). The product itself is never formed.
    """
    product = TriangularProduct()
    for jac in factors:
        product.add(jac)
    if product.u is None:
        raise InputError("the Jacobian product needs at least one factor")
    return product.log_singular_values()


# Steps the power iteration takes between normalisations: a product of this many step Jacobians
# stays far inside float64 (a block that does not is taken again a step at a time).
POWER_BLOCK = 8
POWER_RANGE = (1e-200, 1e200)


def _power_steps(layer: Layer, caches: list, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q through J_t for the caches given, normalised at every step as QRFrame's one column is:
    (q_end, sum_t ln r_t (b,)); a q that J_t annihilates is kept (ln 0 = -inf)."""
    frame = QRFrame(1)
    frame.q = q
    shape = (q.shape[0], q.shape[1], q.shape[1])
    total = sum(log_abs_diagonal(frame.step(StepJacobian(layer, cache, shape)))[:, 0] for cache in caches)
    return frame.q, total


def leading_exponents(layer: Layer, traj: Trajectory, transient: int) -> np.ndarray:
    """Per-sequence lambda_1 (b, 1) by the power iteration, the one-column QR accumulation:

        v_t = J_t q_{t-1},   r_t = ||v_t||,   q_t = v_t / r_t,   lambda_1 = mean_{t > transient} ln r_t

    from q_0 = e_1, as ``lyapunov_exponents(step_maps(...), transient, 1)`` computes it, in a loop
    lean enough for long runs of small steps: J_t q is the cell's ``jacobian_times``, and q is
    normalised every POWER_BLOCK steps rather than at every one (the product of the r_t over a block
    is the norm at its end). A block whose norm leaves POWER_RANGE, or that annihilates q, is taken
    again a step at a time, so the result is the step-by-step one to rounding.
    """
    cell, params, caches = layer.cell, layer.params, traj.caches
    steps, batch, size = len(caches), traj.hidden.shape[1], layer.state_size
    q = np.zeros((batch, size, 1))
    q[:, 0, 0] = 1.0
    total = np.zeros(batch)
    t = 0
    while t < steps:
        end = min(t + POWER_BLOCK, transient if t < transient else steps)  # blocks end at the transient
        v = q
        for cache in caches[t:end]:
            v = cell.jacobian_times(params, cache, v)
        r = np.sqrt(np.einsum("bsk,bsk->b", v, v))
        if np.all((r > POWER_RANGE[0]) & (r < POWER_RANGE[1])):
            q, logs = v / r[:, None, None], np.log(r)
        else:
            q, logs = _power_steps(layer, caches[t:end], q)
        if t >= transient:
            total += logs
        t = end
    return (total / (steps - transient))[:, None]


def lyapunov_exponents(factors: Iterable[np.ndarray], transient: int, columns: int | None = None) -> np.ndarray:
    """Per-sequence exponents (b, k): (1/n) sum_{t > transient} ln|R_t,ii| over the factors J_1..J_T."""
    total = LyapunovSum(transient, columns)
    for t, jac in enumerate(factors, start=1):
        total.add(t, jac)
    if total.steps == 0:
        raise InputError(f"--transient {transient} leaves no steps to average over")
    return total.per_sequence()


# --- summaries -----------------------------------------------------------------------------------


def _regime(leading: float) -> str:
    if math.isnan(leading) or leading > NEUTRAL_EXPONENT:
        return "exploding"  # nan: the trajectory overflowed
    return "vanishing" if leading < -NEUTRAL_EXPONENT else "neutral"


def horizon(leading: float) -> float | None:
    """-1 / lambda_1 steps when the gradient fades (0 when lambda_1 = -inf), else None."""
    return abs(1.0 / leading) if leading < -NEUTRAL_EXPONENT else None


def _lyapunov(per_sequence: np.ndarray, transient: int, steps: int) -> Lyapunov:
    with np.errstate(invalid="ignore"):
        mean, std = per_sequence.mean(axis=0), per_sequence.std(axis=0)
    leading = float(mean[0])
    return Lyapunov(mean, std, leading, horizon(leading), _regime(leading), transient, steps)


def resolve_transient(transient: int | None, steps: int) -> int:
    """The transient for a run of ``steps`` steps, given or the default, checked."""
    transient = default_transient(steps) if transient is None else transient
    if not 0 <= transient < steps:
        raise InputError(f"--transient must be between 0 and T - 1 = {steps - 1} (got {transient})")
    return transient


def sequence_transients(lengths: np.ndarray, transient: int | None) -> np.ndarray:
    """Each sequence's transient (b,) for sequences of ``lengths`` real steps: the one given, or
    the first tenth of its own real steps; one that leaves a sequence no step is an InputError."""
    if transient is not None and transient >= int(lengths.min()):
        raise InputError(f"--transient must be less than the shortest sequence's {int(lengths.min())} real "
                         f"steps (got {transient})")
    return np.array([default_transient(int(n)) if transient is None else transient for n in lengths])


def mask_transients(mask: np.ndarray | None, transient: int | None, steps: int
                    ) -> tuple[int | np.ndarray, int, int]:
    """(each sequence's transient, the transient and the steps of the longest sequences) of a run of
    ``steps`` steps whose real ones ``mask`` (T, B) marks (None: all of them): the first is the
    transient itself without a mask, ``sequence_transients`` (B,) with one."""
    if mask is None:
        transient = resolve_transient(transient, steps)
        return transient, transient, steps
    lengths = mask.sum(axis=0)
    longest = int(lengths.max())
    return sequence_transients(lengths, transient), resolve_transient(transient, longest), longest


def lyapunov(layer: Layer, traj: Trajectory, transient: int | None = None, columns: int | None = 1,
             mask: np.ndarray | None = None) -> Lyapunov:
    """The leading ``columns`` Lyapunov exponents along a forward trajectory (all S with None).

    mask : (T, B) the real steps in the trajectory's order, or None. With padding each sequence
    counts its own real steps, as ``spectrum`` does: a pad step carries the state (the identity),
    so it is skipped, and each sequence's exponents average over its real steps after its own
    transient; ``transient`` and ``steps`` of the result are then the longest sequences'.
    The default, lambda_1 alone, is what ``analyze``'s verdict and ``sweep`` report.
    """
    k = layer.state_size if columns is None else min(columns, layer.state_size)
    if mask is not None and not mask.all():
        transients, transient, longest = mask_transients(mask, transient, len(traj.caches))
        if overflowed(traj):
            return _lyapunov(np.full((1, k), np.nan), transient, longest - transient)
        total = LyapunovSum(transients, k)
        for t, jac in enumerate(step_maps(layer, traj), start=1):
            total.add(t, jac, mask[t - 1])
        return _lyapunov(total.per_sequence(), transient, longest - transient)
    steps = len(traj.caches)
    transient = resolve_transient(transient, steps)
    if overflowed(traj):
        return _lyapunov(np.full((1, k), np.nan), transient, steps - transient)
    if k == 1:
        return _lyapunov(leading_exponents(layer, traj, transient), transient, steps - transient)
    # k columns of J_t at a time: the linear maps, never the (B, S, S) Jacobians
    return _lyapunov(lyapunov_exponents(step_maps(layer, traj), transient, k), transient, steps - transient)
