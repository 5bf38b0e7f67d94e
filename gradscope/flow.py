"""How the gradient norm changes along the sequence, and the verdict (REFERENCE §3).

From n_t = ||dL/da_t|| (t = 1..T), measured going back in time from the readout at T:

    slope s       least-squares slope of ln n_t against the distance T - t (per step back,
                  natural log): negative when the gradient fades, positive when it grows.
                  For long runs it approaches the leading Lyapunov exponent lambda_1.
    rate          e^s, the mean factor by which the norm changes per step back
    horizon xi    -1 / s steps when s < 0: the e-folding memory of the gradient
    ratio         n_1 / n_T, the end-to-end attenuation

Verdict, on the end-to-end ratio (documented in the README, reported in the JSON):

    exploding  ratio > EXPLODING_RATIO, or the norm at any step exceeds EXPLODING_RATIO * n_T on
               the way back (a gradient that blows up and then dies, as dead relu units make it),
               or any gradient overflowed to inf/nan
    vanishing  ratio < VANISHING_RATIO
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


def fit_slope(norms: np.ndarray) -> float | None:
    """Least-squares slope of ln n_t against T - t, over the steps where n_t is finite and positive."""
    t = np.arange(norms.shape[0] - 1, -1, -1, dtype=np.float64)  # distance back from the last step
    with np.errstate(all="ignore"):
        ok = np.isfinite(norms) & (norms > 0)
        if ok.sum() < 2:
            return None
        logs = np.log(norms[ok])
        slope = np.polyfit(t[ok], logs, 1)[0]
    return float(slope) if math.isfinite(slope) else None


def regime(ratio: float, any_nonfinite: bool, peak: float = 0.0) -> str:
    """The verdict from the end-to-end ratio n_1 / n_T, and the peak max_t n_t / n_T: a gradient
    that blows up on its way back is exploding even where it is zero by step 1 (dead relu units)."""
    if any_nonfinite or not math.isfinite(ratio) or ratio > EXPLODING_RATIO or peak > EXPLODING_RATIO:
        return "exploding"
    if ratio < VANISHING_RATIO:
        return "vanishing"
    return "stable"


def flow(norms: np.ndarray) -> Flow:
    """The Flow of a run's gradient norms n_t, (T,)."""
    with np.errstate(all="ignore"):
        ratio = float(norms[0] / norms[-1]) if norms[-1] != 0 else float("nan")
        log10 = math.log10(ratio) if math.isfinite(ratio) and ratio > 0 else None
    slope = fit_slope(norms)
    rate = math.exp(slope) if slope is not None and abs(slope) < 700 else None
    horizon = -1.0 / slope if slope is not None and slope < 0 else None
    nonfinite = not bool(np.all(np.isfinite(norms)))
    with np.errstate(all="ignore"):
        peak = float(np.max(norms) / norms[-1]) if norms[-1] != 0 and not nonfinite else 0.0
    return Flow(ratio, log10, slope, rate, horizon, regime(ratio, nonfinite, peak))
