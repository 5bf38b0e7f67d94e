"""``train``: fit a model to a task with exact BPTT, an optimizer and optionally one mitigation.

Every step draws a fresh batch from the task and logs, at the logged steps, what the gradient did:

    loss                the task loss on the step's batch (before the update)
    penalty             the mitigation's regulariser omega * Omega or lambda/2 ||W_hh||^2 (0 if none)
    grad_norm           ||g||, the global norm of the UNCLIPPED gradient of loss + penalty
    clipped_grad_norm   the norm of the update direction after clipping (= grad_norm if none fired)
    clipped             whether clipping fired at that step
    spectral_radius     rho(Wa) before the update; for gated cells the largest rho of W_hh's gate
                        blocks (each (H, H)), since the stacked (G*H, H) matrix has no eigenvalues
    ratio_first_last    ||dL/da_1|| / ||dL/da_T|| on the step's batch: how much reaches step 1
                        (for a readout at every step, of what flows back from T, as analyze does)

Data: two streams of their own, spawned from ``--seed`` beside the weights and the analysis batch
(experiment.rngs), so every mitigation in a comparison trains on the very same batches and is
evaluated on the very same held-out batch (``eval_size`` fresh sequences, or the task's own
held-out set where it has one: the text task's validation texts). With ``--inputs`` the file is
the data: T, B and D are the file's, and a fixed 20% of its sequences (at least one, drawn from a
stream of the seed's own) is held out for the evaluation while the rest is the batch of every step
(full-batch training); a file of fewer than MIN_SEQUENCES_TO_HOLD_OUT sequences is trained on
whole and evaluated on itself. ``TrainResult.evaluated_on`` says which of these the losses are on.

A run whose loss or gradient becomes NaN or infinite, or whose update overflows the weights, stops
at that step with status ``diverged at step N``; nothing is raised and numpy prints no warnings.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field, fields, replace
from typing import Callable, ClassVar, Iterator

import numpy as np

from ..bptt.network import accuracy_of, bptt, forward, loss_of
from ..cluster import Partial
from ..config import RunConfig
from ..io.arrays import array_shape
from ..errors import Incomplete, InputError
from ..experiment import Setup, build, check_memory, rngs, sample
from ..model.cells import CELLS
from ..model.initializers import spectral_radius
from ..mitigations import (
    MITIGATIONS, Mitigation, NoMitigation, Strengths, check_used, global_norm, make_mitigation,
    run_mitigation, treat,
)
from ..model.network import Network
from ..optimizers import make_optimizer
from ..parallel import run_each_keeping
from ..profile import LayerFlow, end_to_end_ratio, flowing, step_flows
from ..recording import RecordFile, RecordTo, flow_report, pass_record
from ..runtime import blas_threads_for
from ..seeds import SeedSummary, seed_list, summarize, summarize_runs
from ..serialize import HIDDEN
from ..model.statedict import Layout
from ..tasks import Batch, make_task
from .defaults import TRAIN_DEFAULTS, TrainOptions

STATUS_COMPLETED = "completed"

# The keyword arguments of train and compare that set a mitigation's strength (Strengths' fields).
STRENGTH_FIELDS = frozenset(f.name for f in fields(Strengths))

# What the held-out loss is measured on (TrainResult.evaluated_on).
HELD_OUT_BATCH = "held-out batch"
VALIDATION_TEXTS = "validation texts"
HELD_OUT_SEQUENCES = "held-out sequences"
TRAINING_BATCH = "the training batch (too few sequences to hold any out)"
HELD_OUT_FRACTION = 0.2
MIN_SEQUENCES_TO_HOLD_OUT = 10


@dataclass
class StepRecord:
    """One logged step (see the module docstring)."""

    step: int
    loss: float
    penalty: float
    grad_norm: float
    clipped_grad_norm: float
    clipped: bool
    spectral_radius: float
    ratio_first_last: float


@dataclass
class TrainResult:
    """What ``gradscope train`` reports.

    config : the model and data settings, defaults resolved, after the mitigation changed them.
    mitigation : its name, or "none" (a composite's parts joined by "+": identity-relu+clip-norm);
    mitigation_settings : the strengths it used, by name; mitigation_parts : each registered part's
        name and settings (its strength and the model settings it sets).
    training : the TrainOptions, learning rate resolved.
    status : "completed" or "diverged at step N"; diverged, diverged_at : the same as data.
    steps : steps run (the diverging one included).
    initial_loss, final_loss : held-out loss before and after training; baseline_loss : the task's
        trivial baseline; accuracy : held-out accuracy after training, None for regression;
        baseline_accuracy : the majority class's, where the task states one.
    evaluated_on : what those losses and the accuracy are measured on: HELD_OUT_BATCH,
        VALIDATION_TEXTS, HELD_OUT_SEQUENCES (of --inputs) or TRAINING_BATCH (see ``held_out``).
    max_grad_norm : the largest unclipped gradient norm over all steps (logged or not).
    clip_events : at how many steps clipping fired.
    spectral_radius_before, spectral_radius_after : of the recurrent matrix (see StepRecord).
    history : the logged steps.
    seeds : the run repeated over ``--seeds`` seeds (this report's seed first): the spread of the
        final loss, of its ratio to the baseline and of the accuracy (seeds.SeedSummary).
    partial : None when every seed's run finished; when a Dask cluster was lost mid-run
        (cluster.Partial), what is missing: the report is then the first seed that finished, and
        ``seeds`` spreads over the seeds that did.
    """

    command: ClassVar[str] = "train"

    config: dict
    mitigation: str
    mitigation_settings: dict
    mitigation_parts: list[dict]
    training: TrainOptions
    parameter_count: int
    status: str
    diverged: bool
    diverged_at: int | None
    steps: int
    initial_loss: float
    final_loss: float
    baseline_loss: float
    accuracy: float | None
    baseline_accuracy: float | None
    evaluated_on: str
    max_grad_norm: float
    clip_events: int
    spectral_radius_before: float
    spectral_radius_after: float
    history: list[StepRecord]
    seeds: SeedSummary
    network: Network = field(metadata=HIDDEN, repr=False)
    layout: Layout = field(metadata=HIDDEN, repr=False)
    partial: Partial | None = None

    def state_dict(self) -> dict[str, np.ndarray]:
        """The trained network under the model's own keys: a PyTorch state dict (numpy arrays) that
        ``load_state_dict(strict=True)`` takes, or a Keras model's weights by Keras' names; what
        ``--save-weights`` writes."""
        return self.layout.export(self.network)


Progress = Callable[[int, int, "StepRecord | None"], None]


def recurrent_radius(net: Network) -> float:
    """rho(Wa), or for gated cells the largest spectral radius among W_hh's (H, H) gate blocks; the
    largest over every layer and direction."""
    blocks = [b for k, d in net.each_layer() for b in net.layer(k, d).gate_blocks().values()]
    if not all(np.all(np.isfinite(b)) for b in blocks):
        return math.nan
    return max(spectral_radius(b) for b in blocks)


def data_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(training batches, held-out batch): children 2 and 3 of the seed; 0 and 1 are experiment.rngs'."""
    children = np.random.SeedSequence(seed).spawn(4)
    return np.random.default_rng(children[2]), np.random.default_rng(children[3])


def file_config(config: RunConfig) -> RunConfig:
    """With --inputs and no --weights, D is the file's (T and B are always the file's: ``build``).

    The file is the data, so the input size comes from it as the sequence length and the batch size
    do; an explicit --input-size that contradicts it is an error naming the flag. A task that fixes
    D keeps it, and ``build`` reports a file that disagrees; with --weights, D is the weights'.
    """
    if config.inputs is None or config.weights is not None:
        return config
    shape = array_shape(config.inputs)
    if shape is None or len(shape) != 3:
        return config  # build reports what is wrong with the file
    d = int(shape[2])
    if config.input_size is not None:
        if config.input_size != d:
            raise InputError(
                f"--input-size {config.input_size} disagrees with inputs file {config.inputs} ({d})"
            )
        return config
    try:
        make_task(config.task, config).resolve(d, config.output_size, config.loss)
    except InputError:
        return config  # the task fixes another D: build says the file disagrees with it
    return replace(config, input_size=d)


def mitigated_setup(config: RunConfig, mitigation: Mitigation, start: str = "trained") -> Setup:
    """The setup a mitigation trains. A model built from flags is built as the mitigation
    configures it; a network read from --weights is changed by it (``mitigations.treat``), from
    the saved weights (``start`` "trained") or from the initialisation of the same architecture
    ("init": PyTorch's, or Keras' for a Keras model), with the weights stream of the seed
    (experiment.rngs)."""
    setup = build(mitigation.configure(config))
    if config.weights is None:
        return setup
    t_max = config.chrono_max or setup.batch.x.shape[1]
    net = treat(setup.network, mitigation, start, rngs(config.seed)[0], t_max, setup.layout)
    overrides = mitigation.overrides
    resolved = replace(setup.config, cell=net.cell.name, activation=net.cell.activation,
                       init=overrides.get("init"), init_gain=overrides.get("init_gain") if "init" in overrides else None)
    return replace(setup, network=net, config=resolved)


def minibatch_config(config: RunConfig) -> tuple[RunConfig, int | None]:
    """With --inputs, --batch-size is the sequences of each training step (minibatches), not the
    file's B: (the config without it, the minibatch size or None for the whole training set)."""
    if config.inputs is None or config.batch_size is None:
        return config, None
    return replace(config, batch_size=None), config.batch_size


def split_inputs(setup: Setup) -> tuple[Batch, Batch | None]:
    """The --inputs batch as (training sequences, held-out sequences), the latter None when the file
    has fewer than MIN_SEQUENCES_TO_HOLD_OUT sequences: then every one of them is trained on.

    The held-out 20% (at least 1) is drawn from child 4 of the seed (0-1 are experiment.rngs', 2-3
    data_streams'), so it is the same for every run with this seed, whatever the model; the order
    of the sequences is kept.
    """
    batch = setup.batch
    b = batch.x.shape[0]
    if b < MIN_SEQUENCES_TO_HOLD_OUT:
        return batch, None
    rng = np.random.default_rng(np.random.SeedSequence(setup.config.seed).spawn(5)[4])
    out = np.zeros(b, dtype=bool)
    out[rng.choice(b, max(1, round(HELD_OUT_FRACTION * b)), replace=False)] = True
    mask = batch.mask  # (B, T) where the file's sequences are padded (--lengths), else None
    return (Batch(batch.x[~out], batch.y[~out], None if mask is None else mask[~out]),
            Batch(batch.x[out], batch.y[out], None if mask is None else mask[out]))


def batches(setup: Setup, rng: np.random.Generator, seq_len: int,
            split: tuple[Batch, Batch | None] | None = None, minibatch: int | None = None) -> Iterator[Batch]:
    """A fresh batch of the task per step; with --inputs the file's training sequences
    (``split``: ``split_inputs(setup)`` where the caller has it already): all of them at every
    step, or with ``minibatch`` (``--batch-size``) epochs of shuffled minibatches of that many, the
    last of an epoch smaller where they do not divide (as torch's DataLoader(shuffle=True))."""
    if setup.config.inputs is not None:
        training, _ = split or split_inputs(setup)
        count = len(training.x)
        if minibatch is None or minibatch >= count:
            while True:
                yield training
        while True:  # one epoch: a permutation drawn from the training stream
            order = rng.permutation(count)
            for start in range(0, count, minibatch):
                pick = order[start:start + minibatch]
                yield Batch(training.x[pick], training.y[pick], None if training.mask is None else training.mask[pick])
    while True:
        yield sample(setup, rng, setup.config.batch_size, seq_len)


def evaluate(net: Network, batches: list[Batch]) -> tuple[float, float | None]:
    """(loss, accuracy or None for regression) of the network over batches, weighted by their
    sizes; a readout at every step is scored at real steps only."""
    losses, accuracies, sizes = [], [], []
    with np.errstate(all="ignore"):
        for batch in batches:
            traj = forward(net, batch.x, batch.mask)
            y = np.asarray(batch.y, dtype=np.float64)
            losses.append(loss_of(net, traj, y))
            accuracies.append(accuracy_of(net, traj, y))
            sizes.append(batch.x.shape[0])
        loss = float(np.average(losses, weights=sizes))
    return loss, None if accuracies[0] is None else float(np.average(accuracies, weights=sizes))


def evaluated_on(setup: Setup) -> str:
    """What ``held_out`` evaluates on for this setup, in words (TrainResult.evaluated_on)."""
    if setup.config.inputs is not None:
        enough = setup.batch.x.shape[0] >= MIN_SEQUENCES_TO_HOLD_OUT
        return HELD_OUT_SEQUENCES if enough else TRAINING_BATCH
    # validation_batches is a generator: asking whether there is one reads no data
    return VALIDATION_TEXTS if setup.task.validation_batches(setup.shape) is not None else HELD_OUT_BATCH


def held_out(setup: Setup, rng: np.random.Generator, size: int, seq_len: int,
             split: tuple[Batch, Batch | None] | None = None) -> tuple[list[Batch], str]:
    """The evaluation data and what it is (``evaluated_on``): the --inputs file's held-out sequences
    (or, too few to spare any, its training batch), the task's own held-out set (the text task's
    validation texts), or ``size`` fresh sequences of the task."""
    source = evaluated_on(setup)
    if setup.config.inputs is not None:
        training, kept = split or split_inputs(setup)
        return [training if kept is None else kept], source
    if source == VALIDATION_TEXTS:
        return list(setup.task.validation_batches(setup.shape)), source
    # fresh sequences: refused before they are drawn when their forward pass cannot fit
    check_memory(setup.config, setup.task, setup.shape, setup.network, (size, seq_len), batch_flag="--eval-size")
    return [sample(setup, rng, size, seq_len)], source


def _finite(params: dict[str, np.ndarray]) -> bool:
    return all(bool(np.all(np.isfinite(p))) for p in params.values())


@dataclass
class StepOutcome:
    """One optimizer step (``train_step``): what it measured before the update, and the state after.

    grad_norm : ||g|| of the unclipped gradient of loss + penalty; clipped_grad_norm : of the update.
    finite : loss, penalty and gradient were finite (else no update was made); updated : the update
    was made and left every weight finite. radius : ``recurrent_radius`` before the update, and
    ratio : ||dL/dh_1|| / ||dL/dh_T|| of the step's pass as analyze measures it (profile.py), where
    asked for (``measure``) and always when the step is not finite, else None.
    flows : every layer and direction's flow of the step's pass (profile.step_flows), where asked
    for (``record``: a recorded step), else None.
    """

    loss: float
    penalty: float
    grad_norm: float
    clipped_grad_norm: float
    clipped: bool
    finite: bool
    updated: bool
    radius: float | None
    ratio: float | None
    opt_state: object
    flows: list[LayerFlow] | None = field(default=None, repr=False)


def train_step(net: Network, batch: Batch, mitigation: Mitigation, optimizer, opt_state,
               measure: bool = False, record: bool = False) -> StepOutcome:
    """One step of training, in place: BPTT on the batch, the mitigation's penalty and clipping,
    and the optimizer's update of every parameter (``Network.parameters``), as torch's

        loss = loss_fn(model(x), y) + penalty;  loss.backward();  clip_grad_*_(...);  opt.step()

    A step whose loss, penalty or gradient is not finite makes no update. measure : also measure
    the ratio (else only where the step is not finite, to log it). record : also measure every
    layer's flow (``flows``), before the update changes the weights the pass ran with."""
    radius = recurrent_radius(net) if measure else None  # eigenvalues of every gate block: only to log
    traj, grads = bptt(net, batch.x, batch.y, batch.mask)
    penalty, extra = mitigation.penalty(net, traj, grads)
    total = {k: g + extra[k] if k in extra else g for k, g in grads.parameters(net).items()}
    norm = global_norm(total)
    update, fired = mitigation.clip(total)
    finite = math.isfinite(grads.loss) and math.isfinite(penalty) and math.isfinite(norm)
    wanted = measure or not finite
    # a readout at every step flows back from its last step: one more backward pass, made once
    flowed = flowing(net, traj, grads, batch.y) if wanted or record else None
    ratio = end_to_end_ratio(net, traj, grads, batch.y, flowed) if wanted else None
    if radius is None and not finite:
        radius = recurrent_radius(net)  # no update is made: the weights are still the step's
    flows = step_flows(net, traj, grads, batch.y, flowed) if record else None
    updated = False
    if finite:
        params, opt_state = optimizer.step(net.parameters(), update, opt_state)
        updated = _finite(params)
        net.load_parameters(params)
    return StepOutcome(grads.loss, penalty, norm, global_norm(update) if fired else norm, fired, finite, updated,
                       radius, ratio, opt_state, flows)


def train_setup(
    setup: Setup,
    options: TrainOptions = TrainOptions(),
    mitigation: Mitigation | None = None,
    progress: Progress | None = None,
    seq_len: int | None = None,
    minibatch: int | None = None,
    record_to: RecordTo | None = None,
) -> TrainResult:
    """Train the setup's network (a copy: the setup is left as built); see the module docstring.

    seq_len : the length batches are drawn at, as ``--seq-len`` says (None: the setup's batch's).
        It differs from the setup's only for a task whose length varies by batch (temporal-order).
    minibatch : with --inputs, the sequences per step (``--batch-size``; None: all of them).
    progress : called after every step as ``progress(step, steps, record or None)``.
    record_to : write every ``record_to.every``-th step's light record (recording.py) to its file.
    """
    mitigation = mitigation or NoMitigation()
    setup.needs_head("train")
    net = setup.network.copy()
    mitigation.check(net)
    options = options.resolved()
    seq_len = seq_len or setup.config.seq_len
    optimizer = make_optimizer(options.optimizer, options.lr, options.momentum)
    opt_state = optimizer.init(net.parameters())
    train_rng, eval_rng = data_streams(setup.config.seed)
    split = split_inputs(setup) if setup.config.inputs is not None else None  # once for both uses
    evaluation, source = held_out(setup, eval_rng, options.eval_size, seq_len, split)
    # every step multiplies a batch by W_ih and W_hh: on one BLAS thread when that is small (runtime.py)
    step_weights = net.step_weights()
    held_out_rows = max(len(batch.x) for batch in evaluation)
    with blas_threads_for(held_out_rows, step_weights):  # the held-out set: its own size decides
        initial_loss, _ = evaluate(net, evaluation)
    radius_before = recurrent_radius(net)

    history: list[StepRecord] = []
    max_norm, clip_events, diverged_at, step = 0.0, 0, None, 0
    stream = batches(setup, train_rng, seq_len, split, minibatch)
    batch_rows = len(setup.batch.x) if minibatch is None else minibatch
    recording_file = contextlib.nullcontext() if record_to is None else RecordFile(record_to.path, "a")
    # overflow is detected and reported, not warned about
    with blas_threads_for(batch_rows, step_weights), np.errstate(all="ignore"), recording_file as recording:
        for step in range(1, options.steps + 1):
            batch = next(stream)
            logged = step == 1 or step % options.log_every == 0 or step == options.steps
            recorded = recording is not None and record_to.wants(step)
            outcome = train_step(net, batch, mitigation, optimizer, opt_state, measure=logged,
                                 record=recorded)
            opt_state = outcome.opt_state
            if recorded:  # one flushed line per recorded step, what gradscope history reads
                report = flow_report(outcome.flows, outcome.loss)
                recording.write(pass_record(step, report, record_to.source, "flow", record_to.run))
            max_norm = max(max_norm, outcome.grad_norm) if outcome.finite else math.inf
            clip_events += outcome.clipped
            record = None
            if logged or not outcome.finite:
                record = StepRecord(step, outcome.loss, outcome.penalty, outcome.grad_norm, outcome.clipped_grad_norm,
                                    outcome.clipped, outcome.radius, outcome.ratio)
                history.append(record)
            if not outcome.updated:
                diverged_at = step
            if progress is not None:
                progress(step, options.steps, record)
            if diverged_at is not None:
                break

    with blas_threads_for(held_out_rows, step_weights):
        final_loss, accuracy = evaluate(net, evaluation)
    config = setup.config.as_dict()
    if minibatch is not None:  # the sequences of each step, not the file's
        config["batch_size"] = min(minibatch, len(split[0].x))
    return TrainResult(
        config=config,
        mitigation=mitigation.name,
        mitigation_settings=mitigation.settings,
        mitigation_parts=mitigation.part_settings() if mitigation.name != NoMitigation.name else [],
        training=options,
        parameter_count=net.parameter_count(),
        status=STATUS_COMPLETED if diverged_at is None else f"diverged at step {diverged_at}",
        diverged=diverged_at is not None,
        diverged_at=diverged_at,
        steps=step,
        initial_loss=initial_loss,
        final_loss=final_loss,
        baseline_loss=setup.baseline_loss,
        accuracy=accuracy,
        baseline_accuracy=setup.task.baseline_accuracy(),
        evaluated_on=source,
        max_grad_norm=max_norm,
        clip_events=int(clip_events),
        spectral_radius_before=radius_before,
        spectral_radius_after=recurrent_radius(net),
        history=history,
        seeds=summarize([setup.config.seed], [final_loss], setup.baseline_loss, [diverged_at is not None],
                        [accuracy]),
        network=net,
        layout=setup.layout,
    )


def training_arguments(function: str, config: RunConfig | None, options: TrainOptions, strengths: Strengths,
                       settings: dict) -> tuple[RunConfig, TrainOptions, Strengths]:
    """The keyword arguments of ``train`` and ``compare`` from Python, sorted into what they set:
    RunConfig fields (``weights=model.state_dict()``, ``inputs=ids``, ``task="adding"``),
    TrainOptions fields (``steps=200``, ``optimizer="sgd"``) and Strengths fields
    (``clip_threshold=0.5``). Without a config, the unnamed settings take TRAIN_DEFAULTS (the adding
    problem, T=50, B=32), which give way to ``inputs`` as the CLI's flags do."""
    run_fields, option_fields = {f.name for f in fields(RunConfig)}, {f.name for f in fields(TrainOptions)}
    unknown = sorted(set(settings) - run_fields - option_fields - STRENGTH_FIELDS)
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")
    run = {k: v for k, v in settings.items() if k in run_fields}
    if config is not None and run:
        config = replace(config, **run)
    elif config is None:
        defaults = {} if run.get("inputs") is not None else TRAIN_DEFAULTS
        config = RunConfig(**{**defaults, **run})
    chosen = {k: v for k, v in settings.items() if k in option_fields}
    if chosen:
        options = replace(options, **chosen)
    given = {k: v for k, v in settings.items() if k in STRENGTH_FIELDS}
    if given:
        strengths = replace(strengths, **given)
    if config.initial_state is not None:
        raise InputError(f"initial_state is a setting of one pass (analyze, check, spectrum); {function} starts "
                         "every batch from the zero state")
    return config, options, strengths


def check_savable(config: RunConfig, mitigation: Mitigation | None) -> None:
    """Raise the InputError that writing the trained weights would raise, before any training: a
    Keras model's file has no place for another cell's weights (a cell swap). The shapes and keys
    do not change in training, so the network as the mitigation sets it up answers. Only a cure that
    swaps the cell can make a network its layout cannot write: the others are not built here."""
    if mitigation is None or "cell" not in mitigation.overrides:
        return
    setup = mitigated_setup(minibatch_config(file_config(config))[0], mitigation, "trained")
    try:
        setup.layout.export(setup.network)
    except InputError as exc:
        raise InputError(f"--save-weights: {exc}; nothing was trained") from None


def layer_cells(network: Network) -> tuple[tuple[str, str, str | None], ...]:
    """Each layer's (cell, activation, gate activation), bottom first: what its weights compute
    through, which no weights file records."""
    return tuple((c.name, c.activation, c.gate_activation) for c in map(network.cell_of, range(network.num_layers)))


def load_note(before: tuple[tuple, ...], after: tuple[tuple, ...], keras: bool) -> str | None:
    """How to load weights saved after a cure changed what their file does not record, or None.

    before, after : ``layer_cells`` of the user's model and of the trained one. A PyTorch state dict
    holds no module class and no nonlinearity, a Keras weights store no layer config: weights
    trained through relu (the relu cure on an RNN), or another cell's (a cell swap), compute
    something else in the user's unchanged model. A Keras cell swap is refused before training
    (``check_savable``), so only the activation reaches the Keras sentence.
    """
    if before == after:
        return None
    cell, activation = after[0][:2]
    if [c[0] for c in before] != [c[0] for c in after]:
        module = CELLS[cell].torch_module
        theirs = " and ".join(dict.fromkeys(str(CELLS[c[0]].torch_module) for c in before))
        built = f"{module}(..., nonlinearity='{activation}')" if activation != CELLS[cell].activations[0] else module
        return (f"the weights are {module}'s (the cure swapped the cell): load them into {built} modules of "
                f"your model's sizes, in place of {theirs}")
    if keras:
        return (f"the weights were trained with activation='{activation}': load them into your model with "
                f"activation='{activation}' on its SimpleRNN layers (a weights file does not record it)")
    return (f"the weights were trained with the {activation} activation: build nn.RNN(..., "
            f"nonlinearity='{activation}') to load them (a state dict does not record it)")


def given_strengths(settings: dict, mitigations: list[Mitigation]) -> None:
    """A strength given as a keyword (``clip_threshold=0.5``) that none of the ``mitigations``
    reads (their parts' ``strength``: a mitigation of the caller's own too) would change nothing:
    an InputError, as the CLI's flag is (``resolve_strengths``)."""
    given = {k: v for k, v in settings.items() if k in STRENGTH_FIELDS}
    if given:
        check_used({p.strength for m in mitigations for p in m.parts if p.strength}, given)


def train_seed(config: RunConfig, options: TrainOptions, mitigation: Mitigation | None, minibatch: int | None = None,
               progress: Progress | None = None, record_to=None) -> TrainResult:
    """One seed's run of ``train`` (the seed is config.seed): a top-level function of picklable
    arguments, so that a Dask worker runs exactly what this process would. record_to : where
    its records go (recording.RecordTo, named for the seed), or None."""
    setup = mitigated_setup(config, mitigation or NoMitigation(), "trained")
    return train_setup(setup, options, mitigation, progress, config.seq_len or setup.task.default_seq_len, minibatch,
                       record_to)


def train(
    config: RunConfig | None = None,
    options: TrainOptions = TrainOptions(),
    mitigation: Mitigation | str | None = None,
    progress: Progress | None = None,
    seeds: int = 1,
    scheduler: str | None = None,
    record: str | os.PathLike | None = None,
    record_every: int = 10,
    **settings,
) -> TrainResult:
    """Build the model the config describes (or read it: ``weights``), changed by the mitigation,
    and train it.

    ``gradscope.train(weights=model.state_dict(), inputs=ids, targets=y, lengths=lengths, steps=200,
    mitigation="clip-norm", clip_threshold=0.5)`` takes RunConfig, TrainOptions and Strengths fields as
    keywords (``training_arguments``); or ``gradscope.train(RunConfig(task="adding", seq_len=50),
    TrainOptions(steps=200), make_mitigation("clip-norm"))``. Without a config, TRAIN_DEFAULTS (the
    adding problem, T=50). With ``inputs``, the file (or array) is the data: see ``file_config``
    and ``held_out``.
    seeds : train this many times, on seeds config.seed, config.seed + 1, ...: the report is the
        first seed's, and ``seeds`` holds the spread over all of them. progress counts every step.
    scheduler : a Dask scheduler's address: each seed's run goes to its cluster (cluster.py), with
        the same numbers; progress then counts a run's steps when it comes back, with no records
        (the report's ``history`` has them). A lost cluster raises Incomplete, its ``result`` the
        report over the seeds that finished (``partial``).
    record : an .ndjson file to write, every ``record_every`` steps, the step's light record (per
        layer and direction the per-step norms and the flow, and the loss: recording.py), one
        flushed line each, what ``gradscope history`` reads; with several seeds each record names
        its seed as its run ("seed 1"). Written by this process: not with ``scheduler``.
    """
    strengths = mitigation.strengths if isinstance(mitigation, Mitigation) else Strengths()
    config, options, strengths = training_arguments("train", config, options, strengths, settings)
    if isinstance(mitigation, str):
        mitigation = run_mitigation(mitigation, strengths)
    given_strengths(settings, [] if mitigation is None else [mitigation])
    if isinstance(mitigation, Mitigation) and settings.keys() & STRENGTH_FIELDS:
        # the object again with the strengths given: a registered one by its name (a composite's
        # parts too), one of the caller's own by its class
        registered = all(p.name in MITIGATIONS for p in mitigation.parts)
        mitigation = make_mitigation(mitigation.name, strengths) if registered else type(mitigation)(strengths)
    config, minibatch = minibatch_config(file_config(config))
    seed_values = seed_list(config.seed, seeds)
    if record is not None and scheduler is not None:
        raise InputError("--record writes the records from this process; it cannot follow runs on --scheduler's "
                         "cluster (record a local run)")
    record_to = None if record is None else RecordTo(os.fspath(record), record_every, "train").start()
    runs: list[TrainResult] = []
    partial = None
    if scheduler is None:
        for i, seed in enumerate(seed_values):
            done = i * options.steps
            step_progress = None if progress is None else (
                lambda step, total, record: progress(done + step, total * len(seed_values), record if not done else None))
            to = None if record_to is None else record_to.named(f"seed {seed}" if len(seed_values) > 1 else None)
            runs.append(train_seed(replace(config, seed=seed), options, mitigation, minibatch, step_progress, to))
    else:
        mitigated_setup(config, mitigation or NoMitigation(), "trained")  # fail fast, before the cluster
        calls = [(replace(config, seed=seed), options, mitigation, minibatch) for seed in seed_values]
        finished = None if progress is None else (
            lambda done, total, label: progress(done * options.steps, total * options.steps, None))
        by_seed, partial = run_each_keeping(train_seed, calls, lambda i: {"seed": seed_values[i]}, scheduler=scheduler,
                                            progress=finished, label=lambda i: f"seed {seed_values[i]}")
        runs = [by_seed[i] for i in sorted(by_seed)]
    first = runs[0]
    first.seeds = summarize_runs([r.config["seed"] for r in runs], runs, first.baseline_loss)
    first.partial = partial
    if partial is not None:
        raise Incomplete(partial.error, first)
    return first
