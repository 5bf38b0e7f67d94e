"""What a recurrent cell provides to BPTT, in the style of cs231n's step functions.

A cell's recurrence is split so that the sequence loop does only what must be sequential:

    u_t = W_ih x_t + b_ih                 all t at once, one matmul      ``project_inputs``
    v_t = W_hh h_{t-1} + b_hh             inside the step
    state_t, cache_t = step(u_t, state_{t-1})                             ``step_forward``

and backwards, per step, from the total derivative dL/dstate_t:

    dL/du_t, dL/dv_t, dL/dstate_{t-1} = ``step_backward``(dL/dstate_t, cache_t)

after which every weight gradient is one matmul over all steps (``param_grads``):

    dL/dW_ih = sum_t dL/du_t^T x_t        dL/dW_hh = sum_t dL/dv_t^T h_{t-1}

The summand dL/dv_t^T h_{t-1} is step t's *temporal contribution* to the recurrent gradient.
States are tuples whose first element is the hidden output h_t (B, H); the LSTM adds c_t.
Caches are whatever ``step_backward`` needs, held explicitly: there is no hidden mutable state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ...errors import InputError

Params = dict[str, np.ndarray]
State = tuple[np.ndarray, ...]

# Entries of the inputs x (T, B, D) taken at a time by ``project`` and ``sum_outer``: x may be the
# time-major view of a batch-first array, and a copy of a block of steps stays this small where a
# copy of the whole would add T*B*D to the peak memory of a long run.
INPUT_BLOCK = 1 << 20


# The key ``Cell.forward_weights`` adds: the recurrent weight's transpose, (H, G*H) contiguous.
TRANSPOSED = "recurrent^T"


def recurrent_product(params: Params, name: str, h_prev: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """h_prev (B, H) @ W^T for the recurrent weight ``name`` (G*H, H): with the contiguous
    transpose where ``forward_weights`` prepared it, else with the transposed view."""
    wt = params.get(TRANSPOSED)
    return np.matmul(h_prev, params[name].T if wt is None else wt, out=out)


def _input_steps(x: np.ndarray) -> int:
    return max(1, INPUT_BLOCK // max(1, x.shape[1] * x.shape[2]))


def project(x: np.ndarray, weights: np.ndarray, bias: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """x (T, B, D) @ weights (D, W) + bias (W,) -> (T, B, W) contiguous, a block of steps at a time
    (one 2-D product per block, the bias added while the block is in cache; one block in all
    unless T*B*D exceeds INPUT_BLOCK)."""
    steps, batch, d = x.shape
    out = np.empty((steps, batch, weights.shape[1]), dtype)
    block = _input_steps(x)
    for start in range(0, steps, block):
        rows = np.ascontiguousarray(x[start:start + block]).reshape(-1, d)
        part = out[start:start + block].reshape(-1, weights.shape[1])
        np.matmul(rows, weights, out=part)
        part += bias
    return out


def sum_outer(du: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum_t du_t^T x_t for du (T, B, W) and x (T, B, D) -> (W, D), a block of steps at a time."""
    width, d = du.shape[-1], x.shape[-1]
    block = _input_steps(x)
    total = np.zeros((width, d), du.dtype)
    for start in range(0, x.shape[0], block):
        total += du[start:start + block].reshape(-1, width).T @ np.ascontiguousarray(x[start:start + block]).reshape(-1, d)
    return total


def apply_to_batch(w: np.ndarray, q: np.ndarray) -> np.ndarray:
    """w @ q[b] for every b: w (R, H), q (B, H, k) -> (B, R, k), as one (B k, H) @ (H, R) matmul.

    ``w @ q`` broadcasts into B separate products, each a matrix-vector product when k = 1.
    """
    b, h, k = q.shape
    if k == 1:
        return (q[:, :, 0] @ w.T)[:, :, None]
    return (q.transpose(0, 2, 1).reshape(b * k, h) @ w.T).reshape(b, k, -1).transpose(0, 2, 1)


class Cell(ABC):
    """A recurrent cell: parameters, step functions and its PyTorch layout.

    Attributes
    ----------
    name : registry name (``--cell``).
    gates : names of the row blocks of W_ih and W_hh, in PyTorch's order; G = len(gates).
    state_names : names of the state tuple's elements, hidden output first.
    torch_module : the PyTorch module this cell matches (``nn.RNN``, ...); None for a cell PyTorch
        does not have (Keras' GRU with reset_after=False), whose weights no state dict holds.
    torch_names : our parameter name -> PyTorch's name (without the module prefix).
    recurrent : name of the recurrent weight W_hh, shape (G*H, H).
    activations : activations this cell supports for ``--activation``.
    saved_activations : the activations a saved model may give the cell (Keras' LSTM(activation=
        "relu")): what the cell computes exactly, beyond what the flag offers.
    gate_activations : the gates' activations a gated cell computes (activations.GATE_ACTIVATIONS),
        sigmoid by default; none for a cell without gates.
    dv_is_du : True where dL/dv_t equals dL/du_t (vanilla RNN, LSTM), so BPTT keeps one array.
    """

    name: ClassVar[str]
    gates: ClassVar[tuple[str, ...]]
    state_names: ClassVar[tuple[str, ...]] = ("h",)
    torch_module: ClassVar[str | None]
    torch_names: ClassVar[dict[str, str]]
    recurrent: ClassVar[str]
    activations: ClassVar[tuple[str, ...]] = ("tanh",)
    saved_activations: ClassVar[tuple[str, ...]] = ()
    gate_activations: ClassVar[tuple[str, ...]] = ()
    dv_is_du: ClassVar[bool] = False

    def __init__(self, activation: str = "tanh", gate_activation: str | None = None, *, saved: bool = False) -> None:
        """saved : the cell of a saved model, which may use any of ``saved_activations``."""
        allowed = self.activations + (self.saved_activations if saved else ())
        if activation not in allowed:
            flag = "activation" if saved else "--activation"
            raise InputError(
                f"the {self.name} cell supports {flag} {', '.join(dict.fromkeys(allowed))}, not {activation!r}"
            )
        if gate_activation is not None and gate_activation not in self.gate_activations:
            supported = ", ".join(self.gate_activations) or "none (it has no gates)"
            raise InputError(f"the {self.name} cell supports gate activations {supported}, not {gate_activation!r}")
        self.activation = activation
        self.gate_activation = gate_activation or (self.gate_activations[0] if self.gate_activations else None)

    @property
    def label(self) -> str:
        """The name, with the activations where they are not the cell's defaults: 'lstm',
        'lstm(activation=relu, gates=hard_sigmoid)', 'rnn(activation=relu)': two cells
        with one label compute alike (a Keras stack and Bidirectional are compared by it)."""
        options = []
        if self.activation != self.activations[0]:
            options.append(f"activation={self.activation}")
        if self.gate_activations and self.gate_activation != self.gate_activations[0]:
            options.append(f"gates={self.gate_activation}")
        return self.name + (f"({', '.join(options)})" if options else "")

    # --- parameters -----------------------------------------------------------------------------

    @abstractmethod
    def init_params(
        self, input_size: int, hidden_size: int, rng: np.random.Generator, init: str, gain: float
    ) -> Params:
        """Fresh parameters: W_ih (G*H, D), W_hh (G*H, H) from ``init``, biases (G*H,)."""

    def hidden_size(self, params: Params) -> int:
        return int(params[self.recurrent].shape[1])

    def dtype(self, params: Params) -> np.dtype:
        """The dtype the cell computes in: its parameters' (float64, or float32 with ``--dtype``)."""
        return params[self.recurrent].dtype

    def input_size(self, params: Params) -> int:
        return int(params[self.input_weight].shape[1])

    @property
    def input_weight(self) -> str:
        return next(k for k, v in self.torch_names.items() if v.startswith("weight_ih"))

    def gate_blocks(self, params: Params) -> dict[str, np.ndarray]:
        """The recurrent weight split into its gates' (H, H) blocks, in PyTorch's row order."""
        w = params[self.recurrent]
        h = w.shape[1]
        return {g: w[i * h : (i + 1) * h] for i, g in enumerate(self.gates)}

    # --- forward and backward -------------------------------------------------------------------

    def initial_state(self, batch_size: int, hidden_size: int, dtype: np.dtype | type = np.float64) -> State:
        """The zero state a_0 = 0 (and c_0 = 0)."""
        return tuple(np.zeros((batch_size, hidden_size), dtype) for _ in self.state_names)

    def forward_weights(self, params: Params) -> Params:
        """The parameters as one run of ``step_forward`` reads them: ``params`` with the recurrent
        weight's transpose added, contiguous (``recurrent_product``). One copy per run: a product
        with the transposed view runs 10-70% slower at the sizes of a step (a (B, H) @ (H, G*H)
        with B = 8-64, H = 64-256, float32 and float64, one BLAS thread)."""
        w = params[self.recurrent]
        return {**params, TRANSPOSED: np.ascontiguousarray(w.T)}

    @abstractmethod
    def project_inputs(self, params: Params, x: np.ndarray) -> np.ndarray:
        """u = W_ih x_t + b_ih for every step at once: x (T, B, D) -> u (T, B, G*H)."""

    @abstractmethod
    def step_forward(
        self, params: Params, u_t: np.ndarray, state: State, out: np.ndarray | None = None
    ) -> tuple[State, Any]:
        """One step: u_t (B, G*H), state_{t-1} -> (state_t, cache_t).

        out : optional (B, H) array that receives h_t, so that BPTT's loop writes each step's
            hidden state straight into its row of the trajectory instead of copying it there.
            When given, the state's first element must be ``out`` itself.
        """

    @abstractmethod
    def step_backward(
        self, params: Params, dstate: State, cache: Any, du: np.ndarray, dv: np.ndarray,
        dh_prev: np.ndarray | None = None, memory: np.ndarray | None = None,
    ) -> State:
        """One step back from dL/dstate_t; returns dL/dstate_{t-1}.

        du, dv : (B, G*H) arrays the step fills with dL/du_t and dL/dv_t (one and the same array
            when the cell declares ``dv_is_du``).
        dh_prev : optional (B, H) array that receives dL/dh_{t-1}; when given, it must be the first
            element returned.
        memory : for a cell with a memory cell, dL/dc_t in total as ``memory_grad`` gives it, where
            the caller has computed it already (BPTT records it), so that the step does not
            compute it again; it is only read.
        Writing into arrays that the caller owns keeps the loop free of copies: it matters at
        small batch sizes, where numpy's per-call overhead is most of a step's cost.
        """

    @abstractmethod
    def param_grads(
        self, params: Params, x: np.ndarray, h_prev: np.ndarray, du: np.ndarray, dv: np.ndarray
    ) -> Params:
        """Weight gradients from all steps at once.

        x (T, B, D), h_prev (T, B, H) = h_0..h_{T-1}, du and dv (T, B, G*H) -> {name: gradient}.
        """

    def input_grads(self, params: Params, du: np.ndarray) -> np.ndarray:
        """dL/dx_t = W_ih^T dL/du_t for every step at once: du (T, B, G*H) -> (T, B, D), as one
        (T*B, G*H) @ (G*H, D) product (a stack of T products of (B, G*H) ran 20% slower)."""
        steps, batch, width = du.shape
        w = params[self.input_weight]  # backprop through u_t = W_ih x_t + b_ih
        return (du.reshape(steps * batch, width) @ w).reshape(steps, batch, w.shape[1])

    def temporal_factors(self, params: Params, x: np.ndarray, h_prev: np.ndarray, dv: np.ndarray
                         ) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """The factors of each step's summand of dL/dW_hh: pairs (A_t, C_t) whose stacked products
        A_t^T C_t make it, (T, B, rows) and (T, B, H) each. (dL/dv_t, h_{t-1}) for a cell whose W_hh
        multiplies h_{t-1}; a cell that multiplies something else in some rows says so."""
        return ((dv, h_prev),)

    def step_jacobian(self, params: Params, cache: Any) -> np.ndarray:
        """d state_t / d state_{t-1} for each sequence of the batch, (B, S, S).

        S is the width of the flattened state: H for a cell whose state is h alone, 2H for the
        LSTM's (h, c). Used by the Jacobian-product analyses; never needed by BPTT itself.
        """
        raise NotImplementedError(f"the {self.name} cell does not provide its step Jacobian")

    def jacobian_times(self, params: Params, cache: Any, q: np.ndarray) -> np.ndarray:
        """J_t q for q (B, S, k) -> (B, S, k): the step Jacobian applied to k directions.

        Cells override it to skip forming the (B, S, S) Jacobian: tracking the leading Lyapunov
        exponent then costs a matmul per step, not B of them.
        """
        return self.step_jacobian(params, cache) @ q

    def mean_step_jacobian(self, params: Params, caches: list) -> np.ndarray:
        """The step Jacobian averaged over the batch and the steps of a run, (S, S)."""
        return np.mean([self.step_jacobian(params, cache).mean(axis=0) for cache in caches], axis=0)

    def memory_grad(self, dstate: State, cache: Any, out: np.ndarray | None = None) -> np.ndarray:
        """dL/dc_t in total, (B, H), for a cell whose state has a memory cell c_t (second element),
        into ``out`` where given.

        dstate is dL/dstate_t with c_t an input of step t+1; a cell that reads c_t again inside step
        t (the LSTM's h_t = o_t tanh(c_t)) adds that path.
        """
        if out is None:
            return dstate[1]
        out[...] = dstate[1]
        return out

    # --- PyTorch layout -------------------------------------------------------------------------

    def to_torch(self, params: Params) -> Params:
        """Our parameters under PyTorch's names (no module prefix)."""
        return {self.torch_names[k]: v for k, v in params.items() if k in self.torch_names}

    def from_torch(self, tensors: Params) -> Params:
        """Parameters from PyTorch's names (no module prefix), checked for shape consistency."""
        params = {ours: np.asarray(tensors[theirs], dtype=np.float64)
                  for ours, theirs in self.torch_names.items()}
        self.check_shapes(params)
        return params

    def required_torch_names(self) -> tuple[str, ...]:
        """PyTorch names a state dict must hold for this cell."""
        return tuple(self.torch_names.values())

    def grads_to_torch(self, grads: Params) -> Params:
        """Gradients under PyTorch's parameter names (no module prefix)."""
        return self.to_torch(grads)

    def check_shapes(self, params: Params) -> None:
        """Raise InputError unless the parameters have consistent shapes for this cell."""
        g = len(self.gates)
        w_hh = params[self.recurrent]
        if w_hh.ndim != 2 or w_hh.shape[0] != g * w_hh.shape[1]:
            raise InputError(
                f"{self.torch_names[self.recurrent]} must have shape ({g}H, H), got {w_hh.shape}"
            )
        h = w_hh.shape[1]
        for name, p in params.items():
            theirs = self.torch_names[name]
            if theirs.startswith("bias") and p.shape != (g * h,):
                raise InputError(f"{theirs} must have shape ({g * h},), got {p.shape}")
            if theirs.startswith("weight_ih") and (p.ndim != 2 or p.shape[0] != g * h):
                raise InputError(f"{theirs} must have shape ({g * h}, D), got {p.shape}")
