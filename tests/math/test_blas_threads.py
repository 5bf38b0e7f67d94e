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
    assert runtime.blas_threads(32, small, busy=False) == 1
    assert runtime.blas_threads(64, large, busy=False) is None
    assert runtime.blas_threads(1, [np.zeros(runtime.SMALL_STEP - 1)], busy=False) == 1
    assert runtime.blas_threads(1, [np.zeros(runtime.SMALL_STEP)], busy=False) is None


def test_large_steps_get_one_thread_when_the_other_cores_are_taken(monkeypatch):
    large = [np.zeros((4 * 512, 512))]
    assert runtime.blas_threads(64, large, busy=True) == 1
    monkeypatch.setattr(runtime, "cores_taken", lambda: True)
    assert runtime.blas_threads(64, large) == 1
    monkeypatch.setattr(runtime, "cores_taken", lambda: False)
    assert runtime.blas_threads(64, large) is None


@pytest.mark.parametrize("loadavg, cores, taken", [
    ("0.50 0.40 0.30 1/200 99", 2, False),  # only this process runs
    ("0.50 0.40 0.30 2/200 99", 2, True),  # one more runnable task: the second core is taken
    ("2.60 1.00 0.50 1/200 99", 2, True),  # the last minute was busy
    ("2.60 1.00 0.50 2/200 99", 4, False),  # four cores: two are free
    ("9.00 9.00 9.00 9/200 99", 1, False),  # one core: there is no second thread to lose
])
def test_cores_taken_reads_the_run_queue(monkeypatch, loadavg, cores, taken):
    import builtins
    import io

    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: io.StringIO(loadavg) if path == "/proc/loadavg"
                        else real_open(path, *a, **k))
    monkeypatch.setattr(runtime, "usable_cores", lambda: cores)
    monkeypatch.setattr(runtime, "_own_running_threads", lambda: 1)
    assert runtime.cores_taken() is taken


def test_this_processes_own_threads_are_not_other_work(monkeypatch):
    """The run queue counts threads: a BLAS worker of ours still spinning is not another's job."""
    import builtins
    import io

    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: io.StringIO("0.50 0.40 0.30 2/200 99")
                        if path == "/proc/loadavg" else real_open(path, *a, **k))
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(runtime, "_own_running_threads", lambda: 2)
    assert runtime.cores_taken() is False
    monkeypatch.undo()
    assert runtime._own_running_threads() >= 1  # this thread, reading its own state, is running


def test_the_limit_holds_inside_the_block_only(monkeypatch):
    monkeypatch.setattr(runtime, "cores_taken", lambda: False)
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
    ours, theirs = limited.network.parameters(), unlimited.network.parameters()
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        assert np.array_equal(value, theirs[name]), name
    assert [r.loss for r in limited.history] == [r.loss for r in unlimited.history]
    assert limited.final_loss == unlimited.final_loss
