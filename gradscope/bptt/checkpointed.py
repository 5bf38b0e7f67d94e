"""Checkpointed BPTT: a one-layer network's exact gradient flow in O(sqrt(T) B H) memory.

The full path (network.py) keeps every state and cache, T x B x H floats and more. Here the forward
pass keeps only the state s_{jk} at the start of every segment of k steps (k ~ sqrt(T)), and the
backward pass, segment by segment from the last, runs the segment again from its checkpoint
(``run_layer(..., initial=s_{jk})``: the same code on the same numbers, so the same states and
caches bit for bit) and backpropagates through it with the very recursion of ``backprop_layer``
(``backprop_steps``), carrying dL/ds and its logarithmic units (one per sequence) from one segment
into the one before:

    memory  = ceil(T / k) checkpoints + one segment's trajectory and records + O(T) per-step scalars
    time    = two forward passes and one backward pass

What analyze reports is reduced per segment as it is computed: ln||dL/da_t|| (and ln||dL/dc_t||),
the contribution norms ||dv_t^T a_{t-1}||, and the parameter gradients, summed in the log domain
(each segment's sum weighted by e^{top_j}, as backprop_layer weights each step). The leading
Lyapunov exponent and, for gated cells, the mean step Jacobian are accumulated in the first
forward pass, which sees every cache once. dL/da_t itself (T, B, H) is never held.

Scope: one layer, one direction, no padding, the readout of the last state ("last").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..dynamics import Lyapunov, LyapunovSum, StepJacobian, _lyapunov, overflowed, resolve_transient
from ..errors import InputError
from ..model.cells import Params
from ..model.network import Network
from .layer import Trajectory, backprop_steps, cell_contribution_norms, run_layer, to_time_major
from .logdomain import combine_log_norms, log_row_norms, renormalise_if_far, to_common_unit, to_true_scale


def segment_length(steps: int) -> int:
    """k = ceil(sqrt(T)): as many checkpoints as steps in a segment, the fewest floats in all."""
    return math.isqrt(steps - 1) + 1 if steps > 1 else 1


@dataclass
class CheckpointedRun:
    """What one checkpointed BPTT pass gives analyze.

    loss : the batch-mean loss; params : {name: gradient} of the cell; head : {"Wy", "by"}.
    log_norms : (T,) ln||dL/da_t|| over batch and units; log_cell_norms : the same for dL/dc_t
        (LSTM), else None. contributions : (T,) ||dv_t^T a_{t-1}||_F at true scale.
    lyapunov : the leading Lyapunov exponent of the forward run (dynamics.lyapunov's).
    mean_jacobian : (S, S) the step Jacobian averaged over batch and steps, for gated cells; else None.
    segment : k, steps per segment; checkpoints : how many states were kept.
    """

    loss: float
    params: Params
    head: Params
    log_norms: np.ndarray
    log_cell_norms: np.ndarray | None
    contributions: np.ndarray
    lyapunov: Lyapunov
    mean_jacobian: np.ndarray | None
    segment: int
    checkpoints: int


class _LogSum:
    """sum_j e^{top_j} G_j over parameter dicts, held as e^top G so that nothing under- or overflows
    (the tops are units of the log domain, whole multiples of ln 2: every rescaling is exact)."""

    def __init__(self) -> None:
        self.total: Params | None = None
        self.top = 0.0

    def add(self, grads: Params, top: float) -> None:
        if self.total is None:
            self.total, self.top = grads, top
            return
        if top > self.top:
            for g in self.total.values():
                to_true_scale(g, self.top - top)
            self.total, grads, self.top = grads, self.total, top
        else:
            for g in grads.values():
                to_true_scale(g, top - self.top)
        for name, g in grads.items():
            self.total[name] += g

    def result(self) -> Params:
        for g in self.total.values():
            to_true_scale(g, self.top)
        return self.total


def _segment_traj(net: Network, x: np.ndarray, start: int, stop: int, initial) -> Trajectory:
    return run_layer(net.cell, net.layers[0][0], to_time_major(x[:, start:stop], net.dtype), initial=initial)


def checkpointed_bptt(net: Network, x: np.ndarray, y: np.ndarray, segment: int | None = None) -> CheckpointedRun:
    """Exact BPTT of the last-state readout's loss on x (B, T, D), y, keeping every k-th state only.

    net : one layer in one direction with a head read out last (``experiment.checkpointable_run``).
    segment : k, steps per segment (default ``segment_length(T)``). Equals network.bptt to rounding.
    """
    if net.readout != "last" or net.num_layers != 1 or net.directions != 1 or net.head is None:
        raise InputError("checkpointed BPTT runs one layer in one direction read out last (--readout last)")
    if x.ndim != 3 or x.shape[2] != net.input_size:
        raise InputError(f"inputs must have shape (B, T, {net.input_size}), got {tuple(x.shape)}")
    cell, params, head = net.cell, net.layers[0][0], net.head
    layer = net.layer(0)
    batch, steps = x.shape[:2]
    k = segment or segment_length(steps)
    starts = list(range(0, steps, k))
    size = layer.state_size
    transient = resolve_transient(None, steps)
    lyap = LyapunovSum(transient, min(1, size))
    gated = len(cell.gates) > 1
    with np.errstate(all="ignore"):
        # forward: keep the state each segment starts from; the Lyapunov frame and the mean step
        # Jacobian see every cache once, here
        checkpoints, state, blew_up, jac_sum, t = [], None, False, 0.0, 0
        for start in starts:
            checkpoints.append(None if state is None else tuple(np.array(p) for p in state))
            traj = _segment_traj(net, x, start, min(start + k, steps), state)
            blew_up = blew_up or overflowed(traj)
            for cache in traj.caches:
                t += 1
                if not blew_up:
                    lyap.add(t, StepJacobian(layer, cache, (batch, size, size)))
                if gated:
                    jac_sum = jac_sum + cell.step_jacobian(params, cache).mean(axis=0)
            state = traj.states[-1]
        last_hidden = np.array(state[0])
        del traj
        logits = last_hidden @ head["Wy"].T + head["by"]
        dtype = net.dtype  # every array below in the run's dtype; the per-step logs float64
        loss, dlogits = net.loss.value_and_grad(logits, np.asarray(y, dtype=dtype))
        # backward: delta_T = Wy^T dL/dlogits, then segment by segment from the last
        dstate = (dlogits @ head["Wy"],) + tuple(np.zeros((batch, net.hidden_size), dtype)
                                                   for _ in cell.state_names[1:])
        unit = renormalise_if_far(dstate, np.zeros(batch))
        log_norms = np.empty(steps)
        log_cell_norms = np.empty(steps) if len(cell.state_names) > 1 else None
        contributions = np.empty(steps)
        total = _LogSum()
        for j in range(len(starts) - 1, -1, -1):
            start, stop = starts[j], min(starts[j] + k, steps)
            n = stop - start
            traj = _segment_traj(net, x, start, stop, checkpoints[j])
            checkpoints[j] = None  # no longer needed: the memory goes down as the pass goes back
            deltas = np.empty((n + 1, batch, net.hidden_size), dtype)
            deltas[n] = dstate[0]
            dstate = (deltas[n],) + tuple(dstate[1:])
            dL_dc = None if log_cell_norms is None else np.empty((n, batch, net.hidden_size), dtype)
            width = params[cell.recurrent].shape[0]
            du = np.empty((n, batch, width), dtype)
            dv = du if cell.dv_is_du else np.empty((n, batch, width), dtype)
            scale = np.empty((n, batch))
            dstate, unit = backprop_steps(cell, params, traj.caches, dstate, unit, deltas, dL_dc, du, dv, scale,
                                          first=j == 0)
            log_norms[start:stop] = combine_log_norms(scale + log_row_norms(deltas[1:]), axis=1)
            if dL_dc is not None:
                log_cell_norms[start:stop] = combine_log_norms(scale + log_row_norms(dL_dc), axis=1)
            # this segment's summands in units e^top, as backprop_layer weights every step
            top = to_common_unit(du, dv, scale) if scale.any() else 0.0
            total.add(cell.param_grads(params, traj.x, traj.hidden[:-1], du, dv), top)
            to_true_scale(dv, top)  # at true scale: zero where that underflows, as the full path's
            contributions[start:stop] = cell_contribution_norms(cell, params, traj.x, traj.hidden[:-1], dv)
        grads = total.result()
        head_grads = {"Wy": dlogits.T @ last_hidden, "by": dlogits.sum(axis=0)}
    if blew_up:
        lyapunov = _lyapunov(np.full((1, min(1, size)), np.nan), transient, steps - transient)
    else:
        lyapunov = _lyapunov(lyap.per_sequence(), transient, steps - transient)
    mean_jacobian = jac_sum / steps if gated else None
    return CheckpointedRun(float(loss), grads, head_grads, log_norms, log_cell_norms, contributions, lyapunov, mean_jacobian,
                           k, len(starts))
