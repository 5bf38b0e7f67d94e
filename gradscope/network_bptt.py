"""Exact BPTT through a whole network: embedding, stacked and bidirectional layers, padding, head.

Each layer and direction runs ``bptt.run_layer`` / ``bptt.backprop_layer`` (the same loop as the
single-layer model); this module wires them (model/network.py gives the equations):

    forward     x -> layer 0 -> ... -> layer L-1 -> readout -> logits -> loss
                (a reverse direction runs on the time-reversed sequence, its output reversed back)
    backward    dL/dlogits -> dL/d(features) -> the top layer's states:
                  last   into the final states: dL/dh_n (the recursion starts there)
                  mean   into every real step: dL/dh_t = dL/dfeatures / length
                  max    into the step holding each feature's maximum
                  every  into every step: Wy^T dL/dlogits_t
                then for k = L-1 .. 0: BPTT through each direction of layer k from what reaches its
                outputs; dL/d(input of layer k) = sum over directions of W_ih^T dL/du_t is what
                reaches the outputs of layer k-1 (or the embedding's rows: dE[token_t] += dL/dx_t).

Shapes: B batch, T steps, D input width, H hidden units, F = H x directions, O outputs. Inside,
everything is time-major (T, B, .); ``mask_tm`` (T, B) is True at real steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bptt import LayerGradients, Trajectory, _to_true_scale, backprop_layer, run_layer
from .errors import InputError
from .model.cells import Params
from .model.network import Network


@dataclass
class Upstream:
    """Gradients the caller gives in place of a head and loss (``--output-grads``).

    output : (B, T, F) dL/d(output sequence) of the top layer, or None.
    h_n : (L x directions, B, H) dL/dh_n, or None; c_n : the same for the LSTM's c_n.
    """

    output: np.ndarray | None = None
    h_n: np.ndarray | None = None
    c_n: np.ndarray | None = None


@dataclass
class NetworkTrajectory:
    """The forward pass of a network over a batch.

    runs : runs[k][d], the trajectory of layer k in direction d, in the order it was processed
        (time-reversed for the reverse direction).
    inputs : (T, B, D) the input of layer 0 (the embedded tokens where there is an embedding).
    tokens : (B, T) token ids, or None.
    mask_tm : (T, B) bool, True at real steps, or None (every step real).
    output : (T, B, F) the top layer's output sequence, zero at pad steps.
    features : (B, F) what the head reads ((T, B, F) for ``every``); None without a head.
    logits : (B, O) or (B, T, O); None without a head.
    """

    runs: list[list[Trajectory]]
    inputs: np.ndarray
    tokens: np.ndarray | None
    mask_tm: np.ndarray | None
    output: np.ndarray
    features: np.ndarray | None = None
    logits: np.ndarray | None = None
    argmax: np.ndarray | None = field(default=None, repr=False)


@dataclass
class NetworkGradients:
    """The loss and every derivative of one pass.

    loss : the batch-mean loss, None when the gradient came from the caller.
    layers : layers[k][d], each layer's LayerGradients in ABSOLUTE time order (dL_dh (T, B, H) is
        dL/dh_t for t = 1..T, zero at pad steps; the same for dL_dc), whatever the direction.
    params : layers' parameter gradients, params[k][d] {name: gradient} (cell names).
    head : {"Wy", "by"} gradients, or None.
    embedding : (V, D) dL/dE (row padding_idx zero), or None.
    dL_dx : (T, B, D) the gradient reaching layer 0's input.
    """

    loss: float | None
    layers: list[list[LayerGradients]]
    head: Params | None
    embedding: np.ndarray | None
    dL_dx: np.ndarray = field(repr=False)


def _reversed(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else a[::-1]


def embed(net: Network, tokens: np.ndarray) -> np.ndarray:
    """(B, T) token ids -> (T, B, D) rows of the embedding, time-major."""
    return np.ascontiguousarray(net.embedding[tokens.T])


def network_forward(net: Network, x: np.ndarray, mask: np.ndarray | None = None) -> NetworkTrajectory:
    """Run the network over x: (B, T, D) inputs, or (B, T) token ids when it has an embedding.

    mask : (B, T) bool, True at real steps (None: every step real).
    """
    tokens = None
    if x.ndim == 2:
        if net.embedding is None:
            raise InputError(f"inputs of shape {x.shape} are token ids, but the weights hold no embedding")
        tokens = x.astype(np.int64)
        inputs = embed(net, tokens)
    else:
        inputs = np.ascontiguousarray(np.asarray(x, dtype=net.dtype).transpose(1, 0, 2))
    mask_tm = None if mask is None or mask.all() else np.ascontiguousarray(mask.T)
    layer_in, runs = inputs, []
    for layer in net.layers:
        outs, layer_runs = [], []
        for d, params in enumerate(layer):
            reverse = d == 1
            src = layer_in[::-1] if reverse else layer_in
            run = run_layer(net.cell, params, src, _reversed(mask_tm) if reverse else mask_tm)
            out = run.hidden[1:][::-1] if reverse else run.hidden[1:]
            outs.append(out)
            layer_runs.append(run)
        runs.append(layer_runs)
        layer_in = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)
        if mask_tm is not None:
            layer_in = layer_in * mask_tm[:, :, None]  # pad steps output zero (pad_packed_sequence)
    traj = NetworkTrajectory(runs, inputs, tokens, mask_tm, layer_in)
    if net.head is not None:
        traj.features, traj.argmax = _features(net, traj)
        traj.logits = traj.features @ net.head["Wy"].T + net.head["by"]
        if net.readout == "every":
            traj.logits = traj.logits.transpose(1, 0, 2)  # (B, T, O), batch-first like the targets
    return traj


def final_states(net: Network, traj: NetworkTrajectory, layer: int = -1) -> list[np.ndarray]:
    """h_n of one layer: [forward, reverse], each (B, H), the state after the last step processed."""
    return [run.hidden[-1] for run in traj.runs[layer]]


def _lengths(traj: NetworkTrajectory) -> np.ndarray:
    """(B,) real steps per sequence, in the run's dtype."""
    steps, batch = traj.output.shape[:2]
    if traj.mask_tm is None:
        return np.full(batch, float(steps), traj.output.dtype)
    # an empty text reads out zeros, not 0/0
    return np.maximum(traj.mask_tm.sum(axis=0), 1).astype(traj.output.dtype)


def _features(net: Network, traj: NetworkTrajectory) -> tuple[np.ndarray, np.ndarray | None]:
    """What the head reads, and for ``max`` the step of each feature's maximum, (B, F)."""
    out = traj.output
    if net.readout == "last":
        return np.concatenate(final_states(net, traj), axis=1), None  # cat(h_n[-2], h_n[-1])
    if net.readout == "mean":
        return out.sum(axis=0) / _lengths(traj)[:, None], None  # pads are zero: the sum is over real steps
    if net.readout == "max":
        real = out if traj.mask_tm is None else np.where(traj.mask_tm[:, :, None], out, -np.inf)
        argmax = real.argmax(axis=0)  # (B, F)
        return np.take_along_axis(out, argmax[None], axis=0)[0], argmax
    return out, None  # every


def _loss(net: Network, traj: NetworkTrajectory, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The loss and dL/dlogits; for ``every`` with padding, the mean over real positions only."""
    logits = traj.logits
    if net.readout == "every" and traj.mask_tm is not None:
        real = traj.mask_tm.T  # (B, T)
        loss, d_real = net.loss.value_and_grad(logits[real], y[real])
        dlogits = np.zeros_like(logits)
        dlogits[real] = d_real
        return loss, dlogits
    return net.loss.value_and_grad(logits, y)


def network_backward(
    net: Network, traj: NetworkTrajectory, y: np.ndarray | None = None, upstream: Upstream | None = None,
) -> NetworkGradients:
    """Exact BPTT from the loss on y (or from the caller's ``upstream`` gradients) to the inputs."""
    steps, batch = traj.output.shape[:2]
    h, dirs, n_layers = net.hidden_size, net.directions, net.num_layers
    loss, head_grads = None, None
    # what reaches the top layer: dL/d(output) (T, B, F) and dL/d(final states) per direction
    dtype = net.dtype
    d_out = np.zeros((steps, batch, dirs * h), dtype)
    finals: list[list[list[np.ndarray | None]]] = [
        [[None] * len(net.cell.state_names) for _ in range(dirs)] for _ in range(n_layers)
    ]
    if net.head is not None:
        loss, dlogits = _loss(net, traj, np.asarray(y, dtype=dtype))
        wy = net.head["Wy"]
        if net.readout == "every":
            dlog_tm = dlogits.transpose(1, 0, 2)  # (T, B, O)
            flat = dlog_tm.reshape(steps * batch, -1)
            head_grads = {"Wy": flat.T @ traj.output.reshape(steps * batch, -1), "by": flat.sum(axis=0)}
            d_out += dlog_tm @ wy  # Wy^T dL/dlogits_t: backprop through each step's readout
        else:
            head_grads = {"Wy": dlogits.T @ traj.features, "by": dlogits.sum(axis=0)}
            d_feat = dlogits @ wy  # backprop through the Linear: (B, F)
            if net.readout == "last":
                for d in range(dirs):  # features = cat(h_n forward, h_n reverse)
                    finals[-1][d][0] = d_feat[:, d * h : (d + 1) * h]
            elif net.readout == "mean":
                d_out += (d_feat / _lengths(traj)[:, None])[None]  # backprop through the mean
            else:  # max: the gradient goes to the step that held each maximum
                np.put_along_axis(d_out, traj.argmax[None], d_feat[None], axis=0)
    if upstream is not None:
        if upstream.output is not None:
            d_out += np.asarray(upstream.output, dtype=dtype).transpose(1, 0, 2)
        for which, given in enumerate((upstream.h_n, upstream.c_n)):
            if given is None:
                continue
            for k in range(n_layers):
                for d in range(dirs):
                    part = np.asarray(given[k * dirs + d], dtype=dtype)  # h_n is layer by layer,
                    prev = finals[k][d][which]  # forward before reverse
                    finals[k][d][which] = part if prev is None else prev + part

    mask_tm = traj.mask_tm
    real = None if mask_tm is None else mask_tm[:, :, None]
    layers: list[list[LayerGradients]] = [[] for _ in range(n_layers)]
    d_scale = None  # d_out[t, b] is held in units e^d_scale[t, b] (None: at true scale), exact at any depth
    for k in range(n_layers - 1, -1, -1):
        if real is not None:
            d_out = d_out * real  # pad outputs are constant zeros: no gradient flows through them
        d_in, in_scale = None, None
        for d, params in enumerate(net.layers[k]):
            reverse = d == 1
            run = traj.runs[k][d]
            local = d_out[:, :, d * h : (d + 1) * h]
            grads = backprop_layer(
                net.cell, params, run, local=_reversed(local) if reverse else local,
                final=tuple(finals[k][d]), mask=_reversed(mask_tm) if reverse else mask_tm,
                input_grads=True, local_scale=_reversed(d_scale) if reverse else d_scale,
            )
            if reverse:  # back to absolute time order
                grads.dL_dh, grads.dL_dc = grads.dL_dh[::-1], _reversed(grads.dL_dc)
                grads.du, grads.dv, grads.dx = grads.du[::-1], grads.dv[::-1], grads.dx[::-1]
                grads.log_rows, grads.log_cell_rows = grads.log_rows[::-1], _reversed(grads.log_cell_rows)
                grads.dx_scale = _reversed(grads.dx_scale)
            if real is not None:  # the figures a user reads are zero where the sequence has ended
                grads.dL_dh = grads.dL_dh * real
                grads.dL_dc = None if grads.dL_dc is None else grads.dL_dc * real
                grads.log_rows = np.where(mask_tm, grads.log_rows, -np.inf)  # ln 0 at pad steps
                if grads.log_cell_rows is not None:
                    grads.log_cell_rows = np.where(mask_tm, grads.log_cell_rows, -np.inf)
            if not net.bias:
                for name in net.bias_names:
                    grads.params.pop(name, None)
            layers[k].append(grads)
            d_in, in_scale = _add_scaled(d_in, in_scale, grads.dx, grads.dx_scale)
        d_out, d_scale = d_in, in_scale
    if d_scale is not None:
        _to_true_scale(d_out, d_scale)  # what reaches the inputs, at true scale
        for grads in layers[0]:
            if grads.dx is d_out:  # one direction: that layer's dx itself, now at true scale
                grads.dx_scale = None
    emb_grad = None
    if net.embedding is not None and traj.tokens is not None:
        emb_grad = np.zeros_like(net.embedding)
        flat = d_out.transpose(1, 0, 2).reshape(-1, d_out.shape[2])
        np.add.at(emb_grad, traj.tokens.reshape(-1), flat)  # dE[token] += dL/dx_t, every occurrence
        if net.padding_idx is not None:
            emb_grad[net.padding_idx] = 0.0  # nn.Embedding(padding_idx=p) never updates row p
    return NetworkGradients(loss, layers, head_grads, emb_grad, d_out)


def _add_scaled(a: np.ndarray | None, a_scale: np.ndarray | None, b: np.ndarray,
                b_scale: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """a + b for (T, B, .) arrays held in units e^a_scale[t, b] and e^b_scale[t, b] (None: 1), and
    the units of the sum: for each row the larger of the two, so that neither under- or overflows."""
    if a is None:
        return b, b_scale
    if a_scale is None and b_scale is None:
        return a + b, None
    zero = np.zeros(a.shape[:2])
    a_scale, b_scale = (zero if s is None else s for s in (a_scale, b_scale))
    with np.errstate(all="ignore"):
        top = np.maximum(a_scale, b_scale)
        top = np.where(np.isfinite(top), top, 0.0)  # both -inf: zero gradients, any unit
        a, b = np.array(a), np.array(b)
        _to_true_scale(a, a_scale - top)  # powers of two, exact (the units are multiples of ln 2)
        _to_true_scale(b, b_scale - top)
    a += b
    return a, top


def network_bptt(
    net: Network, x: np.ndarray, y: np.ndarray | None = None, mask: np.ndarray | None = None,
    upstream: Upstream | None = None,
) -> tuple[NetworkTrajectory, NetworkGradients]:
    """Forward and backward in one call; overflow is allowed to run to inf/nan, silently."""
    with np.errstate(all="ignore"):
        traj = network_forward(net, x, mask)
        return traj, network_backward(net, traj, y, upstream)
