"""``--dtype float32`` against float64: the error, measured and bounded.

Every case builds one run twice, with ``dtype="float64"`` and ``dtype="float32"`` (the weights and
the batch are drawn or loaded in float64, then cast: experiment.build), runs BPTT on each and
compares, against the bounds of gradscope/precision.py:

- the loss, relative: LOSS_ERROR;
- ln||dL/dh_t|| of every layer and direction at every step, absolute (the relative error of the
  norm): (T - t + 1) LOG_NORM_ERROR_PER_STEP for a single layer, whose gradient has travelled
  T - t steps back; L x T of them for an L-layer network, whose gradient reaches a step of a lower
  layer along paths through the layers above;
- every parameter's gradient (cells, head, embedding), its error over the global gradient norm
  (over all parameters, as clipping takes it): GRADIENT_ERROR. Per parameter, a gradient that is
  a cancelling sum (a bias's, sum_t dL/dz_t) can have a large relative error and be tiny itself.

Cases: the vanilla RNN (tanh, relu), the GRU, the LSTM; one layer through ``bptt.bptt`` (analyze's
path) and ``checkpointed_bptt`` (compared with float64's full path), and loaded networks through
``bptt.bptt``: two layers, bidirectional, padded (--lengths), an embedding; each at T = 50 and
at a long T where float64's gradient falls far below float32's smallest number (1e-38, 1e-45
subnormal): 1e-100 .. 1e-600, which float32 reaches only through BPTT's log domain.

Measured on 2026-11-30 (``python tests/math/test_float32.py`` prints the table; eps = 2^-23):
the loss within 1.2 eps; ln||dL/dh_t|| within 1.5 (T - t + 1) eps on one layer and within 0.69
L x T eps on the networks; the gradients within 1.1 eps of the global norm. Beyond these cases:
80 single-layer runs (rnn tanh at gains 0.5 and 1, relu, gru, lstm; T = 1000 and 3000; H = 16 and
64; four seeds) gave 0.04-2.8 eps per step back (median 0.25: the error is linear in the
distance, the roundings do not cancel), but for one, whose gradient ran through a nearly
saturated tanh unit (slope 1 - a^2 from a rounded a: relative error eps / (1 - a^2)): 24 eps per
step. At H = 512 the gradients were within 7 eps. The bounds (precision.py) are these maxima
rounded up: LOSS_ERROR 4 eps, LOG_NORM_ERROR_PER_STEP 4 eps, GRADIENT_ERROR 16 eps.

Where the forward run is chaotic (a tanh RNN at --init-gain 2: the trajectories of the two dtypes
part like eps e^(lambda_1 t)) no such bound holds: at T = 200 the loss differed by 4e-4 and
ln||dL/da_t|| by 0.26. The bounds are for contracting runs, checked here at gains up to 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from gradscope.bptt import bptt
from gradscope.bptt.checkpointed import checkpointed_bptt
from gradscope.config import RunConfig
from gradscope.experiment import build
from gradscope.precision import EPS32, GRADIENT_ERROR, LOG_NORM_ERROR_PER_STEP, LOSS_ERROR

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
LONG = 1000  # steps: every case's float64 gradient falls below 1e-100 over them
B, H, D = 8, 16, 6


@dataclass
class Pass:
    """What one dtype's run gives: the loss, ln||dL/dh_t|| per layer and direction (T,), in order,
    and every parameter's gradient by a unique name."""

    loss: float
    logs: list[np.ndarray]
    grads: dict[str, np.ndarray]
    layers: int
    arrays: list[np.ndarray]  # everything BPTT computed in the run's dtype


def single(cell: str, activation: str = "tanh", gain: float = 1.0, checkpointed: bool = False) -> Callable:
    """A built one-layer network through bptt.bptt (or checkpointed_bptt for float32)."""
    def run(dtype: str, steps: int) -> Pass:
        setup = build(RunConfig(cell=cell, activation=activation, init_gain=gain, hidden_size=H, seq_len=steps,
                                batch_size=B, dtype=dtype))
        net, batch = setup.network, setup.batch
        if checkpointed and dtype == "float32":  # float64's reference is the full path
            cp = checkpointed_bptt(net, batch.x, batch.y)
            named = {net.parameter_name(0, 0, name): g for name, g in cp.layers[0][0].params.items()}
            named.update({f"head.{name}": g for name, g in cp.head.items()})
            return Pass(cp.loss, [cp.layers[0][0].log_norms], named, 1, list(named.values()))
        traj, grads = bptt(net, batch.x, batch.y)
        run, layer, named = traj.runs[0][0], grads.layers[0][0], grads.parameters(net)
        arrays = [run.hidden, traj.logits, layer.dL_dh, layer.dv, *named.values()]
        arrays += [p for state in run.states for p in state]
        arrays += [layer.dL_dc] if layer.dL_dc is not None else []
        return Pass(grads.loss, [layer.log_norms], dict(named), 1, arrays)
    return run


def state_dict(cell: str, layers: int, bidirectional: bool, gain: float, vocab: int | None = None) -> dict:
    """A PyTorch-layout state dict: rnn.* (and emb.weight), fc.*; W_hh ~ N(0, gain^2 / H)."""
    rng = np.random.default_rng(layers + 2 * bidirectional)
    g, dirs = GATES[cell], 2 if bidirectional else 1
    sd = {} if vocab is None else {"emb.weight": rng.normal(0, 1, (vocab, D))}
    for k in range(layers):
        for suffix in ("", "_reverse")[:dirs]:
            width = D if k == 0 else H * dirs
            sd[f"rnn.weight_ih_l{k}{suffix}"] = rng.normal(0, 1 / np.sqrt(width), (g * H, width))
            sd[f"rnn.weight_hh_l{k}{suffix}"] = rng.normal(0, gain / np.sqrt(H), (g * H, H))
            sd[f"rnn.bias_ih_l{k}{suffix}"] = rng.normal(0, 0.1, g * H)
            sd[f"rnn.bias_hh_l{k}{suffix}"] = rng.normal(0, 0.1, g * H)
    sd["fc.weight"] = rng.normal(0, 0.3, (2, H * dirs))
    sd["fc.bias"] = np.zeros(2)
    return sd


def network(cell: str, layers: int = 2, bidirectional: bool = True, padded: bool = False, embedding: bool = False,
            gain: float = 0.5) -> Callable:
    """A loaded network through bptt.bptt; padded: --lengths from T/2 to T; embedding: token ids
    with --padding-idx 0 (pads before the text)."""
    def run(dtype: str, steps: int) -> Pass:
        rng = np.random.default_rng(steps)
        settings = dict(weights=state_dict(cell, layers, bidirectional, gain, 20 if embedding else None),
                        seq_len=steps, batch_size=B, dtype=dtype)
        lengths = rng.integers(steps // 2, steps + 1, B)
        lengths[0] = steps
        if embedding:
            tokens = rng.integers(1, 20, (B, steps))
            tokens[np.arange(steps)[None, :] < steps - lengths[:, None]] = 0  # pre-padding
            settings.update(inputs=tokens, targets=rng.integers(0, 2, B), padding_idx=0)
        elif padded:
            settings.update(inputs=rng.normal(0, 1, (B, steps, D)), targets=rng.integers(0, 2, B), lengths=lengths)
        setup = build(RunConfig(**settings))
        batch = setup.batch
        traj, grads = bptt(setup.network, batch.x, batch.y, batch.mask, setup.upstream)
        named = {f"l{k}d{d}.{name}": g for k, layer in enumerate(grads.layers) for d, lg in enumerate(layer)
                 for name, g in lg.params.items()}
        named.update({f"head.{name}": g for name, g in grads.head.items()})
        if grads.embedding is not None:
            named["embedding"] = grads.embedding
        logs = [np.where(np.isfinite(lg.log_norms), lg.log_norms, np.nan) for layer in grads.layers for lg in layer]
        arrays = [traj.output, traj.logits, grads.dL_dx, *named.values()]
        arrays += [a for layer in grads.layers for lg in layer for a in (lg.dL_dh, lg.du, lg.dv, lg.dx)]
        arrays += [run.hidden for runs in traj.runs for run in runs]
        return Pass(grads.loss, logs, named, layers, arrays)
    return run


CASES = {
    "rnn tanh": single("rnn", gain=0.5),
    "rnn tanh gain 1": single("rnn"),
    "rnn relu": single("rnn", "relu", gain=0.5),
    "gru": single("gru"),
    "lstm": single("lstm"),
    "rnn checkpointed": single("rnn", gain=0.5, checkpointed=True),
    "lstm checkpointed": single("lstm", checkpointed=True),
    "rnn 2 layers": network("rnn", bidirectional=False),
    "gru 2 layers bidirectional": network("gru"),
    "lstm 2 layers bidirectional": network("lstm"),
    "rnn bidirectional padded": network("rnn", layers=1, padded=True),
    "lstm 2 layers bidirectional padded": network("lstm", padded=True),
    "gru embedding padding-idx": network("gru", embedding=True),
}
SHORT_CASES = ["rnn tanh", "rnn relu", "gru", "lstm", "rnn 2 layers", "lstm 2 layers bidirectional",
               "rnn bidirectional padded"]


def is_network(name: str) -> bool:
    """Whether the case's gradient reaches a step along paths through other layers or directions:
    its bound counts L x T steps, not T - t + 1."""
    return any(word in name for word in ("layers", "bidirectional", "embedding"))


@dataclass
class Errors:
    """The measured errors of one case in units of eps32, and float64's smallest log10 norm."""

    loss: float
    log_per_step: float  # max over steps of |d ln n_t| / (T - t + 1): one layer's figure
    log_per_layer_step: float  # max over steps of |d ln n_t| / (L x T): a network's figure
    gradient: float
    min_log10: float


def measure(name: str, steps: int) -> Errors:
    ref, low = CASES[name]("float64", steps), CASES[name]("float32", steps)
    back = np.arange(steps, 0, -1)  # T - t + 1
    diffs = [np.abs(a - b) for a, b in zip(ref.logs, low.logs)]
    scale = np.sqrt(sum(float(np.sum(g * g)) for g in ref.grads.values()))
    gradient = max(float(np.linalg.norm(low.grads[k] - g)) for k, g in ref.grads.items()) / scale
    return Errors(
        loss=abs(low.loss - ref.loss) / abs(ref.loss) / EPS32,
        log_per_step=max(float(np.nanmax(d / back)) for d in diffs) / EPS32,
        log_per_layer_step=max(float(np.nanmax(d)) for d in diffs) / (ref.layers * steps) / EPS32,
        gradient=gradient / EPS32,
        min_log10=min(float(np.nanmin(a)) for a in ref.logs) / np.log(10.0),
    )


@pytest.mark.parametrize("name,steps", [(name, LONG) for name in CASES] + [(name, 50) for name in SHORT_CASES])
def test_float32_is_within_the_stated_bounds_of_float64(name, steps):
    errors = measure(name, steps)
    assert errors.loss * EPS32 <= LOSS_ERROR
    if is_network(name):
        assert errors.log_per_layer_step * EPS32 <= LOG_NORM_ERROR_PER_STEP
    else:
        assert errors.log_per_step * EPS32 <= LOG_NORM_ERROR_PER_STEP
    assert errors.gradient * EPS32 <= GRADIENT_ERROR
    if steps == LONG:  # the premise: float32's numbers could not hold these norms without the log domain
        assert errors.min_log10 < -100


@pytest.mark.parametrize("name", ["rnn tanh", "lstm", "lstm 2 layers bidirectional padded", "gru embedding padding-idx"])
def test_float32_stays_float32_all_the_way(name):
    """No array BPTT computes is promoted to float64 on the way (a float64 constant or buffer
    anywhere on the path would promote everything after it)."""
    run = CASES[name]("float32", 60)
    dtypes = {str(a.dtype) for a in run.arrays if a is not None and a.dtype.kind == "f"}
    assert dtypes == {"float32"}
    assert all(np.all(np.isfinite(logs[~np.isnan(logs)])) for logs in run.logs)


def test_float32_keeps_finite_logs_where_its_numbers_underflow():
    """At T = 1000 the float64 gradient at the first step is about 1e-390: every float32 norm
    would be 0, yet every ln||dL/da_t|| is finite and matches float64's."""
    ref, low = CASES["rnn tanh"]("float64", LONG), CASES["rnn tanh"]("float32", LONG)
    assert ref.logs[0][0] / np.log(10.0) < -300 and np.all(np.isfinite(low.logs[0]))
    assert np.max(np.abs(low.logs[0] - ref.logs[0])) <= LONG * LOG_NORM_ERROR_PER_STEP


def report() -> None:
    """The table the bounds were set from."""
    print(f"{'case':36s} {'T':>5s} {'loss':>6s} {'ln n/(T-t+1)':>12s} {'ln n/(LT)':>9s} {'grads':>6s} "
          f"{'min log10':>9s}   (errors in eps32 = {EPS32:.3g})")
    for name in CASES:
        for steps in (50, LONG):
            e = measure(name, steps)
            per_step = "-" if is_network(name) else f"{e.log_per_step:.3f}"  # a reverse direction's t runs the other way
            print(f"{name:36s} {steps:5d} {e.loss:6.2f} {per_step:>12s} {e.log_per_layer_step:9.3f} "
                  f"{e.gradient:6.2f} {e.min_log10:9.1f}")


if __name__ == "__main__":
    report()


@pytest.mark.parametrize("steps", [200, 3000])
def test_pascanus_bound_holds_for_a_float32_orthogonal_linear_rnn(steps):
    """The spectrum is computed in float64 (of the float32 Wa, orthogonal to float32's rounding),
    and the measured side carries float32's rounding per step back as its slack: the theorem holds."""
    from gradscope.commands.analyze import analyze

    result = analyze(activation="linear", init="orthogonal", seq_len=steps, dtype="float32")
    assert result.pascanu.bound_holds
    assert abs(result.spectrum.max_singular_value - 1.0) < 4 * EPS32  # Wa's entries rounded to float32
    float64 = analyze(activation="linear", init="orthogonal", seq_len=steps)
    assert float64.pascanu.bound_holds
