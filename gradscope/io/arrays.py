"""Reading and writing the arrays people exchange: .npz state dicts and .npy batches.

Every reader loads with ``allow_pickle=False`` and turns every way a file can be wrong into an
InputError that names the file: missing, not NumPy's format, pickled objects, non-numeric or
non-finite values.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .. import memory
from ..errors import InputError
from .atomic import atomic_write, write_bytes
from .files import check_writable_folder, os_problem, regular_file

# The first bytes of an .npz (a zip archive, or an empty one) and of an .npy file.
NUMPY_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")


def _check_readable(path: str | os.PathLike, what: str) -> Path:
    p = regular_file(path, what)  # os.stat first: a FIFO or a device must not be opened
    # np.load takes any other file for a pickle, and would report "pickled data" for a text file.
    try:
        with open(p, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise InputError(f"cannot read {what} file {p}: {os_problem(exc)}") from None
    if not head.startswith(NUMPY_MAGIC):
        raise InputError(f"{what} file {p} is not in NumPy's .npz or .npy format")
    return p


def _claimed(fh: BinaryIO, available: int, where: str) -> int:
    """Bytes of float64 the .npy array in ``fh`` (at its start) will take, read from its header; an
    InputError when the header is damaged or claims more data than the file holds (a header can
    claim any shape: (10^6, 10^6) in a file of 100 bytes)."""
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(fh)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise InputError(f"{where} has a damaged .npy header ({' '.join(str(exc).split())[:120]})") from None
    if dtype.hasobject:
        raise InputError(f"{where} contains pickled objects, which are not loaded")
    count = math.prod(shape)
    data = available - fh.tell()
    if count * dtype.itemsize > data:
        raise InputError(f"{where} claims shape {shape} ({memory.human(count * dtype.itemsize)} of {dtype}) "
                         f"but holds {memory.human(max(data, 0))}: the file is truncated or damaged")
    return count * 8


def _check_npz_headers(p: Path, what: str) -> None:
    """Every member's header read and checked before any data is: shape against size, and the
    float64 copies against the memory there is."""
    needed = 0
    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist():
                with zf.open(info) as fh:
                    needed += _claimed(fh, info.file_size, f"{what} file {p}, array {info.filename.removesuffix('.npy')!r},")
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise InputError(f"{what} file {p} is not a valid .npz archive ({type(exc).__name__})") from None
    memory.check(needed, f"reading {what} file {p}", "the size of the file's arrays")


def _check_npy_header(p: Path, what: str) -> None:
    try:
        with open(p, "rb") as fh:
            needed = _claimed(fh, os.fstat(fh.fileno()).st_size, f"{what} file {p}")
    except OSError as exc:
        raise InputError(f"cannot read {what} file {p}: {os_problem(exc)}") from None
    memory.check(needed, f"reading {what} file {p}", "the size of the array")


def _numeric(array: np.ndarray, where: str) -> np.ndarray:
    """A float64 copy of a numeric array; objects, strings, complex or non-finite values are an InputError
    whose message starts with ``where``."""
    if array.dtype == object:
        raise InputError(f"{where} holds Python objects, not numbers")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise InputError(f"{where} is not numeric (dtype {array.dtype})")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(f"{where} holds complex numbers")
    out = array.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        raise InputError(f"{where} contains {int(bad.sum())} NaN or infinite value(s)")
    return out


def load_npz(path: str | os.PathLike, what: str = "weights") -> dict[str, np.ndarray]:
    """All arrays of an .npz file as float64, keyed as in the file."""
    p = _check_readable(path, what)
    if zipfile.is_zipfile(p):
        _check_npz_headers(p, what)
    try:
        with np.load(p, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise InputError(f"{what} file {p} is a single .npy array, not an .npz archive")
            raw = {k: data[k] for k in data.files}
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"{what} file {p} contains pickled objects, which are not loaded") from None
        raise InputError(f"{what} file {p} is not a valid .npz archive: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{what} file {p} is not a valid .npz archive ({type(exc).__name__})") from None
    if not raw:
        raise InputError(f"{what} file {p} holds no arrays")
    return {k: _numeric(v, f"{what} file {p}, array {k!r},") for k, v in raw.items()}


def load_npy(path: str | os.PathLike, what: str) -> np.ndarray:
    """One array from an .npy file, as float64."""
    p = _check_readable(path, what)
    with open(p, "rb") as fh:
        is_npy = fh.read(6) == b"\x93NUMPY"
    if is_npy:
        _check_npy_header(p, what)
    try:
        data = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"{what} file {p} contains pickled objects, which are not loaded") from None
        raise InputError(f"{what} file {p} is not a valid .npy file: {exc}") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{what} file {p} is not a valid .npy file ({type(exc).__name__})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        data.close()
        raise InputError(f"{what} file {p} is an .npz archive; give a single .npy array")
    return _numeric(data, f"{what} file {p}")


def check_output(path: str | os.PathLike, flag: str, suffixes: tuple[str, ...] = (".npz",)) -> Path:
    """Check an output path before any work is done, so that a typo loses no computation."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise InputError(f"{flag} {p}: the file must end in {' or '.join(suffixes)}")
    check_writable_folder(p, flag)
    return p


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray | float], flag: str = "output file") -> None:
    """Write arrays uncompressed, atomically (io/atomic.py); an unwritable path is an input error."""
    p = check_output(path, flag)
    with atomic_write(p, flag) as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def check_weights_output(path: str | os.PathLike, flag: str, keras: bool) -> Path:
    """``check_output`` for the weights of a model: a PyTorch state dict in .npz, or a Keras model's
    weights store, which ``model.load_weights`` reads only under a name ending in .weights.h5."""
    if not keras:
        return check_output(path, flag)
    p = Path(path)
    if not p.name.lower().endswith(".weights.h5"):
        raise InputError(f"{flag} {p}: a Keras model's weights are written as Keras 3's weights store, which "
                         f"model.load_weights reads from a file ending in .weights.h5")
    check_writable_folder(p, flag)
    return p


def save_weights(path: str | os.PathLike, arrays: dict[str, np.ndarray], flag: str, keras: bool) -> None:
    """A model's weights: a state dict's arrays in .npz, or (``keras``) Keras 3's weights store,
    ``arrays`` keyed by their HDF5 paths (model/keras.py's export)."""
    if not keras:
        save_npz(path, arrays, flag)
        return
    from .keras_h5 import weights_store  # h5py, imported only for a Keras model

    write_bytes(check_weights_output(path, flag, True), weights_store(arrays), flag)


def load_array(source: object, what: str) -> np.ndarray:
    """One array from an .npy path or, from Python, an array (numpy, or a torch tensor), as float64.

    The same checks as ``load_npy`` (numeric, finite); ``what`` names it in errors ("inputs").
    """
    if isinstance(source, (str, os.PathLike)):
        if Path(os.fsdecode(source)).suffix.lower() in (".pt", ".pth"):
            from .weights import read_tensor  # weights reads .npz through this module: import late

            return read_tensor(source, what)
        return load_npy(source, what)
    if type(source).__module__.split(".")[0] == "torch":  # a tensor: torch is already imported
        source = source.detach().cpu().double().numpy()
    try:
        array = np.asarray(source)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be an array or an .npy path, not {type(source).__name__} ({exc})") from None
    return _numeric(array, what)


def array_shape(inputs: object) -> tuple[int, ...] | None:
    """The shape of an array given as itself or as a .npy file (its header only: nothing else is
    read), or None if unreadable (``load_array`` then says what is wrong)."""
    shape = getattr(inputs, "shape", None)
    if shape is not None:
        return tuple(shape)
    try:
        data = np.load(inputs, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if isinstance(data, np.lib.npyio.NpzFile):
        data.close()
        return None
    return tuple(data.shape)
