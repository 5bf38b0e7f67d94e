"""Checkpointed BPTT: a network's exact gradient flow when its full path does not fit in memory.

The full path (network.py) keeps every state and cache of every layer and direction: some 30
floats per step, sequence and hidden unit and layer. Here the forward pass keeps, per layer and
direction, only the state s_{jk} at the start of every segment of k steps (k ~ sqrt(T)), and each
layer's output sequence (the next layer's input). The backward pass, layer by layer from the top
and segment by segment from the last in each direction's order, runs the segment again from its
checkpoint (``run_layer(..., initial=s_{jk})``: the same code on the same numbers, so the same
states and caches bit for bit) and backpropagates through it with the very recursion of
``backprop_layer`` (``backprop_steps``), carrying dL/ds and its logarithmic units (one per
sequence) from one segment into the one before:

    memory  = per layer and direction ceil(T / k) checkpoints, one segment's trajectory and records
              + the sequences between layers (L + 2 of (T, B, F), in files on disk where they do
              not fit in memory: ``sequence``) + O(T B) per-step logs
    time    = two forward passes and one backward pass

What analyze reports is reduced per segment as it is computed: ln||dL/dh_t|| of every sequence
(and ln||dL/dc_t||), the contribution norms ||dv_t^T h_{t-1}||, and the parameter gradients,
summed in the log domain (each segment's sum weighted by e^{top_j}, as backprop_layer weights each
step). What reaches a layer's input (dL/dx_t, in the units of its step) goes into the layer below
as the full path carries it. The leading Lyapunov exponent of the headline and, for gated cells,
every layer's mean step Jacobian are accumulated in the forward pass, over the real steps of the
longest sequences, as analyze measures them on the full path. dL/dh_t itself is never held.

Scope: heads read out last, mean or max, or the caller's upstream gradients (a readout at every
step needs each step's share: the full path).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field

import numpy as np

from .. import memory
from ..dynamics import (
    Lyapunov, LyapunovSum, StepJacobian, _lyapunov, mask_transients, overflowed,
)
from ..errors import InputError
from ..model.cells import Params
from ..model.network import Network
from .layer import Trajectory, backprop_steps, cell_contribution_norms, pick_rows, run_layer, to_time_major
from .logdomain import combine_log_norms, log_row_norms, renormalise_if_far, to_common_unit, to_true_scale
from .network import NetworkTrajectory, Upstream, add_scaled, embed, head_gradients


def segment_length(steps: int) -> int:
    """k = ceil(sqrt(T)): as many checkpoints as steps in a segment, the fewest floats in all."""
    return math.isqrt(steps - 1) + 1 if steps > 1 else 1


@dataclass
class CheckpointedLayer:
    """One layer and direction's share of a checkpointed pass (absolute time order, t = 1..T).

    params : {name: gradient} of the cell. log_rows : (T, B) ln||dL/dh_t|| of each sequence (-inf
    at pad steps); log_cell_rows : the same for dL/dc_t (LSTM), else None; log_norms,
    log_cell_norms : (T,) over the batch. contributions : (T,) ||dv_t^T h_{t-1}||_F at true scale.
    mean_jacobian : (S, S) the step Jacobian averaged over the batch and the real steps of the
    longest sequences, for gated cells; else None.
    """

    params: Params
    log_rows: np.ndarray = field(repr=False)
    log_cell_rows: np.ndarray | None = field(repr=False)
    contributions: np.ndarray = field(repr=False)
    mean_jacobian: np.ndarray | None = field(repr=False)

    @property
    def log_norms(self) -> np.ndarray:
        return combine_log_norms(self.log_rows, axis=1)

    @property
    def log_cell_norms(self) -> np.ndarray | None:
        return None if self.log_cell_rows is None else combine_log_norms(self.log_cell_rows, axis=1)


@dataclass
class CheckpointedRun:
    """What one checkpointed BPTT pass gives analyze.

    loss : the batch-mean loss (None with the caller's gradients); head : {"Wy", "by"} or None;
    embedding : (V, D) dL/dE or None; layers : layers[k][d], CheckpointedLayer.
    lyapunov : the headline's (top layer, forward) leading Lyapunov exponent over each sequence's
        real steps (dynamics.lyapunov's with a mask, as analyze's full path computes it).
    segment : k, steps per segment; checkpoints : states kept per layer and direction.
    """

    loss: float | None
    head: Params | None
    embedding: np.ndarray | None
    layers: list[list[CheckpointedLayer]]
    lyapunov: Lyapunov
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


class _Sequences:
    """The (T, B, F) sequences between layers: in memory where they fit beside the run, else in
    files of a temporary folder (np.memmap), removed when the pass ends."""

    def __init__(self, budget: int | None) -> None:
        self.budget = budget
        self.folder: tempfile.TemporaryDirectory | None = None
        self.count = 0

    def new(self, shape: tuple[int, ...], dtype, fill: float | None = None) -> np.ndarray:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if self.budget is None or size <= self.budget:
            self.budget = None if self.budget is None else self.budget - size
            return np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
        if self.folder is None:
            self.folder = tempfile.TemporaryDirectory(prefix="gradscope-")
        self.count += 1
        array = np.lib.format.open_memmap(f"{self.folder.name}/{self.count}.npy", "w+", dtype, shape)
        if fill is not None:
            array[...] = fill
        return array

    def close(self) -> None:
        if self.folder is not None:
            self.folder.cleanup()


def checkpointed_bptt(net: Network, x: np.ndarray, y: np.ndarray | None = None, mask: np.ndarray | None = None,
                      upstream: Upstream | None = None, segment: int | None = None) -> CheckpointedRun:
    """Exact BPTT of the network on x (B, T, D) or token ids (B, T), keeping every k-th state only.

    mask : (B, T) bool of real steps (None: every step real); upstream : the caller's gradients in
    place of a head. segment : k, steps per segment (default ``segment_length(T)``). Equals
    network.bptt to rounding.
    """
    if net.head is not None and net.readout == "every" and upstream is None:
        raise InputError("checkpointed BPTT reads out the last state, the mean or the max (not --readout every)")
    bound = memory.limit()[0]  # /proc/meminfo, the cgroup, ulimit: read once
    sequences = _Sequences(bound and bound // 4)
    try:
        with np.errstate(all="ignore"):
            return _run(net, x, y, mask, upstream, segment, sequences)
    finally:
        sequences.close()


def _run(net: Network, x, y, mask, upstream, segment, sequences: _Sequences) -> CheckpointedRun:
    cell, h, dirs, dtype = net.cell, net.hidden_size, net.directions, net.dtype
    tokens = None
    if x.ndim == 2:
        if net.embedding is None:
            raise InputError(f"inputs of shape {x.shape} are token ids, but the weights hold no embedding")
        tokens = np.asarray(x, dtype=np.int64)
        batch, steps = tokens.shape
        inputs = sequences.new((steps, batch, net.input_size), dtype)
        for start in range(0, steps, 4096):  # the embedded tokens, a block of steps at a time
            inputs[start:start + 4096] = embed(net, tokens[:, start:start + 4096])
    else:
        if x.shape[2] != net.input_size:
            raise InputError(f"inputs must have shape (B, T, {net.input_size}), got {tuple(x.shape)}")
        batch, steps = x.shape[:2]
        inputs = to_time_major(x, dtype)
    k = segment or segment_length(steps)
    starts = list(range(0, steps, k))
    mask_tm = None if mask is None or mask.all() else np.ascontiguousarray(mask.T)
    # the real steps of the longest sequences, where the mean step Jacobian is measured (analyze's)
    if mask_tm is None:
        rows, included = np.arange(batch), np.ones(steps, bool)
    else:
        real_lengths = mask_tm.sum(axis=0)
        rows = np.flatnonzero(real_lengths == real_lengths.max())
        included = mask_tm[:, rows].all(axis=1)
    top = net.num_layers - 1
    size = net.layer(0).state_size

    # forward: each layer and direction from its checkpoints, its output into the next input
    checkpoints: list[list[list]] = []
    outputs, finals_h = [inputs], []
    jacobians = [[None] * dirs for _ in range(net.num_layers)]
    lyap = None
    for layer, layer_params in enumerate(net.layers):
        out = sequences.new((steps, batch, dirs * h), dtype)
        layer_checkpoints, layer_finals = [], []
        for d, params in enumerate(layer_params):
            flip = _flip(d)
            src, m = flip(outputs[-1]), flip(mask_tm)
            out_d = flip(out)[:, :, d * h:(d + 1) * h]  # written in the order the direction runs
            kept, state, jac_sum, seen = [], None, 0.0, 0
            measure = (layer, d) == (top, 0)
            if measure:  # lambda_1 over each sequence's real steps, as dynamics.lyapunov with a mask
                per_sequence, transient, real_steps = mask_transients(m, None, steps)
                lyap, t_run, blew_up = LyapunovSum(per_sequence, 1), 0, False
            for start in starts:
                stop = min(start + k, steps)
                kept.append(None if state is None else tuple(np.array(p) for p in state))
                traj = run_layer(cell, params, src[start:stop], None if m is None else m[start:stop], initial=state)
                out_d[start:stop] = traj.hidden[1:]
                steps_in = included[::-1][start:stop] if d == 1 else included[start:stop]
                if len(cell.gates) > 1:  # the segment's mean, weighted by its steps
                    picked = [cache if mask_tm is None else pick_rows(cache, rows)
                              for cache, use in zip(traj.caches, steps_in) if use]
                    if picked:
                        jac_sum = jac_sum + cell.mean_step_jacobian(params, picked) * len(picked)
                        seen += len(picked)
                for i, cache in enumerate(traj.caches if measure and not blew_up else ()):
                    t_run += 1
                    lyap.add(t_run, StepJacobian(net.layer(layer, d), cache, (batch, size, size)),
                             None if m is None else m[start + i])
                if measure:
                    blew_up = blew_up or overflowed(traj)
                state = traj.states[-1]
            layer_checkpoints.append(kept)
            layer_finals.append(np.array(state[0]))
            jacobians[layer][d] = jac_sum / seen if len(cell.gates) > 1 and seen else None
            if measure:
                lyapunov = (_lyapunov(np.full((1, 1), np.nan), transient, real_steps - transient) if blew_up
                            else _lyapunov(lyap.per_sequence(), transient, real_steps - transient))
        if mask_tm is not None:
            for start in range(0, steps, k):  # pad steps output zero (pad_packed_sequence)
                out[start:start + k] *= mask_tm[start:start + k, :, None]
        outputs.append(out)
        checkpoints.append(layer_checkpoints)
        finals_h.append(layer_finals)

    # the head: the loss and what reaches the top layer, from the top output sequence
    stubs = [[Trajectory(None, f[None], [], []) for f in layer_finals] for layer_finals in finals_h]
    traj = NetworkTrajectory(stubs, inputs, tokens, mask_tm, outputs[-1])
    if net.head is not None:
        from .network import _features  # the readout of the full path, on the same sequences

        traj.features, traj.argmax = _features(net, traj)
        traj.logits = traj.features @ net.head["Wy"].T + net.head["by"]
    loss, head_grads, d_out, finals = head_gradients(net, traj, y, upstream)

    # backward: layer by layer from the top, each direction segment by segment from its last
    results: list[list[CheckpointedLayer]] = [[] for _ in net.layers]
    d_scale = None
    for layer in range(net.num_layers - 1, -1, -1):
        below = outputs[layer]
        d_in = sequences.new(below.shape, dtype, 0.0)
        in_scale = sequences.new(below.shape[:2], np.float64, 0.0)
        for d, params in enumerate(net.layers[layer]):
            results[layer].append(_backward(
                net, params, d, layer, below, d_out, d_scale, finals[layer][d], mask_tm, checkpoints[layer][d],
                starts, k, d_in, in_scale, jacobians[layer][d]))
        d_out, d_scale = d_in, in_scale
    embedding = None
    if tokens is not None:
        embedding = np.zeros_like(net.embedding)
        for start in range(0, steps, k):
            part = np.array(d_out[start:start + k])
            to_true_scale(part, d_scale[start:start + k])  # what reaches the inputs, at true scale
            np.add.at(embedding, tokens[:, start:start + k].T.reshape(-1), part.reshape(-1, part.shape[2]))
        if net.padding_idx is not None:
            embedding[net.padding_idx] = 0.0  # nn.Embedding(padding_idx=p) never updates row p
    return CheckpointedRun(None if loss is None else float(loss), head_grads, embedding, results, lyapunov, k,
                           len(starts))


def _flip(d: int):
    """Views of (T, ...) arrays in the order direction d processes its steps (time reversed for
    the reverse direction); writes into them land in absolute order."""
    if d == 0:
        return lambda a: a
    return lambda a: None if a is None else a[::-1]


def _backward(net: Network, params: Params, d: int, layer: int, below: np.ndarray, d_out: np.ndarray | None,
              d_scale: np.ndarray | None, final: list, mask_tm, kept: list, starts: list[int], k: int,
              d_in: np.ndarray, in_scale: np.ndarray, mean_jacobian) -> CheckpointedLayer:
    """BPTT through one layer and direction, segment by segment from its last, from d_out (T, B, F)
    held in units e^d_scale (T, B) and its final-state gradients; dL/dx adds into d_in (units in_scale)."""
    cell, h = net.cell, net.hidden_size
    steps, batch = below.shape[:2]
    flip = _flip(d)
    src, m = flip(below), flip(mask_tm)
    local_all = None if d_out is None else flip(d_out)[:, :, d * h:(d + 1) * h]
    scale_all = flip(d_scale)
    into, into_scale = flip(d_in), flip(in_scale)
    dtype = net.dtype
    dstate = tuple(np.zeros((batch, h), dtype) if f is None else np.array(f, dtype=dtype)
                   for f in (final if final else [None] * len(cell.state_names)))
    unit = renormalise_if_far(dstate, np.zeros(batch))
    log_rows = np.empty((steps, batch))
    log_cell_rows = np.empty((steps, batch)) if len(cell.state_names) > 1 else None
    contributions = np.empty(steps)
    total = _LogSum()
    width = params[cell.recurrent].shape[0]
    for j in range(len(starts) - 1, -1, -1):
        start, stop = starts[j], min(starts[j] + k, steps)
        n = stop - start
        seg_mask = None if m is None else m[start:stop]
        traj = run_layer(cell, params, src[start:stop], seg_mask, initial=kept[j])
        kept[j] = None  # no longer needed: the memory goes down as the pass goes back
        real = None if seg_mask is None else seg_mask[:, :, None].astype(dtype)
        local, log_local, local_scale = None, None, None
        if local_all is not None:
            local = np.array(local_all[start:stop])
            if real is not None:
                local *= real  # pad outputs are constant zeros: no gradient flows through them
            local_scale = None if scale_all is None else np.array(scale_all[start:stop])
            log_local = log_row_norms(local) + (0.0 if local_scale is None else local_scale)
        deltas = np.empty((n + 1, batch, h), dtype)
        deltas[n] = dstate[0]
        dstate = (deltas[n],) + tuple(dstate[1:])
        dL_dc = None if log_cell_rows is None else np.empty((n, batch, h), dtype)
        du = np.empty((n, batch, width), dtype)
        dv = du if cell.dv_is_du else np.empty((n, batch, width), dtype)
        scale = np.empty((n, batch))
        dstate, unit = backprop_steps(cell, params, traj.caches, dstate, unit, deltas, dL_dc, du, dv, scale, local,
                                      log_local, real, first=j == 0, local_scale=local_scale)
        rows = scale + log_row_norms(deltas[1:])
        cell_rows = None if dL_dc is None else scale + log_row_norms(dL_dc)
        if seg_mask is not None:  # ln 0 at pad steps, as the full path reports them
            rows = np.where(seg_mask, rows, -np.inf)
            cell_rows = None if cell_rows is None else np.where(seg_mask, cell_rows, -np.inf)
        log_rows[start:stop] = rows
        if cell_rows is not None:
            log_cell_rows[start:stop] = cell_rows
        # dL/dx_t in the units of its step, into what reaches the layer below (the second direction's
        # added to the first's, each row in the larger of the two units)
        dx = cell.input_grads(params, du)
        if d == 0:
            into[start:stop], into_scale[start:stop] = dx, scale
        else:
            summed, summed_scale = add_scaled(np.array(into[start:stop]), np.array(into_scale[start:stop]), dx, scale)
            into[start:stop], into_scale[start:stop] = summed, summed_scale
        # this segment's summands in units e^top, as backprop_layer weights every step
        top = to_common_unit(du, dv, scale) if scale.any() else 0.0
        total.add(cell.param_grads(params, traj.x, traj.hidden[:-1], du, dv), top)
        to_true_scale(dv, top)  # at true scale: zero where that underflows, as the full path's
        contributions[start:stop] = cell_contribution_norms(cell, params, traj.x, traj.hidden[:-1], dv)
    grads = total.result()
    for name in [n for n in grads if not net.is_trained(layer, d, n)]:
        grads.pop(name)  # bias=False's zero biases and the network's fixed arrays, as the full path drops them
    return CheckpointedLayer(grads, flip(log_rows).copy(), None if log_cell_rows is None else flip(log_cell_rows).copy(),
                             flip(contributions).copy(), mean_jacobian)
