"""The log domain: how BPTT carries a gradient that leaves float64 or float32, exactly.

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
from dataclasses import dataclass

import numpy as np


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
# Entries of a record brought beyond float64's factors at a time (``to_true_scale``): the copies
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


def to_true_scale(record: np.ndarray, scale: np.ndarray | float) -> None:
    """record[i] *= e^scale[i] in place for a record held in units e^scale[i], scale of its leading
    shape: (T,) for a (T, ...) record, (T, B) for one with a unit per step and sequence, or one unit.

    The units are whole multiples of ln 2, so every factor is a power of two 2^k and every product
    exact, unless it under- or overflows the record's dtype, as the true value would: one multiply
    by factors of the record's dtype where they are normal numbers of it (|k| <= 126), of float64
    where not (rounded once into the record), and np.ldexp for the rows beyond float64's factors
    (a unit of -inf, a zero row's, gives 0).
    """
    with np.errstate(invalid="ignore"):
        k = np.rint(np.asarray(scale, dtype=np.float64) / LN2)
        top = np.max(np.abs(k)) if k.size else 0.0
    shape = k.shape + (1,) * (record.ndim - k.ndim)
    if top <= 126:  # the usual case: finite units whose factors are normal numbers of every dtype (nan fails)
        if top:
            record *= np.ldexp(np.ones(k.shape, record.dtype), k.astype(np.int64)).reshape(shape)
        return  # all zero: the record is at true scale already
    k = _exponents(scale)
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


# (B, H) -> (B,) each row's dot product with itself, at 2-3x einsum's speed on a step's rows:
# numpy's vecdot where it has one (2.0+, 40% faster again), else B matmuls of (1, H) @ (H, 1)
if hasattr(np, "vecdot"):
    def _row_dots(p: np.ndarray) -> np.ndarray:
        return np.vecdot(p, p)
else:  # pragma: no cover - numpy 1.26
    def _row_dots(p: np.ndarray) -> np.ndarray:
        return np.matmul(p[:, None, :], p[:, :, None]).reshape(-1)


def _row_squares(parts: tuple[np.ndarray, ...]) -> np.ndarray:
    """The adjoint state's squared norm per sequence, (B,), all parts together."""
    sq = _row_dots(parts[0])
    for p in parts[1:]:
        sq += _row_dots(p)
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


def renormalise_if_far(parts: tuple[np.ndarray, ...], unit: np.ndarray) -> np.ndarray:
    """The adjoint state's rows whose norm is outside the dtype's ``renormalise_window`` divided by
    it (``_normalise``), in place; returns the new units, ``unit`` itself when no row was far.

    unit : (B,) ln of each row's unit. A zero row already at unit -inf is left alone.
    """
    sq = _row_squares(parts)
    low, high = limits(parts[0].dtype).renormalise_window
    if low < sq.min() and sq.max() < high:  # every row inside (nan fails both): the usual step
        return unit  # (the methods: np.min and np.max cost twice as much on a step's B rows)
    with np.errstate(invalid="ignore"):
        far = ~((sq > low) & (sq < high)) & ~((sq == 0) & (unit == -np.inf))
    return unit + _normalise(parts, far, sq) if far.any() else unit


def join(dstate: tuple[np.ndarray, ...], local: np.ndarray, log_local: np.ndarray, unit: np.ndarray,
          local_unit: np.ndarray | float = 0.0) -> np.ndarray:
    """dL/dh_t += local into dstate, whose rows are held in units e^unit (B,), in place; the new units.

    local : (B, H) held in units e^local_unit ((B,), or 0: at true scale), whole multiples of ln 2;
    log_local : (B,) ln of its rows' true norms. A row whose log_local is -inf (nothing joins) or
    nan is left as it is. When local is far above the row's unit, the unit rises to the multiple of
    ln 2 just above log_local; every rescaling is a power of two, exact.
    """
    lim = limits(dstate[0].dtype)
    if _joins_within(dstate[0], local, log_local, unit, local_unit, lim.join_headroom):
        return unit  # the usual step, added without a change of unit
    joins = log_local > -np.inf  # False for nan as well
    with np.errstate(invalid="ignore"):
        kept = (unit > -np.inf) & (log_local <= unit + lim.join_headroom)
        above = np.ceil(np.where(joins, log_local, 0.0) / LN2) * LN2
        # a zero state (unit -inf) joined by a true-scale gradient inside the window keeps true scale
        # (unit 0): later joins then add without a copy, where a power-of-two unit rescaled each one
        low, high = (0.5 * np.log(v) for v in lim.renormalise_window)
        plain = (unit == -np.inf) & (low < log_local) & (log_local < high)
        above = np.where(plain & np.isscalar(local_unit) & (local_unit == 0.0), 0.0, above)
        new = np.where(joins & ~kept, np.fmax(unit, above), unit)  # the larger of the two sets the unit
    raised = new > unit
    if raised.any():
        for p in dstate:
            to_true_scale(p, np.where(raised, unit - new, 0.0))
    if np.isscalar(local_unit) and local_unit == 0.0 and not (new != 0.0).any():
        lifted = local  # at true scale, and so is the state: nothing to scale
    else:
        lifted = np.array(local)
        with np.errstate(invalid="ignore"):
            to_true_scale(lifted, np.where(joins, local_unit - new, 0.0))
    row = dstate[0]
    if joins.all():
        row += lifted  # inf and nan in a joining row propagate
    else:
        row += np.where(joins[:, None], lifted, 0.0)
    return new


def _joins_within(row: np.ndarray, local: np.ndarray, log_local: np.ndarray, unit: np.ndarray,
                  local_unit: np.ndarray | float, headroom: float) -> bool:
    """``join``'s usual step, in a few calls where the general one takes dozens: when every row of
    local lies within the headroom of the state's finite unit, and the two units differ by a
    factor that is a normal number of the dtype, add local times that factor (a power of two, so
    the product rounds as ``to_true_scale``'s would) and return True; else touch nothing and
    return False. A row of local that is zero (log_local -inf) adds zero, as join leaves it."""
    with np.errstate(invalid="ignore"):
        if not np.all(log_local <= unit + headroom):  # nan fails; a unit of -inf (a zero state) too
            return False
        if np.isscalar(local_unit) and local_unit == 0.0 and not unit.any():
            row += local  # both at true scale
            return True
        k = np.rint((local_unit - unit) / LN2)
        if not np.all(np.abs(k) <= 126):  # beyond float32's normal factors, or nan
            return False
    row += local * np.ldexp(np.ones(k.shape, row.dtype), k.astype(np.int64))[:, None]
    return True


def to_common_unit(du: np.ndarray, dv: np.ndarray, scale: np.ndarray) -> float:
    """du and dv (T, B, .), row (t, b) held in units e^scale[t, b], brought to one unit e^top in
    place (each row times 2^((scale - top) / ln 2), exact); returns top, the largest finite unit.

    Every weight gradient is a sum over the rows (``Cell.param_grads``): in one unit, the sum is
    taken as it is and multiplied by e^top once, so that no summand under- or overflows on the way.
    """
    finite = scale[np.isfinite(scale)]
    top = float(finite.max()) if finite.size else 0.0
    with np.errstate(invalid="ignore"):
        to_true_scale(du, scale - top)
        if dv is not du:
            to_true_scale(dv, scale - top)
    return top
