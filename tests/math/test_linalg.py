"""linalg.py: the bordered decompositions equal the plain ones, the cache returns what was computed."""

from __future__ import annotations

import numpy as np
import pytest

from gradscope import linalg
from gradscope.commands.analyze import analyze_setup
from gradscope.config import RunConfig
from gradscope.experiment import build
from gradscope.parallel import Background, beside
from gradscope.spectrum import spectrum


def _sorted(eig: np.ndarray) -> np.ndarray:
    return eig[np.lexsort((eig.imag, eig.real))]


@pytest.fixture(autouse=True)
def _fresh_cache():
    linalg.clear_cache()
    yield
    linalg.clear_cache()


@pytest.mark.parametrize("n", [512, 1024])
def test_bordered_eigenvalues_equal_lapacks(n):
    """A width whose rows are a 4 KiB multiple is decomposed bordered by zeros: the same eigenvalues
    to rounding (backward stable either way: |d lambda| ~ eps ||A||), none of the border's zeros left."""
    a = np.random.default_rng(n).standard_normal((n, n)) / np.sqrt(n)
    assert linalg._aliases(n, 8)
    ours = linalg.eigenvalues(a)
    assert ours.shape == (n,)
    np.testing.assert_allclose(_sorted(ours), _sorted(np.linalg.eigvals(a)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [512])
def test_bordered_singular_values_equal_lapacks(n):
    a = np.random.default_rng(n + 1).standard_normal((n, n))
    ours = linalg.singular_values(a)
    np.testing.assert_allclose(ours, np.linalg.svd(a, compute_uv=False), rtol=1e-12, atol=1e-12)


def test_exact_zero_eigenvalues_of_the_matrix_itself_survive():
    """A nilpotent block: the matrix's own zero eigenvalues are kept, only the border's are dropped."""
    n = 512
    a = np.zeros((n, n))
    a[0, 1] = 1.0  # nilpotent: every eigenvalue 0
    a[2:, 2:] = np.diag(np.arange(1, n - 1, dtype=float))
    assert linalg._aliases(n, 8)
    eig = linalg.eigenvalues(a)
    assert eig.shape == (n,)
    assert np.count_nonzero(eig == 0) == 2
    np.testing.assert_allclose(np.sort(eig.real[eig != 0]), np.arange(1, n - 1), rtol=1e-12)
    sv = linalg.singular_values(a)
    assert sv.shape == (n,) and np.count_nonzero(sv == 0) == 1


def test_widths_that_do_not_alias_are_decomposed_as_they_are():
    a = np.random.default_rng(3).standard_normal((100, 100))
    assert not linalg._aliases(100, 8)
    np.testing.assert_array_equal(linalg.eigenvalues(a), np.linalg.eigvals(a))


def test_the_cache_returns_the_same_read_only_result_and_tells_matrices_apart():
    a = np.random.default_rng(4).standard_normal((32, 32))
    first = linalg.eigenvalues(a)
    assert linalg.eigenvalues(a.copy()) is first  # by content, not by identity
    assert not first.flags.writeable
    b = a.copy()
    b[3, 5] += 1e-12
    assert linalg.eigenvalues(b) is not first
    same_bytes = a.view(np.int64).astype(np.float64).view(np.float64)  # other numbers...
    assert linalg._key("eig", a.view(np.int64)) != linalg._key("eig", a)  # ...the same bytes: told apart by dtype
    assert linalg.eigenvalues(same_bytes) is not first
    linalg.clear_cache()
    assert linalg.eigenvalues(a) is not first


def test_the_cache_is_bounded():
    for seed in range(linalg.CACHE_SIZE + 5):
        linalg.singular_values(np.random.default_rng(seed).standard_normal((4, 4)))
    assert len(linalg._cache) == linalg.CACHE_SIZE


def test_spectrum_of_a_cached_matrix_is_its_own_copy():
    a = np.random.default_rng(5).standard_normal((16, 16))
    s1, s2 = spectrum(a), spectrum(a)
    s1.singular_values[0] = -1.0  # a caller may write to what it got
    assert s2.singular_values[0] > 0


def test_background_hands_back_the_result_and_the_error():
    assert Background(sum, [1, 2, 3]).result() == 6
    with pytest.raises(ZeroDivisionError):
        Background(lambda: 1 / 0).result()
    for thread in (True, False):
        with beside(max, 4, 9, thread=thread) as work:
            pass
        assert work.result() == 9


def test_beside_waits_for_its_thread_when_the_block_raises():
    """The BLAS limit is lifted only once the decomposition has ended, also on an error."""
    import time

    with pytest.raises(ValueError):
        with beside(time.sleep, 0.2) as work:
            raise ValueError("the block failed")
    assert not work._thread.is_alive()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_analyze_beside_equals_analyze_serial(cell, monkeypatch):
    """The spectra decomposed on a thread beside BPTT are the spectra decomposed after it."""
    import gradscope.commands.analyze as analyze_module

    setup = build(RunConfig(cell=cell, hidden_size=64, seq_len=30, batch_size=4))
    results = []
    for beside_from in (0, 1 << 30):  # every size on a thread; none
        monkeypatch.setattr(analyze_module, "DECOMPOSE_BESIDE", beside_from)
        linalg.clear_cache()
        results.append(analyze_setup(setup))
    together, alone = results
    np.testing.assert_array_equal(together.spectrum.eigenvalues, alone.spectrum.eigenvalues)
    np.testing.assert_array_equal(together.spectrum.singular_values, alone.spectrum.singular_values)
    np.testing.assert_array_equal(together.grad_norms, alone.grad_norms)
    assert together.lyapunov.leading_exponent == alone.lyapunov.leading_exponent
    if cell != "rnn":
        assert together.gate_spectra.keys() == alone.gate_spectra.keys()
