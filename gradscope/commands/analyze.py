"""``analyze``: one exact BPTT pass and everything it says about the gradient flow.

Returns an ``AnalyzeResult``: the object the table renders and ``--json`` prints (serialize.py),
and what ``gradscope.analyze(...)`` returns to Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..model.activations import get_activation
from ..bptt import Gradients, Trajectory, bptt, last_step_backward
from ..config import RunConfig
from ..dynamics import Lyapunov, lyapunov
from ..experiment import Setup, build
from ..flow import EXPLODING_RATIO, VANISHING_RATIO, Flow, flow
from ..model.single import Model
from ..serialize import HIDDEN
from ..spectrum import PascanuCheck, Spectrum, pascanu_check, spectrum


@dataclass
class Thresholds:
    """The end-to-end ratios n_1 / n_T at which the verdict changes (flow.py)."""

    vanishing_ratio: float = VANISHING_RATIO
    exploding_ratio: float = EXPLODING_RATIO


@dataclass
class AnalyzeResult:
    """What ``gradscope analyze`` reports.

    config : every setting, defaults resolved (RunConfig fields).
    data : where the batch came from, in words (the task, or the texts and their split).
    loss : batch-mean loss; baseline_loss : the task's trivial baseline for comparison.
    grad_norms : (T,) ||dL/da_t||_F over batch and hidden units, t = 1..T; for a readout at every
        step, of the part that flows back from the readout at T (bptt.last_step_backward).
    ratios : (T,) grad_norms / grad_norms[T].
    contributions : (T,) ||dv_t^T a_{t-1}||_F, step t's summand of dL/dWa.
    cell_grad_norms : (T,) ||dL/dc_t|| for the LSTM, else None.
    spectrum : of Wa for the vanilla RNN; for gated cells of the mean step Jacobian (``spectrum_of``).
    spectrum_of : "recurrent_weight" (Wa) or "mean_step_jacobian" (``recurrent_spectra``).
    gate_spectra : gate name -> spectrum of that gate's (H, H) block of W_hh; None for the RNN.
    pascanu : Pascanu et al.'s bound against the measured ratios.
    flow : slope, rate, horizon and the verdict; regime repeats flow.regime.
    lyapunov : the leading Lyapunov exponent lambda_1 of the forward run and its horizon -1/lambda_1
        (dynamics.py): the rate the slope tends to on a long run, from the step Jacobians alone.
    """

    command: ClassVar[str] = "analyze"

    config: dict
    data: str
    parameter_count: int
    loss: float
    baseline_loss: float
    grad_norms: np.ndarray
    ratios: np.ndarray
    contributions: np.ndarray
    cell_grad_norms: np.ndarray | None
    spectrum: Spectrum
    spectrum_of: str
    gate_spectra: dict[str, Spectrum] | None
    pascanu: PascanuCheck | None
    flow: Flow
    lyapunov: Lyapunov
    regime: str
    thresholds: Thresholds
    setup: Setup = field(metadata=HIDDEN, repr=False)
    gradients: Gradients = field(metadata=HIDDEN, repr=False)


def step_norms(d: np.ndarray) -> np.ndarray:
    """(T, B, H) -> (T,) Frobenius norm of each step's (B, H) slice.

    Squares of vanishing gradients underflow (1e-170^2 = 0) and of exploding ones overflow, so the
    steps where the plain sum of squares leaves the safe range are recomputed scaled by their
    largest entry; a step holding inf (and no nan) has norm inf, one holding nan has norm nan.
    """
    with np.errstate(all="ignore"):
        sq = np.einsum("tbh,tbh->t", d, d)
        norms = np.sqrt(sq)
        unsafe = np.flatnonzero(~((sq > 1e-280) & (sq < 1e280)))
        if unsafe.size:
            rows = d[unsafe].reshape(unsafe.size, -1)
            scale = np.max(np.abs(rows), axis=1)
            ok = (scale > 0) & np.isfinite(scale)
            safe = np.where(ok, scale, 1.0)[:, None]
            scaled = safe[:, 0] * np.sqrt(np.einsum("ij,ij->i", rows / safe, rows / safe))
            norms[unsafe] = np.where(ok, scaled, np.where(np.isnan(rows).any(axis=1), np.nan, norms[unsafe]))
        return norms


def flowing_gradients(model: Model, traj: Trajectory, grads: Gradients, y: np.ndarray) -> Gradients:
    """The gradients whose norms measure the flow: ``grads`` itself, or for a readout at every
    step what flows back from the readout at T alone (bptt.last_step_backward), since each step's
    own loss term would mask how far back the gradient reaches."""
    return last_step_backward(model, traj, y) if model.readout == "every" else grads


def end_to_end_ratio(model: Model, traj: Trajectory, grads: Gradients, y: np.ndarray) -> float:
    """||dL/da_1|| / ||dL/da_T|| of the flowing gradient, from those two steps alone."""
    first, last = step_norms(flowing_gradients(model, traj, grads, y).dL_da[[0, -1]])
    with np.errstate(all="ignore"):
        return float(first / last)


def recurrent_spectra(model: Model, caches: list) -> tuple[Spectrum, str, dict[str, Spectrum] | None]:
    """The spectrum ``analyze`` reports, what it is of, and the spectra of the gate blocks.

    The vanilla RNN: Wa itself, and no gates. A gated cell has no single recurrent matrix: the
    spectrum of its step Jacobian d state_t / d state_{t-1} averaged over the steps and the batch of
    the run ((H, H) for the GRU; (2H, 2H) over the flattened (h, c) for the LSTM, whose gradient
    flows through both), and of each gate's (H, H) block of W_hh.
    """
    cell = model.cell
    if len(cell.gates) == 1:
        return spectrum(model.recurrent_weight), "recurrent_weight", None
    with np.errstate(all="ignore"):
        mean_jacobian = cell.mean_step_jacobian(model.params, caches)
    gates = {name: spectrum(block) for name, block in cell.gate_blocks(model.params).items()}
    return spectrum(mean_jacobian), "mean_step_jacobian", gates


def analyze_setup(setup: Setup) -> AnalyzeResult:
    """Run BPTT on a built setup and measure the flow."""
    model, batch = setup.model, setup.batch
    traj, grads = bptt(model, batch.x, batch.y)
    flowing = flowing_gradients(model, traj, grads, batch.y)
    norms = step_norms(flowing.dL_da)
    with np.errstate(all="ignore"):
        ratios = norms / norms[-1]
        contributions = flowing.contribution_norms()
    cell_norms = step_norms(flowing.dL_dc) if flowing.dL_dc is not None else None
    spec, spectrum_of, gate_spectra = recurrent_spectra(model, traj.caches)
    pascanu = None
    if spectrum_of == "recurrent_weight":  # Pascanu's sigma bound is for a_t = f(Wa a_{t-1} + ...)
        gamma = get_activation(model.cell.activation).gamma
        pascanu = pascanu_check(gamma, spec.max_singular_value, norms)
    summary = flow(norms)
    return AnalyzeResult(
        config=setup.config.as_dict(),
        data=setup.task.describe(),
        parameter_count=int(sum(p.size for p in model.params.values())),
        loss=grads.loss,
        baseline_loss=setup.baseline_loss,
        grad_norms=norms,
        ratios=ratios,
        contributions=contributions,
        cell_grad_norms=cell_norms,
        spectrum=spec,
        spectrum_of=spectrum_of,
        gate_spectra=gate_spectra,
        pascanu=pascanu,
        flow=summary,
        lyapunov=lyapunov(model, traj),
        regime=summary.regime,
        thresholds=Thresholds(),
        setup=setup,
        gradients=grads,
    )


def analyze(config: RunConfig | None = None, **settings) -> AnalyzeResult:
    """Build the model and batch a config describes and analyse one BPTT pass.

    ``gradscope.analyze(seq_len=200, activation="relu")`` takes the RunConfig fields as keywords.
    """
    config = config or RunConfig(**settings)
    return analyze_setup(build(config))
