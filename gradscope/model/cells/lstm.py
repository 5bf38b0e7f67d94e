"""The LSTM cell, exactly as PyTorch's nn.LSTM (Hochreiter & Schmidhuber 1997, with forget gate).

Gates stacked by rows as (i, f, g, o); a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, (4H,):

    i_t = sigmoid(a_i)    f_t = sigmoid(a_f)    g_t = tanh(a_g)    o_t = sigmoid(a_o)
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)                        state (h_t, c_t), h_0 = c_0 = 0

Both biases enter a_t the same way, so ``project_inputs`` folds b_hh into u_t = W_ih x_t + b_ih + b_hh
and dL/du_t = dL/dv_t = dL/da_t. Backward, from dh = dL/dh_t and dc = dL/dc_t through c_{t+1}:

    do = tanh(c) dh                                    backprop through o * tanh(c)
    dc_total = o (1 - tanh^2 c) dh + dc                through tanh(c) into h_t, plus the carry
    di = g dc_total   df = c_{t-1} dc_total   dg = i dc_total                backprop through c_t
    da = [i (1-i) di, f (1-f) df, (1 - g^2) dg, o (1-o) do]                  through the gates
    dc_{t-1} = f dc_total                              the direct path of the cell: diag(f_t)
    dh_{t-1} = W_hh^T da

``memory_grad`` reports dc_total, the total derivative dL/dc_t (what torch's ``c_t.grad`` holds on
an unrolled nn.LSTMCell). The step Jacobian is over the flattened state (h, c), (2H, 2H).

Keras' LSTM is this cell with the gates in the same order (REFERENCE §4a); it may squash i, f, o
with a hard sigmoid s and use another activation f for g and for c_t's output, h_t = o_t f(c_t):
then each block takes its own slope, s'(gate) or f'(output), where the fused tanh serves the default.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .base import Params, State, recurrent_product
from .gated import GatedCell


@lru_cache(maxsize=8)
def gate_constants(hidden_size: int, dtype: np.dtype = np.dtype(np.float64), batch: int = 1
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(batch, 4H) arrays that let one tanh compute all four gates, and the gate slopes, in
    ``dtype`` (the gates': a float64 constant would turn float32 gates into float64). Each row is
    the same; whole arrays because numpy multiplies two (B, 4H) arrays twice as fast as it
    broadcasts a (4H,) row over one.

    sigmoid(a) = 0.5 + 0.5 tanh(a / 2): scaling the i, f, o blocks by ``half`` before and after a
    tanh over (B, 4H) and adding ``shift`` gives [i, f, g, o]. ``tanh_block`` is 1 on g, 0 elsewhere:
    (gate + tanh_block) (1 - gate) is s (1 - s) on the sigmoids and (1 + g)(1 - g) on g.
    """
    h = hidden_size
    half = np.full(4 * h, 0.5, dtype)
    half[2 * h : 3 * h] = 1.0
    shift = np.full(4 * h, 0.5, dtype)
    shift[2 * h : 3 * h] = 0.0
    tanh_block = 1.0 - shift * 2
    rows = tuple(np.repeat(a[None, :], batch, axis=0) for a in (half, shift, tanh_block))
    for a in rows:
        a.flags.writeable = False
    return rows


class LSTMCache(NamedTuple):
    """What one LSTM step keeps for its backward: the gates' derivatives, folded.

    coef : (B, 4H), what dL/dc_t (in total) and dL/dh_t are multiplied by to give dL/da_t:
        [g s'(a_i), c_{t-1} s'(a_f), i f'(a_g), f(c_t) s'(a_o)] (s' = s (1 - s) for the sigmoid,
        f' = 1 - g^2 for tanh), folded in the forward step, which has every factor in hand: the
        backward step is then three products where it was eleven.
    forget : (B, H), f_t: the direct path of the cell from c_t to c_{t-1}.
    dh_dc : (B, H), o_t (1 - tanh^2 c_t) = dh_t / dc_t (o_t f'(c_t)).
    """

    coef: np.ndarray
    forget: np.ndarray
    dh_dc: np.ndarray


class LSTMCell(GatedCell):
    name = "lstm"
    gates = ("i", "f", "g", "o")
    state_names = ("h", "c")
    torch_module = "nn.LSTM"
    dv_is_du = True

    def input_bias(self, params: Params) -> np.ndarray:
        """b_ih + b_hh: b_hh enters a_t as b_ih does, so it is added once in u, not at every step."""
        return params["b_ih"] + params["b_hh"]

    @property
    def fused(self) -> bool:
        """PyTorch's activations, sigmoid gates and tanh: one tanh computes all four gates."""
        return self.gate_activation == "sigmoid" and self.activation == "tanh"

    def step_forward(
        self, params: Params, u_t: np.ndarray, state: State, out: np.ndarray | None = None
    ) -> tuple[State, LSTMCache]:
        h_prev, c_prev = state
        batch, h = h_prev.shape
        a = recurrent_product(params, "W_hh", h_prev)
        a += u_t  # a_t = W_hh h_{t-1} + W_ih x_t + b_ih + b_hh
        if self.fused:
            half, shift, tanh_block = gate_constants(h, h_prev.dtype, batch)
            a *= half
            np.tanh(a, out=a)
            a *= half
            a += shift  # [i, f, g, o]: sigmoid via 0.5 + 0.5 tanh(a / 2), all four gates in one tanh
            coef = a + tanh_block
            factors = np.subtract(1.0, a)
            coef *= factors  # the slopes: s (1 - s) on i, f, o; (1 + g)(1 - g) on g
        else:
            self.gate.forward(a[:, : 2 * h], out=a[:, : 2 * h])  # i, f = s(a_i), s(a_f)
            self.f.forward(a[:, 2 * h : 3 * h], out=a[:, 2 * h : 3 * h])  # g = f(a_g)
            self.gate.forward(a[:, 3 * h :], out=a[:, 3 * h :])  # o = s(a_o)
            coef = np.empty_like(a)
            coef[:, : 2 * h] = self.gate.slope(a[:, : 2 * h])
            coef[:, 2 * h : 3 * h] = self.f.slope(a[:, 2 * h : 3 * h])
            coef[:, 3 * h :] = self.gate.slope(a[:, 3 * h :])
            factors = np.empty_like(a)
        i, g, o = a[:, :h], a[:, 2 * h : 3 * h], a[:, 3 * h :]
        forget = a[:, h : 2 * h].copy()  # contiguous: numpy is 2-3x slower on a gate's columns
        c = forget * c_prev
        ig = i * g
        c += ig  # c_t = f c_{t-1} + i g
        if self.fused:
            tanh_c = np.tanh(c)
            h_new = np.multiply(o, tanh_c, out=out)  # h_t = o tanh(c_t)
            dh_dc = np.multiply(tanh_c, tanh_c, out=ig)
            np.subtract(1.0, dh_dc, out=dh_dc)
        else:
            tanh_c = self.f.forward(c)
            h_new = np.multiply(o, tanh_c, out=out)  # h_t = o f(c_t)
            dh_dc = self.f.slope(tanh_c)
        dh_dc *= o  # o (1 - tanh^2 c_t), kept for the backward
        # each gate's slope times what the gate multiplies: g (i's, in c_t), c_{t-1} (f's), i (g's)
        # and f(c_t) (o's, in h_t), gathered into one array for one product
        gathered, gates = factors.reshape(batch, 4, h), a.reshape(batch, 4, h)
        gathered[:, 0] = gates[:, 2]
        gathered[:, 1] = c_prev
        gathered[:, 2] = gates[:, 0]
        gathered[:, 3] = tanh_c
        coef *= factors
        return (h_new, c), LSTMCache(coef, forget, dh_dc)

    def memory_grad(self, dstate: State, cache: LSTMCache, out: np.ndarray | None = None) -> np.ndarray:
        """dL/dc_t in total: o (1 - tanh^2 c_t) dL/dh_t + dL/dc_t through c_{t+1}, (B, H)."""
        dh, dc = dstate
        total = np.multiply(dh, cache.dh_dc, out=out)
        total += dc
        return total

    def local_backward(
        self, params: Params, dstate: State, cache: LSTMCache, du: np.ndarray, dv: np.ndarray,
        memory: np.ndarray | None = None,
    ) -> tuple[None, np.ndarray]:
        dh, _ = dstate
        batch, h = dh.shape
        # through tanh(c_t) into h_t, plus the carry (the caller's record of it, where given)
        dc = self.memory_grad(dstate, cache) if memory is None else memory
        da = du.reshape(batch, 4, h)  # dL/da_t for a_t = u_t + v_t: du and dv are one array (dv_is_du)
        coef = cache.coef.reshape(batch, 4, h)
        np.multiply(dc[:, None, :], coef[:, :3], out=da[:, :3])  # di, df, dg: through c_t and the gates
        np.multiply(dh, coef[:, 3], out=da[:, 3])  # do: through h_t = o f(c_t) and the gate
        if dv is not du:
            dv[...] = du
        return (None, np.multiply(dc, cache.forget))  # dc_{t-1}: backprop through f * c_{t-1}
