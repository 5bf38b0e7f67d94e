"""How the gradient norm changes along the sequence, and the verdict (REFERENCE §3).

From n_t = ||dL/da_t|| (t = 1..T), measured going back in time from the readout at T:

    slope s       least-squares slope of ln n_t against the distance T - t (per step back,
                  natural log): negative when the gradient fades, positive when it grows.
                  For long runs it approaches the leading Lyapunov exponent lambda_1.
    rate          e^s, the mean factor by which the norm changes per step back
    horizon xi    -1 / s steps when s < 0: the e-folding memory of the gradient
    ratio         n_1 / n_T, the end-to-end attenuation

Verdict, on the end-to-end ratio (documented in docs/analyze.md, reported in the JSON):

    exploding  ratio > EXPLODING_RATIO, or the norm at any step exceeds EXPLODING_RATIO * n_T on
               the way back (a gradient that blows up and then dies, as dead relu units make it),
               or any gradient overflowed to inf/nan
    vanishing  ratio < VANISHING_RATIO, or no gradient at all at the readout end (n_T = 0: none
               flows back from it; the ratio is undefined), as in the reverse direction of a
               bidirectional layer read at out[:, -1], which reaches that direction's first step only
    stable     otherwise
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VANISHING_RATIO = 1e-2
EXPLODING_RATIO = 1e2


@dataclass
class Flow:
    """Summary of the gradient norms over the steps.

    ratio_first_last : n_1 / n_T.
    log10_ratio : log10 of it (None when a norm is zero or not finite).
    slope : fitted d ln n / d(T - t), per step back (negative when vanishing).
    rate_per_step : e^slope, the mean factor per step back (< 1 vanishing, > 1 exploding).
    horizon : -1 / slope steps when slope < 0, else None: going back that many steps shrinks the
        gradient by a factor e.
    regime : "vanishing", "exploding" or "stable".
    """

    ratio_first_last: float
    log10_ratio: float | None
    slope: float | None
    rate_per_step: float | None
    horizon: float | None
    regime: str


def fit_slope(norms: np.ndarray, log_norms: np.ndarray | None = None) -> float | None:
    """Least-squares slope of ln n_t against T - t, over the steps where ln n_t is finite.

    log_norms : (T,) ln n_t where the caller has them (bptt's log domain): finite wherever the
        gradient is nonzero, even where n_t itself under- or overflows float64.
    """
    t = np.arange(norms.shape[0] - 1, -1, -1, dtype=np.float64)  # distance back from the last step
    with np.errstate(all="ignore"):
        logs = np.log(norms) if log_norms is None else np.asarray(log_norms, dtype=np.float64)
        ok = np.isfinite(logs)
        if ok.sum() < 2:
            return None
        slope = np.polyfit(t[ok], logs[ok], 1)[0]
    return float(slope) if math.isfinite(slope) else None


def regime(ratio: float, any_nonfinite: bool, peak: float = 0.0) -> str:
    """The verdict from the end-to-end ratio n_1 / n_T, and the peak max_t n_t / n_T: a gradient
    that blows up on its way back is exploding even where it is zero by step 1 (dead relu units)."""
    if any_nonfinite or not math.isfinite(ratio) or ratio > EXPLODING_RATIO or peak > EXPLODING_RATIO:
        return "exploding"
    if ratio < VANISHING_RATIO:
        return "vanishing"
    return "stable"


def flow(norms: np.ndarray, log_norms: np.ndarray | None = None) -> Flow:
    """The Flow of a run's gradient norms n_t, (T,), from their logs ln n_t where given.

    From the logs, the ratio's log10 is finite wherever both ends are nonzero, and the norms
    count as non-finite only where they are nan or truly infinite, not where float64 overflowed.
    """
    with np.errstate(all="ignore"):
        logs = np.log(np.asarray(norms, dtype=np.float64)) if log_norms is None else np.asarray(log_norms, dtype=np.float64)
        first, last = float(logs[0]), float(logs[-1])
        log_ratio = first - last if math.isfinite(last) else math.nan
        ratio = float(np.exp(log_ratio))  # 0 or inf where the ratio itself leaves float64
        log10 = log_ratio / math.log(10.0) if math.isfinite(log_ratio) else None
        nonfinite = bool(np.any(np.isnan(logs) | (logs == np.inf)))
        peak = 0.0
        if math.isfinite(last) and not nonfinite:
            peak = math.exp(min(float(np.max(logs)) - last, 709.0))
    slope = fit_slope(norms, logs)
    rate = math.exp(slope) if slope is not None and abs(slope) < 700 else None
    horizon = -1.0 / slope if slope is not None and slope < 0 else None
    silent = last == -math.inf and not nonfinite  # n_T = 0: nothing flows back from the readout end
    return Flow(ratio, log10, slope, rate, horizon, "vanishing" if silent else regime(ratio, nonfinite, peak))
