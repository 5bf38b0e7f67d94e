"""Reading a PyTorch state dict from the files people have, or from memory.

A file's format is recognised by its content, not its suffix:

    .pt / .pth    torch.save(model.state_dict(), path): a zip holding ``<name>/data.pkl``, or the legacy
                  pickle stream (``_use_new_zipfile_serialization=False``); read by ``io.torch_pickle``
                  without torch, as ``torch.load(weights_only=True)`` would: a restricted unpickler that
                  builds tensors and containers only and never calls into other code
    .safetensors  8-byte little-endian header length, a JSON header, raw little-endian tensors
    .npz          np.savez(path, **state_dict), read by ``io.arrays.load_npz``

Keras files (.keras, .h5, .weights.h5) are recognised too, and refused with a pointer to ``io.keras``.

A training checkpoint holds the state dict under "model", "state_dict" or "model_state_dict"; its other
entries (epoch, optimizer state, ...) are ignored. torch is imported only for .pt tensors that NumPy
cannot hold (float8, complex32, quantized, sparse) and .safetensors ones (bfloat16, float8);
safetensors only for .safetensors files. Every way the input can be wrong is an InputError that names
the file (or "the state dict") and says what to do where there is something to do.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import sys
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, one_line
from ..extras import install_hint
from .arrays import _numeric, load_npz
from .files import HDF5_MAGIC, KERAS_READ_BY, SAVE_STATE_DICT, ZIP_MAGIC, input_head, is_keras_archive

CHECKPOINT_KEYS = ("model", "state_dict", "model_state_dict")
"""Where training checkpoints keep the state dict, tried in this order."""

READS = ("gradscope reads state dicts from .npz (np.savez), .pt/.pth (torch.save) and .safetensors files, "
         "and Keras models from .keras and .h5 files")
NEEDS_TORCH = install_hint("torch")

NPY_MAGIC = b"\x93NUMPY"
PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")  # PROTO opcode, protocols 2 to 5

NUMPY_SAFETENSORS_DTYPES = {
    "F64", "F32", "F16", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL", "C64",
}
"""safetensors dtypes that safetensors.numpy can return; the rest (BF16, F8_*) need torch."""
SAFETENSORS_DTYPE_NAMES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def read_state_dict(source: str | os.PathLike | Mapping, what: str = "weights") -> dict[str, np.ndarray]:
    """A PyTorch state dict's tensors as float64 numpy arrays, keyed as in the source.

    Parameters
    ----------
    source : str, os.PathLike or Mapping
        A .pt/.pth, .safetensors or .npz file, or an in-memory state dict (or checkpoint) whose values
        are torch tensors or numpy arrays.
    what : str
        What the file is, for messages: "weights file m.pt is empty".

    Returns
    -------
    dict[str, np.ndarray]
        One float64 array per tensor, in the source's order and with the source's shape (0-d included).
        Integer and boolean tensors are converted too; non-tensor entries (ints, metadata) are skipped.
    """
    if isinstance(source, Mapping):
        return _tensors(source, "the state dict")
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(
            f"{what} must be a file path or a state dict (a mapping of names to tensors), "
            f"not {type(source).__name__}"
        )
    path = Path(os.fsdecode(source))
    origin = f"{what} file {path}"
    kind = _sniff(path, what, origin)
    if kind == "npz":
        return load_npz(path, what)
    if kind == "safetensors":
        return _tensors(_load_safetensors(path, origin), origin)
    return _tensors(_read_torch_file(path, origin), origin)


def read_tensor(path: str | os.PathLike, what: str) -> np.ndarray:
    """One tensor saved with ``torch.save(tensor, path)`` (.pt/.pth), as float64 numpy.

    For a batch kept the way a torch user keeps it (``--inputs tokens.pt``); read safely, without
    torch, like every torch file here.
    """
    path = Path(os.fsdecode(path))
    origin = f"{what} file {path}"
    kind = _sniff(path, what, origin)
    if kind != "torch":
        raise InputError(f"{origin} is not a torch.save file; give an .npy array or a .pt tensor")
    loaded = _read_torch_file(path, origin)
    if not _is_tensor(loaded):
        kind = "a dict (a state dict?)" if isinstance(loaded, dict) else f"an object of type {type(loaded).__name__}"
        raise InputError(f"{origin} holds {kind}, not one tensor: save the tensor itself "
                         f"(torch.save(x, \"{path.name}\")) or np.save it as .npy")
    return _float64(loaded, origin)


# -- recognising the format ------------------------------------------------------------------------


def _sniff(path: Path, what: str, origin: str) -> str:
    """'npz', 'torch' or 'safetensors', from the file's first bytes (and a zip's member names)."""
    head, size = input_head(path, what, READS)
    if head.startswith(NPY_MAGIC):
        raise InputError(
            f"{origin} is a single .npy array, not a state dict; "
            f"{what} are read from a state dict in an .npz, .pt/.pth or .safetensors file, or a Keras model in a "
            ".keras or .h5 file"
        )
    if head.startswith(ZIP_MAGIC):
        return _sniff_zip(path, origin)
    if head.startswith(HDF5_MAGIC):
        raise InputError(f"{origin} is an HDF5 file (Keras' .h5 or .weights.h5), not a PyTorch state dict; "
                         f"{KERAS_READ_BY}")
    if head[:2] in PICKLE_PROTOCOLS:
        if not _starts_with_torch_magic(path):
            raise InputError(f"{origin} is a Python pickle, not a file written by torch.save; {READS}")
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if all(32 <= b < 127 or b in b"\t\n\r" for b in head):
        raise InputError(f"{origin} holds text, not weights; {READS}")
    raise InputError(f"{origin} is not in a format gradscope reads; {READS}")


def _starts_with_torch_magic(path: Path) -> bool:
    """Whether the file's first pickle is torch.save's legacy magic number, read from its opcodes
    (pickletools parses them without running anything)."""
    with open(path, "rb") as fh:
        stream = io.BytesIO(fh.read(64))  # PROTO, LONG1 with 10 bytes, STOP: 16 bytes in protocol 2
    try:
        from .torch_pickle import LEGACY_MAGIC  # the pure reader, imported where a torch file is read

        return any(arg == LEGACY_MAGIC for _op, arg, _pos in pickletools.genops(stream))
    except ValueError:  # a longer first pickle: not torch's
        return False


def _sniff_zip(path: Path, origin: str) -> str:
    """'npz' or 'torch', from the member names of a zip archive."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        kinds = "a valid .keras file" if path.suffix.lower() == ".keras" else "a valid .npz or .pt/.pth file"
        raise InputError(
            f"{origin} is not {kinds}: its zip archive is truncated or damaged; "
            f"save or copy it again. {READS}"
        ) from None
    base = [name.rsplit("/", 1)[-1] for name in names]
    if "constants.pkl" in base:  # how torch recognises a TorchScript archive
        raise InputError(
            f"{origin} is a TorchScript archive (torch.jit.save), not a state dict; "
            f"save the state dict instead: {SAVE_STATE_DICT}"
        )
    if "data.pkl" in base:
        return "torch"
    if is_keras_archive(names):
        raise InputError(f"{origin} is a Keras model (.keras), not a PyTorch state dict; {KERAS_READ_BY}")
    if all(name.endswith(".npy") for name in names):  # np.savez; an empty archive is reported by load_npz
        return "npz"
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise InputError(
        f"{origin} is a zip archive but neither an .npz (np.savez) nor a .pt/.pth (torch.save) file; "
        f"it holds {shown}. {READS}"
    )


# -- PyTorch files ---------------------------------------------------------------------------------


def _read_torch_file(path: Path, origin: str) -> Any:
    """What torch.load(weights_only=True) returns for the file, onto the CPU: read by io.torch_pickle
    without importing torch (tensors as numpy arrays), or by torch.load itself, where installed, for
    the types NumPy cannot hold (float8, complex32, quantized, sparse)."""
    from . import torch_pickle  # only where a torch file is read: not at every start of the CLI

    try:
        return torch_pickle.load(path, origin)
    except torch_pickle.NeedsTorch as exc:
        try:
            import torch
        except ImportError:
            raise exc from None  # its message names the type and how to install torch
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about unusual pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch reports a file it refuses as UnpicklingError, RuntimeError, ...
        raise InputError(f"{origin} cannot be read by torch.load ({one_line(exc)}); {READS}") from None


# -- safetensors -----------------------------------------------------------------------------------


def _load_safetensors(path: Path, origin: str) -> dict[str, Any]:
    """The file's tensors: numpy arrays, or torch tensors when a dtype needs torch (bfloat16, float8)."""
    try:
        import safetensors.numpy
    except ImportError:
        raise InputError(
            f"reading {origin} (a .safetensors file) needs the safetensors package: pip install safetensors"
        ) from None
    dtypes = _safetensors_dtypes(path, origin)
    beyond_numpy = {k: d for k, d in dtypes.items() if d not in NUMPY_SAFETENSORS_DTYPES}
    try:
        if not beyond_numpy:
            return safetensors.numpy.load_file(path)
        try:
            import torch  # noqa: F401  (safetensors.torch needs it; imported here to report its absence)
        except ImportError:
            key, dtype = next(iter(beyond_numpy.items()))
            name = SAFETENSORS_DTYPE_NAMES.get(dtype, dtype)
            raise InputError(
                f"{origin}, tensor {key!r}, is {name}, which NumPy cannot hold; "
                f"converting it needs PyTorch: {NEEDS_TORCH}"
            ) from None
        import safetensors.torch

        return safetensors.torch.load_file(path, device="cpu")
    except InputError:
        raise
    except Exception as exc:  # safetensors reports a damaged file as SafetensorError
        raise InputError(f"{origin} is not a valid .safetensors file ({one_line(exc)}); {READS}") from None


def _safetensors_dtypes(path: Path, origin: str) -> dict[str, str]:
    """Each tensor's dtype name ("F32", "BF16", ...) from the file's JSON header."""
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(length))
        return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        raise InputError(
            f"{origin} has a damaged .safetensors header; save or copy it again. {READS}"
        ) from None


# -- state dicts -----------------------------------------------------------------------------------


def _tensors(loaded: Any, origin: str) -> dict[str, np.ndarray]:
    """The float64 arrays of the state dict that ``loaded`` is or holds."""
    if not isinstance(loaded, Mapping):
        held = "a single tensor" if _is_tensor(loaded) else f"a {type(loaded).__name__}"
        raise InputError(f"{origin} holds {held}, not a state dict; save one with {SAVE_STATE_DICT}")
    state = _state_dict_in(loaded)
    if state is None:
        keys = ", ".join(repr(k) for k in list(loaded)[:5]) + (", ..." if len(loaded) > 5 else "")
        raise InputError(
            f"{origin} holds no tensors (keys: {keys or 'none'}); expected a state dict, or a checkpoint "
            f"holding one under {', '.join(repr(k) for k in CHECKPOINT_KEYS)}"
        )
    out = {}
    for key, value in state.items():
        if not _is_tensor(value):
            continue  # _metadata, version numbers and other non-tensor entries
        if not isinstance(key, str):
            raise InputError(f"{origin} has a tensor under {key!r}, which is not a string key")
        out[key] = _float64(value, f"{origin}, tensor {key!r},")
    return out


def _state_dict_in(mapping: Mapping, depth: int = 0) -> Mapping | None:
    """The mapping holding the tensors: a checkpoint's "model", "state_dict" or "model_state_dict" entry
    (first match, also nested), else the mapping itself if it holds tensors; None if there are none."""
    # The nested keys come first: checkpoints can hold stray tensors of their own (an RNG state).
    if depth < 4:
        for key in CHECKPOINT_KEYS:
            inner = mapping.get(key)
            if isinstance(inner, Mapping) and (found := _state_dict_in(inner, depth + 1)) is not None:
                return found
    return mapping if any(_is_tensor(v) for v in mapping.values()) else None


def _is_tensor(value: Any) -> bool:
    """Whether value is a numpy array or a torch tensor; never imports torch (a tensor cannot exist
    unless torch has been imported already)."""
    if isinstance(value, np.ndarray):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, getattr(torch, "Tensor", ()))


def _float64(value: Any, where: str) -> np.ndarray:
    """A float64 numpy copy of a numpy array or torch tensor (any dtype, device, requires_grad)."""
    if isinstance(value, np.ndarray):
        return _numeric(value, where)
    torch = sys.modules["torch"]
    if value.is_complex():
        raise InputError(f"{where} holds complex numbers")
    try:
        if value.is_quantized:
            value = value.dequantize()
        if value.layout != torch.strided:
            value = value.to_dense()
        # numpy has no bfloat16: convert in torch; force=True also resolves lazy conj/neg views
        array = value.detach().to(device="cpu", dtype=torch.float64).numpy(force=True)
    except (RuntimeError, NotImplementedError, TypeError) as exc:  # meta tensors, exotic layouts
        raise InputError(f"{where} cannot be converted to numbers ({one_line(exc)})") from None
    return _numeric(array, where)
