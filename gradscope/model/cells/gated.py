"""What the GRU and the LSTM share: PyTorch's four tensors, per-gate init, and a step that is
elementwise except for one matmul.

Both cells keep nn.GRU's / nn.LSTM's parameters as they are, gates stacked by rows:

    W_ih (G*H, D)   W_hh (G*H, H)   b_ih (G*H,)   b_hh (G*H,)        (weight_ih_l0, ...)

and split each step into

    u_t = W_ih x_t + b_ih                 all steps in one matmul           ``project_inputs``
    v_t = W_hh h_{t-1} + b_hh             the one matmul inside the step
    state_t = elementwise(u_t, v_t, state_{t-1})

Each cell writes ``local_backward``, the backprop through the elementwise part: from dL/dstate_t it
gives dL/du_t, dL/dv_t and the *direct* derivatives of state_{t-1} (z_t * dh for the GRU, f_t * dc
for the LSTM's c). ``step_backward`` adds the one remaining term, W_hh^T dL/dv_t into h_{t-1}.

Because that part is elementwise, the step Jacobian is a sum of diagonally scaled gate blocks and
diagonals:

    d s_t / d h_{t-1} = sum_g diag(alpha_g) W_hg + diag(direct_h)     d s_t / d c_{t-1} = diag(direct_c)

where alpha = dL/dv_t and direct are what ``local_backward`` returns for a unit gradient on one
component of s_t. The Jacobian is linear in those vectors, so its mean over steps and batch is the
Jacobian assembled from their means: no (B, S, S) array is formed for ``mean_step_jacobian``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from ..activations import get_activation, get_gate_activation
from ..initializers import get_initializer, xavier
from .base import Cell, Params, State, apply_to_batch, project, sum_outer

TORCH_NAMES = {"W_ih": "weight_ih_l0", "W_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}


class GatedCell(Cell):
    """A cell with G gates stacked by rows in PyTorch's layout; subclasses give the elementwise step.

    The gates squash with ``gate`` (s: sigmoid, or a hard sigmoid) and the candidate (and the LSTM's
    cell output) with ``f`` (tanh, or another activation a saved Keras model gives: relu, sigmoid,
    linear); PyTorch's cells are the defaults, sigmoid and tanh.
    """

    torch_names = TORCH_NAMES
    recurrent = "W_hh"
    saved_activations = ("tanh", "relu", "sigmoid", "linear")
    gate_activations = ("sigmoid", "hard_sigmoid", "hard_sigmoid_keras2")

    def __init__(self, activation: str = "tanh", gate_activation: str | None = None, *, saved: bool = False) -> None:
        super().__init__(activation, gate_activation, saved=saved)
        self.f = get_activation(self.activation)
        self.gate = get_gate_activation(self.gate_activation)

    def init_params(
        self, input_size: int, hidden_size: int, rng: np.random.Generator, init: str, gain: float
    ) -> Params:
        """W_hh: ``init`` on each gate's (H, H) block (so orthogonal gives orthogonal blocks);
        W_ih: Glorot-uniform per (H, D) block; both biases 0 (the LSTM's forget bias too)."""
        recurrent = get_initializer(init)
        blocks = range(len(self.gates))
        rows = len(self.gates) * hidden_size
        return {
            "W_ih": np.concatenate([xavier(hidden_size, input_size, rng) for _ in blocks]),
            "W_hh": np.concatenate([recurrent(hidden_size, hidden_size, rng, gain) for _ in blocks]),
            "b_ih": np.zeros(rows),
            "b_hh": np.zeros(rows),
        }

    def input_bias(self, params: Params) -> np.ndarray:
        """The bias added to W_ih x_t in u_t: b_ih."""
        return params["b_ih"]

    def project_inputs(self, params: Params, x: np.ndarray) -> np.ndarray:
        return project(x, params["W_ih"].T, self.input_bias(params), self.dtype(params))  # u_t = W_ih x_t + b

    @abstractmethod
    def local_backward(
        self, params: Params, dstate: State, cache: Any, du: np.ndarray, dv: np.ndarray,
        memory: np.ndarray | None = None,
    ) -> tuple[np.ndarray | None, ...]:
        """Backprop through the elementwise part of one step.

        cache : the step's cache, a NamedTuple whose first array is (B, .).
        dstate : dL/dstate_t, one (B, H) array per state element; memory : as for ``step_backward``.
        Fills du with dL/du_t (B, G*H) and dv with dL/dv_t (B, G*H); returns, per element of
        state_{t-1}, its derivative through every path but W_hh h_{t-1} ((B, H), or None where
        there is no such path).
        """

    def step_backward(
        self, params: Params, dstate: State, cache: Any, du: np.ndarray, dv: np.ndarray,
        dh_prev: np.ndarray | None = None, memory: np.ndarray | None = None,
    ) -> State:
        direct = self.local_backward(params, dstate, cache, du, dv, memory)
        dh = np.matmul(dv, params["W_hh"], out=dh_prev)  # backprop through W_hh h_{t-1}
        if direct[0] is not None:
            dh += direct[0]
        return (dh,) + direct[1:]

    def param_grads(
        self, params: Params, x: np.ndarray, h_prev: np.ndarray, du: np.ndarray, dv: np.ndarray
    ) -> Params:
        width, h = du.shape[-1], h_prev.shape[-1]
        du2, dv2 = du.reshape(-1, width), dv.reshape(-1, width)
        return {
            "W_ih": sum_outer(du, x),  # sum_t du_t^T x_t
            "W_hh": dv2.T @ h_prev.reshape(-1, h),  # sum_t dv_t^T h_{t-1}: the temporal contributions
            "b_ih": du2.sum(axis=0),
            "b_hh": dv2.sum(axis=0),
        }

    # --- step Jacobians -------------------------------------------------------------------------

    def jacobian_terms(self, params: Params, cache: Any) -> tuple[np.ndarray, np.ndarray]:
        """The vectors the step Jacobian is built from, for each sequence of the batch.

        Returns alpha (B, m, G*H), dL/dv_t for a unit gradient on state element s (m elements),
        and direct (B, m, m, H), [b, s, s'] the direct derivative of element s' of state_{t-1}.
        """
        m, batch = len(self.state_names), cache[0].shape[0]  # a cache's first array: (B, .)
        ones = np.ones((batch, self.hidden_size(params)))
        zeros = np.zeros_like(ones)
        alpha = np.empty((batch, m, params["W_hh"].shape[0]))
        direct = np.zeros((batch, m, m, ones.shape[1]))
        du = np.empty((batch, params["W_hh"].shape[0]))
        for s in range(m):
            unit = tuple(ones if k == s else zeros for k in range(m))
            dv = du if self.dv_is_du else np.empty_like(du)
            through = self.local_backward(params, unit, cache, du, dv)
            alpha[:, s] = dv
            for k, d in enumerate(through):
                if d is not None:
                    direct[:, s, k] = d
        return alpha, direct

    def assemble_jacobian(self, params: Params, alpha: np.ndarray, direct: np.ndarray) -> np.ndarray:
        """d state_t / d state_{t-1} from alpha (..., m, G*H) and direct (..., m, m, H) -> (..., mH, mH).

        Rows and columns are the flattened state, h first then c: [s*H + j, s'*H + l].
        """
        g, h, m = len(self.gates), self.hidden_size(params), len(self.state_names)
        lead = alpha.shape[:-2]
        jac = np.zeros(lead + (m, h, m, h))
        blocks = params["W_hh"].reshape(g, h, h)
        # d s_j / d h_{t-1,l} = sum_g alpha[s, g, j] W_hg[j, l]
        jac[..., 0, :] = np.einsum("...sgj,gjl->...sjl", alpha.reshape(lead + (m, g, h)), blocks)
        units = np.arange(h)
        for s in range(m):
            for k in range(m):
                jac[..., s, units, k, units] += direct[..., s, k, :]
        return jac.reshape(lead + (m * h, m * h))

    def step_jacobian(self, params: Params, cache: Any) -> np.ndarray:
        return self.assemble_jacobian(params, *self.jacobian_terms(params, cache))

    def jacobian_times(self, params: Params, cache: Any, q: np.ndarray) -> np.ndarray:
        """J_t q for q (B, mH, k) from the same terms, with one (G*H, H) matmul instead of the
        (B, mH, mH) Jacobian: (J q)_s = sum_g alpha_sg * (W_hg q_h) + sum_s' direct_ss' * q_s'."""
        alpha, direct = self.jacobian_terms(params, cache)
        g, h, m = len(self.gates), self.hidden_size(params), len(self.state_names)
        b, k = q.shape[0], q.shape[-1]
        moved = apply_to_batch(params["W_hh"], q[:, :h]).reshape(b, g, h, k)  # W_hg q_h, every gate at once
        out = np.einsum("bsgj,bgjk->bsjk", alpha.reshape(b, m, g, h), moved)
        out += np.einsum("bstj,btjk->bsjk", direct, q.reshape(b, m, h, k))
        return out.reshape(b, m * h, k)

    def mean_step_jacobian(self, params: Params, caches: list) -> np.ndarray:
        alpha_sum, direct_sum = 0.0, 0.0
        for cache in caches:
            alpha, direct = self.jacobian_terms(params, cache)
            alpha_sum = alpha_sum + alpha.mean(axis=0)
            direct_sum = direct_sum + direct.mean(axis=0)
        return self.assemble_jacobian(params, alpha_sum / len(caches), direct_sum / len(caches))
