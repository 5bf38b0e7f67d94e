"""``sweep``: the vanishing/exploding phase diagram over two settings.

Every point of a grid over two numeric settings (x and y, by default the spectral radius of Wa
against the sequence length T) is one fresh run, built and measured exactly as ``analyze`` does,
for each combination of the cells and activations chosen. The metric at a point is

    ratio      log10(||dL/da_1|| / ||dL/da_T||)       analyze's end-to-end ratio; < 0 vanishing
    lyapunov   lambda_1, per step                      dynamics.lyapunov; < 0 vanishing

so 0 is the boundary between vanishing and exploding in both. Each row reports where it first
crosses from below 0 to 0 or above along x (linear interpolation between the two grid points).

A point depends on its settings alone (the seed fixes weights and data), so the grid runs in any
order on any number of processes, or on a Dask cluster (cluster.py), with results identical to
one process.

Around a model of the user's own (--weights) the default x axis is ``recurrent_scale``, a factor on
every recurrent matrix of the network (each gate block alike), and the map marks where the model
itself sits (``model_at``: scale 1, its own T). With --inputs, a ``seq_len`` axis takes each
sequence's first T steps (its real steps first: post-padded, as pack_padded_sequence takes them),
and of targets at every step their first T.

Axes are written NAME=VALUES, NAME any numeric RunConfig setting (``seq_len`` or ``seq-len``):

    spectral_radius=0.5,1,2          a list
    spectral_radius=0.5:2:16         16 evenly spaced values, both ends included
    seq_len=10:1000:7:log            7 geometrically spaced values

Whole-number settings round a range to whole numbers (a list must hold whole numbers already);
values repeating after that are an error, as is any value the setting does not accept.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable, ClassVar, Sequence

import numpy as np

from ..model.activations import ACTIVATIONS
from ..bptt.network import bptt, forward
from ..model.cells import CELLS, FLAG_CELLS
from ..cluster import Lost, Partial, connect, on_cluster, workers
from ..config import FIELD_TYPES, RunConfig, flag
from ..dynamics import lyapunov
from ..errors import Incomplete, InputError
from ..experiment import Setup, build, check_memory
from ..flow import EXPLODING_RATIO, VANISHING_RATIO
from ..io.arrays import array_shape, load_array
from ..parallel import default_jobs, in_processes
from ..profile import end_to_end_log10_ratio, headline, run_mask
from ..runtime import blas_threads_for
from ..tasks import make_task
from .defaults import SWEEP_METRICS, SWEEP_WEIGHTS_X, SWEEP_X, SWEEP_Y

METRICS = SWEEP_METRICS
# The band around 0 where a point counts as neither: analyze's verdict "stable" for the ratio
# (0.01 <= ratio <= 100), and a change of at most 1% per step for lambda_1.
STABLE = {
    "ratio": (math.log10(VANISHING_RATIO), math.log10(EXPLODING_RATIO)),
    "lyapunov": (-0.01, 0.01),
}
DEFAULT_X, DEFAULT_Y, WEIGHTS_X = SWEEP_X, SWEEP_Y, SWEEP_WEIGHTS_X
MAX_AXIS_VALUES = 1000
# Points per task sent to a worker: enough to amortise the hand-over, few enough to balance load.
CHUNKS_PER_WORKER = 8
WORKER_START_SECONDS = 0.5  # spawning a worker and importing numpy and gradscope in it, measured here

Progress = Callable[[int, int], None]


def sweepable() -> dict[str, type]:
    """The numeric RunConfig settings, name -> int or float: what an axis may sweep."""
    return {name: kind for name, kind in FIELD_TYPES.items() if kind in (int, float)}


@dataclass
class Axis:
    """One axis of the grid: the RunConfig setting and its values, in the order given."""

    name: str
    values: list


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {text.strip()!r} is not a finite number")
    return value


def _range(spec: str, where: str) -> np.ndarray:
    parts = spec.split(":")
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3].strip() != "log"):
        raise InputError(f"{where}: a range is START:STOP:COUNT or START:STOP:COUNT:log (got {spec!r})")
    start, stop = _number(parts[0], where), _number(parts[1], where)
    count = _number(parts[2], where)
    if count != int(count) or not 2 <= count <= MAX_AXIS_VALUES:
        raise InputError(f"{where}: COUNT must be a whole number from 2 to {MAX_AXIS_VALUES} (got {parts[2].strip()})")
    if len(parts) == 4:
        if start <= 0 or stop <= 0:
            raise InputError(f"{where}: a log range needs positive ends (got {spec!r})")
        return np.geomspace(start, stop, int(count))
    return np.linspace(start, stop, int(count))


def parse_axis(text: str, option: str) -> Axis:
    """An axis from ``NAME=VALUES`` (module docstring); ``option`` (--x, --y) names it in errors."""
    name, sep, spec = text.partition("=")
    key = name.strip().lstrip("-").replace("-", "_")
    if not sep or not key or not spec.strip():
        raise InputError(f"{option} takes NAME=VALUES, e.g. {option} {DEFAULT_X} (got {text!r})")
    kinds = sweepable()
    if key not in kinds:
        raise InputError(f"{option}: {name.strip()!r} is not a numeric setting; choose one of {', '.join(kinds)}")
    where = f"{option} {key}"
    if ":" in spec:
        raw = _range(spec, where)
        if kinds[key] is int:
            raw = np.round(raw)
    else:
        raw = np.array([_number(v, where) for v in spec.split(",")])
        if len(raw) > MAX_AXIS_VALUES:
            raise InputError(f"{where}: at most {MAX_AXIS_VALUES} values (got {len(raw)})")
        if kinds[key] is int and np.any(raw != np.round(raw)):
            raise InputError(f"{where} takes whole numbers (got {spec.strip()})")
    values = [int(v) for v in raw] if kinds[key] is int else [float(f"{v:.12g}") for v in raw]
    if len(set(values)) != len(values):
        raise InputError(f"{where}: values repeat ({spec.strip()}); use fewer points or a wider range")
    return Axis(key, values)


@dataclass
class Heatmap:
    """The metric over the grid for one cell and activation.

    values : (len(y), len(x)), values[i][j] at y.values[i], x.values[j]; inf or nan where the
        gradient overflowed (null in JSON), -inf where it vanished to exactly 0.
    crossings : for each y, the x at which the row first crosses from below 0 to 0 or above
        (interpolated linearly; the midpoint when one side is not finite), or None.
    """

    cell: str
    activation: str
    values: np.ndarray
    crossings: list


@dataclass
class Skipped:
    """A combination not run, and why (the cell does not support the activation)."""

    cell: str
    activation: str
    reason: str


@dataclass
class Scale:
    """The colour scale of the heatmaps, shared by all of them.

    stable : [low, high], the band counted as neither vanishing nor exploding (STABLE).
    limit : the largest |finite value| over every map.
    edges : six ascending band edges: three bands below ``stable``, three above, equal in width.
    """

    stable: list[float]
    limit: float
    edges: list[float]


@dataclass
class SweepResult:
    """What ``gradscope sweep`` reports.

    config : the settings every point shares (RunConfig fields; the swept two are set per point,
        cell and activation per map).
    metric : "ratio" or "lyapunov"; quantity : what it measures, in words.
    transient : steps skipped before averaging lambda_1 (lyapunov; None: T // 10 at each point).
    x, y : the axes. maps : one Heatmap per combination run. skipped : combinations not run.
    scale : the colour scale.
    model_at : where the model read from --weights sits on each axis ({"x": value, "y": value};
        a value is None where it is not a single setting of the model, or lies outside the axis, and
        both are None for a model built from flags): the recurrent scale 1, the model's T, ...
    partial : None when every point was evaluated; when a Dask cluster was lost mid-run
        (cluster.Partial), the points missing (cell, activation, x, y): their values are null and a
        row with any of them has no crossing.
    """

    command: ClassVar[str] = "sweep"

    config: dict
    metric: str
    quantity: str
    transient: int | None
    x: Axis
    y: Axis
    maps: list[Heatmap]
    skipped: list[Skipped]
    scale: Scale
    model_at: dict
    partial: Partial | None = None


def evaluate(config: RunConfig, metric: str, transient: int | None = None) -> float:
    """The metric of one fresh run: log10 of analyze's end-to-end ratio, or lambda_1.

    Only what the metric needs is computed: BPTT and two step norms, or the forward run and the
    leading exponent, not analyze's spectra and contributions.
    """
    setup = build(config)
    net, batch = setup.network, setup.batch
    with blas_threads_for(len(batch.x), net.step_weights()), np.errstate(all="ignore"):  # runtime.py
        if metric == "ratio":
            traj, grads = bptt(net, batch.x, batch.y, batch.mask, setup.upstream)
            return end_to_end_log10_ratio(net, traj, grads, batch.y)  # exact at any depth
        traj = forward(net, batch.x, batch.mask)
    k, d = headline(net)  # over each sequence's real steps, as analyze and spectrum measure it
    return lyapunov(net.layer(k, d), traj.runs[k][d], transient, mask=run_mask(traj, k, d)).leading_exponent


def evaluate_chunk(configs: list[RunConfig], metric: str, transient: int | None) -> list[float]:
    """``evaluate`` over a list of points: what one worker process or Dask task runs."""
    return [evaluate(c, metric, transient) for c in configs]


def _chunks(count: int, workers: int) -> list[range]:
    size = max(1, math.ceil(count / (workers * CHUNKS_PER_WORKER)))
    return [range(lo, min(lo + size, count)) for lo in range(0, count, size)]


def _run_local(configs: list[RunConfig], metric: str, transient: int | None, jobs: int,
               progress: Progress) -> list[float]:
    values = [math.nan] * len(configs)
    if jobs == 1:
        for i, config in enumerate(configs):
            values[i] = evaluate(config, metric, transient)
            progress(i + 1, len(configs))
        return values
    done = 0
    chunks = _chunks(len(configs), jobs)
    calls = [([configs[i] for i in chunk], metric, transient) for chunk in chunks]
    for k, chunk_values in in_processes(evaluate_chunk, calls, jobs):
        for i, value in zip(chunks[k], chunk_values):
            values[i] = value
        done += len(chunks[k])
        progress(done, len(configs))
    return values


def _run_auto(configs: list[RunConfig], metric: str, transient: int | None,
              progress: Progress) -> list[float]:
    """One process for grids that finish sooner than workers start, one per CPU otherwise."""
    started = time.perf_counter()
    first = evaluate(configs[0], metric, transient)
    progress(1, len(configs))
    rest = configs[1:]
    jobs = max(1, min(default_jobs(), len(rest)))
    if (time.perf_counter() - started) * len(rest) < WORKER_START_SECONDS * jobs:
        jobs = 1
    return [first, *_run_local(rest, metric, transient, jobs, lambda done, total: progress(done + 1, total + 1))]


def _run_dask(configs: list[RunConfig], metric: str, transient: int | None, address: str,
              progress: Progress) -> tuple[list[float], list[int], Lost | None]:
    """The points on the Dask cluster at address, in chunks: (values, the indexes of the points not
    evaluated, why). The last two are [] and None unless the cluster was lost after some chunks came
    back; the values of the points missing are then NaN."""
    client = connect(address)
    chunks = _chunks(len(configs), workers(client))
    calls = [([configs[i] for i in chunk], metric, transient) for chunk in chunks]
    values = [math.nan] * len(configs)
    done = 0
    finished: set[int] = set()
    try:
        for k, chunk_values in on_cluster(evaluate_chunk, calls, address,
                                          lambda k: f"points {chunks[k].start + 1}-{chunks[k].stop}", client):
            for i, value in zip(chunks[k], chunk_values):
                values[i] = value
            finished.add(k)
            done += len(chunks[k])
            progress(done, len(configs))
    except Lost as exc:
        if not finished:
            raise
        return values, [i for k, chunk in enumerate(chunks) if k not in finished for i in chunk], exc
    return values, [], None


def crossings(values: np.ndarray, xs: Sequence[float]) -> list:
    """For each row of values (ny, nx): the x where it first goes from < 0 to >= 0, or None,
    walking x upwards whatever order the axis was given in (``2:1:3`` is ``1:2:3`` backwards).

    Not-finite values count by sign, nan (an overflow) as above 0; across one, the midpoint.
    """
    order = np.argsort(np.asarray(xs, dtype=float), kind="stable")
    xs, values = [xs[j] for j in order], np.asarray(values)[:, order]
    out = []
    for row in values:
        found = None
        for j in range(len(xs) - 1):
            a, b = row[j], row[j + 1]
            if a < 0 and not b < 0:
                if math.isfinite(a) and math.isfinite(b):
                    found = float(xs[j] + (xs[j + 1] - xs[j]) * (-a) / (b - a))
                else:
                    found = float((xs[j] + xs[j + 1]) / 2)
                break
        out.append(found)
    return out


def scale(metric: str, maps: list[Heatmap]) -> Scale:
    """The shared colour scale: the stable band and three equal bands on each side up to the limit."""
    low, high = STABLE[metric]
    finite = [np.abs(m.values[np.isfinite(m.values)]) for m in maps]
    limit = float(max((f.max() for f in finite if f.size), default=0.0))
    width = max(limit - high, high) / 3
    edges = [low - 2 * width, low - width, low, high, high + width, high + 2 * width]
    return Scale([low, high], limit, edges)


def _combinations(base: RunConfig, cells: Sequence[str] | None, activations: Sequence[str] | None,
                  held: Setup | None = None) -> tuple[list[tuple[str, str]], list[Skipped]]:
    """The (cell, activation) pairs to sweep, and those skipped; held : the --weights model's setup."""
    if held is not None:
        its = held.config.cell
        wrong = [cell for cell in cells or () if cell != its]
        if wrong:
            raise InputError(f"--cells {wrong[0]}: {base.weights} holds a {its} model")
        cells = [its]
    cells = cells or ["rnn"]
    for cell in cells:
        if cell not in CELLS:
            raise InputError(f"--cells: unknown cell {cell!r}; choose from {', '.join(FLAG_CELLS)}")
    activations = activations or ["tanh"]
    for activation in activations:
        if activation not in ACTIVATIONS:
            raise InputError(f"--activations: unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    runs, skipped = [], []
    for cell in dict.fromkeys(cells):
        for activation in dict.fromkeys(activations):
            supported = CELLS[cell].activations
            if activation in supported:
                runs.append((cell, activation))
            else:
                skipped.append(Skipped(cell, activation, f"{cell} supports --activation {', '.join(supported)}"))
    if not runs:
        raise InputError("no combination of --cells and --activations can run: " +
                         "; ".join(s.reason for s in skipped))
    return runs, skipped


def _check_axes(base: RunConfig, x: Axis, y: Axis, metric: str = "ratio") -> None:
    if x.name == y.name:
        raise InputError(f"--x and --y both sweep {x.name}; sweep two different settings")
    defaults = RunConfig()
    # what a seed draws: weights, a batch, and (for the ratio, whose gradient they set) the targets
    drawn = base.weights is None or base.inputs is None or (
        metric == "ratio" and base.targets is None and base.output_grads is None)
    for option, axis in (("--x", x), ("--y", y)):
        if axis.name == "seed" and not drawn:  # every point would be the same run
            fixed = "" if metric == "lyapunov" else " and --targets or --output-grads"
            raise InputError(f"{option} seed: nothing here is drawn at random (--weights fixes the weights, --inputs"
                             f"{fixed} the batch), so every seed gives the same point")
        given = getattr(base, axis.name)
        if given != getattr(defaults, axis.name):
            raise InputError(f"{flag(axis.name)} {given} conflicts with {option}, which sweeps {axis.name}; drop one")
        for value in axis.values:
            try:
                replace(base, **{axis.name: value})
            except InputError as exc:
                raise InputError(f"{option} {axis.name}={value}: {exc}") from None


@dataclass
class SweepPlan:
    """A checked grid, ready to run: the points in order (map by map, row by row, x fastest)."""

    base: RunConfig
    x: Axis
    y: Axis
    metric: str
    transient: int | None
    runs: list[tuple[str, str]]
    skipped: list[Skipped]
    points: list[RunConfig]
    model_at: dict


def plan_sweep(
    base: RunConfig | None = None,
    x: Axis | str | None = None,
    y: Axis | str | None = None,
    metric: str = "ratio",
    cells: Sequence[str] | None = None,
    activations: Sequence[str] | None = None,
    transient: int | None = None,
) -> SweepPlan:
    """Check everything about a sweep that can be checked before running it.

    base : the settings every point shares. x, y : Axis objects or NAME=VALUES text (None: the
        defaults, DEFAULT_X or around --weights WEIGHTS_X; DEFAULT_Y, or with --inputs four lengths
        up to the file's T).
    cells : default the cell of --weights, or rnn; activations : default tanh. A combination the
    cell does not support is skipped (and reported), not an error.
    """
    base = base or RunConfig()
    file_steps = _inputs_steps(base)
    if x is None:
        x = WEIGHTS_X if base.weights is not None else DEFAULT_X
    if y is None:
        y = DEFAULT_Y if file_steps is None else "seq_len=" + ",".join(
            str(v) for v in sorted({max(1, file_steps // k) for k in (8, 4, 2, 1)}))
    x = parse_axis(x, "--x") if isinstance(x, str) else x
    y = parse_axis(y, "--y") if isinstance(y, str) else y
    if metric not in METRICS:
        raise InputError(f"--metric must be one of {', '.join(METRICS)} (got {metric!r})")
    if transient is not None and metric != "lyapunov":
        raise InputError("--transient applies to --metric lyapunov only")
    if transient is not None and transient < 0:
        raise InputError(f"--transient must be at least 0 (got {transient})")
    _check_axes(base, x, y, metric)
    held = None if base.weights is None else build(base)  # the model --weights holds: read once
    runs, skipped = _combinations(base, cells, activations, held)
    cut = _first_steps(base, x, y, file_steps, held)
    points = [
        replace(base, cell=cell, activation=activation, **{y.name: yv, x.name: xv}, **cut(xv, yv))
        for cell, activation in runs for yv in y.values for xv in x.values
    ]
    if base.weights is None and base.task != "text":  # every point's memory, before any point runs
        task = make_task(base.task, base)
        for point in points:
            try:
                check_memory(point, task, task.resolve(point.input_size, point.output_size, point.loss))
            except InputError as exc:
                raise InputError(f"--x {x.name}={getattr(point, x.name)}, --y {y.name}={getattr(point, y.name)}: {exc}") from None
    return SweepPlan(base, x, y, metric, transient, runs, skipped, points, _model_at(base, x, y, file_steps))


def _inputs_steps(base: RunConfig) -> int | None:
    """T of the --inputs batch (None without one), from the .npy file's header alone."""
    if base.inputs is None:
        return None
    shape = array_shape(base.inputs)
    if shape is None or len(shape) < 2:
        shape = load_array(base.inputs, "inputs").shape  # says what is wrong with the file
    return int(shape[1])


def _first_steps(base: RunConfig, x: Axis, y: Axis, file_steps: int | None, held: Setup | None = None):
    """With --inputs and a seq_len axis: for a point, the inputs (and lengths) cut to their first T
    steps, as RunConfig fields (arrays); otherwise nothing to change. held : the --weights model's
    setup."""
    names = (x.name, y.name)
    if file_steps is None or "seq_len" not in names:
        return lambda xv, yv: {}
    longest = max(x.values if x.name == "seq_len" else y.values)
    if base.output_grads is not None:
        raise InputError(f"--output-grads holds the gradient at the inputs' {file_steps} steps, which a seq_len axis "
                         "cannot cut: give --y another setting (spectral_radius, for one)")
    if longest > file_steps:
        raise InputError(f"seq_len={longest}: the inputs have {file_steps} steps (a seq_len axis takes each "
                         "sequence's first T steps)")
    inputs = load_array(base.inputs, "inputs")
    lengths = None if base.lengths is None else load_array(base.lengths, "lengths")
    targets = None if base.targets is None else load_array(base.targets, "targets")
    # targets at every step (--readout every, or a Keras model's head at every step) are cut with the inputs
    every = base.readout == "every" or (held is not None and held.network.readout == "every")

    def cut(xv, yv) -> dict:
        steps = xv if x.name == "seq_len" else yv
        fields = {"inputs": inputs[:, :steps], "targets": targets[:, :steps] if every and targets is not None else targets}
        if lengths is not None:
            fields["lengths"] = np.minimum(lengths, steps)
        return fields

    return cut


def _model_at(base: RunConfig, x: Axis, y: Axis, file_steps: int | None) -> dict:
    """Where the model read from --weights sits on the axes: each axis setting's own value (the
    recurrent scale 1, the file's or the task's T), None where that is not one number or lies
    outside; None for both when the model is built from flags (there is no model of one's own)."""
    def value(axis: Axis):
        if base.weights is None:
            return None
        v = getattr(base, axis.name)
        if v is None and axis.name == "recurrent_scale":
            v = 1.0
        if v is None and axis.name == "seq_len":
            v = file_steps if file_steps is not None else make_task(base.task, base).default_seq_len
        if v is None or not min(axis.values) <= v <= max(axis.values):
            return None
        return v

    return {"x": value(x), "y": value(y)}


def run_sweep(plan: SweepPlan, jobs: int | None = 1, scheduler: str | None = None,
              progress: Progress | None = None) -> SweepResult:
    """Evaluate every point of the plan and assemble the heatmaps.

    jobs : local processes; with more than one, the workers are spawned (not forked), so a script
        that calls this must guard its own top level with ``if __name__ == "__main__":``.
        None picks for you: the first point is timed in this process, and the rest go to one
        process per CPU only when they would take longer than starting the workers costs.
    scheduler : a Dask scheduler's address: the points run on its cluster instead (cluster.py); a
        lost cluster raises Incomplete, its ``result`` the grid with the points that came back.
    progress : called with (points done, points in all) as results come in.
    """
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be at least 1 (got {jobs})")
    report = progress or (lambda done, total: None)
    missing: list[int] = []
    lost = None
    if scheduler is not None:
        flat, missing, lost = _run_dask(plan.points, plan.metric, plan.transient, scheduler, report)
    elif jobs is None:
        flat = _run_auto(plan.points, plan.metric, plan.transient, report)
    else:
        flat = _run_local(plan.points, plan.metric, plan.transient, min(jobs, len(plan.points)), report)
    x, y = plan.x, plan.y
    shape = (len(plan.runs), len(y.values), len(x.values))
    grid = np.array(flat, dtype=np.float64).reshape(shape)
    gaps = np.zeros(shape, dtype=bool)
    gaps.flat[missing] = True
    maps = [Heatmap(cell, activation, grid[k],
                    [None if gaps[k, i].any() else c for i, c in enumerate(crossings(grid[k], x.values))])
            for k, (cell, activation) in enumerate(plan.runs)]
    partial = None
    if lost is not None:
        partial = Partial(str(lost), len(flat) - len(missing), len(flat), [
            {"cell": plan.points[i].cell, "activation": plan.points[i].activation,
             "x": getattr(plan.points[i], x.name), "y": getattr(plan.points[i], y.name)} for i in missing])
    result = SweepResult(
        config=plan.base.as_dict(),
        metric=plan.metric,
        quantity=METRICS[plan.metric],
        transient=plan.transient,
        x=x,
        y=y,
        maps=maps,
        skipped=plan.skipped,
        scale=scale(plan.metric, maps),
        model_at=plan.model_at,
        partial=partial,
    )
    if partial is not None:
        raise Incomplete(partial.error, result)
    return result


def sweep(base: RunConfig | None = None, *, jobs: int = 1, scheduler: str | None = None,
          progress: Progress | None = None, **grid) -> SweepResult:
    """``plan_sweep`` and ``run_sweep`` in one call: ``sweep(x="seq_len=10,100", metric="lyapunov")``."""
    return run_sweep(plan_sweep(base, **grid), jobs, scheduler, progress)
