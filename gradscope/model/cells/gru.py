"""The GRU cell, exactly as PyTorch's nn.GRU (Cho et al. 2014, reset gate after the matmul).

Gates stacked by rows as (r, z, n); u_t = W_ih x_t + b_ih and v_t = W_hh h_{t-1} + b_hh, each (3H,):

    r_t = sigmoid(u_r + v_r)                 reset gate
    z_t = sigmoid(u_z + v_z)                 update gate
    n_t = tanh(u_n + r_t * v_n)              candidate; v_n = W_hn h_{t-1} + b_hn, so b_hn sits
                                             inside the reset and cannot merge with b_in
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Backward, from dh = dL/dh_t:

    dn   = (1 - z) dh                        dz = (h_{t-1} - n) dh           backprop through the blend
    du_n = (1 - n^2) dn                      backprop through tanh
    dv_n = r du_n                            dr = v_n du_n                    backprop through r * v_n
    du_r = dv_r = r (1 - r) dr               du_z = dv_z = z (1 - z) dz      backprop through the sigmoids
    dh_{t-1} = z dh + W_hh^T dv              the direct path, and through W_hh h_{t-1}

du and dv differ only in the n block. The step Jacobian is

    dh_t / dh_{t-1} = diag(z) + diag(alpha_r) W_hr + diag(alpha_z) W_hz + diag(alpha_n) W_hn

with alpha = dv for dh = 1; its direct path is diag(z_t) (REFERENCE §3).

Keras' GRU(reset_after=True) is this cell (REFERENCE §4a), and may squash the gates with a hard
sigmoid s and the candidate with another activation f: n_t = f(u_n + r_t * v_n), r and z = s(.);
the backward then takes f'(n) and s'(gates) for 1 - n^2 and the sigmoid's slope.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Params, State, recurrent_product
from .gated import GatedCell


class GRUCache(NamedTuple):
    """What one GRU step keeps for its backward.

    gates : (B, 2H), [r_t, z_t].
    v_n : (B, H), W_hn h_{t-1} + b_hn.
    diff : (B, H), h_{t-1} - n_t.
    n : (B, H), the candidate n_t.
    """

    gates: np.ndarray
    v_n: np.ndarray
    diff: np.ndarray
    n: np.ndarray


class GRUCell(GatedCell):
    name = "gru"
    gates = ("r", "z", "n")
    torch_module = "nn.GRU"

    def step_forward(
        self, params: Params, u_t: np.ndarray, state: State, out: np.ndarray | None = None
    ) -> tuple[State, GRUCache]:
        # Elementwise work runs on contiguous (B, 2H) and (B, H) arrays: numpy is several times
        # slower on the strided gate columns of a (B, 3H) array.
        (h_prev,) = state
        h = h_prev.shape[1]
        v = recurrent_product(params, "W_hh", h_prev)
        v += params["b_hh"]  # v_t = W_hh h_{t-1} + b_hh
        rz = np.add(v[:, : 2 * h], u_t[:, : 2 * h])
        self.gate.forward(rz, out=rz)  # r and z, one sigmoid
        v_n = v[:, 2 * h :]
        n = rz[:, :h] * v_n
        n += u_t[:, 2 * h :]
        self.f.forward(n, out=n)  # n_t = tanh(u_n + r * v_n)
        diff = h_prev - n
        h_new = np.multiply(diff, rz[:, h:], out=out)
        h_new += n  # h_t = n + z (h_{t-1} - n) = (1 - z) n + z h_{t-1}
        return (h_new,), GRUCache(rz, v_n, diff, n)

    def local_backward(
        self, params: Params, dstate: State, cache: GRUCache, du: np.ndarray, dv: np.ndarray,
        memory: None = None,
    ) -> tuple[np.ndarray]:
        (dh,) = dstate
        rz, n = cache.gates, cache.n
        h = n.shape[1]
        r, z = rz[:, :h], rz[:, h:]
        dh_direct = dh * z  # backprop through z * h_{t-1}
        dn = dh - dh_direct  # backprop through (1 - z) * n
        du_n = self.f.slope(n)
        du_n *= dn  # backprop through tanh: (1 - n^2) dn
        du_rz = np.empty_like(rz)
        np.multiply(du_n, cache.v_n, out=du_rz[:, :h])  # dr: backprop through r * v_n
        np.multiply(dh, cache.diff, out=du_rz[:, h:])  # dz: backprop through z (h_{t-1} - n)
        du_rz *= self.gate.slope(rz)  # backprop through the sigmoids: r (1 - r), z (1 - z)
        du[:, : 2 * h] = du_rz
        du[:, 2 * h :] = du_n
        dv[:, : 2 * h] = du_rz
        np.multiply(du_n, r, out=dv[:, 2 * h :])  # dv_n = r du_n: backprop through r * v_n
        return (dh_direct,)
