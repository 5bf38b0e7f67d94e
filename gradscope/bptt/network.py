"""Exact BPTT through a whole network: embedding, stacked and bidirectional layers, padding, head.

The one forward/backward driver of gradscope: a model gradscope builds from flags is a network
of one layer and one direction. Each layer and direction runs the layer engine (layer.py); this
module wires them (model/network.py gives the equations):

    forward     x -> layer 0 -> ... -> layer L-1 -> readout -> logits -> loss
                (a reverse direction runs on the time-reversed sequence, its output reversed back;
                the directions' outputs merge: concat [f, b], or Keras' sum, ave, mul)
    backward    dL/dlogits -> dL/d(features) -> the top layer's states:
                  last     into the final states: dL/dh_n (the recursion starts there)
                  mean     into every real step: dL/dh_t = dL/dfeatures / length
                  max      into the step holding each feature's maximum (max-all: masked steps too)
                  every    into every step: Wy^T dL/dlogits_t
                  last-output  into the output at step T (output[:, -1] of an unpacked batch)
                then for k = L-1 .. 0: back through the merge (f + b: both get dL/dy; (f + b)/2: half
                each; f * b: dL/dy * b and dL/dy * f), BPTT through each direction of layer k from
                what reaches its outputs; dL/d(input of layer k) = sum over directions of
                W_ih^T dL/du_t is what reaches the outputs of layer k-1 (or the embedding's rows:
                dE[token_t] += dL/dx_t).

Masked steps carry the state. What they output is the layer's ``pad_output``: zero (PyTorch's
padded output, a constant: no gradient flows through it) or the previous output, which is the
carried state itself: the gradient reaching it joins the recursion there and passes unchanged
through the carried steps to the step whose output it repeats.

Each layer and direction starts from the zero state, or from the caller's (``InitialState``,
PyTorch's hx); what the recursion brings back to it is dL/dh_0 (and dL/dc_0): torch's h0.grad.

Shapes: B batch, T steps, D input width, H hidden units, F = H x directions, O outputs. Inside,
everything is time-major (T, B, .); ``mask_tm`` (T, B) is True at real steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..model.cells import Params
from ..model.network import Network
from .layer import LayerGradients, Trajectory, backprop_layer, run_layer, to_time_major
from .logdomain import to_true_scale


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
class InitialState:
    """The state the layers start from in place of zero (``--initial-state``, PyTorch's ``hx``).

    h_0 : (L x directions, B, H), layer by layer, forward before reverse, as nn.RNN's h_0; None: 0.
    c_0 : the same for the LSTM's memory cell, or None: 0.
    """

    h_0: np.ndarray | None = None
    c_0: np.ndarray | None = None

    def states(self, net: Network) -> list[list[tuple[np.ndarray, ...]]]:
        """states[k][d], the state tuple layer k, direction d starts from, (B, H) each, in the
        network's dtype (fresh arrays: the run never writes into the caller's)."""
        given = (self.h_0, self.c_0)
        batch = next(a for a in given if a is not None).shape[1]
        zero = np.zeros((batch, net.hidden_size), net.dtype)
        return [[tuple(zero.copy() if a is None else np.array(a[k * net.directions + d], dtype=net.dtype)
                       for a in given[:len(net.cell.state_names)])
                 for d in range(net.directions)] for k in range(net.num_layers)]


@dataclass
class NetworkTrajectory:
    """The forward pass of a network over a batch.

    runs : runs[k][d], the trajectory of layer k in direction d, in the order it was processed
        (time-reversed for the reverse direction and a backwards layer: ``backwards[k][d]``).
    inputs : (T, B, D) the input of layer 0 (the embedded tokens where there is an embedding).
    tokens : (B, T) token ids, or None.
    mask_tm : (T, B) bool, True at real steps, or None (every step real).
    output : (T, B, F) the top layer's output sequence (at pad steps zero, or the output repeated).
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
    backwards: list[list[bool]] = field(default_factory=list, repr=False)


@dataclass
class NetworkGradients:
    """The loss and every derivative of one pass.

    loss : the batch-mean loss, None when the gradient came from the caller.
    layers : layers[k][d], each layer's LayerGradients in ABSOLUTE time order (dL_dh (T, B, H) is
        dL/dh_t for t = 1..T, zero at pad steps; the same for dL_dc), whatever the direction.
    head : {"Wy", "by"} gradients, or None.
    embedding : (V, D) dL/dE (row padding_idx zero), or None.
    dL_dx : (T, B, D) the gradient reaching layer 0's input; None from BPTT without the
        parameters' gradients (``parameters=False``: the flow alone, which never reads it).
    The gradient reaching each layer's initial state is in ``layers[k][d].initial``
    (``initial_state`` stacks it as PyTorch's h_0).
    """

    loss: float | None
    layers: list[list[LayerGradients]]
    head: Params | None
    embedding: np.ndarray | None
    dL_dx: np.ndarray | None = field(repr=False)

    def parameters(self, net: Network) -> Params:
        """Every trained parameter's gradient, flat under ``Network.parameters``' names (in the
        order BPTT computed them: embedding, each layer and direction, head)."""
        flat: Params = {}
        if net.embedding is not None and net.embedding_trained:
            # vectors given for the embedding's output: it took no part, its gradient is 0
            flat["embedding"] = self.embedding if self.embedding is not None else np.zeros_like(net.embedding)
        for k, layer in enumerate(self.layers):
            for d, g in enumerate(layer):
                flat.update((net.parameter_name(k, d, name), grad) for name, grad in g.params.items())
        if self.head is not None:
            flat.update(("head." + name, grad) for name, grad in self.head.items() if "head." + name not in net.fixed)
        return flat

    def initial_state(self) -> dict[str, np.ndarray]:
        """The gradient reaching the initial state as PyTorch's ``h0.grad`` (and ``c0.grad``):
        {"dL_dh_0": (L x directions, B, H)} (and "dL_dc_0" for the LSTM), layer by layer, forward
        before reverse."""
        flat = [g.initial for layer in self.layers for g in layer]
        names = ("dL_dh_0", "dL_dc_0")[:len(flat[0])]
        return {name: np.stack([parts[i] for parts in flat]) for i, name in enumerate(names)}


def _reversed(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else a[::-1]


def embed(net: Network, tokens: np.ndarray) -> np.ndarray:
    """(B, T) token ids -> (T, B, D) rows of the embedding, time-major."""
    return np.ascontiguousarray(net.embedding[tokens.T])


def forward(net: Network, x: np.ndarray, mask: np.ndarray | None = None,
            initial: InitialState | None = None) -> NetworkTrajectory:
    """Run the network over x: (B, T, D) inputs, or (B, T) token ids when it has an embedding.

    mask : (B, T) bool, True at real steps (None: every step real).
    initial : the states the layers start from (None: zero).
    """
    tokens = None
    if x.ndim == 2:
        if net.embedding is None:
            raise InputError(f"inputs of shape {x.shape} are token ids, but the weights hold no embedding")
        tokens = x.astype(np.int64)
        inputs = embed(net, tokens)
    elif x.ndim != 3 or x.shape[2] != net.input_size:
        raise InputError(f"inputs must have shape (B, T, {net.input_size}), got {tuple(x.shape)}")
    else:
        # a view where x is in the network's dtype: the cells read it a block of steps at a time,
        # so a long run's inputs are never copied whole
        inputs = to_time_major(x, net.dtype)
    if mask is None:
        mask = net.input_mask(x if tokens is None else tokens)  # Keras' masking: the model's own
    mask_tm = None if mask is None or mask.all() else np.ascontiguousarray(mask.T)
    starts = None if initial is None else initial.states(net)
    layer_in, runs = inputs, []
    for k, layer in enumerate(net.layers):
        layer_runs = []
        for d, params in enumerate(layer):
            reverse = net.reads_backwards(k, d)
            src = layer_in[::-1] if reverse else layer_in
            layer_runs.append(run_layer(net.cell_of(k), params, src, _reversed(mask_tm) if reverse else mask_tm,
                                        None if starts is None else starts[k][d]))
        runs.append(layer_runs)
        layer_in = merge(direction_outputs(layer_runs), net.wiring_of(k).merge)
        if mask_tm is not None and net.wiring_of(k).pad_output == "zero":
            layer_in = layer_in * _output_mask(net, k, mask_tm)  # pad steps output zero (pad_packed_sequence)
    traj = NetworkTrajectory(runs, inputs, tokens, mask_tm, layer_in,
                             backwards=[[net.reads_backwards(k, d) for d in range(len(layer))]
                                        for k, layer in enumerate(net.layers)])
    if net.head is not None:
        traj.features, traj.argmax = _features(net, traj)
        traj.logits = traj.features @ net.head["Wy"].T + net.head["by"]
        if net.readout == "every":
            traj.logits = traj.logits.transpose(1, 0, 2)  # (B, T, O), batch-first like the targets
    return traj


def direction_outputs(layer_runs: list[Trajectory]) -> list[np.ndarray]:
    """Each direction's output sequence (T, B, H) before the merge: the forward direction's (or a
    backwards layer's) in the order it ran, the reverse direction's reversed back to input order."""
    return [run.hidden[1:] if d == 0 else run.hidden[1:][::-1] for d, run in enumerate(layer_runs)]


def merge(parts: list[np.ndarray], how: str) -> np.ndarray:
    """A layer's output from its directions' (..., H) outputs f and b (Keras' merge_mode)."""
    if len(parts) == 1:
        return parts[0]
    f, b = parts
    if how == "sum":
        return f + b
    if how == "ave":
        return (f + b) / 2
    if how == "mul":
        return f * b
    return np.concatenate(parts, axis=-1)  # concat: [f, b]


def unmerge(d_out: np.ndarray, parts: list[np.ndarray], how: str) -> list[np.ndarray]:
    """dL/d(each direction's output) from dL/d(the merged output), (..., H) each."""
    if len(parts) == 1:
        return [d_out]
    if how == "sum":
        return [d_out, d_out]  # backprop through f + b
    if how == "ave":
        half = d_out / 2
        return [half, half]  # backprop through (f + b) / 2
    if how == "mul":
        return [d_out * parts[1], d_out * parts[0]]  # backprop through f * b
    h = parts[0].shape[-1]
    return [d_out[..., :h], d_out[..., h:]]  # backprop through [f, b]


def _output_mask(net: Network, k: int, mask_tm: np.ndarray) -> np.ndarray:
    """(T, B, 1) where layer k's zeroed pad outputs sit: at its masked steps in input order, or in
    the order a backwards layer outputs them."""
    return (mask_tm[::-1] if net.wiring_of(k).backwards else mask_tm)[:, :, None]


def _pads_are_zero(net: Network, k: int) -> bool:
    """Whether layer k outputs zero at every step the mask marks as a pad (PyTorch's padding)."""
    wiring = net.wiring_of(k)
    return wiring.pad_output == "zero" and not wiring.backwards


def final_states(traj: NetworkTrajectory, layer: int = -1) -> list[np.ndarray]:
    """h_n of one layer: [forward, reverse], each (B, H), the state after the last step processed."""
    return [run.hidden[-1] for run in traj.runs[layer]]


def lengths(traj: NetworkTrajectory) -> np.ndarray:
    """(B,) real steps per sequence, in the run's dtype."""
    steps, batch = traj.output.shape[:2]
    if traj.mask_tm is None:
        return np.full(batch, float(steps), traj.output.dtype)
    # an empty text reads out zeros, not 0/0
    return np.maximum(traj.mask_tm.sum(axis=0), 1).astype(traj.output.dtype)


def last_real_steps(traj: NetworkTrajectory) -> np.ndarray:
    """(B,) the index of each sequence's last real step (T - 1 without padding)."""
    steps, batch = traj.output.shape[:2]
    return np.full(batch, steps - 1) if traj.mask_tm is None else last_real(traj.mask_tm)


def last_real(mask_tm: np.ndarray) -> np.ndarray:
    """(B,) the index of each sequence's last True step in mask_tm (T, B)."""
    return mask_tm.shape[0] - 1 - mask_tm[::-1].argmax(axis=0)


def _features(net: Network, traj: NetworkTrajectory) -> tuple[np.ndarray, np.ndarray | None]:
    """What the head reads, and for ``max`` the step of each feature's maximum, (B, F)."""
    out = traj.output
    if net.readout == "last":
        finals = final_states(traj)
        if len(finals) == 1:
            return finals[0].copy(), None
        return merge(finals, net.wiring_of(net.num_layers - 1).merge), None  # cat(h_n[-2], h_n[-1])
    if net.readout == "mean":
        if traj.mask_tm is not None and not _pads_are_zero(net, net.num_layers - 1):
            out = out * traj.mask_tm[:, :, None]  # the real steps only (GlobalAveragePooling1D's mask)
        return out.sum(axis=0) / lengths(traj)[:, None], None  # pads are zero: the sum is over real steps
    if net.readout in ("max", "max-all"):
        masked = net.readout == "max" and traj.mask_tm is not None  # max-all: every step, as Keras' max pooling
        real = np.where(traj.mask_tm[:, :, None], out, -np.inf) if masked else out
        argmax = real.argmax(axis=0)  # (B, F)
        return np.take_along_axis(out, argmax[None], axis=0)[0], argmax
    if net.readout == "last-output":  # output[:, -1] of a padded batch run unpacked: step T, pads or not
        return out[-1].copy(), None
    return out, None  # every


def real_positions(traj: NetworkTrajectory) -> np.ndarray | None:
    """(B, T) bool of the steps a readout at every step is scored at, None for all of them."""
    return None if traj.mask_tm is None else traj.mask_tm.T


def loss_and_grad(net: Network, traj: NetworkTrajectory, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The loss and dL/dlogits; for ``every`` with padding, the mean over real positions only."""
    logits = traj.logits
    real = real_positions(traj)
    if net.readout == "every" and real is not None:
        loss, d_real = net.loss.value_and_grad(logits[real], y[real])
        dlogits = np.zeros_like(logits)
        dlogits[real] = d_real
        return loss, dlogits
    return net.loss.value_and_grad(logits, y)


def loss_of(net: Network, traj: NetworkTrajectory, y: np.ndarray) -> float:
    """The loss alone (of real positions for ``every``), y in the dtype the caller gives."""
    return loss_and_grad(net, traj, y)[0]


def accuracy_of(net: Network, traj: NetworkTrajectory, y: np.ndarray) -> float | None:
    """The share of correct predictions (of real positions for ``every``), None for regression."""
    real = real_positions(traj)
    if net.readout == "every" and real is not None:
        return net.loss.accuracy(traj.logits[real], y[real])
    return net.loss.accuracy(traj.logits, y)


def backward(
    net: Network, traj: NetworkTrajectory, y: np.ndarray | None = None, upstream: Upstream | None = None,
    parameters: bool = True,
) -> NetworkGradients:
    """Exact BPTT from the loss on y (or from the caller's ``upstream`` gradients) to the inputs
    (``parameters`` False: without the layers' parameter gradients, for the flow alone)."""
    loss, head_grads, d_out, finals = head_gradients(net, traj, y, upstream)
    return _backprop_layers(net, traj, d_out, finals, loss, head_grads, parameters)


def head_gradients(net: Network, traj: NetworkTrajectory, y: np.ndarray | None, upstream: Upstream | None,
                   ) -> tuple[float | None, Params | None, np.ndarray | None, list]:
    """The loss, the head's gradients, and what reaches the top layer: dL/d(output) (T, B, F) or
    None (nothing), and ``finals[k][d]``, one (B, H) array or None per state element: dL/d(final
    state) of layer k, direction d (the readout of the last state; dL/dh_n, dL/dc_n given)."""
    steps, batch = traj.output.shape[:2]
    dirs, n_layers, width = net.directions, net.num_layers, net.feature_size
    loss, head_grads = None, None
    dtype = net.dtype
    d_out = None
    finals = _no_finals(net)
    if net.head is not None:
        loss, dlogits = loss_and_grad(net, traj, np.asarray(y, dtype=dtype))
        wy = net.head["Wy"]
        if net.readout == "every":
            dlog_tm = np.ascontiguousarray(dlogits.transpose(1, 0, 2))  # (T, B, O), step-major
            flat = dlog_tm.reshape(steps * batch, -1)
            # sum_t dL/dlogits_t^T h_t: every step's readout adds to the one Wy
            head_grads = {"Wy": flat.T @ traj.output.reshape(steps * batch, -1), "by": flat.sum(axis=0)}
            d_out = dlog_tm @ wy  # Wy^T dL/dlogits_t: backprop through each step's readout
        else:
            head_grads = {"Wy": dlogits.T @ traj.features, "by": dlogits.sum(axis=0)}
            d_feat = dlogits @ wy  # backprop through the Linear: (B, F)
            if net.readout == "last":
                parts = unmerge(d_feat, final_states(traj), net.wiring_of(n_layers - 1).merge)
                for d in range(dirs):  # features = cat(h_n forward, h_n reverse)
                    finals[-1][d][0] = parts[d]
            elif net.readout == "mean":
                d_out = np.broadcast_to((d_feat / lengths(traj)[:, None])[None], (steps, batch, width)).copy()
                if traj.mask_tm is not None and not _pads_are_zero(net, n_layers - 1):
                    d_out *= traj.mask_tm[:, :, None]  # the mean is over real steps only
            elif net.readout == "last-output":  # into the output at step T alone
                d_out = np.zeros((steps, batch, width), dtype)
                d_out[-1] = d_feat
            else:  # max: the gradient goes to the step that held each maximum
                d_out = np.zeros((steps, batch, width), dtype)
                np.put_along_axis(d_out, traj.argmax[None], d_feat[None], axis=0)
    if upstream is not None:
        if upstream.output is not None:
            given = np.asarray(upstream.output, dtype=dtype).transpose(1, 0, 2)
            d_out = given.copy() if d_out is None else d_out + given
        for which, given in enumerate((upstream.h_n, upstream.c_n)):
            if given is None:
                continue
            for k, d in net.each_layer():
                part = np.asarray(given[net.layer_index(k, d)], dtype=dtype)  # h_n is layer by layer,
                prev = finals[k][d][which]  # forward before reverse
                finals[k][d][which] = part if prev is None else prev + part
    return loss, head_grads, d_out, finals


def _backprop_layers(net: Network, traj: NetworkTrajectory, d_out: np.ndarray | None,
                     finals: list, loss: float | None, head_grads: Params | None,
                     parameters: bool = True) -> NetworkGradients:
    """BPTT through the layers from the top: d_out (T, B, F) reaching the top layer's outputs (None:
    nothing) and ``finals[k][d]`` its final states; then the embedding."""
    n_layers = net.num_layers
    mask_tm = traj.mask_tm
    real = None if mask_tm is None else mask_tm[:, :, None]
    layers: list[list[LayerGradients]] = [[] for _ in range(n_layers)]
    d_scale = None  # d_out[t, b] is held in units e^d_scale[t, b] (None: at true scale), exact at any depth
    for k in range(n_layers - 1, -1, -1):
        wiring = net.wiring_of(k)
        if real is not None and d_out is not None and wiring.pad_output == "zero":
            d_out = d_out * _output_mask(net, k, mask_tm)  # pad outputs are constant zeros: no gradient flows through them
        # a repeated output ("previous") keeps its gradient: the carried steps pass it back to the step it repeats
        parts = [None] * len(net.layers[k]) if d_out is None else unmerge(d_out, direction_outputs(traj.runs[k]),
                                                                           wiring.merge)
        d_in, in_scale = None, None
        for d, params in enumerate(net.layers[k]):
            reverse = net.reads_backwards(k, d)
            run = traj.runs[k][d]
            local, flip = parts[d], d == 1  # the reverse direction's outputs are in input order: flip them
            grads = backprop_layer(
                net.cell_of(k), params, run, local=_reversed(local) if flip else local,
                final=tuple(finals[k][d]), mask=_reversed(mask_tm) if reverse else mask_tm,
                input_grads=k > 0 or parameters,  # what reaches the inputs: for the embedding's gradient
                local_scale=_reversed(d_scale) if flip else d_scale, parameters=parameters,
            )
            if reverse:  # back to absolute time order
                grads.dL_dh, grads.dL_dc = grads.dL_dh[::-1], _reversed(grads.dL_dc)
                grads.du, grads.dv, grads.dx = grads.du[::-1], grads.dv[::-1], _reversed(grads.dx)
                grads.dx_scale = _reversed(grads.dx_scale)
                grads.log_rows, grads.log_cell_rows = grads.log_rows[::-1], _reversed(grads.log_cell_rows)
                grads.log_norms, grads.log_cell_norms = grads.log_norms[::-1], _reversed(grads.log_cell_norms)
            if real is not None:  # the figures a user reads are zero where the sequence has ended
                grads.dL_dh = grads.dL_dh * real
                grads.dL_dc = None if grads.dL_dc is None else grads.dL_dc * real
                grads.set_log_rows(np.where(mask_tm, grads.log_rows, -np.inf),  # ln 0 at pad steps
                                   None if grads.log_cell_rows is None
                                   else np.where(mask_tm, grads.log_cell_rows, -np.inf))
            for name in [n for n in grads.params if not net.is_trained(k, d, n)]:
                grads.params.pop(name)  # bias=False's zero biases, and the network's fixed arrays
            layers[k].append(grads)
            if grads.dx is not None:
                d_in, in_scale = add_scaled(d_in, in_scale, grads.dx, grads.dx_scale)
        d_out, d_scale = d_in, in_scale
    if d_scale is not None:
        to_true_scale(d_out, d_scale)  # what reaches the inputs, at true scale
        for grads in layers[0]:
            if grads.dx is d_out:  # one direction: that layer's dx itself, now at true scale
                grads.dx_scale = None
    emb_grad = None
    if net.embedding is not None and traj.tokens is not None and d_out is not None:
        emb_grad = np.zeros_like(net.embedding)
        flat = d_out.transpose(1, 0, 2).reshape(-1, d_out.shape[2])
        np.add.at(emb_grad, traj.tokens.reshape(-1), flat)  # dE[token] += dL/dx_t, every occurrence
        if net.padding_idx is not None:
            emb_grad[net.padding_idx] = 0.0  # nn.Embedding(padding_idx=p) never updates row p
    return NetworkGradients(loss, layers, head_grads, emb_grad, d_out)


def _no_finals(net: Network) -> list[list[list[np.ndarray | None]]]:
    """finals[k][d][s]: dL/d(final state element s) of layer k, direction d, None for each."""
    return [[[None] * len(net.cell_of(k).state_names) for _ in layer] for k, layer in enumerate(net.layers)]


def add_scaled(a: np.ndarray | None, a_scale: np.ndarray | None, b: np.ndarray,
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
        to_true_scale(a, a_scale - top)  # powers of two, exact (the units are multiples of ln 2)
        to_true_scale(b, b_scale - top)
    a += b
    return a, top


def last_step_backward(net: Network, traj: NetworkTrajectory, y: np.ndarray,
                       parameters: bool = True) -> NetworkGradients:
    """For a readout at every step: BPTT of the last step's share of the loss alone.

    The loss is the mean over the N scored positions, L = (1/N) sum_{b,t} L_{b,t} (N = B T
    unpadded, the real positions of a padded batch: ``loss_and_grad``). The total dL/dh_t also
    holds the local term of L_t, which masks how far back the readout at T reaches; this gradient
    is the part that flows back from each sequence's last real step: it equals the total there and,
    like the gradient of a readout of the last state only, obeys Pascanu's bound at every step. It
    is the gradient of (1/N) sum_b L_{b,end_b} (unpadded, L_T / T), so every figure is the full
    loss's share: the loss's mean over the B last steps times B/N, the records times B/N and their
    logs plus ln B - ln N. y as for ``backward``, (B, T, ...); parameters : as for ``backward``.
    """
    steps, batch = traj.output.shape[:2]
    ends = last_real_steps(traj)
    rows = np.arange(batch)
    y_last = np.asarray(y, dtype=net.dtype)[rows, ends]
    features = traj.output[ends, rows]  # (B, F): the top layer's output at each last real step
    with np.errstate(all="ignore"):
        logits = features @ net.head["Wy"].T + net.head["by"]
        loss, dlogits = net.loss.value_and_grad(logits, y_last)
        head = {"Wy": dlogits.T @ features, "by": dlogits.sum(axis=0)}
        d_feat = dlogits @ net.head["Wy"]
        finals = _no_finals(net)
        d_out = None
        if net.directions == 1 and traj.mask_tm is None:
            finals[-1][0][0] = d_feat  # the last step's output is the final state: dL/dh_T itself
        else:  # the output at each sequence's last real step (the reverse direction's first processed)
            d_out = np.zeros((steps, batch, net.feature_size), net.dtype)
            d_out[ends, rows] = d_feat
        grads = _backprop_layers(net, traj, d_out, finals, loss, head, parameters)
    if traj.mask_tm is None:  # B/N = 1/T
        return _share(grads, 1.0 / steps, -math.log(steps))
    scored = int(traj.mask_tm.sum())
    return _share(grads, batch / scored, math.log(batch) - math.log(scored))


def _share(grads: NetworkGradients, share: float, log_share: float) -> NetworkGradients:
    """The gradients of ``share`` times the loss: every record times share, every log plus
    log_share = ln share (given, as -ln T or ln B - ln N, not the log of the quotient: no rounding in the logs)."""

    def times(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a * share

    for layer in grads.layers:
        for g in layer:
            same = g.dv is g.du  # one array where the cell says dv_is_du: kept one
            g.dL_dh, g.dL_dc, g.du = times(g.dL_dh), times(g.dL_dc), times(g.du)
            g.dv = g.du if same else times(g.dv)
            g.dx = times(g.dx)  # held in units e^dx_scale where those are given: the share scales either way
            g.params = {name: p * share for name, p in g.params.items()}
            g.initial = None if g.initial is None else tuple(p * share for p in g.initial)
            g.log_initial = None if g.log_initial is None else tuple(v + log_share for v in g.log_initial)
            g.log_rows = g.log_rows + log_share
            g.log_norms = g.log_norms + log_share  # as the logs of the records were taken: then shifted
            if g.log_cell_rows is not None:
                g.log_cell_rows = g.log_cell_rows + log_share
                g.log_cell_norms = g.log_cell_norms + log_share
    head = {name: p * share for name, p in grads.head.items()}
    embedding = times(grads.embedding)
    return NetworkGradients(grads.loss * share, grads.layers, head, embedding, times(grads.dL_dx))


def bptt(
    net: Network, x: np.ndarray, y: np.ndarray | None = None, mask: np.ndarray | None = None,
    upstream: Upstream | None = None, initial: InitialState | None = None, parameters: bool = True,
) -> tuple[NetworkTrajectory, NetworkGradients]:
    """Forward (from ``initial``, or the zero state) and backward in one call; overflow is allowed
    to run to inf/nan, silently. parameters : as for ``backward``."""
    with np.errstate(all="ignore"):
        traj = forward(net, x, mask, initial)
        return traj, backward(net, traj, y, upstream, parameters)


def loss_only(net: Network, x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The loss alone (for finite differences and evaluation)."""
    with np.errstate(all="ignore"):
        traj = forward(net, x, mask)
        return loss_of(net, traj, np.asarray(y, dtype=net.dtype))
