"""Weight initialisers for the recurrent matrix, registered by name.

Each takes ``(rows, cols, rng, gain)`` and returns a float64 (rows, cols) matrix:

    normal      N(0, gain^2 / cols)          entries scaled by fan-in: for a square matrix the
                                              eigenvalues fill a disk of radius ~gain (circular law)
    xavier      U(-l, l), l = gain sqrt(6 / (rows + cols))    Glorot & Bengio 2010
    orthogonal  gain * Q, Q from the QR of a Gaussian matrix with the signs of diag(R)
                fixed, so Q is Haar-distributed (Saxe et al. 2014); Q^T Q = I
    identity    gain * I (Le, Jaitly & Hinton 2015, the IRNN); square only

``rescale_spectral_radius`` then scales a square matrix to a chosen spectral radius.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import linalg
from ..errors import InputError

Initializer = Callable[[int, int, np.random.Generator, float], np.ndarray]


def normal(rows: int, cols: int, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    return rng.standard_normal((rows, cols)) * (gain / np.sqrt(cols))


def xavier(rows: int, cols: int, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    limit = gain * np.sqrt(6.0 / (rows + cols))
    return rng.uniform(-limit, limit, size=(rows, cols))


def orthogonal(rows: int, cols: int, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    big, small = max(rows, cols), min(rows, cols)
    q, r = np.linalg.qr(rng.standard_normal((big, small)))
    q *= np.sign(np.diag(r))  # sign fix: without it Q is not uniformly distributed
    if rows < cols:
        q = q.T
    return gain * q


def identity(rows: int, cols: int, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    if rows != cols:
        raise InputError(f"identity init needs a square matrix, got {rows}x{cols}")
    return gain * np.eye(rows)


INITIALIZERS: dict[str, Initializer] = {
    "normal": normal,
    "xavier": xavier,
    "orthogonal": orthogonal,
    "identity": identity,
}


def get_initializer(name: str) -> Initializer:
    """Look an initialiser up by name; an unknown name is an input error listing the choices."""
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise InputError(
            f"unknown init {name!r}; choose one of {', '.join(INITIALIZERS)}"
        ) from None


def spectral_radius(matrix: np.ndarray) -> float:
    """max |lambda_i| over the eigenvalues of a square matrix (computed once per matrix: linalg.py)."""
    return linalg.spectral_radius(matrix)


def rescale_spectral_radius(matrix: np.ndarray, radius: float) -> np.ndarray:
    """Scale a square matrix so that its spectral radius is ``radius``.

    A nilpotent or zero matrix has radius 0 and cannot be rescaled: that is an input error.
    """
    current = spectral_radius(matrix)
    if current <= 1e-12:
        raise InputError("cannot rescale to a spectral radius: the recurrent matrix has radius 0")
    return matrix * (radius / current)
