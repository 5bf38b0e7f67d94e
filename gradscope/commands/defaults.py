"""The defaults that the CLI's signatures show, kept apart from the modules that run the commands.

Typer reads every command's options, with their defaults, when the CLI starts, whichever command
runs. These live here, beside no training loop, process pool or text reader, so that starting
``gradscope analyze`` imports none of those (tests/test_startup.py). The command modules take
them from here: each is defined once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..config import plain_number
from ..errors import InputError
from ..optimizers import OPTIMIZERS, make_optimizer

# Data for training by default: a task that can be learned, at a length where the tanh RNN stays at
# the baseline while the GRU and LSTM learn it in a thousand steps of a few milliseconds each. With
# --inputs the file is the data, and these give way to it (``file_config``).
TRAIN_DEFAULTS = {"task": "adding", "seq_len": 50, "batch_size": 32}


@dataclass(frozen=True)
class TrainOptions:
    """How to train.

    steps : optimizer updates (``--steps``), each on a fresh batch.
    optimizer : ``sgd`` or ``adam``; lr : its learning rate (None: the optimizer's default).
    momentum : SGD's mu, or Adam's beta1.
    log_every : log a record every this many steps (and at the first and last).
    eval_size : sequences in the held-out batch the final loss is measured on (drawn from the
        task; with --inputs the held-out sequences are the file's).
    """

    steps: int = 1000
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.9
    log_every: int = 25
    eval_size: int = 256

    def __post_init__(self) -> None:
        for name in ("steps", "log_every", "eval_size", "lr", "momentum"):  # from Python: anything
            value = getattr(self, name)
            if value is not None or name != "lr":
                plain_number(f"--{name.replace('_', '-')}", value)
            if value is not None and not math.isfinite(value):
                raise InputError(f"--{name.replace('_', '-')} must be a finite number (got {value!r})")
        for name in ("steps", "log_every", "eval_size"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be a whole number of at least 1 (got {value!r})")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"--lr must be a positive finite number (got {self.lr})")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise InputError(f"--momentum must be in [0, 1) (got {self.momentum})")

    def resolved(self) -> "TrainOptions":
        """The same options with the learning rate filled in."""
        return replace(self, lr=make_optimizer(self.optimizer, self.lr, self.momentum).lr)


# gradscope sweep: the metrics (name: what the map shows) and the default grid
SWEEP_METRICS = {
    "ratio": "log10 ||dL/da_1|| / ||dL/da_T||",
    "lyapunov": "leading Lyapunov exponent lambda_1 per step",
}
SWEEP_X = "spectral_radius=0.5:2:16"
SWEEP_Y = "seq_len=10,20,50,100"
# around a model of the user's own (--weights): its recurrent weights from a quarter to 4x
SWEEP_WEIGHTS_X = "recurrent_scale=0.25:4:9:log"

# gradscope reproduce: the experiments' names, in the order commands.reproduce.EXPERIMENTS lists them
EXPERIMENT_NAMES = ("adding", "clipping", "irnn", "copy", "temporal-order", "forget-bias")
