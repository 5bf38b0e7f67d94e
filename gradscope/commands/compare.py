"""``compare``: the same task, data and seed, trained without and with each mitigation.

For each run (the unmitigated one, named "none", first) it measures the gradient flow at
initialisation with ``analyze_setup`` (on the very batch ``gradscope analyze`` would use), trains
with ``train_setup`` (the same training batches and held-out batch for every run: commands/train.py),
and keeps one row of numbers. The best run is the one with the lowest held-out loss among those
that did not diverge.

The runs are independent, so they run in parallel, one process each (``jobs``). Each worker
builds its own model from the picklable (config, options, name, strengths), so the numbers are
the same bit for bit whatever ``jobs`` is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

from .analyze import analyze_setup
from ..config import RunConfig
from ..errors import InputError
from ..experiment import Setup, build
from ..mitigations import MITIGATIONS, Mitigation, NoMitigation, Strengths, make_mitigation
from ..parallel import in_processes
from .train import TRAIN_DEFAULTS, StepRecord, TrainOptions, evaluated_on, file_config, train_setup

@dataclass
class CompareRun:
    """One row of the comparison.

    mitigation : its name ("none" for the unmitigated run); cell, activation, init : of its model.
    ratio_first_last, rate_per_step, regime : the gradient flow at initialisation (analyze's flow).
    initial_loss, final_loss : held-out loss before and after training; loss_ratio : final_loss over
        the task's trivial baseline (below 1: the model learned something); accuracy : or None.
    max_grad_norm, clip_events, diverged, status, steps : from training (training.TrainResult).
    spectral_radius_before, spectral_radius_after : of the recurrent matrix.
    history : the logged steps of its training (training.StepRecord).
    best : the lowest final loss among the runs that did not diverge.
    """

    mitigation: str
    cell: str
    activation: str
    init: str | None
    ratio_first_last: float
    rate_per_step: float | None
    regime: str
    initial_loss: float
    final_loss: float
    loss_ratio: float
    accuracy: float | None
    max_grad_norm: float
    clip_events: int
    diverged: bool
    status: str
    steps: int
    spectral_radius_before: float
    spectral_radius_after: float
    history: list[StepRecord]
    best: bool = False


@dataclass
class CompareResult:
    """What ``gradscope compare`` reports.

    config : the unmitigated run's settings, defaults resolved; each mitigation changes its own.
    training : the TrainOptions every run used; strengths : the mitigations' strengths.
    baseline_loss : the task's trivial baseline; evaluated_on : what every run's held-out loss is
    measured on (TrainResult.evaluated_on); best : the best run's mitigation (None if all
    diverged); runs : one CompareRun per mitigation, "none" first.
    """

    command: ClassVar[str] = "compare"

    config: dict
    training: TrainOptions
    strengths: Strengths
    baseline_loss: float
    evaluated_on: str
    best: str | None
    runs: list[CompareRun]


def _mitigation(name: str, strengths: Strengths) -> Mitigation:
    return NoMitigation(strengths) if name == NoMitigation.name else make_mitigation(name, strengths)


def _setup(config: RunConfig, mitigation: Mitigation) -> Setup:
    setup = build(mitigation.configure(config))
    mitigation.check(setup.model)
    return setup


def run_one(config: RunConfig, options: TrainOptions, name: str, strengths: Strengths) -> CompareRun:
    """One mitigation's row; a top-level function of picklable arguments, so any process can run it."""
    mitigation = _mitigation(name, strengths)
    return _row(config, options, name, mitigation, _setup(config, mitigation))


def _row(config: RunConfig, options: TrainOptions, name: str, mitigation: Mitigation, setup: Setup) -> CompareRun:
    """Measure the flow at initialisation, train, and keep the numbers of one run."""
    flow = analyze_setup(setup).flow
    trained = train_setup(setup, options, mitigation, seq_len=config.seq_len or setup.task.default_seq_len)
    resolved = setup.config
    return CompareRun(
        mitigation=name,
        cell=resolved.cell,
        activation=resolved.activation,
        init=resolved.init,
        ratio_first_last=flow.ratio_first_last,
        rate_per_step=flow.rate_per_step,
        regime=flow.regime,
        initial_loss=trained.initial_loss,
        final_loss=trained.final_loss,
        loss_ratio=trained.final_loss / trained.baseline_loss,
        accuracy=trained.accuracy,
        max_grad_norm=trained.max_grad_norm,
        clip_events=trained.clip_events,
        diverged=trained.diverged,
        status=trained.status,
        steps=trained.steps,
        spectral_radius_before=trained.spectral_radius_before,
        spectral_radius_after=trained.spectral_radius_after,
        history=trained.history,
    )


def best_run(runs: list[CompareRun]) -> CompareRun | None:
    """The run with the lowest final loss among those that neither diverged nor ended non-finite."""
    finished = [r for r in runs if not r.diverged and math.isfinite(r.final_loss)]
    return min(finished, key=lambda r: r.final_loss, default=None)


def compare(
    config: RunConfig | None = None,
    options: TrainOptions = TrainOptions(),
    mitigations: list[str] | None = None,
    strengths: Strengths = Strengths(),
    jobs: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
) -> CompareResult:
    """Train the unmitigated model and each mitigation (all registered ones by default) side by side.

    jobs : runs at a time, each in a process of its own when more than 1 (every CPU:
        ``parallel.default_jobs()``). The processes are spawned, so a script that asks for them must guard its own
        code with ``if __name__ == "__main__":``, as multiprocessing requires.
    progress : ``progress(done, total, name)`` as each run finishes (in the order they finish).
    """
    config = file_config(config or RunConfig(**TRAIN_DEFAULTS))
    names = [NoMitigation.name] + list(MITIGATIONS if mitigations is None else mitigations)
    if isinstance(jobs, bool) or int(jobs) != jobs or jobs < 1:
        raise InputError(f"--jobs must be a whole number of at least 1 (got {jobs})")
    options = options.resolved()
    # Fail fast, before any process starts: an unknown name, an unavailable cell, a conflict.
    chosen = {name: _mitigation(name, strengths) for name in names}
    setups = {name: _setup(config, mitigation) for name, mitigation in chosen.items()}

    rows: dict[str, CompareRun] = {}
    if jobs == 1 or len(names) == 1:  # in this process, on the setups just built
        for name in names:
            rows[name] = _row(config, options, name, chosen[name], setups[name])
            if progress is not None:
                progress(len(rows), len(names), name)
    else:
        # The gated cells take several times longer per step: start them first, so no core idles
        # at the end. Each worker builds its own setup from the picklable arguments.
        by_cost = sorted(names, key=lambda n: -len(setups[n].model.cell.gates))
        calls = [(config, options, name, strengths) for name in by_cost]
        for i, row in in_processes(run_one, calls, min(jobs, len(names))):
            rows[by_cost[i]] = row
            if progress is not None:
                progress(len(rows), len(names), by_cost[i])
    runs = [rows[n] for n in names]
    best = best_run(runs)
    if best is not None:
        best.best = True
    baseline = setups[NoMitigation.name]
    return CompareResult(
        config=baseline.config.as_dict(),
        training=options,
        strengths=strengths,
        baseline_loss=baseline.baseline_loss,
        evaluated_on=evaluated_on(baseline),
        best=best.mitigation if best is not None else None,
        runs=runs,
    )
