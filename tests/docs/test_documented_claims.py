"""The claims the docs make in words about the compare examples, checked against fresh runs.

The example outputs themselves are produced by ``scripts/examples.py`` from actual runs; these
tests pin what the prose says about them (which run diverges, which learns, which does not), so a
change that breaks a claim fails here instead of leaving the docs wrong.
"""

from __future__ import annotations

from gradscope import RunConfig, compare
from gradscope.commands.train import TRAIN_DEFAULTS, TrainOptions


def runs_by_name(result) -> dict:
    return {run.mitigation: run for run in result.runs}


def test_the_exploding_example_clipping_keeps_the_run_finite():
    """docs/compare.md: relu at spectral radius 3 with plain SGD: the unmitigated run diverges at step 2;
    clip-norm and clip-value stay finite, and clip-norm is the best run."""
    config = RunConfig(**TRAIN_DEFAULTS, activation="relu", spectral_radius=3.0)
    result = compare(config, TrainOptions(optimizer="sgd"), mitigations=["clip-norm", "clip-value"])
    runs = runs_by_name(result)
    assert runs["none"].diverged and runs["none"].status == "diverged at step 2"
    assert not runs["clip-norm"].diverged and not runs["clip-value"].diverged
    assert runs["clip-norm"].clip_events > 0 and runs["clip-value"].clip_events > runs["clip-norm"].clip_events
    assert result.best == "clip-norm"
    assert runs["none"].ratio_first_last > 1e10  # the gradient explodes at initialisation


def test_the_default_comparison_gated_cells_learn_and_the_rest_do_not():
    """docs/compare.md: at T = 50 the tanh RNN ends at the trivial baseline; neither clipping, weight decay,
    Omega nor an orthogonal or identity init changes that within 1000 steps; the GRU and the LSTM
    go to under 1% of it, and the GRU is the best run."""
    result = compare(jobs=2)
    runs = runs_by_name(result)
    assert runs["none"].loss_ratio > 0.9
    for name in ("clip-norm", "clip-value", "l2", "omega", "orthogonal", "identity-relu"):
        assert runs[name].loss_ratio > 0.9, name
    assert runs["gru"].loss_ratio < 0.01 and runs["lstm"].loss_ratio < 0.01
    assert result.best in ("gru", "lstm")
    assert 0.8 < runs["none"].rate_per_step < 0.9  # "fades by a factor 0.86 per step back"
