"""``analyze``: one exact BPTT pass and everything it says about the gradient flow.

Returns an ``AnalyzeResult``: the object the table renders and ``--json`` prints (serialize.py),
and what ``gradscope.analyze(...)`` returns to Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..bptt.checkpointed import CheckpointedRun, checkpointed_bptt
from ..bptt.layer import cell_contribution_norms
from ..bptt.logdomain import combine_log_norms, log_row_norms
from ..bptt.network import NetworkGradients, NetworkTrajectory, bptt
from ..config import RunConfig
from ..dynamics import Lyapunov, lyapunov
from ..errors import InputError
from ..experiment import Setup, build
from ..flow import EXPLODING_RATIO, VANISHING_RATIO, Flow
from ..model.activations import get_activation
from ..model.layer import Layer
from ..model.network import DIRECTIONS
from ..parallel import beside
from ..precision import LOG_NORM_ERROR_PER_STEP
from ..profile import (
    flowing, headline, headline_of, layer_flow, real_run, run_mask, total_norm,
)
from ..runtime import blas_threads_for
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
class InitialGradient:
    """What reaches one layer and direction's initial state (given with ``--initial-state``):
    ||dL/dh_0|| over the batch and its log10, exact at any depth (-inf, null in JSON, where 0),
    and the same for the LSTM's dL/dc_0 (None for other cells). The arrays themselves are
    ``--save-grads``' dL_dh_0, dL_dc_0, as PyTorch's h0.grad, c0.grad."""

    grad_norm: float
    log10_grad_norm: float
    cell_grad_norm: float | None
    log10_cell_grad_norm: float | None


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
    initial_state : the gradient reaching the layer's initial state (InitialGradient), None
        unless one was given (``--initial-state``).
    log10_flow_norms : (T,) log10 of the profile the flow is measured on, exact at any depth, where
        it is not log10_grad_norms (a padded batch, a direction that reads backwards): entry T-k
        is the norm k steps back from each sequence's readout end; else None.
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
    initial_state: InitialGradient | None = None
    log10_flow_norms: np.ndarray | None = None


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
        step, of the part that flows back from the readout at T (profile.flowing).
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
        log10_flow_norms (Python only, the headline report's): its log10, exact at any depth.
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
    gradients: NetworkGradients | CheckpointedRun = field(metadata=HIDDEN, repr=False)

    @property
    def log10_flow_norms(self) -> np.ndarray | None:
        """The headline's LayerReport.log10_flow_norms (Python only): flow_norms' log10 from BPTT's
        log domain, exact at any depth, where they are counted back (padding), else None."""
        return headline_of(self.layers).log10_flow_norms


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


def weight_spectra(layer: Layer) -> Spectrum | dict[str, Spectrum]:
    """The spectra that need the weights alone: Wa's for the vanilla RNN; for a gated cell, gate
    name -> the spectrum of that gate's (H, H) block of W_hh."""
    if len(layer.cell.gates) == 1:
        return spectrum(layer.recurrent_weight)
    return {name: spectrum(block) for name, block in layer.gate_blocks().items()}


def run_spectrum(layer: Layer, caches: list | None, mean_jacobian: np.ndarray | None = None) -> Spectrum:
    """A gated cell's spectrum along the run: of its step Jacobian d state_t / d state_{t-1}
    averaged over the steps and the batch ((H, H) for the GRU; (2H, 2H) over the flattened (h, c)
    for the LSTM, whose gradient flows through both). mean_jacobian : that average, when the caller
    has it without the caches (checkpointed BPTT)."""
    if mean_jacobian is None:
        with np.errstate(all="ignore"):
            mean_jacobian = layer.cell.mean_step_jacobian(layer.params, caches)
    return spectrum(mean_jacobian)


def recurrent_spectra(layer: Layer, caches: list | None, mean_jacobian: np.ndarray | None = None,
                      weights: Spectrum | dict[str, Spectrum] | None = None,
                      ) -> tuple[Spectrum, str, dict[str, Spectrum] | None]:
    """The spectrum ``analyze`` reports, what it is of, and the spectra of the gate blocks.

    The vanilla RNN: Wa itself, and no gates. A gated cell has no single recurrent matrix: the
    spectrum of its mean step Jacobian (``run_spectrum``) and of each gate's block of W_hh.
    weights : ``weight_spectra(layer)``, when the caller computed it beside BPTT (parallel.beside).
    """
    weights = weight_spectra(layer) if weights is None else weights
    if isinstance(weights, Spectrum):
        return weights, "recurrent_weight", None
    return run_spectrum(layer, caches, mean_jacobian), "mean_step_jacobian", weights


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
    """Exact BPTT through the whole network and the flow of every layer and direction.

    The headline (the top-level fields) is the top layer's forward direction, the one nearest the
    loss; ``layers`` has every layer and direction, bottom first, forward before reverse. A loop
    of small steps runs on one BLAS thread (runtime.py): on a busy machine two threads that spin
    waiting for each other made the Lyapunov steps at (B, H) = (32, 128) 100 times slower.
    """
    # numpy's own floating-point warnings stay out: an overflowing run is the report's to tell
    # (its warnings, nonfinite_count and the verdict), as BPTT's log domain tells a vanishing one
    with blas_threads_for(len(setup.batch.x), setup.network.step_weights()), np.errstate(all="ignore"):
        return _checkpointed_report(setup) if setup.checkpointed else _report(setup)


def _every_weight_spectrum(net) -> dict:
    return {(k, d): weight_spectra(net.layer(k, d)) for k, d in net.each_layer()}


def _report(setup: Setup) -> AnalyzeResult:
    net, batch = setup.network, setup.batch
    # Where they are large, LAPACK's decompositions run on a core of their own: the weights'
    # spectra, which need no run, beside BPTT (at H = 512 they cost as much as the whole pass).
    # Small ones run after (on a thread they made the report slower and less steady at H = 128).
    with beside(_every_weight_spectrum, net, thread=net.hidden_size >= DECOMPOSE_BESIDE) as weights:
        traj, grads = bptt(net, batch.x, batch.y, batch.mask, setup.upstream, setup.initial)
    with np.errstate(all="ignore"):
        flows = flowing(net, traj, grads, batch.y)  # exact at any depth (bptt's log domain)
    reports, profiles = [], []
    for k, d in net.each_layer():
        report, profile, gates = layer_report(setup, traj, flows, k, d, weights.result()[k, d])
        if setup.initial is not None:  # the total gradient's, as torch's h0.grad (not the flowing part's)
            report.initial_state = initial_report(grads.layers[k][d].log_initial)
        reports.append(report)
        profiles.append(profile)
        if (k, d) == headline(net):
            gate_spectra = gates
    top, _ = headline(net)
    head_i = net.layer_index(top)
    report, (profile, log_profile) = reports[head_i], profiles[head_i]
    # over each sequence's real steps, as spectrum's (pad steps, the identity, are skipped)
    lyap = lyapunov(net.layer(top), traj.runs[top][0], mask=run_mask(traj, top, 0))
    return _result(setup, reports, profile, _pascanu(setup, report, profile, log_profile), lyap, gate_spectra,
                   describe_data(setup), grads)


def _checkpointed_report(setup: Setup) -> AnalyzeResult:
    """The same report from checkpointed BPTT (bptt/checkpointed.py), which keeps sqrt(T) states of
    every layer and direction: for a run whose full path does not fit in memory."""
    net, batch = setup.network, setup.batch
    with beside(_every_weight_spectrum, net, thread=net.hidden_size >= DECOMPOSE_BESIDE) as weights:
        run = checkpointed_bptt(net, batch.x, batch.y, batch.mask, setup.upstream)
    mask_tm = None if batch.mask is None or batch.mask.all() else np.ascontiguousarray(batch.mask.T)
    reports, profiles = [], []
    for k, d in net.each_layer():
        g = run.layers[k][d]
        spectra = recurrent_spectra(net.layer(k, d), None, g.mean_jacobian, weights.result()[k, d])
        report, profile = _layer_figures(k, d, mask_tm, g, g.contributions, spectra, d == 1)
        reports.append(report)
        profiles.append(profile)
        if (k, d) == headline(net):
            gate_spectra = spectra[2]
    top, _ = headline(net)
    report, (profile, log_profile) = reports[net.layer_index(top)], profiles[net.layer_index(top)]
    data = (describe_data(setup) + f"; checkpointed BPTT (the full path does not fit in memory): {run.checkpoints} "
            f"states kept per layer and direction, segments of {run.segment} steps recomputed")
    return _result(setup, reports, profile, _pascanu(setup, report, profile, log_profile), run.lyapunov,
                   gate_spectra, data, run)


def _pascanu(setup: Setup, report: LayerReport, profile: np.ndarray, log_profile: np.ndarray) -> PascanuCheck | None:
    """Pascanu's bound on the headline, where it holds: a recurrence a_t = f(Wa a_{t-1} + ...) whose
    gradient enters at the readout end only (the final states, or what flows back from the last
    step alone for a readout at every step), each sequence's at its own last real step. A head that
    pools every step (mean, max) gives each step a gradient of its own: no power of Wa bounds it."""
    net = setup.network
    if report.spectrum_of != "recurrent_weight" or net.head is None or setup.upstream is not None:
        return None
    if net.readout in ("mean", "max", "max-all"):
        return None
    top, _ = headline(net)
    gamma = get_activation(net.cell_of(top).activation).gamma
    return pascanu_check(gamma, report.spectrum.max_singular_value, profile, log_profile,
                         log_norm_rounding(net.layer(top).recurrent_weight))


def _result(setup: Setup, reports: list[LayerReport], flow_norms: np.ndarray, pascanu: PascanuCheck | None,
            lyap: Lyapunov, gate_spectra: dict[str, Spectrum] | None, data: str,
            gradients: NetworkGradients | CheckpointedRun) -> AnalyzeResult:
    net = setup.network
    top, _ = headline(net)
    depth = None
    if net.num_layers > 1:
        totals = [float(np.sqrt(sum(r.total_grad_norm ** 2 for r in reports if r.layer == k))) for k in (0, top)]
        with np.errstate(all="ignore"):
            ratio = totals[0] / totals[1] if totals[1] else float("nan")
        depth = Depth(totals[0], totals[1], ratio, float(np.log10(ratio)) if np.isfinite(ratio) and ratio > 0 else None)
    return AnalyzeResult(
        config=setup.config.as_dict(),
        data=data,
        parameter_count=net.parameter_count(),
        loss=gradients.loss,
        baseline_loss=None if setup.upstream is not None else setup.baseline_loss,
        **headline_fields(reports[net.layer_index(top)]),
        gate_spectra=gate_spectra,
        pascanu=pascanu,
        lyapunov=lyap,
        thresholds=Thresholds(),
        network=network_info(setup),
        layers=reports,
        depth=depth,
        flow_norms=flow_norms,
        warnings=setup.notes,
        setup=setup,
        gradients=gradients,
    )


def analyze(config: RunConfig | None = None, *, full_gradients: bool = False, **settings) -> AnalyzeResult:
    """Build the model and batch a config describes and analyse one BPTT pass.

    ``gradscope.analyze(seq_len=200, activation="relu")`` takes the RunConfig fields as keywords.
    full_gradients : keep dL/da_t at every step (``--save-grads``): a run whose full path does not
        fit in memory is then refused before any work instead of checkpointed.
    """
    config = config or RunConfig(**settings)
    return analyze_setup(build(config, checkpointable=not full_gradients))


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
    head = None if net.head is None else setup.layout.head_label(net)
    return NetworkInfo(setup.layout.describe(net), net.num_layers, net.directions,
                       None if net.embedding is None else list(net.embedding.shape), net.readout, head,
                       list(setup.layout.ignored), mask is not None, [int(lengths.min()), int(lengths.max())])


def layer_report(setup: Setup, traj: NetworkTrajectory, grads: NetworkGradients, k: int, d: int,
                 weights: Spectrum | dict[str, Spectrum] | None = None,
                 ) -> tuple[LayerReport, tuple, dict[str, Spectrum] | None]:
    """One layer and direction's report, its flow profile (norms and logs) and its gate blocks'
    spectra. grads : the flowing gradients (profile.flowing); weights : the layer's ``weight_spectra``."""
    run, g = traj.runs[k][d], grads.layers[k][d]
    net = setup.network
    reverse = net.reads_backwards(k, d)
    hidden_prev = run.hidden[:-1][::-1] if reverse else run.hidden[:-1]
    with np.errstate(all="ignore"):
        contributions = cell_contribution_norms(net.cell_of(k), net.layers[k][d],
                                                run.x[::-1] if reverse else run.x, hidden_prev, g.dv)
    # the mean step Jacobian over real steps only: pad steps are the identity, never the cell's
    real = real_run(traj, k, d)
    spectra = recurrent_spectra(net.layer(k, d), (real or run).caches, None, weights)
    report, profile = _layer_figures(k, d, traj.mask_tm, g, contributions, spectra, reverse)
    return report, profile, spectra[2]


def _layer_figures(k: int, d: int, mask_tm: np.ndarray | None, g, contributions: np.ndarray,
                   spectra: tuple, reverse: bool) -> tuple[LayerReport, tuple]:
    """A LayerReport from what BPTT gave the layer (``log_rows``, ``log_norms``, ``log_cell_norms``),
    its contributions and spectra; and its flow profile (norms, logs), aligned to the readout end
    (the last real step, or the first for a direction that reads backwards)."""
    logs = g.log_norms  # ln||dL/dh_t||, exact at any depth
    measured, log_profile = layer_flow(k, d, mask_tm, g, reverse)
    with np.errstate(all="ignore"):
        norms, profile = np.exp(logs), np.exp(log_profile)
        cell_norms = None if g.log_cell_norms is None else np.exp(g.log_cell_norms)
    spec, spectrum_of, _ = spectra
    report = LayerReport(k, DIRECTIONS[d], norms, ratios_from_logs(log_profile), contributions, cell_norms, spec,
                         spectrum_of, measured.flow, total_norm(logs), measured.log10_grad_norms,
                         log10_flow_norms=measured.log10_flow_norms)
    return report, (profile, log_profile)


def initial_report(log_initial: tuple[float, ...]) -> InitialGradient:
    """The InitialGradient of ln||dL/dh_0|| (and ln||dL/dc_0||) over the batch."""
    with np.errstate(all="ignore"):
        norms = [float(np.exp(v)) for v in log_initial] + [None]
        logs = [float(v / np.log(10.0)) for v in log_initial] + [None]
    return InitialGradient(norms[0], logs[0], norms[1], logs[1])


def gradient_arrays(result: AnalyzeResult) -> dict[str, np.ndarray | float]:
    """What ``--save-grads`` writes: the loss, dL/dh_t of every layer and direction, and every
    parameter's gradient under the key it has in the user's state dict.

    One layer in one direction: ``dL_da`` (T, B, H) (and ``dL_dc``), the lesson's name. A deeper
    or bidirectional network: ``dL_dh_l{k}`` and ``dL_dh_l{k}_reverse`` (T, B, H), zero at pad
    steps, and ``dL_dc_l{k}...`` for the LSTM. With an initial state given (``--initial-state``):
    ``dL_dh_0`` (L x directions, B, H) (and ``dL_dc_0``), as PyTorch's h0.grad, c0.grad.
    """
    setup, grads = result.setup, result.gradients
    if isinstance(grads, CheckpointedRun):
        raise InputError("--save-grads: a checkpointed run (the full path does not fit in memory) keeps no "
                         "dL/da_t of every step; lower --seq-len or --batch-size, or raise --max-memory")
    net = setup.network
    arrays: dict[str, np.ndarray | float] = {} if grads.loss is None else {"loss": grads.loss}
    single = net.num_layers == 1 and net.directions == 1
    for k, layer in enumerate(grads.layers):
        for d, g in enumerate(layer):
            suffix = "" if single else f"_l{k}" + ("_reverse" if d == 1 else "")
            arrays[("dL_da" if single else "dL_dh") + suffix] = g.dL_dh
            if g.dL_dc is not None:
                arrays["dL_dc" + suffix] = g.dL_dc
    if setup.initial is not None:
        arrays.update(grads.initial_state())
    return {**arrays, **setup.layout.export_grads(net, grads)}


def weight_arrays(result: AnalyzeResult) -> dict[str, np.ndarray]:
    """What ``--save-weights`` writes: the model as a PyTorch state dict, under its own keys."""
    return result.setup.layout.export(result.setup.network)
