"""The vanilla (Elman) RNN cell, in the lesson's notation.

    z_t = Wa a_{t-1} + Wx x_t + b + b_hh   a_0 = 0
    a_t = f(z_t)                           f in {tanh, relu, sigmoid, linear}

Backward, from delta_t = dL/da_t (the total derivative through every later step):

    dz_t          = f'(z_t) * delta_t      backprop through f
    delta_{t-1}  += Wa^T dz_t               backprop through Wa a_{t-1}
    dWa = sum_t dz_t a_{t-1}^T,  dWx = sum_t dz_t x_t^T,  db = db_hh = sum_t dz_t

The step Jacobian da_t/da_{t-1} = diag(f'(z_t)) Wa. The two biases are PyTorch's nn.RNN's, b =
bias_ih_l0 and b_hh = bias_hh_l0, kept apart (both 0 at init) although only their sum enters z_t:
each is a parameter of its own, with the gradient dL/dz_t summed over batch and steps, so the global
gradient norm, clipping and every optimizer update are torch's. ``project_inputs`` adds b + b_hh to
Wx x_t once for all steps, as the LSTM's ``input_bias`` does.
"""

from __future__ import annotations

import numpy as np

from ..activations import get_activation
from ..initializers import get_initializer, xavier
from .base import Cell, Params, State, apply_to_batch, project, recurrent_product, sum_outer


class RNNCell(Cell):
    name = "rnn"
    gates = ("a",)
    torch_module = "nn.RNN"
    torch_names = {"Wx": "weight_ih_l0", "Wa": "weight_hh_l0", "b": "bias_ih_l0", "b_hh": "bias_hh_l0"}
    recurrent = "Wa"
    activations = ("tanh", "relu", "sigmoid", "linear")
    dv_is_du = True

    def __init__(self, activation: str = "tanh", gate_activation: str | None = None, *, saved: bool = False) -> None:
        super().__init__(activation, gate_activation, saved=saved)
        self.f = get_activation(activation)

    def init_params(
        self, input_size: int, hidden_size: int, rng: np.random.Generator, init: str, gain: float
    ) -> Params:
        wa = get_initializer(init)(hidden_size, hidden_size, rng, gain)
        return {
            "Wa": wa,
            "Wx": xavier(hidden_size, input_size, rng),
            "b": np.zeros(hidden_size),
            "b_hh": np.zeros(hidden_size),
        }

    def input_bias(self, params: Params) -> np.ndarray:
        """b + b_hh: b_hh enters z_t as b does, so it is added once in u, not at every step."""
        return params["b"] + params["b_hh"]

    def project_inputs(self, params: Params, x: np.ndarray) -> np.ndarray:
        return project(x, params["Wx"].T, self.input_bias(params), self.dtype(params))  # u_t = Wx x_t + b + b_hh

    def step_forward(
        self, params: Params, u_t: np.ndarray, state: State, out: np.ndarray | None = None
    ) -> tuple[State, np.ndarray]:
        (a_prev,) = state
        z = recurrent_product(params, "Wa", a_prev, out=out)
        z += u_t  # z_t = Wa a_{t-1} + Wx x_t + b + b_hh
        a = self.f.forward(z, out=z)  # a_t = f(z_t), in place: z_t is not needed again
        return (a,), a

    def step_backward(
        self, params: Params, dstate: State, cache: np.ndarray, du: np.ndarray, dv: np.ndarray,
        dh_prev: np.ndarray | None = None, memory: None = None,
    ) -> State:
        (da,) = dstate
        np.multiply(self.f.slope(cache), da, out=du)  # dz_t = f'(z_t) * delta_t: backprop through f
        if dv is not du:
            dv[...] = du
        return (np.matmul(du, params["Wa"], out=dh_prev),)  # backprop through Wa a_{t-1}

    def step_jacobian(self, params: Params, cache: np.ndarray) -> np.ndarray:
        """J_t = diag(f'(z_t)) Wa for each sequence: (B, H, H), float64 whatever the run's dtype
        (the Jacobian-product analyses accumulate in float64)."""
        return np.asarray(self.f.slope(cache), np.float64)[:, :, None] * params["Wa"][None, :, :]

    def jacobian_times(self, params: Params, cache: np.ndarray, q: np.ndarray) -> np.ndarray:
        """J_t q = f'(z_t) * (Wa q) for q (B, H, k): Wa q for every sequence in one (B k, H) @ (H, H)
        product, not B matrix-vector products."""
        return self.f.slope(cache)[:, :, None] * apply_to_batch(params["Wa"], q)

    def param_grads(
        self, params: Params, x: np.ndarray, h_prev: np.ndarray, du: np.ndarray, dv: np.ndarray
    ) -> Params:
        h = h_prev.shape[-1]
        dz = du.reshape(-1, h)
        db = dz.sum(axis=0)  # sum_t dz_t
        return {
            "Wa": dz.T @ h_prev.reshape(-1, h),  # sum_t dz_t a_{t-1}^T
            "Wx": sum_outer(du, x),  # sum_t dz_t x_t^T
            "b": db,
            "b_hh": db.copy(),  # z_t holds b + b_hh: each bias gets all of dL/dz_t
        }
