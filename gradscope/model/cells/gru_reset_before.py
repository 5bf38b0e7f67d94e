"""The GRU with the reset gate before the recurrent product: Keras' GRU(reset_after=False).

The GRU of Cho et al. 2014 as Keras computes it with ``reset_after=False`` (REFERENCE §4a), a cell
PyTorch does not have. Kept in nn.GRU's layout, gates stacked by rows as (r, z, n); u_t = W_ih x_t +
b_ih + b_hh, both biases added once for all steps (Keras has one bias, in b_ih):

    r_t = s(u_r + W_hr h_{t-1})              reset gate        s: sigmoid or a hard sigmoid
    z_t = s(u_z + W_hz h_{t-1})              update gate
    n_t = f(u_n + W_hn (r_t * h_{t-1}))      candidate: the reset scales h_{t-1} BEFORE W_hn
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}    f: tanh, or the layer's activation

W_hh multiplies h_{t-1} in its r and z rows and r_t * h_{t-1} in its n rows. With v_t the recurrent
pre-activations (W_hr h, W_hz h, W_hn (r h)), dL/du_t = dL/dv_t. Backward, from dh = dL/dh_t:

    dn   = (1 - z) dh                        dz = (h_{t-1} - n) dh           backprop through the blend
    dv_n = f'(n) dn                          backprop through f
    d(r h) = W_hn^T dv_n                     backprop through W_hn (r h)
    dr   = h_{t-1} d(r h)                    backprop through r * h_{t-1}
    dv_r = s'(r) dr     dv_z = s'(z) dz      backprop through the gates
    dh_{t-1} = z dh + r d(r h) + W_hr^T dv_r + W_hz^T dv_z
    dL/dW_hn = sum_t dv_n^T (r_t h_{t-1})    dL/dW_hr = sum_t dv_r^T h_{t-1}   (and W_hz)

The step Jacobian is not a sum of scaled gate blocks (W_hn meets diag(r) and W_hr):

    dh_t/dh_{t-1} = diag(z) + diag(s'_z (h - n)) W_hz + diag((1 - z) f'_n) W_hn (diag(r) + diag(s'_r h) W_hr)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import TRANSPOSED, Params, State, apply_to_batch, project, sum_outer
from .gated import GatedCell


class GRUResetBeforeCache(NamedTuple):
    """What one step keeps for its backward.

    gates : (B, 2H), [r_t, z_t].
    h_prev : (B, H), h_{t-1}.
    diff : (B, H), h_{t-1} - n_t.
    n : (B, H), the candidate n_t.
    """

    gates: np.ndarray
    h_prev: np.ndarray
    diff: np.ndarray
    n: np.ndarray


class GRUResetBeforeCell(GatedCell):
    name = "gru-reset-before"
    gates = ("r", "z", "n")
    torch_module = None
    dv_is_du = True

    def input_bias(self, params: Params) -> np.ndarray:
        """b_ih + b_hh: both enter u_t, outside every gate's product."""
        return params["b_ih"] + params["b_hh"]

    def step_forward(
        self, params: Params, u_t: np.ndarray, state: State, out: np.ndarray | None = None
    ) -> tuple[State, GRUResetBeforeCache]:
        (h_prev,) = state
        h = h_prev.shape[1]
        wt = params.get(TRANSPOSED)
        wt = params["W_hh"].T if wt is None else wt  # (H, 3H): the contiguous transpose where prepared
        rz = h_prev @ wt[:, : 2 * h]
        rz += u_t[:, : 2 * h]
        self.gate.forward(rz, out=rz)  # r, z = s(u + W h_{t-1})
        n = (rz[:, :h] * h_prev) @ wt[:, 2 * h :]
        n += u_t[:, 2 * h :]
        self.f.forward(n, out=n)  # n_t = f(u_n + W_hn (r * h_{t-1}))
        diff = h_prev - n
        h_new = np.multiply(diff, rz[:, h:], out=out)
        h_new += n  # h_t = n + z (h_{t-1} - n)
        return (h_new,), GRUResetBeforeCache(rz, h_prev, diff, n)

    def local_backward(
        self, params: Params, dstate: State, cache: GRUResetBeforeCache, du: np.ndarray, dv: np.ndarray,
        memory: None = None,
    ) -> tuple[np.ndarray]:
        """Fills du = dv (the cell says ``dv_is_du``); returns dh_{t-1} through every path but W_hr
        and W_hz: z dh and r d(r h), the latter through W_hn."""
        (dh,) = dstate
        rz, n = cache.gates, cache.n
        h = n.shape[1]
        r, z = rz[:, :h], rz[:, h:]
        direct = dh * z  # backprop through z * h_{t-1}
        dv_n = self.f.slope(n)
        dv_n *= dh - direct  # backprop through (1 - z) * n, then f
        d_rh = dv_n @ params["W_hh"][2 * h :]  # backprop through W_hn (r * h_{t-1})
        d_rz = np.empty_like(rz)
        np.multiply(d_rh, cache.h_prev, out=d_rz[:, :h])  # dr: backprop through r * h_{t-1}
        np.multiply(dh, cache.diff, out=d_rz[:, h:])  # dz: backprop through z (h_{t-1} - n)
        d_rz *= self.gate.slope(rz)  # backprop through the gates
        du[:, : 2 * h] = d_rz
        du[:, 2 * h :] = dv_n
        if dv is not du:
            dv[...] = du
        direct += r * d_rh  # backprop through r * h_{t-1} into h_{t-1}
        return (direct,)

    def step_backward(
        self, params: Params, dstate: State, cache: GRUResetBeforeCache, du: np.ndarray, dv: np.ndarray,
        dh_prev: np.ndarray | None = None, memory: None = None,
    ) -> State:
        (direct,) = self.local_backward(params, dstate, cache, du, dv)
        h = direct.shape[1]
        dh = np.matmul(dv[:, : 2 * h], params["W_hh"][: 2 * h], out=dh_prev)  # backprop through W_hr h, W_hz h
        dh += direct
        return (dh,)

    def _reset(self, params: Params, x: np.ndarray, h_prev: np.ndarray) -> np.ndarray:
        """r_t for every step, (T, B, H), recomputed from the inputs and h_{t-1} (the weight
        gradients are taken over all steps at once, from the trajectory, not the step caches)."""
        h = h_prev.shape[-1]
        w_ir, bias = params["W_ih"][:h], self.input_bias(params)[:h]
        r = project(x, w_ir.T, bias, self.dtype(params))
        r += h_prev @ params["W_hh"][:h].T
        return self.gate.forward(r, out=r)

    def temporal_factors(self, params: Params, x: np.ndarray, h_prev: np.ndarray, dv: np.ndarray
                         ) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """(dv_rz, h_{t-1}) for the r and z rows, (dv_n, r_t h_{t-1}) for the n rows."""
        h = h_prev.shape[-1]
        return (dv[..., : 2 * h], h_prev), (dv[..., 2 * h :], self._reset(params, x, h_prev) * h_prev)

    def param_grads(
        self, params: Params, x: np.ndarray, h_prev: np.ndarray, du: np.ndarray, dv: np.ndarray
    ) -> Params:
        (a_rz, c_rz), (a_n, c_n) = self.temporal_factors(params, x, h_prev, dv)
        flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
        db = flat(du).sum(axis=0)
        return {
            "W_ih": sum_outer(du, x),  # sum_t du_t^T x_t
            # the temporal contributions: dv_rz^T h_{t-1} and dv_n^T (r_t h_{t-1})
            "W_hh": np.concatenate([flat(a_rz).T @ flat(c_rz), flat(a_n).T @ flat(c_n)]),
            "b_ih": db,
            "b_hh": db.copy(),  # both biases enter u_t: each gets all of dL/du_t
        }

    # --- step Jacobians -------------------------------------------------------------------------

    def _jacobian_terms(self, params: Params, cache: GRUResetBeforeCache) -> tuple[np.ndarray, ...]:
        """(a, b, c, r, e), each (B, H), float64: J = diag(a) + diag(b) W_hz + diag(c) W_hn (diag(r) +
        diag(e) W_hr), with a = z, b = s'(z)(h - n), c = (1 - z) f'(n), e = s'(r) h_{t-1}."""
        rz = np.asarray(cache.gates, np.float64)
        h = rz.shape[1] // 2
        r, z = rz[:, :h], rz[:, h:]
        slope = np.asarray(self.gate.slope(cache.gates), np.float64)
        b = slope[:, h:] * cache.diff
        c = (1.0 - z) * np.asarray(self.f.slope(cache.n), np.float64)
        e = slope[:, :h] * cache.h_prev
        return z, b, c, r, e

    def _blocks(self, params: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = np.asarray(params["W_hh"], np.float64)
        h = w.shape[1]
        return w[:h], w[h : 2 * h], w[2 * h :]

    def step_jacobian(self, params: Params, cache: GRUResetBeforeCache) -> np.ndarray:
        a, b, c, r, e = self._jacobian_terms(params, cache)
        w_r, w_z, w_n = self._blocks(params)
        inner = r[:, None, :] * np.eye(r.shape[1]) + e[:, :, None] * w_r  # diag(r) + diag(e) W_hr
        jac = b[:, :, None] * w_z + c[:, :, None] * (w_n @ inner)
        units = np.arange(a.shape[1])
        jac[:, units, units] += a
        return jac

    def jacobian_times(self, params: Params, cache: GRUResetBeforeCache, q: np.ndarray) -> np.ndarray:
        """J_t q for q (B, H, k) with three (B k, H) @ (H, H) products, no (B, H, H) Jacobian."""
        a, b, c, r, e = self._jacobian_terms(params, cache)
        w_r, w_z, w_n = self._blocks(params)
        inner = r[:, :, None] * q + e[:, :, None] * apply_to_batch(w_r, q)  # (diag(r) + diag(e) W_hr) q
        return a[:, :, None] * q + b[:, :, None] * apply_to_batch(w_z, q) + c[:, :, None] * apply_to_batch(w_n, inner)

    def mean_step_jacobian(self, params: Params, caches: list) -> np.ndarray:
        """The mean of J over batch and steps without a (B, H, H) array: J is linear in a, b and in
        the outer products c r^T and c e^T, whose means make it:
        mean J = diag(mean a) + diag(mean b) W_hz + mean(c r^T) * W_hn + (mean(c e^T) * W_hn) W_hr."""
        w_r, w_z, w_n = self._blocks(params)
        h = w_r.shape[1]
        sums = [np.zeros(h), np.zeros(h), np.zeros((h, h)), np.zeros((h, h))]
        count = 0
        for cache in caches:
            a, b, c, r, e = self._jacobian_terms(params, cache)
            sums[0] += a.sum(axis=0)
            sums[1] += b.sum(axis=0)
            sums[2] += c.T @ r
            sums[3] += c.T @ e
            count += a.shape[0]
        a, b, cr, ce = (s / count for s in sums)
        jac = b[:, None] * w_z + cr * w_n + (ce * w_n) @ w_r
        jac[np.arange(h), np.arange(h)] += a
        return jac
