"""The spectrum of the recurrent matrix and Pascanu, Mikolov & Bengio's conditions (REFERENCE §2).

The gradient reaching step k is delta_k = J_{k+1}^T ... J_T^T delta_T with J_t = diag(f'(z_t)) Wa,
and |f'| <= gamma, so ||J_t|| <= gamma sigma_max(Wa) and

    ||delta_k|| / ||delta_T|| <= (gamma sigma_max)^(T-k)                      (exact, every run)

gamma sigma_max < 1 is therefore sufficient for vanishing; > 1 is necessary for exploding. For a
linear f the spectral radius rho(Wa) decides asymptotically: rho < 1 vanishes, rho > 1 is
necessary for exploding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linalg import eigenvalues, singular_values

# Relative slack for the bound check: both sides are computed in float64 over T products.
BOUND_RTOL = 1e-9


@dataclass
class Spectrum:
    """Eigenvalues and singular values of a square matrix.

    eigenvalues : (H,) complex, sorted by modulus, largest first.
    singular_values : (H,) descending.
    """

    spectral_radius: float
    max_singular_value: float
    min_singular_value: float
    condition_number: float
    eigenvalues: np.ndarray
    singular_values: np.ndarray


def spectrum(matrix: np.ndarray) -> Spectrum:
    """Eigen- and singular values of a square matrix (H, H); each matrix is decomposed once
    (linalg.py keeps the last few results; ``linalg.clear_cache`` forgets them). In float64
    whatever the run's dtype: a float32 orthogonal Wa has sigma_max 1 to float32's rounding, which
    the bound (gamma sigma_max)^(T-k) would raise to the power T."""
    matrix = np.asarray(matrix, dtype=np.float64)
    with np.errstate(all="ignore"):
        finite = bool(np.all(np.isfinite(matrix)))
        if not finite:
            nan = np.full(matrix.shape[0], np.nan)
            return Spectrum(np.nan, np.nan, np.nan, np.nan, nan.astype(complex), nan)
        eig = eigenvalues(matrix).astype(np.complex128)  # always [re, im] pairs in the JSON
        eig = eig[np.lexsort((-eig.imag, -eig.real, -np.abs(eig)))]  # by modulus, ties stable
        sv = singular_values(matrix).copy()
        smin = float(sv[-1])
        cond = float(sv[0] / smin) if smin > 0 else float("inf")
        return Spectrum(float(np.abs(eig[0])), float(sv[0]), smin, cond, eig, sv)


@dataclass
class PascanuCheck:
    """Pascanu et al.'s conditions for one run.

    gamma : bound on |f'| (1 for tanh, relu, linear; 1/4 for sigmoid).
    gamma_sigma_max : gamma * sigma_max(Wa), the worst-case gain per step.
    vanishing_guaranteed : gamma sigma_max < 1, sufficient for vanishing.
    exploding_possible : gamma sigma_max > 1, necessary for exploding.
    bound : (T,) (gamma sigma_max)^(T-k) for k = 1..T.
    measured : (T,) ||delta_k|| / ||delta_T||.
    bound_holds : measured <= bound at every step (as the theorem says it must).
    """

    gamma: float
    gamma_sigma_max: float
    vanishing_guaranteed: bool
    exploding_possible: bool
    bound: np.ndarray
    measured: np.ndarray
    bound_holds: bool


def pascanu_check(gamma: float, sigma_max: float, grad_norms: np.ndarray,
                  log_norms: np.ndarray | None = None, slack_per_step: float = 0.0) -> PascanuCheck:
    """Compare the measured ratios ||delta_k|| / ||delta_T|| with the bound (gamma sigma_max)^(T-k).

    The comparison is made in logarithms, ln n_k - ln n_T <= (T - k) ln(gamma sigma_max), from
    ``log_norms`` where given, so it holds or fails at any depth, not only where float64 reaches.
    Relative slack BOUND_RTOL per unit of the log bound: both sides are sums over T - k steps.
    slack_per_step : the measured side's own rounding in ln per step back, (T - k) times over
    (precision.LOG_NORM_ERROR_PER_STEP for a float32 run; 0 for float64).
    """
    steps = grad_norms.shape[0]
    c = gamma * sigma_max
    back = np.arange(steps - 1, -1, -1, dtype=np.float64)
    with np.errstate(all="ignore"):
        logs = np.log(grad_norms) if log_norms is None else np.asarray(log_norms, dtype=np.float64)
        log_measured = logs - logs[-1]
        log_bound = np.where(back > 0, back * np.log(c), 0.0)
        bound, measured = np.exp(log_bound), np.exp(log_measured)
        comparable = ~np.isnan(log_measured) & (log_measured != np.inf) & ~np.isnan(log_bound)
        slack = BOUND_RTOL * (1.0 + np.abs(np.where(np.isfinite(log_bound), log_bound, 0.0))) + back * slack_per_step
        holds = bool(np.all(log_measured[comparable] <= log_bound[comparable] + slack[comparable]))
    return PascanuCheck(gamma, c, bool(c < 1), bool(c > 1), bound, measured, holds)
