"""``compare``: the same task, data and seed, trained without and with each mitigation.

For each run (the unmitigated one, named "none", first) it measures the gradient flow of every
layer and direction at the start (on the very batch ``gradscope analyze`` would use, with
analyze's numbers: profile.layer_flows), trains with ``train_setup`` (the same training batches
and held-out batch for every run: commands/train.py), measures the flow again after training, and
keeps one row of numbers. The best run is the one with the lowest held-out loss among those that
did not diverge.

A model of the user's own (--weights) is trained in its own architecture (embedding, layers,
directions, head, readout, padding): from PyTorch's initialisation of it (``start`` "init", the
default) or from the saved weights ("trained"), each cure changing what it sets
(``mitigations.treat``: a cell swap, an init of W_hh, gate biases).

The runs are independent, so they run in parallel, one process each (``jobs``), or on a Dask
cluster (``scheduler``: cluster.py). Each worker builds its own model from the picklable (config,
options, name, strengths), so the numbers are the same bit for bit wherever they run. A cluster
lost mid-run leaves a partial result (``partial``: the runs that finished, and those that did not).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar

import numpy as np

from ..cluster import Partial
from ..config import RunConfig
from ..errors import Incomplete, InputError
from ..experiment import Setup, loaded_network
from ..flow import Flow
from ..mitigations import (
    STARTS, Mitigation, NoMitigation, Strengths, default_mitigations, parse_mitigations,
    run_mitigation,
)
from ..model.network import Network
from ..parallel import run_each_keeping
from ..profile import headline, layer_flows
from ..recording import RecordTo
from ..runtime import blas_threads_for
from ..seeds import SeedSummary, seed_list, summarize_runs
from ..serialize import HIDDEN
from .train import (
    StepRecord, TrainOptions, evaluated_on, given_strengths, file_config, layer_cells, load_note, minibatch_config,
    mitigated_setup, train_setup, training_arguments,
)

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
    best : the lowest final loss among the runs that did not diverge (over seeds: the lowest mean).
    mitigation_parts : each registered part's name and settings (train's), [] for "none".
    seeds : the run repeated over the seeds (seeds.SeedSummary); every other figure is the first
        seed's.
    layers : every layer and direction's flow at the start and after training (LayerChange),
        bottom first, forward before reverse; the top layer's forward start is ratio_first_last's.
    state_dict : the trained network as a PyTorch state dict under the model's keys, or a Keras
        model's weights store (for ``--save-best``), not in the JSON; or why there is none.
    cells : the trained network's ``train.layer_cells`` (what its weights must be loaded into), not in the JSON.
    """

    mitigation: str
    mitigation_parts: list[dict]
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
    seeds: SeedSummary | None = None
    best: bool = False
    layers: list["LayerChange"] = field(default_factory=list)
    state_dict: dict | str | None = field(default=None, metadata=HIDDEN, repr=False)
    cells: tuple[tuple[str, str], ...] = field(default=(), metadata=HIDDEN, repr=False)


@dataclass
class LayerChange:
    """One layer and direction's gradient flow at the start of training and after it, as
    analyze's ``layers`` measures it (flow.Flow: ratio, slope, verdict...)."""

    layer: int
    direction: str
    start: Flow
    end: Flow


@dataclass
class CompareResult:
    """What ``gradscope compare`` reports.

    config : the unmitigated run's settings, defaults resolved; each mitigation changes its own.
    training : the TrainOptions every run used; strengths : the mitigations' strengths.
    start : with --weights, what every run trained from: "init" (PyTorch's initialisation of the
    model's architecture) or "trained" (the saved weights); None for a model built from flags.
    baseline_loss : the task's trivial baseline; evaluated_on : what every run's held-out loss is
    measured on (TrainResult.evaluated_on); best : the best run's mitigation (None if all
    diverged, and None in a partial result); seeds : the seeds every run was repeated over
    (``--seeds``); runs : one CompareRun per mitigation, "none" first.
    partial : None when every run finished; when a Dask cluster was lost mid-run (cluster.Partial),
    what is missing: ``runs`` then holds each mitigation with at least one finished seed, its
    spread over those seeds (CompareRun.seeds says which).
    """

    command: ClassVar[str] = "compare"

    config: dict
    training: TrainOptions
    strengths: Strengths
    baseline_loss: float
    evaluated_on: str
    best: str | None
    seeds: list[int]
    runs: list[CompareRun]
    start: str | None = None
    partial: Partial | None = None

    def best_state_dict(self) -> dict:
        """The best run's trained network as a PyTorch state dict under the model's keys (for a
        cell swap, those of the swapped module): what ``--save-best`` writes."""
        return best_weights(self)


def _setup(config: RunConfig, mitigation: Mitigation, start: str = "init") -> Setup:
    setup = mitigated_setup(config, mitigation, start)
    setup.needs_head("compare")
    mitigation.check(setup.network)
    return setup


def checked_setup(config: RunConfig, name: str, strengths: Strengths, start: str = "init") -> Setup:
    """The setup of one run, its mitigation applied and checked (InputError if it cannot apply)."""
    return _setup(config, run_mitigation(name, strengths), start)


def changes_nothing(mitigation: Mitigation, setup: Setup, baseline: Setup) -> bool:
    """Whether a cure trains the very model the unmitigated run trains: it only sets the model (no
    clipping or penalty: no strength), and the model it builds has the same cells and the same
    arrays (--cell lstm and the lstm cure, --init orthogonal and the orthogonal one)."""
    if mitigation.settings:
        return False
    net, base = setup.network, baseline.network
    if layer_cells(net) != layer_cells(base):
        return False
    ours, theirs = net.parameters(), base.parameters()
    return ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)


def check_jobs(jobs: int) -> None:
    """--jobs: a whole number of at least 1."""
    if isinstance(jobs, bool) or int(jobs) != jobs or jobs < 1:
        raise InputError(f"--jobs must be a whole number of at least 1 (got {jobs})")


def run_one(config: RunConfig, options: TrainOptions, name: str, strengths: Strengths, start: str = "init",
            minibatch: int | None = None, record_to: RecordTo | None = None) -> CompareRun:
    """One mitigation's row; a top-level function of picklable arguments, so any process can run it."""
    mitigation = run_mitigation(name, strengths)
    return _row(config, options, name, mitigation, _setup(config, mitigation, start), minibatch, record_to)


def _flows(setup: Setup, net: Network) -> list:
    batch = setup.batch
    with blas_threads_for(len(batch.x), net.step_weights()):
        return layer_flows(net, batch.x, batch.y, batch.mask)


def _row(config: RunConfig, options: TrainOptions, name: str, mitigation: Mitigation, setup: Setup,
         minibatch: int | None = None, record_to: RecordTo | None = None) -> CompareRun:
    """Measure the flow at the start, train (recording to ``record_to``, named after the run),
    measure it again, and keep the numbers of one run."""
    before = _flows(setup, setup.network)
    k, d = headline(setup.network)
    flow = before[setup.network.layer_index(k, d)].flow
    trained = train_setup(setup, options, mitigation, seq_len=config.seq_len or setup.task.default_seq_len,
                          minibatch=minibatch, record_to=record_to)
    after = _flows(setup, trained.network)
    resolved = setup.config
    return CompareRun(
        mitigation=name,
        mitigation_parts=trained.mitigation_parts,
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
        seeds=trained.seeds,
        layers=[LayerChange(a.layer, a.direction, a.flow, b.flow) for a, b in zip(before, after)],
        state_dict=_exported(setup, trained.network),
        cells=layer_cells(trained.network),
    )


def _mean_loss(run: CompareRun) -> float:
    """The final loss over the seeds: their mean, NaN if any seed diverged."""
    if run.seeds is None:
        return run.final_loss
    spread = run.seeds.final_loss
    return math.nan if run.seeds.diverged or spread.mean is None else spread.mean


def best_run(runs: list[CompareRun]) -> CompareRun | None:
    """The run with the lowest final loss (mean over the seeds) among those where no seed diverged
    or ended non-finite."""
    finished = [r for r in runs if not r.diverged and math.isfinite(_mean_loss(r))]
    return min(finished, key=_mean_loss, default=None)


def over_seeds(rows: list[CompareRun], seeds: list[int], baseline: float) -> CompareRun:
    """The first seed's row, with the spread of the final loss over every seed's row."""
    first = rows[0]
    first.seeds = summarize_runs(seeds, rows, baseline)
    return first


def _exported(setup: Setup, network: Network) -> dict | str:
    """The trained network under the model's keys, or why it has none: a Keras model's file has no
    place for the weights of another cell (a cell swap)."""
    try:
        return setup.layout.export(network)
    except InputError as exc:
        return str(exc)


def best_weights(result: CompareResult) -> dict:
    """The best run's trained network as a PyTorch state dict, under the model's keys, or a Keras
    model's weights store (``--save-best``)."""
    best = next((r for r in result.runs if r.best), None)
    if best is None:
        raise InputError("--save-best: every run diverged or ended with a loss that is not finite, so none is "
                         "best; nothing was written")
    if isinstance(best.state_dict, str):
        raise InputError(f"--save-best: the best run is {best.mitigation}, and {best.state_dict}; nothing was written")
    return best.state_dict


def best_load_note(result: CompareResult, keras: bool) -> str | None:
    """How to load what ``--save-best`` writes, where the best run's cure changed what the file does
    not record (its cell or activation; ``train.load_note``), against the unmitigated run's model."""
    best = next((r for r in result.runs if r.best), None)
    none = next((r for r in result.runs if r.mitigation == "none"), None)
    return None if best is None or none is None else load_note(none.cells, best.cells, keras)


def default_cures(config: RunConfig) -> list[str]:
    """What compare runs when no mitigations are named: every registered one that applies to the
    model's cell (the cells --weights holds, for a model of the user's own: to each of its layers').
    ``compare`` then leaves out those that would train the unmitigated model (``changes_nothing``)."""
    if config.weights is None:
        return default_mitigations(config.cell)
    network = loaded_network(config)[0]
    cells = list(dict.fromkeys(network.cell_of(k).name for k in range(network.num_layers)))
    return [n for n in default_mitigations(cells[0]) if all(n in default_mitigations(c) for c in cells[1:])]


def compare(
    config: RunConfig | None = None,
    options: TrainOptions = TrainOptions(),
    mitigations: list[str] | str | None = None,
    strengths: Strengths = Strengths(),
    jobs: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
    seeds: int = 1,
    start: str = "init",
    scheduler: str | None = None,
    record: str | os.PathLike | None = None,
    record_every: int = 10,
    **settings,
) -> CompareResult:
    """Train the unmitigated model and each mitigation side by side (by default every registered one
    that applies to the model's cell: ``default_cures``).

    ``gradscope.compare(weights=model.state_dict(), inputs=ids, targets=y, lengths=lengths, steps=200,
    mitigations=["clip-norm", "lstm+chrono"])`` (or the CLI's "clip-norm,lstm+chrono") takes RunConfig, TrainOptions and Strengths fields as
    keywords (``train.training_arguments``), or a RunConfig, TrainOptions and Strengths.

    jobs : runs at a time, each in a process of its own when more than 1 (every CPU:
        ``parallel.default_jobs()``). The processes are spawned, so a script that asks for them must guard its own
        code with ``if __name__ == "__main__":``, as multiprocessing requires.
    progress : ``progress(done, total, label)`` as each run finishes (in the order they finish); the
        label is the mitigation's name, with ", seed N" when there are several seeds.
    scheduler : a Dask scheduler's address: the runs go to its cluster instead (``jobs`` unused),
        with the same numbers. A lost scheduler, or a run lost with two workers, raises Incomplete
        (an InputError) whose ``result`` is the partial result, when any run finished.
    seeds : repeat every run on this many seeds (config.seed, config.seed + 1, ...); each row keeps
        its first seed's figures and the spread over all (CompareRun.seeds), and the best run is
        the one of lowest mean final loss among those where no seed diverged.
    start : with --weights, "init" (PyTorch's initialisation of the architecture) or "trained"
        (fine-tune the saved weights): what every run trains from (module docstring).
    record : an .ndjson file to write, every ``record_every`` steps of every run, the step's light
        record (recording.py) named after its run (the mitigation; "none, seed 1" for a later seed),
        one flushed line each, what ``gradscope history`` reads (``--run`` picks one). Written by
        this machine's processes: not with ``scheduler``.
    """
    if start not in STARTS:
        raise InputError(f"--start must be one of {', '.join(STARTS)} (got {start!r})")
    config, options, strengths = training_arguments("compare", config, options, strengths, settings)
    config, minibatch = minibatch_config(file_config(config))
    seed_values = seed_list(config.seed, seeds)
    if isinstance(mitigations, str):  # "clip-norm,orthogonal", as the CLI's flag takes them
        mitigations = parse_mitigations(mitigations) if mitigations.strip() else None
    names = [NoMitigation.name] + (default_cures(config) if mitigations is None else list(mitigations))
    if config.weights is None and start != "init":
        raise InputError(f"--start {start} fine-tunes the weights of --weights; without them every run starts "
                         "from its initialisation")
    check_jobs(jobs)
    options = options.resolved()
    # Fail fast, before any process starts: an unknown name, an unavailable cell, a conflict.
    chosen = {name: run_mitigation(name, strengths) for name in names}
    given_strengths(settings, list(chosen.values()))
    setups = {name: _setup(config, mitigation, start) for name, mitigation in chosen.items()}
    for name in names[1:]:
        if changes_nothing(chosen[name], setups[name], setups[NoMitigation.name]):
            if mitigations is not None:
                settings_ = ", ".join(f"{k} {v}" for k, v in chosen[name].overrides.items() if v is not None)
                raise InputError(f"mitigation {name} changes nothing here: the model has its settings "
                                 f"already ({settings_}); leave it out")
            names.remove(name)
            del chosen[name], setups[name]
    if record is not None and scheduler is not None:
        raise InputError("--record writes the records from this machine's processes; it cannot follow runs on "
                         "--scheduler's cluster (record a local run)")
    record_to = None if record is None else RecordTo(os.fspath(record), record_every, "compare").start()

    def recorded(name: str, seed: int) -> RecordTo | None:
        return None if record_to is None else record_to.named(name if seed == config.seed else f"{name}, seed {seed}")

    rows: dict[tuple[str, int], CompareRun] = {}
    pairs = [(name, seed) for name in names for seed in seed_values]
    label = (lambda i: pairs[i][0]) if len(seed_values) == 1 else (lambda i: "{}, seed {}".format(*pairs[i]))
    partial = None
    if scheduler is None and (jobs == 1 or len(pairs) == 1):  # in this process, on the setups just built
        for i, (name, seed) in enumerate(pairs):
            if seed == config.seed:
                rows[name, seed] = _row(config, options, name, chosen[name], setups[name], minibatch,
                                        recorded(name, seed))
            else:
                rows[name, seed] = run_one(replace(config, seed=seed), options, name, strengths, start, minibatch,
                                           recorded(name, seed))
            if progress is not None:
                progress(len(rows), len(pairs), label(i))
    else:  # each worker builds its own setup from the picklable arguments
        calls = [(replace(config, seed=seed), options, name, strengths, start, minibatch, recorded(name, seed))
                 for name, seed in pairs]
        done, partial = run_each_keeping(
            run_one, calls, lambda i: {"mitigation": pairs[i][0], "seed": pairs[i][1]}, jobs=jobs,
            scheduler=scheduler, cost=lambda i: len(setups[pairs[i][0]].network.cell.gates), progress=progress,
            label=label)
        rows.update({pairs[i]: row for i, row in done.items()})
    baseline = setups[NoMitigation.name]
    runs = []
    for n in names:
        ran = [seed for seed in seed_values if (n, seed) in rows]
        if ran:
            runs.append(over_seeds([rows[n, seed] for seed in ran], ran, baseline.baseline_loss))
    best = best_run(runs) if partial is None else None  # runs over different seeds do not compare
    if best is not None:
        best.best = True
    resolved = baseline.config.as_dict()
    if minibatch is not None:
        resolved["batch_size"] = minibatch  # the sequences of each step, not the file's
    result = CompareResult(
        config=resolved,
        training=options,
        strengths=strengths,
        baseline_loss=baseline.baseline_loss,
        evaluated_on=evaluated_on(baseline),
        best=best.mitigation if best is not None else None,
        seeds=seed_values,
        runs=runs,
        start=None if config.weights is None else start,
        partial=partial,
    )
    if partial is not None:
        raise Incomplete(partial.error, result)
    return result
