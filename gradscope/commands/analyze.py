"""``analyze``: one exact BPTT pass and everything it says about the gradient flow.

Returns an ``AnalyzeResult``: the object the table renders and ``--json`` prints (serialize.py),
and what ``gradscope.analyze(...)`` returns to Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..model.activations import get_activation
from ..bptt import Gradients, Trajectory, bptt, combine_log_norms, last_step_backward, log_row_norms
from ..config import RunConfig
from ..checkpointed_bptt import checkpointed_bptt
from ..dynamics import Lyapunov, lyapunov
from ..errors import InputError
from ..experiment import Setup, build
from ..flow import EXPLODING_RATIO, VANISHING_RATIO, Flow, flow
from ..model.network import DIRECTIONS
from ..model.single import Model
from ..parallel import beside
from ..precision import LOG_NORM_ERROR_PER_STEP
from ..runtime import blas_threads_for
from ..network_bptt import NetworkGradients, NetworkTrajectory, network_bptt
from ..model.statedict import export_grads, export_network, export_network_grads
from ..serialize import HIDDEN
from ..spectrum import PascanuCheck, Spectrum, pascanu_check, spectrum


# Hidden sizes from which the spectra are decomposed on a core of their own beside BPTT and the
# diagnostics, which keep the others: at H = 512 the decompositions take as long as BPTT itself
# (~150 ms); at H = 128 they take 5 ms, less than the rest loses by giving up a core
# (benchmarks/bench_report.py, 2 cores).
DECOMPOSE_BESIDE = 256


@dataclass
class Thresholds:
    """The end-to-end ratios n_1 / n_T at which the verdict changes (flow.py)."""

    vanishing_ratio: float = VANISHING_RATIO
    exploding_ratio: float = EXPLODING_RATIO


@dataclass
class LayerReport:
    """The gradient flow of one layer in one direction (the same measures as the headline).

    grad_norms : (T,) ||dL/dh_t|| over the sequences real at step t (absolute steps, first first).
    ratios : (T,) the flow profile over its last value; with padding the profile counts steps back
        from each sequence's readout end (its last real step; its first for the reverse
        direction), so it does not depend on the side the pads are on.
    total_grad_norm : ||dL/dh|| over every step: what reaches this layer (depth, beside time).
    spectrum : as the headline's; with padding, the mean step Jacobian is over the real steps of
        the longest sequences (a pad step is the identity, not the cell's Jacobian).
    log10_grad_norms : (T,) log10 of grad_norms from BPTT's log domain: finite wherever the
        gradient is nonzero, however far below 1e-308 or above 1e308 (-inf, null in JSON, where 0).
    """

    layer: int
    direction: str
    grad_norms: np.ndarray
    ratios: np.ndarray
    contributions: np.ndarray
    cell_grad_norms: np.ndarray | None
    spectrum: Spectrum
    spectrum_of: str
    flow: Flow
    total_grad_norm: float
    log10_grad_norms: np.ndarray


@dataclass
class Depth:
    """How the gradient reaching the first layer compares with the last (over all steps and
    both directions): ratio = first / last, below 1 when it fades with depth."""

    first_layer_grad_norm: float
    last_layer_grad_norm: float
    ratio: float
    log10_ratio: float | None


@dataclass
class NetworkInfo:
    """What was loaded: the architecture, the readout, and the keys left unread.

    ignored_keys : state-dict keys of modules gradscope does not model (listed, never dropped
        silently); padded : whether sequences have pad steps; lengths : (min, max) real steps.
    """

    description: str
    num_layers: int
    directions: int
    embedding: list[int] | None
    readout: str
    head: str | None
    ignored_keys: list[str]
    padded: bool
    lengths: list[int]


@dataclass
class AnalyzeResult:
    """What ``gradscope analyze`` reports.

    config : every setting, defaults resolved (RunConfig fields).
    data : where the batch came from, in words (the task, or the texts and their split).
    loss : batch-mean loss; baseline_loss : the task's trivial baseline for comparison.
    grad_norms : (T,) ||dL/da_t||_F over batch and hidden units, t = 1..T; for a readout at every
        step, of the part that flows back from the readout at T (bptt.last_step_backward).
    log10_grad_norms : (T,) log10 ||dL/da_t||, exact at any depth: BPTT carries the gradient as a
        direction and a logarithm (bptt.py), so this is finite wherever the gradient is nonzero,
        also where grad_norms under- or overflows float64.
    ratios : (T,) grad_norms / grad_norms[T], from the logs (0 or inf only where the ratio itself
        leaves float64's range).
    contributions : (T,) ||dv_t^T a_{t-1}||_F, step t's summand of dL/dWa.
    cell_grad_norms : (T,) ||dL/dc_t|| for the LSTM, else None.
    spectrum : of Wa for the vanilla RNN; for gated cells of the mean step Jacobian (``spectrum_of``).
    spectrum_of : "recurrent_weight" (Wa) or "mean_step_jacobian" (``recurrent_spectra``).
    gate_spectra : gate name -> spectrum of that gate's (H, H) block of W_hh; None for the RNN.
    pascanu : Pascanu et al.'s bound against the measured ratios.
    flow : slope, rate, horizon and the verdict; regime repeats flow.regime.
    network, layers, depth : the architecture; one report per layer and direction (LayerReport);
        the gradient reaching the first layer against the last (None for one layer). The headline
        fields above are the top layer's forward direction.
    warnings : what the input suggests the user may have meant (a token that looks like padding).
    flow_norms : (T,) the profile the flow is measured on: ``grad_norms`` without padding; with
        padding, entry T-k is the norm k steps back from each sequence's last real step.
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
    log10_grad_norms: np.ndarray
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
    network: NetworkInfo
    layers: list[LayerReport]
    depth: Depth | None
    flow_norms: np.ndarray
    warnings: list[str]
    setup: Setup = field(metadata=HIDDEN, repr=False)
    gradients: Gradients | NetworkGradients = field(metadata=HIDDEN, repr=False)


def step_norms(d: np.ndarray) -> np.ndarray:
    """(T, B, H) -> (T,) Frobenius norm of each step's (B, H) slice.

    From the logs of the row norms (bptt.log_row_norms), which recompute only the rows whose squares
    under- or overflow, a chunk at a time: no copy of the whole array. A step holding inf (and no
    nan) has norm inf, one holding nan has norm nan.
    """
    with np.errstate(all="ignore"):
        return np.exp(combine_log_norms(log_row_norms(d), axis=1))


def ratios_from_logs(log_norms: np.ndarray) -> np.ndarray:
    """n_t / n_T from ln n_t: exact wherever the ratio itself is representable."""
    with np.errstate(all="ignore"):
        return np.exp(log_norms - log_norms[-1])


def log10(log_norms: np.ndarray | None) -> np.ndarray | None:
    return None if log_norms is None else log_norms / np.log(10.0)


def flowing_gradients(model: Model, traj: Trajectory, grads: Gradients, y: np.ndarray) -> Gradients:
    """The gradients whose norms measure the flow: ``grads`` itself, or for a readout at every
    step what flows back from the readout at T alone (bptt.last_step_backward), since each step's
    own loss term would mask how far back the gradient reaches."""
    return last_step_backward(model, traj, y) if model.readout == "every" else grads


def end_to_end_ratio(model: Model, traj: Trajectory, grads: Gradients, y: np.ndarray) -> float:
    """||dL/da_1|| / ||dL/da_T|| of the flowing gradient (0 or inf where it leaves float64's range:
    ``end_to_end_log10_ratio`` is exact at any depth)."""
    with np.errstate(all="ignore"):
        return float(10.0 ** end_to_end_log10_ratio(model, traj, grads, y))


def end_to_end_log10_ratio(model: Model, traj: Trajectory, grads: Gradients, y: np.ndarray) -> float:
    """log10 (||dL/da_1|| / ||dL/da_T||) of the flowing gradient, from BPTT's log domain."""
    logs = flowing_gradients(model, traj, grads, y).log_norms
    with np.errstate(all="ignore"):
        return float((logs[0] - logs[-1]) / np.log(10.0))


def weight_spectra(model: Model) -> Spectrum | dict[str, Spectrum]:
    """The spectra that need the weights alone: Wa's for the vanilla RNN; for a gated cell, gate
    name -> the spectrum of that gate's (H, H) block of W_hh."""
    cell = model.cell
    if len(cell.gates) == 1:
        return spectrum(model.recurrent_weight)
    return {name: spectrum(block) for name, block in cell.gate_blocks(model.params).items()}


def run_spectrum(model: Model, caches: list | None, mean_jacobian: np.ndarray | None = None) -> Spectrum:
    """A gated cell's spectrum along the run: of its step Jacobian d state_t / d state_{t-1}
    averaged over the steps and the batch ((H, H) for the GRU; (2H, 2H) over the flattened (h, c)
    for the LSTM, whose gradient flows through both). mean_jacobian : that average, when the caller
    has it without the caches (checkpointed BPTT)."""
    if mean_jacobian is None:
        with np.errstate(all="ignore"):
            mean_jacobian = model.cell.mean_step_jacobian(model.params, caches)
    return spectrum(mean_jacobian)


def recurrent_spectra(model: Model, caches: list | None, mean_jacobian: np.ndarray | None = None,
                      weights: Spectrum | dict[str, Spectrum] | None = None,
                      ) -> tuple[Spectrum, str, dict[str, Spectrum] | None]:
    """The spectrum ``analyze`` reports, what it is of, and the spectra of the gate blocks.

    The vanilla RNN: Wa itself, and no gates. A gated cell has no single recurrent matrix: the
    spectrum of its mean step Jacobian (``run_spectrum``) and of each gate's block of W_hh.
    weights : ``weight_spectra(model)``, when the caller computed it beside BPTT (parallel.beside).
    """
    weights = weight_spectra(model) if weights is None else weights
    if isinstance(weights, Spectrum):
        return weights, "recurrent_weight", None
    return run_spectrum(model, caches, mean_jacobian), "mean_step_jacobian", weights


def log_norm_rounding(weight: np.ndarray) -> float:
    """The rounding of ln||dL/da_t|| per step back in a run of ``weight``'s dtype: 0 in float64
    (Pascanu's comparison has its own slack), precision.LOG_NORM_ERROR_PER_STEP in float32."""
    return LOG_NORM_ERROR_PER_STEP if weight.dtype == np.float32 else 0.0


def headline_fields(report: LayerReport) -> dict:
    """The AnalyzeResult fields that repeat one layer's report (the headline's), and the verdict."""
    return dict(grad_norms=report.grad_norms, log10_grad_norms=report.log10_grad_norms, ratios=report.ratios,
                contributions=report.contributions, cell_grad_norms=report.cell_grad_norms,
                spectrum=report.spectrum, spectrum_of=report.spectrum_of, flow=report.flow,
                regime=report.flow.regime)


def analyze_setup(setup: Setup) -> AnalyzeResult:
    """Run BPTT on a built setup and measure the flow.

    A loop of small steps runs on one BLAS thread (runtime.py): on a busy machine two threads
    that spin waiting for each other made the Lyapunov steps at (B, H) = (32, 128) 100 times slower.
    """
    net = setup.network
    widest = max((layer for layers in net.layers for layer in layers),
                 key=lambda params: params[net.cell.recurrent].size)
    step_weights = [widest[net.cell.input_weight], widest[net.cell.recurrent]]
    with blas_threads_for(len(setup.batch.x), step_weights):
        return analyze_network(setup) if not setup.is_single() else _analyze_single(setup)


def _analyze_single(setup: Setup) -> AnalyzeResult:
    model, batch = setup.model, setup.batch
    data = describe_data(setup)
    # Where they are large, LAPACK's decompositions run on a core of their own: the weights'
    # spectra, which need no run, beside BPTT (at H = 512 they cost as much as the whole pass), a
    # gated cell's spectrum along the run beside the contributions and the Lyapunov exponent.
    # Small ones run after (on a thread they made the report slower and less steady at H = 128).
    large = model.hidden_size >= DECOMPOSE_BESIDE
    with beside(weight_spectra, model, thread=large) as early:
        if setup.checkpointed:  # the full path does not fit: the same report from sqrt(T) states
            run = checkpointed_bptt(model, batch.x, batch.y)
        else:
            traj, grads = bptt(model, batch.x, batch.y)
    weights = early.result()
    if setup.checkpointed:
        grads, logs, log_cells, lyap = run.gradients(), run.log_norms, run.log_cell_norms, run.lyapunov
        contributions = run.contributions
        spec, spectrum_of, gate_spectra = recurrent_spectra(model, None, run.mean_jacobian, weights)
        data += (f"; checkpointed BPTT (the full path does not fit in memory): {run.checkpoints} states kept, "
                 f"segments of {run.segment} steps recomputed")
    else:
        flowing = flowing_gradients(model, traj, grads, batch.y)
        logs, log_cells = flowing.log_norms, flowing.log_cell_norms  # exact at any depth (bptt.py's log domain)
        with beside(recurrent_spectra, model, traj.caches, None, weights, thread=large) as spectra:
            with np.errstate(all="ignore"):
                contributions = flowing.contribution_norms()
            lyap = lyapunov(model, traj)
        spec, spectrum_of, gate_spectra = spectra.result()
    with np.errstate(all="ignore"):
        norms = np.exp(logs)
        cell_norms = None if log_cells is None else np.exp(log_cells)
    ratios = ratios_from_logs(logs)
    pascanu = None
    if spectrum_of == "recurrent_weight":  # Pascanu's sigma bound is for a_t = f(Wa a_{t-1} + ...)
        gamma = get_activation(model.cell.activation).gamma
        pascanu = pascanu_check(gamma, spec.max_singular_value, norms, logs, log_norm_rounding(model.recurrent_weight))
    summary = flow(norms, logs)
    report = LayerReport(0, "forward", norms, ratios, contributions, cell_norms, spec, spectrum_of, summary,
                         _total_norm(logs), log10(logs))
    return AnalyzeResult(
        config=setup.config.as_dict(),
        data=data,
        parameter_count=int(sum(p.size for p in model.params.values())),
        loss=grads.loss,
        baseline_loss=setup.baseline_loss,
        **headline_fields(report),
        gate_spectra=gate_spectra,
        pascanu=pascanu,
        lyapunov=lyap,
        thresholds=Thresholds(),
        network=network_info(setup),
        layers=[report],
        depth=None,
        flow_norms=norms,
        warnings=setup.notes,
        setup=setup,
        gradients=grads,
    )


def analyze(config: RunConfig | None = None, *, full_gradients: bool = False, **settings) -> AnalyzeResult:
    """Build the model and batch a config describes and analyse one BPTT pass.

    ``gradscope.analyze(seq_len=200, activation="relu")`` takes the RunConfig fields as keywords.
    full_gradients : keep dL/da_t at every step (``--save-grads``): a run whose full path does not
        fit in memory is then refused before any work instead of checkpointed.
    """
    config = config or RunConfig(**settings)
    return analyze_setup(build(config, checkpointable=not full_gradients))


# --- a user's own network: every layer and direction ------------------------------------------------


def describe_data(setup: Setup) -> str:
    """Where the batch came from: the task, or the inputs the user gave."""
    config, batch = setup.config, setup.batch
    if config.inputs is None and batch.x.ndim == 2:
        text = f"random token ids from the embedding's {setup.network.vocab_size} rows, random labels"
    elif config.inputs is None:
        text = setup.task.describe()
    else:
        source = config.inputs if isinstance(config.inputs, str) else "an array"
        kind = "token ids" if batch.x.ndim == 2 else "inputs"
        text = f"{kind} from {source}: {batch.x.shape[0]} sequences of {batch.x.shape[1]} steps"
        if config.targets is None and setup.upstream is None:
            text += ", targets drawn at random (give --targets)"
    if batch.mask is not None:
        lengths = batch.mask.sum(axis=1)
        text += f", padded ({int(lengths.min())}-{int(lengths.max())} real steps)"
    return text


def network_info(setup: Setup) -> NetworkInfo:
    net, mask = setup.network, setup.batch.mask
    steps = setup.batch.x.shape[1]
    lengths = mask.sum(axis=1) if mask is not None else np.array([steps])
    head = None if net.head is None else f"Linear({net.feature_size}, {net.output_size})"
    return NetworkInfo(net.describe(), net.num_layers, net.directions,
                       None if net.embedding is None else list(net.embedding.shape), net.readout, head,
                       list(setup.layout.ignored), mask is not None, [int(lengths.min()), int(lengths.max())])


def _total_norm(log_norms: np.ndarray) -> float:
    """||dL/dh|| over every step from the logs of the steps' (or rows') norms."""
    with np.errstate(all="ignore"):
        return float(np.exp(combine_log_norms(np.ravel(log_norms))))


def aligned_log_norms(log_rows: np.ndarray, mask_tm: np.ndarray | None, reverse: bool) -> np.ndarray:
    """The flow profile in logs: (T,) ln of the norm over the batch k steps from each sequence's
    readout end, from log_rows (T, B) = ln||dL/dh_t[b]|| in absolute steps (-inf at pad steps).

    Without padding it is the step norms. With padding, entry T-1-k is the norm over the sequences
    that have a real step k steps before their last real one (after their first, for the reverse
    direction), so that pre- and post-padded batches, which compute the same thing, give the same
    profile. Only the (T, B) logs are gathered, never the (T, B, H) gradients.
    """
    if mask_tm is None:
        return combine_log_norms(log_rows, axis=1)
    steps, batch = mask_tm.shape
    k = np.arange(steps)[:, None]
    if reverse:
        anchor = mask_tm.argmax(axis=0)  # first real step
        idx = anchor[None, :] + k
    else:
        anchor = steps - 1 - mask_tm[::-1].argmax(axis=0)  # last real step
        idx = anchor[None, :] - k
    valid = (idx >= 0) & (idx < steps)
    idx = np.clip(idx, 0, steps - 1)
    cols = np.arange(batch)[None, :]
    valid &= mask_tm[idx, cols]
    gathered = np.where(valid, log_rows[idx, cols], -np.inf)  # (T, B), row k: k steps from the end
    return combine_log_norms(gathered, axis=1)[::-1].copy()


def _full_rows(traj: Trajectory, mask_tm: np.ndarray) -> Trajectory | None:
    """The trajectory of the longest sequences over their real steps (processing order), for the
    Jacobian products, which pad steps (the identity) would dilute; None under two steps."""
    lengths = mask_tm.sum(axis=0)
    rows = np.flatnonzero(lengths == lengths.max())
    steps = np.flatnonzero(mask_tm[:, rows].all(axis=1))
    if steps.size < 2:
        return None

    def pick(part):
        if isinstance(part, np.ndarray):
            return part[rows]
        picked = [pick(p) for p in part]
        return type(part)(*picked) if hasattr(part, "_fields") else tuple(picked)  # a state, or a cache

    hidden = traj.hidden[np.concatenate(([0], steps + 1))][:, rows]
    return Trajectory(None, hidden, [pick(traj.states[s]) for s in steps],
                      [pick(traj.caches[s]) for s in steps], None)


def network_layer_report(setup: Setup, traj: NetworkTrajectory, grads: NetworkGradients, k: int, d: int,
                         weights: Spectrum | dict[str, Spectrum] | None = None,
                         ) -> tuple[LayerReport, tuple, dict[str, Spectrum] | None, Trajectory | None]:
    """One layer and direction's report, its flow profile (norms and logs), its gate blocks'
    spectra, and its run over real steps only (``_full_rows``; None without padding).
    weights : the layer's ``weight_spectra``, when the caller has them."""
    net, mask_tm = setup.network, traj.mask_tm
    run, g = traj.runs[k][d], grads.layers[k][d]
    reverse = d == 1
    logs = g.log_norms  # ln||dL/dh_t||, exact at any depth
    log_profile = aligned_log_norms(g.log_rows, mask_tm, reverse)
    hidden_prev = run.hidden[:-1][::-1] if reverse else run.hidden[:-1]
    with np.errstate(all="ignore"):
        norms, profile = np.exp(logs), np.exp(log_profile)
        contributions = Gradients(0.0, g.dL_dh, g.dL_dc, g.params, g.dv, hidden_prev).contribution_norms()
        cell_norms = None if g.log_cell_rows is None else np.exp(g.log_cell_norms)
    ratios = ratios_from_logs(log_profile)
    view = Model(net.cell, net.layers[k][d], None)
    # the mean step Jacobian over real steps only: pad steps are the identity, never the cell's
    real = None if mask_tm is None else _full_rows(run, mask_tm[::-1] if reverse else mask_tm)
    spec, spectrum_of, gate_spectra = recurrent_spectra(view, (real or run).caches, None, weights)
    # with padding, the profile's first entries may hold no sequence at all (none is that long):
    # the flow is measured over the steps the longest sequences have
    longest = profile.shape[0] if mask_tm is None else int(mask_tm.sum(axis=0).max())
    start = profile.shape[0] - longest
    report = LayerReport(k, DIRECTIONS[d], norms, ratios, contributions, cell_norms, spec, spectrum_of,
                         flow(profile[start:], log_profile[start:]), _total_norm(g.log_rows), log10(logs))
    return report, (profile, log_profile), gate_spectra, real


def analyze_network(setup: Setup) -> AnalyzeResult:
    """Exact BPTT through the whole network and the flow of every layer and direction.

    The headline (the top-level fields) is the top layer's forward direction, the one nearest the
    loss; ``layers`` has every layer and direction, bottom first, forward before reverse.
    """
    net, batch = setup.network, setup.batch
    layers = [(k, d) for k in range(net.num_layers) for d in range(net.directions)]

    def every_weight_spectrum() -> dict:
        return {(k, d): weight_spectra(Model(net.cell, net.layers[k][d], None)) for k, d in layers}

    with beside(every_weight_spectrum, thread=net.hidden_size >= DECOMPOSE_BESIDE) as weights:  # see _analyze_single
        traj, grads = network_bptt(net, batch.x, batch.y, batch.mask, setup.upstream)
    reports, profiles = [], []
    for k, d in layers:
        report, profile, gates, real = network_layer_report(setup, traj, grads, k, d, weights.result()[k, d])
        reports.append(report)
        profiles.append(profile)
        if (k, d) == (net.num_layers - 1, 0):  # the headline: the top layer's forward direction
            gate_spectra, real_run = gates, real
    top = net.num_layers - 1
    head_i = top * net.directions
    headline, (profile, log_profile) = reports[head_i], profiles[head_i]
    run, params = traj.runs[top][0], net.layers[top][0]
    view = Model(net.cell, params, None)
    pascanu = None
    if headline.spectrum_of == "recurrent_weight" and net.readout == "last" and setup.upstream is None:
        # the bound holds where the gradient enters at the readout end only: the top layer's
        # final states, each sequence's at its own last real step (the aligned profile)
        gamma = get_activation(net.cell.activation).gamma
        pascanu = pascanu_check(gamma, headline.spectrum.max_singular_value, profile, log_profile,
                                log_norm_rounding(params[net.cell.recurrent]))
    lyap = lyapunov(view, real_run or run)  # over real steps; without padding, or under 2 of them: as run
    depth = None
    if net.num_layers > 1:
        totals = [float(np.sqrt(sum(r.total_grad_norm ** 2 for r in reports if r.layer == k)))
                  for k in (0, top)]
        with np.errstate(all="ignore"):
            ratio = totals[0] / totals[1] if totals[1] else float("nan")
        log10 = float(np.log10(ratio)) if np.isfinite(ratio) and ratio > 0 else None
        depth = Depth(totals[0], totals[1], ratio, log10)
    return AnalyzeResult(
        config=setup.config.as_dict(),
        data=describe_data(setup),
        parameter_count=net.parameter_count(),
        loss=grads.loss,
        baseline_loss=None if setup.upstream is not None else setup.baseline_loss,
        **headline_fields(headline),
        gate_spectra=gate_spectra,
        pascanu=pascanu,
        lyapunov=lyap,
        thresholds=Thresholds(),
        network=network_info(setup),
        layers=reports,
        depth=depth,
        flow_norms=profile,
        warnings=setup.notes,
        setup=setup,
        gradients=grads,
    )



def gradient_arrays(result: AnalyzeResult) -> dict[str, np.ndarray | float]:
    """What ``--save-grads`` writes: the loss, dL/dh_t of every layer and direction, and every
    parameter's gradient under the key it has in the user's state dict.

    One layer: ``dL_da`` (T, B, H) (and ``dL_dc``), as always. A network: ``dL_dh_l{k}`` and
    ``dL_dh_l{k}_reverse`` (T, B, H), zero at pad steps, and ``dL_dc_l{k}...`` for the LSTM.
    """
    setup, grads = result.setup, result.gradients
    if isinstance(grads, Gradients) and grads.dL_da is None:
        raise InputError("--save-grads: a checkpointed run (the full path does not fit in memory) keeps no "
                         "dL/da_t of every step; lower --seq-len or --batch-size, or raise --max-memory")
    if isinstance(grads, Gradients):
        arrays: dict[str, np.ndarray | float] = {"loss": grads.loss, "dL_da": grads.dL_da}
        if grads.dL_dc is not None:
            arrays["dL_dc"] = grads.dL_dc
        return {**arrays, **export_grads(setup.model, grads.params, setup.layout)}
    arrays = {} if grads.loss is None else {"loss": grads.loss}
    for k, layer in enumerate(grads.layers):
        for d, g in enumerate(layer):
            suffix = f"_l{k}" + ("_reverse" if d == 1 else "")
            arrays["dL_dh" + suffix] = g.dL_dh
            if g.dL_dc is not None:
                arrays["dL_dc" + suffix] = g.dL_dc
    return {**arrays, **export_network_grads(setup.network, grads, setup.layout)}


def weight_arrays(result: AnalyzeResult) -> dict[str, np.ndarray]:
    """What ``--save-weights`` writes: the model as a PyTorch state dict, under its own keys."""
    return export_network(result.setup.network, result.setup.layout)
