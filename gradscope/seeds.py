"""Repeating a run over seeds (``--seeds N``), so that one lucky seed decides nothing.

Seeds are ``seed, seed + 1, ..., seed + N - 1``: each gives its own weights, batches and held-out
batch (experiment.rngs, train.data_streams). A figure over the seeds is a ``Spread``: every value,
and their mean, standard deviation (population, ddof 0), minimum and maximum. A diverged run's loss
is NaN: its seed is counted in ``diverged`` and the statistics are over the seeds that did not
diverge (all None when none is left), so a spread never silently mixes NaN into a mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass
class Spread:
    """One figure over the seeds: values (one per seed, NaN where it diverged), and the mean, std,
    min and max of the finite ones (None when no value is finite)."""

    values: list[float]
    mean: float | None
    std: float | None
    min: float | None
    max: float | None

    @classmethod
    def of(cls, values: list[float]) -> "Spread":
        finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
        if finite.size == 0:
            return cls(list(values), None, None, None, None)
        return cls(list(values), float(finite.mean()), float(finite.std()), float(finite.min()),
                   float(finite.max()))


@dataclass
class SeedSummary:
    """A run repeated over seeds.

    seeds : the seeds, in order; diverged : how many of them diverged.
    final_loss, loss_ratio : held-out loss after training, and over the trivial baseline.
    accuracy : held-out accuracy, None for regression.
    """

    seeds: list[int]
    diverged: int
    final_loss: Spread
    loss_ratio: Spread
    accuracy: Spread | None


def seed_list(seed: int, count: int) -> list[int]:
    """seed, seed + 1, ..., seed + count - 1; ``count`` is --seeds, checked."""
    if isinstance(count, bool) or int(count) != count or count < 1:
        raise InputError(f"--seeds must be a whole number of at least 1 (got {count})")
    return [seed + i for i in range(int(count))]


def summarize(seeds: list[int], final_losses: list[float], baseline: float, diverged: list[bool],
              accuracies: list[float | None]) -> SeedSummary:
    """The SeedSummary of runs, one per seed (a diverged run's figures become NaN)."""
    losses = [math.nan if d else float(v) for v, d in zip(final_losses, diverged)]
    accuracy = None
    if any(a is not None for a in accuracies):
        accuracy = Spread.of([math.nan if d or a is None else float(a) for a, d in zip(accuracies, diverged)])
    return SeedSummary(
        seeds=list(seeds),
        diverged=int(sum(diverged)),
        final_loss=Spread.of(losses),
        loss_ratio=Spread.of([v / baseline for v in losses]),
        accuracy=accuracy,
    )


def summarize_runs(seeds: list[int], runs: list, baseline: float) -> SeedSummary:
    """``summarize`` of runs that carry ``final_loss``, ``diverged`` and ``accuracy`` (a train
    result, a compare row), one per seed."""
    return summarize(seeds, [r.final_loss for r in runs], baseline, [r.diverged for r in runs],
                     [r.accuracy for r in runs])
