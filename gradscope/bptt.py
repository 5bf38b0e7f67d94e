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
few hundred steps of a vanishing or exploding run, float32 (1e-38 .. 1e38) within a few dozen. The
recursion therefore carries it as a direction and a logarithm, one per sequence of the batch:
whenever a sequence's adjoint state (its h and c parts together) leaves the window
1e-100 < n < 1e100 (1e-15 < n < 1e15 in float32), it is divided by 2^k, the power of two nearest
its norm n, and k ln 2 is added to that sequence's scale for the steps before,

    dL/ds_{t-1}[b] = e^{scale_{t-1,b}} u_{t-1}[b]     scale_{t-1,b} = scale_{t,b} + k ln 2,   ||u_{t-1}[b]|| ~ 1

so ln||dL/dh_t[b]|| = scale_{t,b} + ln||u_t[b]|| is exact at any depth (``log_row_norms``), unless a
single step shrinks the gradient by more than 1e-200 (1e-23 in float32). A unit per sequence keeps
each exact however far it falls below the others (a padded sequence's gradient, carried unchanged
through its pad steps, or one that fades faster); powers of two make every rescaling exact, so
the log domain never rounds. Checking the window costs one product per row and step
(renormalising at every step cost 15-60%); a run that never leaves it has scale 0 throughout and
pays nothing more. The step is linear in dstate, so each step runs on u_t unchanged. Parameter
gradients are sums over steps and sequences; each summand is weighted by 2^{(scale - max)/ln 2}
and the sum multiplied by e^{max} (``to_common_unit``), so they are exact wherever the dtype can
represent them. The records (dL/dh_t, du, dv) are returned at their true scale, zero where that
underflows; the logs are kept beside them.

Precision. Everything runs in the dtype of the parameters (``--dtype``: float64, or float32 when
``experiment.build`` has cast the model and the batch): states, caches, adjoints, records and
gradients stay in it, and only the per-step logarithms (``scale``, ``log_norms``, ``log_rows``)
are float64. The windows above are the dtype's (``DTYPE_LIMITS``).
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
        """Frobenius norm of each step's summand, (T,) float64, without forming the (G*H, H) matrices.

        ||A^T C||_F^2 = sum((A A^T) * (C C^T)) for A = dv_t (B, G*H) and C = a_{t-1} (B, H): Gram
        matrices of size B x B, cheaper than the summand itself whenever B < H. A step whose squared
        norm leaves the dtype's safe range (in float32, any summand below 1e-15) is recomputed in
        float64 from A and C scaled by their largest entries, RESCUE_STEPS steps at a time.
        """
        sq = _summand_squares(self.dv, self.hidden_prev)
        norms = np.sqrt(np.maximum(sq, 0.0)).astype(np.float64, copy=False)
        low, high = limits(self.dv.dtype).safe_squares
        with np.errstate(invalid="ignore"):
            unsafe = np.flatnonzero(~((sq > low) & (sq < high)))
        for start in range(0, unsafe.size, RESCUE_STEPS):
            pick = unsafe[start : start + RESCUE_STEPS]
            a, c = self.dv[pick].astype(np.float64), self.hidden_prev[pick].astype(np.float64)
            top_a, top_c = np.max(np.abs(a), axis=(1, 2)), np.max(np.abs(c), axis=(1, 2))
            ok = (top_a > 0) & (top_c > 0) & np.isfinite(top_a) & np.isfinite(top_c)  # else as computed
            a /= np.where(ok, top_a, 1.0)[:, None, None]
            c /= np.where(ok, top_c, 1.0)[:, None, None]
            with np.errstate(all="ignore"):
                rescued = top_a * top_c * np.sqrt(np.maximum(_summand_squares(a, c), 0.0))
            norms[pick] = np.where(ok, rescued, norms[pick])
        return norms


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


def to_time_major(x: np.ndarray, dtype: np.dtype | type = np.float64) -> np.ndarray:
    """(B, T, D) batch-first -> (T, B, D) in ``dtype`` (the model's): a view where x has that dtype
    (the cells read it a block of steps at a time: no copy of a long run's inputs), else a copy."""
    return np.asarray(x, dtype=dtype).transpose(1, 0, 2)


# --- norms in the log domain -----------------------------------------------------------------------


@dataclass(frozen=True)
class DtypeLimits:
    """Where the log domain acts for one dtype; each figure leaves its range a wide margin.

    safe_squares : sums of squares outside this range are recomputed scaled by the row's largest
        entry (inside it, every square that matters is a normal number).
    renormalise_window : squared norms of the adjoint state within which it is left at its scale.
    join_headroom : a gradient joining from outside this far (in ln) above the state's unit resets
        the unit to its own (e^headroom times a state inside the window must not overflow).
    """

    safe_squares: tuple[float, float]
    renormalise_window: tuple[float, float]
    join_headroom: float


DTYPE_LIMITS: dict[np.dtype, DtypeLimits] = {
    # float64: 2.2e-308 .. 1.8e308 (subnormals to 4.9e-324); the window 1e-100 < n < 1e100
    np.dtype(np.float64): DtypeLimits((1e-280, 1e280), (1e-200, 1e200), 230.0),
    # float32: 1.2e-38 .. 3.4e38 (subnormals to 1.4e-45); the window 1e-15 < n < 1e15, so that a step
    # may shrink the state by 1e-23 or grow it by 1e23 before it leaves the normal numbers
    np.dtype(np.float32): DtypeLimits((1e-30, 1e30), (1e-30, 1e30), 34.0),
}
# Rows recomputed at a time: the rescue never copies more than this many rows.
RESCUE_ROWS = 4096
LN2 = math.log(2.0)
# |exponent| of a power of two beyond every dtype's range (an inf or -inf unit turns into it)
EXPONENT_LIMIT = 1 << 30
# Steps of the contributions recomputed at a time (each a (B, G*H) and a (B, H) float64 copy).
RESCUE_STEPS = 256
# Entries of a record brought beyond float64's factors at a time (``_to_true_scale``): the copies
# those rows need stay this small instead of growing with T (at T = 100,000 nearly every row is such).
CHUNK_ENTRIES = 1 << 20


def limits(dtype: np.dtype | type) -> DtypeLimits:
    """The log domain's figures for arrays of ``dtype`` (float64's for any other)."""
    found = DTYPE_LIMITS.get(dtype)  # an array's dtype: found at once (this runs at every step)
    return found if found is not None else DTYPE_LIMITS.get(np.dtype(dtype), DTYPE_LIMITS[np.dtype(np.float64)])


def log_row_norms(d: np.ndarray) -> np.ndarray:
    """(..., H) -> (...): the natural log of each row's 2-norm, exact whatever its size.

    -inf for a zero row, +inf for a row holding inf (and no nan), nan for one holding nan. The
    squares of tiny or huge entries under- or overflow, so those rows alone are recomputed scaled
    by their largest entry, RESCUE_ROWS at a time. The logs are float64 whatever d's dtype.
    """
    low, high = limits(d.dtype).safe_squares
    with np.errstate(all="ignore"):
        sq = np.einsum("...h,...h->...", d, d)
        out = 0.5 * np.log(np.asarray(sq, dtype=np.float64))
        unsafe = np.flatnonzero(~((sq > low) & (sq < high)))
        flat = out.reshape(-1)
        for start in range(0, unsafe.size, RESCUE_ROWS):
            pick = unsafe[start : start + RESCUE_ROWS]
            rows = d[np.unravel_index(pick, sq.shape)]  # (n, H), a copy of these rows only
            top = np.max(np.abs(rows), axis=1)
            ok = (top > 0) & np.isfinite(top)
            safe = np.where(ok, top, 1.0)
            rows /= safe[:, None]
            squares = np.einsum("ij,ij->i", rows, rows).astype(np.float64)
            scaled = np.log(safe.astype(np.float64)) + 0.5 * np.log(squares)
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


def _exponents(log_factor: np.ndarray | float) -> np.ndarray:
    """log_factor / ln 2 as whole numbers (int64) for the log domain's units, which are whole
    multiples of ln 2; +-2^30 for +-inf (a factor no number survives), 0 for nan."""
    log_factor = np.asarray(log_factor, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        k = np.rint(np.where(np.isfinite(log_factor), log_factor, 0.0) / LN2)
        k = np.where(log_factor == np.inf, EXPONENT_LIMIT, np.where(log_factor == -np.inf, -EXPONENT_LIMIT, k))
    return np.clip(k, -EXPONENT_LIMIT, EXPONENT_LIMIT).astype(np.int64)


def _to_true_scale(record: np.ndarray, scale: np.ndarray | float) -> None:
    """record[i] *= e^scale[i] in place for a record held in units e^scale[i], scale of its leading
    shape: (T,) for a (T, ...) record, (T, B) for one with a unit per step and sequence, or one unit.

    The units are whole multiples of ln 2, so every factor is a power of two 2^k and every product
    exact, unless it under- or overflows the record's dtype, as the true value would: one multiply
    by factors of the record's dtype where they are normal numbers of it (|k| <= 126), of float64
    where not (rounded once into the record), and np.ldexp for the rows beyond float64's factors
    (a unit of -inf, a zero row's, gives 0).
    """
    k = _exponents(scale)
    shape = k.shape + (1,) * (record.ndim - k.ndim)
    beyond = np.abs(k) > 1000
    moderate = np.where(beyond, 0, k)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if np.all(np.abs(moderate) <= 126):
            record *= np.ldexp(np.ones(k.shape, record.dtype), moderate).reshape(shape)
        else:
            record *= np.ldexp(np.ones(k.shape), moderate).reshape(shape)
        if beyond.any() and k.ndim == 0:
            np.ldexp(record, k, out=record)
        elif beyond.any():  # in place, a block of steps at a time: nothing as large as the record
            block = max(1, CHUNK_ENTRIES // max(1, record[0].size))
            for start in range(0, k.shape[0], block):
                far = beyond[start:start + block]
                if far.any():
                    part = record[start:start + block]
                    np.ldexp(part, k[start:start + block].reshape(far.shape + shape[k.ndim:]), out=part,
                             where=far.reshape(far.shape + shape[k.ndim:]))


def _power_of_two_near(norm: np.ndarray) -> np.ndarray:
    """k (int64) with 2^k the power of two nearest each positive finite norm (in log2)."""
    return np.rint(np.log2(norm)).astype(np.int64)


def _row_squares(parts: tuple[np.ndarray, ...]) -> np.ndarray:
    """The adjoint state's squared norm per sequence, (B,), all parts together."""
    sq = None
    for p in parts:
        part = np.matmul(p[:, None, :], p[:, :, None]).reshape(-1)  # B dot products: 2-3x einsum's speed
        sq = part if sq is None else sq + part
    return sq


def _normalise(parts: tuple[np.ndarray, ...], rows: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """Divide the chosen rows of the adjoint state (all parts together) by the power of two nearest
    their norms, in place: exactly, so that renormalising never rounds.

    rows : (B,) bool, the sequences to renormalise; sq : (B,) their squared norms (``_row_squares``).
    Returns (B,) ln of each divisor, a whole multiple of ln 2: 0 for the rows not chosen, -inf for a
    zero row (left as it is), 0 for one holding nan or inf (left to propagate).
    """
    exponents = np.zeros(sq.shape[0], np.int64)
    low, high = limits(parts[0].dtype).safe_squares
    with np.errstate(invalid="ignore"):
        safe = rows & (sq > low) & (sq < high)
        rescue = np.flatnonzero(rows & ~safe)
        top = None
        if rescue.size:  # squares that under- or overflow: first the largest entry's exponent
            top = np.max([np.max(np.abs(p[rescue]), axis=1) for p in parts], axis=0).astype(np.float64)
            ok = (top > 0) & np.isfinite(top)
            pick = rescue[ok]
            if pick.size:
                first = np.frexp(top[ok])[1].astype(np.int64)  # 2^(first-1) <= top < 2^first
                for p in parts:
                    p[pick] = np.ldexp(p[pick], -first[:, None])  # entries below 1: safe squares
                sq = sq.copy()
                sq[pick] = _row_squares(tuple(p[pick] for p in parts))
                exponents[pick] = first
                safe = safe.copy()
                safe[pick] = True
    if safe.any():
        k = _power_of_two_near(np.sqrt(sq[safe].astype(np.float64)))
        for p in parts:
            if safe.all():
                np.ldexp(p, -k[:, None], out=p)
            else:
                p[safe] = np.ldexp(p[safe], -k[:, None])
        exponents[safe] += k
    logs = exponents * LN2
    if top is not None:
        logs[rescue] = np.where(top == 0, -np.inf, logs[rescue])  # zero rows: -inf; nan, inf: 0
    return logs


def _renormalise_if_far(parts: tuple[np.ndarray, ...], unit: np.ndarray) -> np.ndarray:
    """The adjoint state's rows whose norm is outside the dtype's ``renormalise_window`` divided by
    it (``_normalise``), in place; returns the new units, ``unit`` itself when no row was far.

    unit : (B,) ln of each row's unit. A zero row already at unit -inf is left alone.
    """
    sq = _row_squares(parts)
    low, high = limits(parts[0].dtype).renormalise_window
    if low < sq.min() and sq.max() < high:  # every row inside (nan fails both): the usual step
        return unit
    with np.errstate(invalid="ignore"):
        far = ~((sq > low) & (sq < high)) & ~((sq == 0) & (unit == -np.inf))
    return unit + _normalise(parts, far, sq) if far.any() else unit


def _join(dstate: tuple[np.ndarray, ...], local: np.ndarray, log_local: np.ndarray, unit: np.ndarray,
          local_unit: np.ndarray | float = 0.0) -> np.ndarray:
    """dL/dh_t += local into dstate, whose rows are held in units e^unit (B,), in place; the new units.

    local : (B, H) held in units e^local_unit ((B,), or 0: at true scale), whole multiples of ln 2;
    log_local : (B,) ln of its rows' true norms. A row whose log_local is -inf (nothing joins) or
    nan is left as it is. When local is far above the row's unit, the unit rises to the multiple of
    ln 2 just above log_local; every rescaling is a power of two, exact.
    """
    joins = log_local > -np.inf  # False for nan as well
    lim = limits(dstate[0].dtype)
    with np.errstate(invalid="ignore"):
        kept = (unit > -np.inf) & (log_local <= unit + lim.join_headroom)
        above = np.ceil(np.where(joins, log_local, 0.0) / LN2) * LN2
        new = np.where(joins & ~kept, np.fmax(unit, above), unit)  # the larger of the two sets the unit
    raised = new > unit
    if raised.any():
        for p in dstate:
            _to_true_scale(p, np.where(raised, unit - new, 0.0))
    if np.isscalar(local_unit) and local_unit == 0.0 and not (new != 0.0).any():
        lifted = local  # at true scale, and so is the state: nothing to scale
    else:
        lifted = np.array(local)
        with np.errstate(invalid="ignore"):
            _to_true_scale(lifted, np.where(joins, local_unit - new, 0.0))
    row = dstate[0]
    if joins.all():
        row += lifted  # inf and nan in a joining row propagate
    else:
        row += np.where(joins[:, None], lifted, 0.0)
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
    hidden_size, dtype = cell.hidden_size(params), cell.dtype(params)
    u = cell.project_inputs(params, np.asarray(xt, dtype=dtype))  # in the parameters' dtype throughout
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
    return Trajectory(xt, hidden, states, caches, None)


@dataclass
class LayerGradients:
    """What BPTT through one layer (one direction) gives, time-major in processing order.

    dL_dh : (T, B, H) total dL/dh_t; dL_dc : (T, B, H) total dL/dc_t for the LSTM, else None.
    params : {name: gradient} of the cell's parameters.
    du, dv : (T, B, G*H) dL/du_t and dL/dv_t (one array where the cell says ``dv_is_du``).
    dx : (T, B, D) dL/dx_t, the gradient the layer sends to its input (the layer below, or the
        embedding); zero at pad steps. Held in units e^dx_scale[t, b] where ``dx_scale`` is given, so
        that what reaches the layer below is exact at any depth (network_bptt.py carries it on).
    log_rows : (T, B) ln||dL/dh_t|| of each sequence, exact at any depth (-inf where it is 0);
        log_cell_rows : the same for dL/dc_t, else None. The records above but dx are at true
        scale and under- or overflow where these logs leave the dtype's range.
    dx_scale : (T, B) float64, the units of dx; None where dx is at true scale.
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
    for t in range(len(caches) - 1, -1, -1):
        if local is not None and np.any(log_local[t] > -np.inf):
            # the gradient from outside joins here; dstate[0] is this row
            unit = _join(dstate, local[t], log_local[t], unit, 0.0 if local_scale is None else local_scale[t])
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
            unit = _renormalise_if_far(dstate, unit)  # rows of dL/ds_{t-1} back to unit norm if far from it
    return dstate, unit


def to_common_unit(du: np.ndarray, dv: np.ndarray, scale: np.ndarray) -> float:
    """du and dv (T, B, .), row (t, b) held in units e^scale[t, b], brought to one unit e^top in
    place (each row times 2^((scale - top) / ln 2), exact); returns top, the largest finite unit.

    Every weight gradient is a sum over the rows (``Cell.param_grads``): in one unit, the sum is
    taken as it is and multiplied by e^top once, so that no summand under- or overflows on the way.
    """
    finite = scale[np.isfinite(scale)]
    top = float(finite.max()) if finite.size else 0.0
    with np.errstate(invalid="ignore"):
        _to_true_scale(du, scale - top)
        if dv is not du:
            _to_true_scale(dv, scale - top)
    return top


def backprop_layer(
    cell: Cell, params: Params, traj: Trajectory, local: np.ndarray | None = None,
    final: tuple[np.ndarray | None, ...] | None = None, mask: np.ndarray | None = None,
    input_grads: bool = False, local_scale: np.ndarray | None = None,
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
    """
    steps, batch = traj.hidden.shape[0] - 1, traj.hidden.shape[1]
    hidden_size, dtype = traj.hidden.shape[2], cell.dtype(params)
    # deltas[t] = dL/dh_t for t = 0..T: each step writes dL/dh_{t-1} straight into the row before
    # its own, so the recursion itself fills the record (dL/dh_0 is computed and dropped).
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
    unit = _renormalise_if_far(dstate, np.zeros(batch))
    log_local = None if local is None else log_row_norms(local)
    if local_scale is not None:
        log_local = log_local + local_scale
    backprop_steps(cell, params, traj.caches, dstate, unit, deltas, dL_dc, du, dv, scale, local, log_local, real,
                   local_scale=local_scale)

    log_rows = scale + log_row_norms(dL_dh)
    log_cell_rows = None if dL_dc is None else scale + log_row_norms(dL_dc)
    if not scale.any():  # never left the window: the records are at their true scale already
        grads = cell.param_grads(params, traj.x, traj.hidden[:-1], du, dv)
        dx = cell.input_grads(params, du) if input_grads else None
        return LayerGradients(dL_dh, dL_dc, grads, du, dv, dx, log_rows, log_cell_rows)
    # dL/dx_t in the units of its step: the layer below takes it as it is (local_scale), exact at any
    # depth; brought to true scale it would underflow wherever dL/dh_t does
    dx = cell.input_grads(params, du) if input_grads else None
    top = to_common_unit(du, dv, scale)
    grads = cell.param_grads(params, traj.x, traj.hidden[:-1], du, dv)
    for g in grads.values():
        _to_true_scale(g, top)
    for record in (du,) if dv is du else (du, dv):
        _to_true_scale(record, top)  # the records at true scale: zero where that underflows
    _to_true_scale(dL_dh, scale)
    if dL_dc is not None:
        _to_true_scale(dL_dc, scale)
    return LayerGradients(dL_dh, dL_dc, grads, du, dv, dx, log_rows, log_cell_rows,
                          scale if input_grads else None)


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
    traj = run_layer(model.cell, params, to_time_major(x, model.dtype),
                     None if mask is None else np.ascontiguousarray(mask.T))
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
    loss, dlogits = model.loss.value_and_grad(traj.logits, np.asarray(y, dtype=model.dtype))
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
    steps, y = traj.hidden.shape[0] - 1, np.asarray(y, dtype=model.dtype)
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
        return model.loss.value_and_grad(traj.logits, np.asarray(y, dtype=model.dtype))[0]
