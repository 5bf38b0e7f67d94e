"""Backpropagation through time, exact, with every intermediate a diagnostic needs.

Shapes: B batch, T steps, D inputs, H hidden units, G gates, O outputs. Inputs are batch-first
(B, T, D) as PyTorch's ``batch_first=True`` and the .npy files people have; inside, the loop runs
time-major so that each step reads one contiguous (B, .) slice.

Backward (REFERENCE §1), with delta_t = dL/da_t the *total* derivative through every later step:

    delta_T    = Wy^T dL/dlogits
    delta_{t-1} = the cell's step_backward(delta_t)     = Wa^T (f'(z_t) * delta_t) for the vanilla RNN
    dL/dWa     = sum_t  dv_t^T a_{t-1}                   one summand per step: its temporal contribution

With a readout at every step (model.readout == "every", the copy task) the loss reads every a_t
directly, so the total derivative gains a local term at each step:

    delta_t    = Wy^T dL/dlogits_t + (what step_backward brings back from t+1)
    dL/dWy     = sum_t dL/dlogits_t^T a_t

Log domain. delta_t shrinks or grows geometrically and leaves float64 (1e-308 .. 1e308) within a
few hundred steps of a vanishing or exploding run. The recursion therefore carries it as a
direction and a logarithm: whenever the adjoint state (h and c parts together, over the whole
batch) leaves the window 1e-100 < n < 1e100, it is divided by its norm n and ln n is added to
the scale of the steps before,

    dL/ds_{t-1} = e^{scale_{t-1}} u_{t-1}      scale_{t-1} = scale_t + ln n,   ||u_{t-1}|| = 1

so ln||dL/dh_t|| = scale_t + ln||u_t|| is exact at any depth (``log_row_norms``), unless a single
step shrinks the gradient by more than 1e-200. Checking the window costs one dot product per step
(renormalising at every step cost 15-60%); a run that never leaves it has scale 0 throughout and
pays nothing more. The step is
linear in dstate, so each step runs on the unit-norm u_t unchanged. Parameter gradients are sums
over steps; each summand is weighted by e^{scale_t - max} and the sum multiplied by e^{max}, so
they are exact wherever float64 can represent them. The records (dL/dh_t, du, dv) are returned at
their true scale, zero where that underflows; the logs are kept beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .model.cells import Cell, Params
from .errors import InputError
from .model.single import Model


@dataclass
class Trajectory:
    """The forward pass over a batch.

    x : (T, B, D) time-major inputs.
    hidden : (T+1, B, H), hidden[0] = a_0 = 0 and hidden[t] = a_t.
    states : the cell's state tuple after each step, T entries (cell state c_t for the LSTM).
    caches : what each step's backward needs, T entries.
    logits : (B, O) readout of a_T, or (B, T, O) readout of every a_t (model.readout "every").
    """

    x: np.ndarray
    hidden: np.ndarray
    states: list
    caches: list
    logits: np.ndarray


@dataclass
class Gradients:
    """The loss and every derivative of one BPTT pass.

    loss : the batch-mean loss.
    dL_da : (T, B, H), dL/da_t for t = 1..T (first step first), the total derivative.
    dL_dc : (T, B, H), dL/dc_t in total (``Cell.memory_grad``) for cells with a memory cell (LSTM),
        else None.
    params : {name: gradient}, each the shape of its parameter, recurrent and readout alike.
    dv : (T, B, G*H), dL/dv_t where v_t = W_hh a_{t-1} (+ b_hh): what each step contributes.
    hidden_prev : (T, B, H), a_{t-1} for t = 1..T.
    log_norms : (T,) ln||dL/da_t|| over batch and units, exact where dL_da under- or overflows;
        log_cell_norms : the same for dL_dc, else None.
    """

    loss: float
    dL_da: np.ndarray
    dL_dc: np.ndarray | None
    params: Params
    dv: np.ndarray = field(repr=False)
    hidden_prev: np.ndarray = field(repr=False)
    log_norms: np.ndarray | None = field(default=None, repr=False)
    log_cell_norms: np.ndarray | None = field(default=None, repr=False)

    def contribution(self, t: int) -> np.ndarray:
        """Step t's summand of dL/dW_hh (1-based t): dv_t^T a_{t-1}, shape (G*H, H)."""
        return self.dv[t - 1].T @ self.hidden_prev[t - 1]

    def contributions(self) -> np.ndarray:
        """All T summands of dL/dW_hh, (T, G*H, H); they add up to ``params[recurrent]``.

        Memory is T * G*H * H floats: ask for one step with ``contribution`` when that is large.
        """
        return np.einsum("tbg,tbh->tgh", self.dv, self.hidden_prev)

    def contribution_norms(self) -> np.ndarray:
        """Frobenius norm of each step's summand, (T,), without forming the (G*H, H) matrices.

        ||A^T C||_F^2 = sum((A A^T) * (C C^T)) for A = dv_t (B, G*H) and C = a_{t-1} (B, H): Gram
        matrices of size B x B, cheaper than the summand itself whenever B < H.
        """
        t, b, g = self.dv.shape
        h = self.hidden_prev.shape[2]
        if b * b * (g + h) < b * g * h:
            gram_v = np.matmul(self.dv, self.dv.transpose(0, 2, 1))
            gram_h = np.matmul(self.hidden_prev, self.hidden_prev.transpose(0, 2, 1))
            sq = np.einsum("tij,tij->t", gram_v, gram_h)
        else:
            sq = np.einsum("tgh,tgh->t", *(self.contributions(),) * 2)
        return np.sqrt(np.maximum(sq, 0.0))


def to_time_major(x: np.ndarray) -> np.ndarray:
    """(B, T, D) batch-first -> (T, B, D) contiguous, float64."""
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64).transpose(1, 0, 2))


# --- norms in the log domain -----------------------------------------------------------------------

# Sums of squares outside this range are recomputed scaled by the row's largest entry.
SAFE_SQUARES = (1e-280, 1e280)
# ln of the ratio of float64's largest number to its smallest subnormal is 1453: beyond this, a
# factor e^x turns every nonzero float64 into 0 (x < 0) or inf (x > 0).
BEYOND_FLOAT64 = 1500.0
# Squared norms of the adjoint state within which it is left at its scale: 1e-100 < n < 1e100.
RENORMALISE_WINDOW = (1e-200, 1e200)
# A gradient joining from outside this far (in ln) above the state's unit resets the unit to its own.
JOIN_HEADROOM = 230.0
# Rows recomputed at a time: the rescue never copies more than this many rows.
RESCUE_ROWS = 4096


def log_row_norms(d: np.ndarray) -> np.ndarray:
    """(..., H) -> (...): the natural log of each row's 2-norm, exact whatever its size.

    -inf for a zero row, +inf for a row holding inf (and no nan), nan for one holding nan. The
    squares of tiny or huge entries under- or overflow, so those rows alone are recomputed scaled
    by their largest entry, RESCUE_ROWS at a time.
    """
    with np.errstate(all="ignore"):
        sq = np.einsum("...h,...h->...", d, d)
        out = 0.5 * np.log(sq)
        unsafe = np.flatnonzero(~((sq > SAFE_SQUARES[0]) & (sq < SAFE_SQUARES[1])))
        flat = out.reshape(-1)
        for start in range(0, unsafe.size, RESCUE_ROWS):
            pick = unsafe[start : start + RESCUE_ROWS]
            rows = d[np.unravel_index(pick, sq.shape)]  # (n, H), a copy of these rows only
            top = np.max(np.abs(rows), axis=1)
            ok = (top > 0) & np.isfinite(top)
            safe = np.where(ok, top, 1.0)
            rows /= safe[:, None]
            scaled = np.log(safe) + 0.5 * np.log(np.einsum("ij,ij->i", rows, rows))
            bad = np.where(np.isnan(rows).any(axis=1) | np.isnan(top), np.nan, np.where(top == 0, -np.inf, np.inf))
            flat[pick] = np.where(ok, scaled, bad)
        return out


def combine_log_norms(logs: np.ndarray, axis=-1) -> np.ndarray:
    """ln of the 2-norm of several parts from the ln of each part's norm: 0.5 ln sum_i e^{2 l_i}."""
    with np.errstate(all="ignore"):
        top = np.max(logs, axis=axis, keepdims=True)  # nan propagates
        shift = np.where(np.isfinite(top), top, 0.0)
        total = np.squeeze(shift, axis) + 0.5 * np.log(np.sum(np.exp(2.0 * (logs - shift)), axis=axis))
        top = np.squeeze(top, axis)
        return np.where(np.isfinite(top), total, top)


def scale_by_exp(a: np.ndarray, log_factor: float) -> None:
    """a *= e^log_factor in place, in factors of at most e^700 so that no factor is 0 or inf:
    entries under- or overflow as their true value would, and a zero stays zero (never nan)."""
    if abs(log_factor) > BEYOND_FLOAT64:  # no float64 times this factor is a nonzero finite number
        if log_factor > 0:
            np.multiply(a, np.inf, out=a, where=a != 0)
        else:
            a *= 0.0
        return
    while log_factor != 0.0 and math.isfinite(log_factor):
        part = max(-700.0, min(700.0, log_factor))
        with np.errstate(over="ignore", under="ignore"):  # as the true value would
            a *= math.exp(part)
        log_factor -= part
    if log_factor == -math.inf:
        a *= 0.0


def _to_true_scale(record: np.ndarray, scale: np.ndarray) -> None:
    """record[t] *= e^scale[t] in place for a (T, ...) record held in units e^scale[t]."""
    moderate = np.abs(scale) <= 700.0
    with np.errstate(all="ignore"):
        factor = np.exp(np.where(moderate, scale, 0.0))
    with np.errstate(over="ignore", under="ignore"):  # as the true values would
        record *= factor.reshape((-1,) + (1,) * (record.ndim - 1))
    record[scale < -BEYOND_FLOAT64] = 0.0  # the steps whose gradient underflows whatever its direction
    for t in np.flatnonzero(~moderate & (scale >= -BEYOND_FLOAT64)):
        scale_by_exp(record[t], float(scale[t]))


def _squares(parts: tuple[np.ndarray, ...]) -> float:
    """The adjoint state's squared norm, all parts together."""
    return sum(float(np.vdot(p, p)) for p in parts)


def _normalise(parts: tuple[np.ndarray, ...], sq: float | None = None) -> float:
    """Divide the adjoint state (all parts together) by its norm, in place; return ln of the norm.

    -inf when the state is zero (left as it is); 0 when it holds nan or inf (left to propagate).
    sq : its squared norm, where the caller has it.
    """
    sq = _squares(parts) if sq is None else sq
    if SAFE_SQUARES[0] < sq < SAFE_SQUARES[1]:
        norm = math.sqrt(sq)
        for p in parts:
            p *= 1.0 / norm
        return math.log(norm)
    top = max(float(np.max(np.abs(p))) for p in parts)
    if not (top > 0.0 and math.isfinite(top)):
        return -math.inf if top == 0.0 else 0.0
    for p in parts:
        p /= top  # entries at most 1 now: the squares are safe
    return math.log(top) + _normalise(parts)


def _renormalise_if_far(parts: tuple[np.ndarray, ...]) -> float:
    """``_normalise`` when the state's norm is outside RENORMALISE_WINDOW; 0.0 (ln 1) otherwise."""
    sq = _squares(parts)
    if RENORMALISE_WINDOW[0] < sq < RENORMALISE_WINDOW[1]:
        return 0.0
    return _normalise(parts, sq)  # the squares once, not twice


def _join(dstate: tuple[np.ndarray, ...], local: np.ndarray, log_local: float, unit: float) -> float:
    """dL/dh_t += local (true scale) into dstate held in units e^unit, in place; the new unit."""
    new = unit if unit > -math.inf and log_local <= unit + JOIN_HEADROOM else max(unit, log_local)
    if new > unit:
        for p in dstate:
            p *= math.exp(unit - new)  # the larger of the two sets the unit
    row = dstate[0]
    if -new <= 700.0:
        row += local * math.exp(-new)
    else:  # e^-new overflows: bring local up in two factors
        lifted = local * math.exp(700.0)
        scale_by_exp(lifted, -new - 700.0)
        row += lifted
    return new


# --- one layer, one direction ----------------------------------------------------------------------


def run_layer(cell: Cell, params: Params, xt: np.ndarray, mask: np.ndarray | None = None,
              initial: tuple[np.ndarray, ...] | None = None) -> Trajectory:
    """The cell over xt (T, B, D), time-major in the order it is processed, from the zero state
    (or from ``initial``, the state a segment of a longer run starts from: checkpointed BPTT).

    mask : optional (T, B) bool, True at a sequence's real steps. At a pad step the state is
        carried unchanged, s_t = s_{t-1}, so a sequence runs over its real steps only, as
        ``pack_padded_sequence`` runs it: its final state is the one after its last real step.
        ``logits`` of the returned trajectory is None: the readout is the caller's.
    """
    steps, batch = xt.shape[0], xt.shape[1]
    hidden_size = cell.hidden_size(params)
    u = cell.project_inputs(params, xt)
    hidden = np.empty((steps + 1, batch, hidden_size))
    state = cell.initial_state(batch, hidden_size) if initial is None else initial
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
    return Trajectory(xt, hidden, states, caches, None)


@dataclass
class LayerGradients:
    """What BPTT through one layer (one direction) gives, time-major in processing order.

    dL_dh : (T, B, H) total dL/dh_t; dL_dc : (T, B, H) total dL/dc_t for the LSTM, else None.
    params : {name: gradient} of the cell's parameters.
    du, dv : (T, B, G*H) dL/du_t and dL/dv_t (one array where the cell says ``dv_is_du``).
    dx : (T, B, D) dL/dx_t, the gradient the layer sends to its input (the layer below, or the
        embedding); zero at pad steps.
    log_rows : (T, B) ln||dL/dh_t|| of each sequence, exact at any depth (-inf where it is 0);
        log_cell_rows : the same for dL/dc_t, else None. The records above are at true scale and
        under- or overflow where these logs leave float64's range.
    """

    dL_dh: np.ndarray
    dL_dc: np.ndarray | None
    params: Params
    du: np.ndarray = field(repr=False)
    dv: np.ndarray = field(repr=False)
    dx: np.ndarray | None = field(default=None, repr=False)
    log_rows: np.ndarray | None = field(default=None, repr=False)
    log_cell_rows: np.ndarray | None = field(default=None, repr=False)

    @property
    def log_norms(self) -> np.ndarray:
        """(T,) ln||dL/dh_t|| over the batch and the hidden units."""
        return combine_log_norms(self.log_rows, axis=1)

    @property
    def log_cell_norms(self) -> np.ndarray | None:
        return None if self.log_cell_rows is None else combine_log_norms(self.log_cell_rows, axis=1)


def backprop_steps(
    cell: Cell, params: Params, caches: list, dstate: tuple[np.ndarray, ...], unit: float, deltas: np.ndarray,
    dL_dc: np.ndarray | None, du: np.ndarray, dv: np.ndarray, scale: np.ndarray, local: np.ndarray | None = None,
    log_local: np.ndarray | None = None, real: np.ndarray | None = None, first: bool = True,
) -> tuple[tuple[np.ndarray, ...], float]:
    """The log-domain recursion of ``backprop_layer`` over steps n-1 .. 0 of caches (n of them).

    dstate : dL/ds_n in units e^unit, its first element the row deltas[n]; deltas (n+1, B, H)
        receives dL/dh_{t-1} in row t (units e^scale[t]); dL_dc, du, dv (n, B, .) and scale (n,)
        are filled in place. local, log_local, real : as in ``backprop_layer``, rows of these steps.
    first : whether step 0 here is the sequence's first: then dL/ds_0 is left as it is; otherwise
        it is renormalised as any other, to carry on into the steps before (checkpointed BPTT).
    Returns (dL/ds_0 in units e^unit, unit).
    """
    step = cell.step_backward
    for t in range(len(caches) - 1, -1, -1):
        if local is not None and log_local[t] > -math.inf:
            # the gradient from outside joins here; dstate[0] is this row
            unit = _join(dstate, local[t], float(log_local[t]), unit)
        scale[t] = unit
        if dL_dc is not None:
            dL_dc[t] = cell.memory_grad(dstate, caches[t])  # the total, through h_t as well
        if real is None or real[t].all():
            dstate = step(params, dstate, caches[t], du[t], dv[t], deltas[t])
        else:
            into = tuple(d * real[t] for d in dstate)  # only real steps go through the cell
            back = step(params, into, caches[t], du[t], dv[t], deltas[t])
            carried = tuple(b + d * (1.0 - real[t]) for b, d in zip(back, dstate))  # pads: identity
            deltas[t] = carried[0]
            dstate = (deltas[t],) + carried[1:]  # the record's row, as step_backward returns it
        if t or not first:
            unit += _renormalise_if_far(dstate)  # dL/ds_{t-1} back to unit norm if far from it
    return dstate, unit


def backprop_layer(
    cell: Cell, params: Params, traj: Trajectory, local: np.ndarray | None = None,
    final: tuple[np.ndarray | None, ...] | None = None, mask: np.ndarray | None = None,
    input_grads: bool = False,
) -> LayerGradients:
    """Exact BPTT through one layer from the gradients that reach its states from outside.

    local : (T, B, H) or None, dL/dh_t arriving from outside the recurrence at each step (the
        layer above, a readout at every step, a pooled readout); it joins the recursion at step t.
    final : dL/d(final state), one (B, H) array (or None) per state element: the readout of the
        last state, or dL/dh_n, dL/dc_n given by the caller.
    mask : (T, B) bool as for ``run_layer``: at a pad step the gradient passes to s_{t-1} unchanged
        (the step was the identity), and the step's own du, dv are zero.

        dL/ds_{t-1} = step_backward(m_t * dL/ds_t) + (1 - m_t) * dL/ds_t
    """
    steps, batch = traj.hidden.shape[0] - 1, traj.hidden.shape[1]
    hidden_size = traj.hidden.shape[2]
    # deltas[t] = dL/dh_t for t = 0..T: each step writes dL/dh_{t-1} straight into the row before
    # its own, so the recursion itself fills the record (dL/dh_0 is computed and dropped).
    deltas = np.empty((steps + 1, batch, hidden_size))
    dL_dh = deltas[1:]
    has_memory = len(cell.state_names) > 1
    dL_dc = np.empty((steps, batch, hidden_size)) if has_memory else None
    width = params[cell.recurrent].shape[0]
    du = np.empty((steps, batch, width))
    dv = du if cell.dv_is_du else np.empty((steps, batch, width))

    final = final or (None,) * len(cell.state_names)
    dL_dh[steps - 1] = final[0] if final[0] is not None else 0.0
    dstate = (dL_dh[steps - 1],) + tuple(
        np.zeros((batch, hidden_size)) if f is None else np.array(f, dtype=np.float64) for f in final[1:]
    )
    real = None if mask is None else mask[:, :, None].astype(np.float64)
    # scale[t]: ln of the unit that row t of every record (dL_dh, dL_dc, du, dv) is held in
    scale = np.empty(steps)
    unit = _renormalise_if_far(dstate)
    log_local = None if local is None else combine_log_norms(log_row_norms(local), axis=1)
    backprop_steps(cell, params, traj.caches, dstate, unit, deltas, dL_dc, du, dv, scale, local, log_local, real)

    log_rows = scale[:, None] + log_row_norms(dL_dh)
    log_cell_rows = None if dL_dc is None else scale[:, None] + log_row_norms(dL_dc)
    if not scale.any():  # never left the window: the records are at their true scale already
        grads = cell.param_grads(params, traj.x, traj.hidden[:-1], du, dv)
        dx = cell.input_grads(params, du) if input_grads else None
        return LayerGradients(dL_dh, dL_dc, grads, du, dv, dx, log_rows, log_cell_rows)
    # sum_t (summand in units e^scale_t): weight each step by e^{scale_t - top}, then the sum by e^top
    finite = scale[np.isfinite(scale)]
    top = float(finite.max()) if finite.size else 0.0
    with np.errstate(all="ignore"):
        weights = np.exp(scale - top)[:, None, None]
    du *= weights
    if dv is not du:
        dv *= weights
    grads = cell.param_grads(params, traj.x, traj.hidden[:-1], du, dv)
    for g in grads.values():
        scale_by_exp(g, top)
    for record in (du,) if dv is du else (du, dv):
        scale_by_exp(record, top)  # the records at true scale: zero where that underflows
    _to_true_scale(dL_dh, scale)
    if dL_dc is not None:
        _to_true_scale(dL_dc, scale)
    dx = cell.input_grads(params, du) if input_grads else None
    return LayerGradients(dL_dh, dL_dc, grads, du, dv, dx, log_rows, log_cell_rows)


# --- the single-layer model: a layer and a linear readout ----------------------------------------


def forward(model: Model, x: np.ndarray, mask: np.ndarray | None = None) -> Trajectory:
    """Run the cell over x (B, T, D) from the zero state and read out the last step (or every one).

    mask : optional (B, T) bool of real steps (padded texts): pad steps carry the state, so the
        last-step readout reads each sequence's state after its last real step (``run_layer``).
    """
    if x.ndim != 3 or x.shape[2] != model.input_size:
        raise InputError(
            f"inputs must have shape (B, T, {model.input_size}), got {tuple(x.shape)}"
        )
    params = model.params
    traj = run_layer(model.cell, params, to_time_major(x), None if mask is None else np.ascontiguousarray(mask.T))
    hidden, steps = traj.hidden, traj.hidden.shape[0] - 1
    if model.readout == "every":
        # logits_t = Wy a_t + by for t = 1..T in one matmul, batch-first (B, T, O) like the targets
        traj.logits = (hidden[1:] @ params["Wy"].T + params["by"]).transpose(1, 0, 2)
    else:
        traj.logits = hidden[steps] @ params["Wy"].T + params["by"]
    return traj


def backward(model: Model, traj: Trajectory, y: np.ndarray, mask: np.ndarray | None = None) -> Gradients:
    """Exact BPTT from the loss on y back to the first step (mask as for ``forward``)."""
    mask_tm = None if mask is None else np.ascontiguousarray(mask.T)
    params = model.params
    steps, hidden_size = traj.hidden.shape[0] - 1, model.hidden_size
    loss, dlogits = model.loss.value_and_grad(traj.logits, np.asarray(y, dtype=np.float64))
    every = model.readout == "every"
    if every:
        dlogits_tm = np.ascontiguousarray(dlogits.transpose(1, 0, 2))  # (T, B, O), step-major
        local = dlogits_tm @ params["Wy"]  # Wy^T dL/dlogits_t: backprop through each step's readout
        layer = backprop_layer(model.cell, params, traj, local=local, mask=mask_tm)
    else:
        delta = dlogits @ params["Wy"]  # delta_T = Wy^T dL/dlogits
        final = (delta,) + (None,) * (len(model.cell.state_names) - 1)
        layer = backprop_layer(model.cell, params, traj, final=final, mask=mask_tm)
    grads = layer.params
    if every:
        flat = dlogits_tm.reshape(steps * dlogits_tm.shape[1], -1)
        # sum_t dL/dlogits_t^T a_t: every step's readout adds to the one Wy
        grads["Wy"] = flat.T @ traj.hidden[1:].reshape(-1, hidden_size)
        grads["by"] = flat.sum(axis=0)
    else:
        grads["Wy"] = dlogits.T @ traj.hidden[steps]
        grads["by"] = dlogits.sum(axis=0)
    return Gradients(loss, layer.dL_dh, layer.dL_dc, grads, layer.dv, traj.hidden[:-1], layer.log_norms,
                     layer.log_cell_norms)


def last_step_backward(model: Model, traj: Trajectory, y: np.ndarray) -> Gradients:
    """For a readout at every step: BPTT of the last step's share of the loss, L_T / T, alone.

    The loss is the mean of the per-step losses, L = (1/T) sum_t L_t. The total dL/da_t also holds
    the local term of L_t, which masks how far back the readout at T reaches; this gradient is
    the part that flows back from step T: it equals the total at T and, like the gradient of a
    readout at T only, obeys Pascanu's bound at every step. y as for ``backward``, (B, T, ...).
    """
    steps, y = traj.hidden.shape[0] - 1, np.asarray(y, dtype=np.float64)
    with np.errstate(all="ignore"):
        last_only = replace(traj, logits=traj.logits[:, -1])
        last = backward(replace(model, readout="last"), last_only, y[:, -1])
    share = 1.0 / steps
    return Gradients(
        last.loss * share,
        last.dL_da * share,
        None if last.dL_dc is None else last.dL_dc * share,
        {name: g * share for name, g in last.params.items()},
        last.dv * share,
        last.hidden_prev,
        last.log_norms - math.log(steps),
        None if last.log_cell_norms is None else last.log_cell_norms - math.log(steps),
    )


def bptt(model: Model, x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> tuple[Trajectory, Gradients]:
    """Forward and backward in one call; overflow is allowed to run to inf/nan, silently."""
    with np.errstate(all="ignore"):
        traj = forward(model, x, mask)
        return traj, backward(model, traj, y, mask)


def loss_only(model: Model, x: np.ndarray, y: np.ndarray) -> float:
    """The loss alone (for finite differences and evaluation)."""
    with np.errstate(all="ignore"):
        traj = forward(model, x)
        return model.loss.value_and_grad(traj.logits, np.asarray(y, dtype=np.float64))[0]
