"""BPTT through one layer in one direction: the sequence loop, forward and backward.

Shapes: B batch, T steps, D inputs, H hidden units, G gates. Inside, everything is time-major
(T, B, .) so that each step reads one contiguous (B, .) slice; inputs arrive batch-first
(B, T, D) as PyTorch's ``batch_first=True`` and the .npy files people have.

Backward (REFERENCE §1), with delta_t = dL/dh_t the *total* derivative through every later step:

    delta_t     = local_t + (what step_backward brings back from t+1)
    delta_{t-1} = the cell's step_backward(delta_t)  = Wa^T (f'(z_t) * delta_t) for the vanilla RNN
    dL/dW_hh    = sum_t dv_t^T h_{t-1}                one summand per step: its temporal contribution

local_t is what reaches h_t from outside the recurrence (the layer above, a readout at every
step); the readout of the last state enters as dL/dh_T itself. The recursion runs in the log
domain (logdomain.py), so the gradient's norm is exact at any depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model.cells import Cell, Params
from .logdomain import (
    combine_log_norms, join, limits, log_row_norms, renormalise_if_far, to_common_unit, to_true_scale,
)

RESCUE_STEPS = 256  # steps of the contributions recomputed at a time (each a (B, G*H) and a (B, H) float64 copy)


@dataclass
class Trajectory:
    """The forward pass over a batch.

    x : (T, B, D) time-major inputs.
    hidden : (T+1, B, H), hidden[0] = a_0 = 0 and hidden[t] = a_t.
    states : the cell's state tuple after each step, T entries (cell state c_t for the LSTM).
    caches : what each step's backward needs, T entries.
    """

    x: np.ndarray
    hidden: np.ndarray
    states: list
    caches: list


def to_time_major(x: np.ndarray, dtype: np.dtype | type = np.float64) -> np.ndarray:
    """(B, T, D) batch-first -> (T, B, D) in ``dtype`` (the model's): a view where x has that dtype
    (the cells read it a block of steps at a time: no copy of a long run's inputs), else a copy."""
    return np.asarray(x, dtype=dtype).transpose(1, 0, 2)


def contribution_norms(dv: np.ndarray, hidden_prev: np.ndarray) -> np.ndarray:
    """Frobenius norm of each step's summand dv_t^T a_{t-1} of dL/dW_hh, (T,) float64, without forming the (G*H, H) matrices.

    ||A^T C||_F^2 = sum((A A^T) * (C C^T)) for A = dv_t (B, G*H) and C = a_{t-1} (B, H): Gram
    matrices of size B x B, cheaper than the summand itself whenever B < H. A step whose squared
    norm leaves the dtype's safe range (in float32, any summand below 1e-15) is recomputed in
    float64 from A and C scaled by their largest entries, RESCUE_STEPS steps at a time.
    """
    sq = _summand_squares(dv, hidden_prev)
    norms = np.sqrt(np.maximum(sq, 0.0)).astype(np.float64, copy=False)
    low, high = limits(dv.dtype).safe_squares
    with np.errstate(invalid="ignore"):
        unsafe = np.flatnonzero(~((sq > low) & (sq < high)))
    for start in range(0, unsafe.size, RESCUE_STEPS):
        pick = unsafe[start : start + RESCUE_STEPS]
        a, c = dv[pick].astype(np.float64), hidden_prev[pick].astype(np.float64)
        top_a, top_c = np.max(np.abs(a), axis=(1, 2)), np.max(np.abs(c), axis=(1, 2))
        ok = (top_a > 0) & (top_c > 0) & np.isfinite(top_a) & np.isfinite(top_c)  # else as computed
        a /= np.where(ok, top_a, 1.0)[:, None, None]
        c /= np.where(ok, top_c, 1.0)[:, None, None]
        with np.errstate(all="ignore"):
            rescued = top_a * top_c * np.sqrt(np.maximum(_summand_squares(a, c), 0.0))
        norms[pick] = np.where(ok, rescued, norms[pick])
    return norms


def cell_contribution_norms(cell: Cell, params: Params, x: np.ndarray, hidden_prev: np.ndarray,
                            dv: np.ndarray) -> np.ndarray:
    """``contribution_norms`` of each step's whole summand of dL/dW_hh, (T,): the norm over the
    row blocks of what W_hh multiplies in each (``Cell.temporal_factors``: h_{t-1}, or r_t h_{t-1}
    in the n rows of the GRU with the reset gate before the product). x (T, B, D) in step order."""
    pairs = cell.temporal_factors(params, x, hidden_prev, dv)
    if len(pairs) == 1:
        return contribution_norms(*pairs[0])
    return np.hypot.reduce(np.stack([contribution_norms(a, c) for a, c in pairs]), axis=0)


def _summand_squares(dv: np.ndarray, hidden_prev: np.ndarray) -> np.ndarray:
    """||dv_t^T a_{t-1}||_F^2 for each step, (T,): by B x B Gram matrices where they are smaller."""
    b, g = dv.shape[1:]
    h = hidden_prev.shape[2]
    if b * b * (g + h) < b * g * h:
        gram_v = np.matmul(dv, dv.transpose(0, 2, 1))
        gram_h = np.matmul(hidden_prev, hidden_prev.transpose(0, 2, 1))
        return np.einsum("tij,tij->t", gram_v, gram_h)
    summands = np.einsum("tbg,tbh->tgh", dv, hidden_prev)
    return np.einsum("tgh,tgh->t", summands, summands)


def pick_rows(part, rows: np.ndarray):
    """The given batch rows of a state or a cache (arrays, tuples, named tuples), recursively."""
    if isinstance(part, np.ndarray):
        return part[rows]
    picked = [pick_rows(p, rows) for p in part]
    return type(part)(*picked) if hasattr(part, "_fields") else tuple(picked)


def run_layer(cell: Cell, params: Params, xt: np.ndarray, mask: np.ndarray | None = None,
              initial: tuple[np.ndarray, ...] | None = None) -> Trajectory:
    """The cell over xt (T, B, D), time-major in the order it is processed, from the zero state
    (or from ``initial``, the state a segment of a longer run starts from: checkpointed BPTT).

    mask : optional (T, B) bool, True at a sequence's real steps. At a pad step the state is
        carried unchanged, s_t = s_{t-1}, so a sequence runs over its real steps only, as
        ``pack_padded_sequence`` runs it: its final state is the one after its last real step.
    """
    steps, batch = xt.shape[0], xt.shape[1]
    hidden_size, dtype = cell.hidden_size(params), cell.dtype(params)
    u = cell.project_inputs(params, np.asarray(xt, dtype=dtype))  # in the parameters' dtype throughout
    params = cell.forward_weights(params)  # W_hh^T contiguous, for the product at every step
    hidden = np.empty((steps + 1, batch, hidden_size), dtype)
    state = cell.initial_state(batch, hidden_size, dtype) if initial is None else initial
    hidden[0] = state[0]
    states, caches = [], []
    step = cell.step_forward
    pads = None if mask is None else ~mask
    for t in range(steps):
        new, cache = step(params, u[t], state, hidden[t + 1])  # h_t lands in its row
        if pads is not None and pads[t].any():
            for part, before in zip(new, state):  # a pad step carries the state: s_t = s_{t-1}
                part[pads[t]] = before[pads[t]]
        state = new
        states.append(state)
        caches.append(cache)
    return Trajectory(xt, hidden, states, caches)


@dataclass
class LayerGradients:
    """What BPTT through one layer (one direction) gives, time-major in processing order.

    dL_dh : (T, B, H) total dL/dh_t; dL_dc : (T, B, H) total dL/dc_t for the LSTM, else None.
    params : {name: gradient} of the cell's parameters.
    du, dv : (T, B, G*H) dL/du_t and dL/dv_t (one array where the cell says ``dv_is_du``).
    dx : (T, B, D) dL/dx_t, the gradient the layer sends to its input (the layer below, or the
        embedding); zero at pad steps. Held in units e^dx_scale[t, b] where ``dx_scale`` is given, so
        that what reaches the layer below is exact at any depth (network.py carries it on).
    log_rows : (T, B) ln||dL/dh_t|| of each sequence, exact at any depth (-inf where it is 0);
        log_cell_rows : the same for dL/dc_t, else None; log_norms, log_cell_norms : (T,) over the
        batch (``set_log_rows``). The records above but dx are at true
        scale and under- or overflow where these logs leave the dtype's range.
    dx_scale : (T, B) float64, the units of dx; None where dx is at true scale.
    initial : dL/ds_0, the gradient reaching the state the layer starts from: (dL/dh_0,) or for the
        LSTM (dL/dh_0, dL/dc_0), (B, H) each at true scale (torch's ``h0.grad``, ``c0.grad``);
        log_initial : ln of each one's norm over the batch, exact at any depth.
    """

    dL_dh: np.ndarray
    dL_dc: np.ndarray | None
    params: Params
    du: np.ndarray = field(repr=False)
    dv: np.ndarray = field(repr=False)
    dx: np.ndarray | None = field(default=None, repr=False)
    log_rows: np.ndarray | None = field(default=None, repr=False)
    log_cell_rows: np.ndarray | None = field(default=None, repr=False)
    dx_scale: np.ndarray | None = field(default=None, repr=False)
    log_norms: np.ndarray | None = field(default=None, repr=False)
    log_cell_norms: np.ndarray | None = field(default=None, repr=False)
    initial: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    log_initial: tuple[float, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.log_norms is None and self.log_rows is not None:
            self.set_log_rows(self.log_rows, self.log_cell_rows)

    def set_log_rows(self, log_rows: np.ndarray, log_cell_rows: np.ndarray | None) -> None:
        """The per-sequence logs, and from them log_norms, log_cell_norms: (T,) ln||dL/dh_t|| (and
        ln||dL/dc_t||) over the batch and the hidden units."""
        self.log_rows, self.log_cell_rows = log_rows, log_cell_rows
        self.log_norms = combine_log_norms(log_rows, axis=1)
        self.log_cell_norms = None if log_cell_rows is None else combine_log_norms(log_cell_rows, axis=1)


def backprop_steps(
    cell: Cell, params: Params, caches: list, dstate: tuple[np.ndarray, ...], unit: float, deltas: np.ndarray,
    dL_dc: np.ndarray | None, du: np.ndarray, dv: np.ndarray, scale: np.ndarray, local: np.ndarray | None = None,
    log_local: np.ndarray | None = None, real: np.ndarray | None = None, first: bool = True,
    local_scale: np.ndarray | None = None,
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The log-domain recursion of ``backprop_layer`` over steps n-1 .. 0 of caches (n of them).

    dstate : dL/ds_n, its first element the row deltas[n], each sequence's row in units
        e^unit[b] (unit (B,)); deltas (n+1, B, H) receives dL/dh_{t-1} in row t (units
        e^scale[t, b]); dL_dc, du, dv (n, B, .) and scale (n, B) are filled in place. local,
        log_local, real, local_scale : as in ``backprop_layer``, rows of these steps (log_local
        (n, B): ln of local's true row norms).
    first : whether step 0 here is the sequence's first: then dL/ds_0 is left as it is; otherwise
        it is renormalised as any other, to carry on into the steps before (checkpointed BPTT).
    Returns (dL/ds_0 in units e^unit, unit).
    """
    step = cell.step_backward
    # which steps a gradient joins at, and which are real for every sequence: read once, as lists
    # of bools (a numpy test at each step costs more than some of the step's products)
    joins = [False] * len(caches) if local is None else np.any(log_local > -np.inf, axis=1).tolist()
    whole = None if real is None else real.all(axis=(1, 2)).tolist()
    for t in range(len(caches) - 1, -1, -1):
        if joins[t]:  # the gradient from outside joins here; dstate[0] is this row
            unit = join(dstate, local[t], log_local[t], unit, 0.0 if local_scale is None else local_scale[t])
        scale[t] = unit
        memory = None if dL_dc is None else cell.memory_grad(dstate, caches[t], out=dL_dc[t])  # the total, through h_t as well
        if whole is None or whole[t]:
            dstate = step(params, dstate, caches[t], du[t], dv[t], deltas[t], memory)
        else:
            into = tuple(d * real[t] for d in dstate)  # only real steps go through the cell
            back = step(params, into, caches[t], du[t], dv[t], deltas[t])
            carried = tuple(b + d * (1.0 - real[t]) for b, d in zip(back, dstate))  # pads: identity
            deltas[t] = carried[0]
            dstate = (deltas[t],) + carried[1:]  # the record's row, as step_backward returns it
        if t or not first:
            unit = renormalise_if_far(dstate, unit)  # rows of dL/ds_{t-1} back to unit norm if far from it
    return dstate, unit


def backprop_layer(
    cell: Cell, params: Params, traj: Trajectory, local: np.ndarray | None = None,
    final: tuple[np.ndarray | None, ...] | None = None, mask: np.ndarray | None = None,
    input_grads: bool = False, local_scale: np.ndarray | None = None, parameters: bool = True,
) -> LayerGradients:
    """Exact BPTT through one layer from the gradients that reach its states from outside.

    local : (T, B, H) or None, dL/dh_t arriving from outside the recurrence at each step (the
        layer above, a readout at every step, a pooled readout); it joins the recursion at step t.
        local_scale : (T, B) or None, local[t, b] held in units e^local_scale[t, b] (the layer
        above's ``dx_scale``); None: at true scale.
    final : dL/d(final state), one (B, H) array (or None) per state element: the readout of the
        last state, or dL/dh_n, dL/dc_n given by the caller.
    mask : (T, B) bool as for ``run_layer``: at a pad step the gradient passes to s_{t-1} unchanged
        (the step was the identity), and the step's own du, dv are zero.

        dL/ds_{t-1} = step_backward(m_t * dL/ds_t) + (1 - m_t) * dL/ds_t

    parameters : False leaves the parameters' gradients out (``params`` empty): for a measure of
        the flow alone, which needs dL/dh_t and what reaches the layer below, not the weights'.
    """
    steps, batch = traj.hidden.shape[0] - 1, traj.hidden.shape[1]
    hidden_size, dtype = traj.hidden.shape[2], cell.dtype(params)
    # deltas[t] = dL/dh_t for t = 0..T: each step writes dL/dh_{t-1} straight into the row before
    # its own, so the recursion itself fills the record (dL/dh_0, row 0, is what reaches h_0).
    deltas = np.empty((steps + 1, batch, hidden_size), dtype)
    dL_dh = deltas[1:]
    has_memory = len(cell.state_names) > 1
    dL_dc = np.empty((steps, batch, hidden_size), dtype) if has_memory else None
    width = params[cell.recurrent].shape[0]
    du = np.empty((steps, batch, width), dtype)
    dv = du if cell.dv_is_du else np.empty((steps, batch, width), dtype)

    final = final or (None,) * len(cell.state_names)
    dL_dh[steps - 1] = final[0] if final[0] is not None else 0.0
    dstate = (dL_dh[steps - 1],) + tuple(
        np.zeros((batch, hidden_size), dtype) if f is None else np.array(f, dtype=dtype) for f in final[1:]
    )
    real = None if mask is None else mask[:, :, None].astype(dtype)
    # scale[t, b]: ln of the unit that row (t, b) of every record (dL_dh, dL_dc, du, dv) is held in;
    # one per sequence, so that each is exact however far it falls below the others (a padded
    # sequence's carried gradient, or one that fades faster, never drowns the rest)
    scale = np.empty((steps, batch))
    unit = renormalise_if_far(dstate, np.zeros(batch))
    log_local = None if local is None else log_row_norms(local)
    if local_scale is not None:
        log_local = log_local + local_scale
    dstate, unit = backprop_steps(cell, params, traj.caches, dstate, unit, deltas, dL_dc, du, dv, scale, local,
                                  log_local, real, local_scale=local_scale)
    initial, log_initial = initial_gradient(dstate, unit)

    log_rows = scale + log_row_norms(dL_dh)
    log_cell_rows = None if dL_dc is None else scale + log_row_norms(dL_dc)
    if not scale.any():  # never left the window: the records are at their true scale already
        grads = cell.param_grads(params, traj.x, traj.hidden[:-1], du, dv) if parameters else {}
        dx = cell.input_grads(params, du) if input_grads else None
        return LayerGradients(dL_dh, dL_dc, grads, du, dv, dx, log_rows, log_cell_rows,
                              initial=initial, log_initial=log_initial)
    # dL/dx_t in the units of its step: the layer below takes it as it is (local_scale), exact at any
    # depth; brought to true scale it would underflow wherever dL/dh_t does
    dx = cell.input_grads(params, du) if input_grads else None
    top = to_common_unit(du, dv, scale)
    grads = cell.param_grads(params, traj.x, traj.hidden[:-1], du, dv) if parameters else {}
    for g in grads.values():
        to_true_scale(g, top)
    for record in (du,) if dv is du else (du, dv):
        to_true_scale(record, top)  # the records at true scale: zero where that underflows
    to_true_scale(dL_dh, scale)
    if dL_dc is not None:
        to_true_scale(dL_dc, scale)
    return LayerGradients(dL_dh, dL_dc, grads, du, dv, dx, log_rows, log_cell_rows,
                          scale if input_grads else None, initial=initial, log_initial=log_initial)


def initial_gradient(dstate: tuple[np.ndarray, ...], unit: np.ndarray) -> tuple[tuple[np.ndarray, ...], tuple[float, ...]]:
    """dL/ds_0 at true scale from what the recursion leaves, each row b in units e^unit[b] (a copy:
    its first element is row 0 of the deltas), and the ln of each element's norm over the batch."""
    logs = tuple(float(combine_log_norms(log_row_norms(part) + unit)) for part in dstate)
    initial = tuple(np.array(part) for part in dstate)
    if unit.any():
        for part in initial:
            to_true_scale(part, unit)
    return initial, logs
