"""``--dtype``: what BPTT computes in, and what float32 costs against float64, measured.

float64 is the default and the reference. With ``--dtype float32`` the model's parameters and the
batch are cast to float32 once they are loaded (``experiment.build``), and the forward pass and
BPTT stay in float32 (bptt.py, network_bptt.py, checkpointed_bptt.py, the cells): half the
memory, and faster where the matmuls dominate. What leaves BPTT as logarithms (ln||dL/da_t||, the
log-domain units) is float64, and so is what is computed from them (the flow, the ratios,
Pascanu's measured side); the step Jacobians the Lyapunov exponents and product spectra
accumulate are float64 products of the float32 run's caches.

The error against float64, measured by ``tests/math/test_float32.py`` on the vanilla RNN (tanh,
relu), the GRU and the LSTM, one and two layers, bidirectional, padded, checkpointed, at T = 50
and at T = 1000, where float64's gradient falls to 1e-185 .. 1e-505 (``python
tests/math/test_float32.py`` prints the figures), eps = 2^-23 = 1.19e-7:

    loss                 relative error                         at most LOSS_ERROR (4 eps)
    ln||dL/da_t||        absolute (the norm's relative) error   at most (T - t + 1) LOG_NORM_ERROR_PER_STEP
                                                                (4 eps per step back; L x T steps for L layers)
    parameter gradients  error over the global gradient norm    at most GRADIENT_ERROR (16 eps)

Measured: the loss within 1.2 eps, the gradients within 1.1 eps at H = 16 and 7 eps at H = 512,
ln||dL/da_t|| within 1.5 eps per step back on the cases (80 more single-layer runs, T = 1000 and
3000, H = 16 and 64, four seeds: 0.04-2.8 eps, median 0.25). ln||dL/da_t|| gathers one rounding
per step it travels back, so its error grows with the distance T - t (linearly: the roundings do
not cancel): typically 3e-8 per step, 3e-5 after 1,000 steps, and at most 4.8e-7 per step by the
bound (5e-4 after 1,000), however small the norm itself: the log domain keeps float32's norms
finite far below its 1e-38.

What float32 cannot show: the per-step contributions ||dL/dWa_t|| are computed from dL/du_t at
its true scale, so in float32 they are 0 wherever they fall below float32's 1e-45 (float64 shows
them down to 1e-308; the gradient norms themselves stay exact at any depth in both). Two limits. A tanh unit near saturation (|a_t| -> 1) carries its slope 1 - a_t^2 with relative
error eps / (1 - a_t^2), from a_t's own rounding, at the steps where it carries the gradient: in
one of the 80 runs (T = 3000, H = 16) that gave 24 eps per step, 5e-3 in ln at the first step.
And the bounds hold where the forward run contracts (the hidden state forgets its start: the usual
vanishing or stable run). Where it is chaotic (a tanh RNN at --init-gain 2 and more), float32 and
float64 trajectories part like eps e^(lambda_1 t), as float64 parts from exact arithmetic, only
10^9 times sooner: at T = 200 the loss differed by 4e-4. Use float64 there.
"""

from __future__ import annotations

import numpy as np

DTYPES = ("float64", "float32")
EPS32 = float(np.finfo(np.float32).eps)  # 2^-23 = 1.19e-7

# The bounds: the measured largest (above) rounded up to a power of two times eps, with a margin
# of 1.4x or more over every measured run but the one saturated outlier.
LOSS_ERROR = 4 * EPS32
LOG_NORM_ERROR_PER_STEP = 4 * EPS32
GRADIENT_ERROR = 16 * EPS32
