"""BLAS threads chosen by the size of a step (runtime.py): small steps on one thread, the numbers unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from gradscope import runtime
from gradscope.commands.defaults import TrainOptions
from gradscope.commands.train import train
from gradscope.config import RunConfig


def blas_thread_counts() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_small_steps_get_one_thread_large_ones_all():
    small = [np.zeros((32, 1)), np.zeros((32, 32))]  # the default train: B = 32, H = 32, D = 1
    large = [np.zeros((4 * 512, 512)), np.zeros((4 * 512, 512))]  # an LSTM with H = 512
    assert runtime.blas_threads(32, small) == 1
    assert runtime.blas_threads(64, large) is None
    assert runtime.blas_threads(1, [np.zeros(runtime.SMALL_STEP - 1)]) == 1
    assert runtime.blas_threads(1, [np.zeros(runtime.SMALL_STEP)]) is None


def test_the_limit_holds_inside_the_block_only():
    before = blas_thread_counts()
    with runtime.blas_threads_for(32, [np.zeros((32, 32))]):
        assert set(blas_thread_counts()) <= {1}
    with runtime.blas_threads_for(64, [np.zeros((2048, 512))]):
        assert blas_thread_counts() == before
    assert blas_thread_counts() == before


@pytest.mark.parametrize("cell, hidden_size", [("rnn", 8), ("lstm", 160)])
def test_training_is_bit_identical_with_and_without_the_limit(monkeypatch, cell, hidden_size):
    """The limit changes how fast, never what: the same weights and losses to the last bit. At H = 160
    the LSTM's products, (16, 160) x (160, 640), are large enough for BLAS to use its threads."""
    config = RunConfig(task="adding", seq_len=12, batch_size=16, hidden_size=hidden_size, cell=cell, seed=3)
    options = TrainOptions(steps=4, eval_size=16, log_every=1)
    runs = []
    for small_step in (1 << 62, 0):  # every step limited to one thread; none limited
        monkeypatch.setattr(runtime, "SMALL_STEP", small_step)
        runs.append(train(config, options))
    limited, unlimited = runs
    assert limited.model.params.keys() == unlimited.model.params.keys()
    for name, value in limited.model.params.items():
        assert np.array_equal(value, unlimited.model.params[name]), name
    assert [r.loss for r in limited.history] == [r.loss for r in unlimited.history]
    assert limited.final_loss == unlimited.final_loss
