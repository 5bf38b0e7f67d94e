"""Optimizers, registered by name (``--optimizer``): pure update functions with explicit state.

``init(params) -> state`` and ``step(params, grads, state) -> (params, state)`` return new arrays
and never modify their arguments, so a run can be replayed from any saved state. Both follow
PyTorch's torch.optim exactly (no weight decay: that is the ``l2`` mitigation's job):

    sgd   b_t = mu b_{t-1} + g_t   (b_1 = g_1)          theta_t = theta_{t-1} - lr b_t
    adam  m_t = beta1 m_{t-1} + (1 - beta1) g_t        v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
          theta_t = theta_{t-1} - lr (m_t / (1 - beta1^t)) / (sqrt(v_t / (1 - beta2^t)) + eps)

``--momentum`` is mu for SGD and beta1 for Adam, the same role: how much of the past gradient
each step keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .errors import InputError

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class SGDState:
    """buffers : the momentum buffer b of every parameter (None before the first step)."""

    buffers: Params | None = None


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with heavy-ball momentum, as torch.optim.SGD."""

    lr: float
    momentum: float = 0.9

    name: ClassVar[str] = "sgd"
    default_lr: ClassVar[float] = 0.05

    def init(self, params: Params) -> SGDState:
        return SGDState()

    def step(self, params: Params, grads: Params, state: SGDState) -> tuple[Params, SGDState]:
        if self.momentum == 0:
            buffers = grads
        elif state.buffers is None:
            buffers = {k: g.copy() for k, g in grads.items()}  # b_1 = g_1, as PyTorch
        else:
            buffers = {k: self.momentum * state.buffers[k] + g for k, g in grads.items()}
        new = {k: p - self.lr * buffers[k] for k, p in params.items()}
        return new, SGDState(buffers if self.momentum else None)


@dataclass(frozen=True)
class AdamState:
    """step : updates so far t; m, v : first and second moment estimates of every parameter."""

    step: int
    m: Params
    v: Params


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015) with bias correction, as torch.optim.Adam."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    name: ClassVar[str] = "adam"
    default_lr: ClassVar[float] = 0.01

    def init(self, params: Params) -> AdamState:
        return AdamState(0, {k: np.zeros_like(p) for k, p in params.items()},
                         {k: np.zeros_like(p) for k, p in params.items()})

    def step(self, params: Params, grads: Params, state: AdamState) -> tuple[Params, AdamState]:
        t = state.step + 1
        m = {k: self.beta1 * state.m[k] + (1 - self.beta1) * g for k, g in grads.items()}
        v = {k: self.beta2 * state.v[k] + (1 - self.beta2) * g * g for k, g in grads.items()}
        step_size = self.lr / (1 - self.beta1**t)  # bias correction of m
        root_correction = math.sqrt(1 - self.beta2**t)  # and of v, under the square root
        new = {
            k: p - step_size * m[k] / (np.sqrt(v[k]) / root_correction + self.eps)
            for k, p in params.items()
        }
        return new, AdamState(t, m, v)


OPTIMIZERS: dict[str, type[SGD] | type[Adam]] = {SGD.name: SGD, Adam.name: Adam}


def make_optimizer(name: str, lr: float | None = None, momentum: float = 0.9) -> SGD | Adam:
    """The optimizer registered as ``name``; ``lr`` None takes its default, ``momentum`` is mu or beta1."""
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise InputError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}") from None
    lr = cls.default_lr if lr is None else lr
    if cls is Adam:
        return Adam(lr, beta1=momentum)
    return SGD(lr, momentum)
