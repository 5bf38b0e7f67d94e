"""Reading torch.save's files with Python's pickle and numpy: no torch import, and no code from the file run.

torch.save writes one of two layouts (torch/serialization.py: ``_save`` and ``_load``, ``_legacy_save``
and ``_legacy_load``):

    zip (torch >= 1.6, the default)
        <archive>/data.pkl      the object, pickled (protocol 2 unless pickle_protocol says otherwise)
        <archive>/data/<key>    each storage's raw bytes, in the byte order <archive>/byteorder names
                                ("little" or "big"; "little" when the record is absent)
        <archive>/version, .format_version, .storage_alignment, .data/...: not needed to read it
    legacy (_use_new_zipfile_serialization=False), one stream of five pickles and the raw data
        the magic number 0x1950a86a20f9469cfc6c; the protocol version 1001; system information;
        the object; the list of storage keys; then, per key in that order, the storage's element count
        (int64, little-endian) and its elements (little-endian)

In the object's pickle a tensor is a call (torch/_utils.py)

    _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    _rebuild_tensor_v3(..., backward_hooks, dtype[, metadata])    dtypes without a storage class (uint16)

and a storage a persistent id: ("storage", storage type, key, location, numel) in the zip layout,
("storage", storage type, key, location, numel, view) in the legacy one, view None or (view key,
offset, numel). The storage type is a class such as torch.FloatStorage (torch.UntypedStorage, bytes,
for v3). Offsets, sizes and strides count elements. Parameters wrap a tensor in
``_rebuild_parameter(tensor, requires_grad, backward_hooks[, state])``.

Safe as ``torch.load(weights_only=True)`` is: ``find_class``, which pickle consults for every class or
function a pickle names, resolves only an allowlist, to plain containers and to this module's own
rebuilders, which slice numpy arrays from the raw bytes. Any other name is refused before anything
is called, and nothing is imported. Tensors come back as read-only numpy arrays of their own dtype
(bfloat16 widened exactly to float32), views of the bytes read where they can be.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import os
import pickle
import pickletools
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from ..errors import InputError, one_line
from ..extras import install_hint
from .files import SAVE_STATE_DICT

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of the legacy layout
LEGACY_PROTOCOL = 1001  # its second
ZIP_MAGIC = b"PK\x03\x04"  # how torch.load tells the layouts apart: by the first bytes


class DType(NamedTuple):
    """A tensor element type: torch's name and numpy's type code without byte order ("f4").

    A tuple, as _Storage and _Call are: pickle's BUILD opcode can set attributes on any object on its
    stack, and a tuple has none it could set.
    """

    name: str
    code: str


DTYPES = {d.name: d for d in (
    DType("float64", "f8"), DType("float32", "f4"), DType("float16", "f2"),
    DType("bfloat16", "u2"),  # numpy has no bfloat16: its bits are read as uint16, then widened
    DType("int64", "i8"), DType("int32", "i4"), DType("int16", "i2"), DType("int8", "i1"),
    DType("uint64", "u8"), DType("uint32", "u4"), DType("uint16", "u2"), DType("uint8", "u1"),
    DType("bool", "?"), DType("complex128", "c16"), DType("complex64", "c8"),
)}
"""The dtypes read without torch, by torch's names (``torch.float32`` pickles as torch.float32)."""

STORAGE_CLASSES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128", "ComplexFloatStorage": "complex64",
}
"""The typed storage classes of the persistent ids, and the dtype of each."""

TORCH_ONLY = {
    *(f"torch.{name}" for name in (
        "complex32", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
        "float4_e2m1fn_x2", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
        *(f"uint{bits}" for bits in range(1, 8)), *(f"int{bits}" for bits in range(1, 8)),
        "qint8", "qint32", "quint8", "quint4x2", "quint2x4", "QInt8Storage", "QInt32Storage", "QUInt8Storage",
        "QUInt4x2Storage", "QUInt2x4Storage", "per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
        "per_channel_symmetric", "per_channel_affine_float_qparams",
    )),
    *(f"torch._utils.{name}" for name in (
        "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_nested_tensor", "_rebuild_meta_tensor_no_storage",
        "_rebuild_wrapper_subclass", "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor",
    )),
    "torch.serialization._get_layout",
}
"""Names that torch.load(weights_only=True) accepts and this module does not read: dtypes numpy cannot
hold (float8, complex32, sub-byte and quantized types), sparse, nested and device-specific tensors."""

TENSOR_TYPES = ("torch.Tensor", "torch.nn.parameter.Parameter")
"""The tensor classes that ``torch._tensor._rebuild_from_type_v2`` may name: a tensor carrying Python
attributes pickles through it."""


class NeedsTorch(InputError):
    """The file holds tensors that only torch can convert (float8, complex32, quantized, sparse, ...)."""


class _Refused(Exception):
    """The pickle names a class or function outside the allowlist; carries its qualified name."""


class _Storage(NamedTuple):
    """A storage's raw bytes, as one of torch's typed storages holds them."""

    data: bytes | memoryview
    dtype: DType
    byteorder: str  # numpy's prefix: "<" or ">"


class _Call(NamedTuple):
    """A function lent to the pickle, in a tuple that has no attribute BUILD could set."""

    function: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


class _Unpickler(pickle.Unpickler):
    """A pickle reader that resolves only the allowlisted names; storages come from ``storage``.

    ``storage(dtype, key, *rest)`` receives a persistent id past its "storage" tag (``rest``: location
    and numel, and the view in the legacy layout) and returns the _Storage, or None while the legacy
    layout's first pass only learns which storages there are.
    """

    def __init__(self, file: io.BufferedIOBase, storage: Callable[..., _Storage | None]):
        super().__init__(file, encoding="utf-8")  # as torch.load: Python 2's str pickles decode as UTF-8
        self.storage = storage
        # Built-in types, strings and tuples only: pickle's BUILD opcode sets attributes on whatever is on
        # its stack, which a function (or a bound method, through its function) would let a file change
        # for the whole process.
        self.allowed: dict[str, Any] = {
            "collections.OrderedDict": OrderedDict,
            "builtins.set": set,
            "_codecs.encode": _Call(self._encode),  # how protocol 2 pickles bytes
            "torch.Size": tuple,
            "torch.device": _Call(self._device),  # checkpoints keep the device they trained on
            "torch._utils._rebuild_tensor": _Call(self._rebuild_tensor),
            "torch._utils._rebuild_tensor_v2": _Call(self._rebuild_tensor_v2),
            "torch._utils._rebuild_tensor_v3": _Call(self._rebuild_tensor_v3),
            "torch._utils._rebuild_parameter": _Call(self._rebuild_parameter),
            "torch._utils._rebuild_parameter_with_state": _Call(self._rebuild_parameter_with_state),
            "torch._tensor._rebuild_from_type_v2": _Call(self._rebuild_from_type_v2),
            **{name: name for name in TENSOR_TYPES},
            **{f"torch.{name}": dtype for name, dtype in DTYPES.items()},
            **{f"{module}.{name}": DTYPES[dtype] for name, dtype in STORAGE_CLASSES.items()
               for module in ("torch", "torch.cuda")},  # older torch named the storages of CUDA tensors so
            "torch.storage.UntypedStorage": DTYPES["uint8"],
            "torch.UntypedStorage": DTYPES["uint8"],
        }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2's names, as pickle itself maps them
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f"{module}.{name}"
        if qualified in self.allowed:
            return self.allowed[qualified]
        if qualified in TORCH_ONLY:
            raise NeedsTorch(qualified)
        raise _Refused(qualified)

    def persistent_load(self, pid: Any) -> _Storage | None:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], DType)
                and isinstance(pid[2], str)):
            raise ValueError(f"unknown persistent id {one_line(repr(pid), 60)}")
        return self.storage(*pid[1:])

    # -- the allowlisted callables ---------------------------------------------------------------

    def _encode(self, text: str, encoding: str) -> bytes:
        if encoding not in ("latin1", "latin-1"):
            raise ValueError(f"bytes pickled in {encoding!r}")
        return text.encode("latin-1")

    def _device(self, kind: str, index: int | None = None) -> str:
        return kind if index is None else f"{kind}:{index}"

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        return _tensor(storage, storage_offset, size, stride)

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad, backward_hooks,
                           metadata=None):
        return _tensor(storage, storage_offset, size, stride)

    def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                           metadata=None):
        if not isinstance(dtype, DType):
            raise ValueError(f"a tensor of dtype {one_line(repr(dtype), 60)}")
        return _tensor(storage, storage_offset, size, stride, dtype)

    def _rebuild_parameter(self, data, requires_grad, backward_hooks):
        return data

    def _rebuild_parameter_with_state(self, data, requires_grad, backward_hooks, state):
        return data

    def _rebuild_from_type_v2(self, func, new_type, args, state):
        if new_type not in TENSOR_TYPES or not isinstance(args, tuple):
            raise ValueError(f"a tensor of type {one_line(repr(new_type), 60)}")
        return func(*args)


def _tensor(storage: _Storage | None, offset: Any, size: Any, stride: Any, dtype: DType | None = None
            ) -> np.ndarray | None:
    """The tensor torch's ``Tensor.set_(storage, offset, size, stride)`` makes, as a read-only numpy array.

    The storage's bytes are read as ``dtype`` (v3's, over untyped bytes; by default the storage's own);
    element (i_0, i_1, ...) is element ``offset + sum(i_k * stride_k)`` of the storage. The array is a
    view of those bytes where it can be (tensors sharing a storage share memory, as torch's do), a
    converted copy for bfloat16 and big-endian files.
    """
    if storage is None:  # the legacy layout's first pass: the storages are read after the pickle
        return None
    if not isinstance(storage, _Storage):
        raise ValueError("a tensor without a storage")
    dtype = dtype or storage.dtype
    if not (_counts(size) and _counts(stride) and len(size) == len(stride) and _counts((offset,))):
        raise ValueError(f"a tensor of size {one_line(repr(size), 40)}, stride {one_line(repr(stride), 40)}, "
                         f"offset {one_line(repr(offset), 20)}")
    elements = np.frombuffer(storage.data, dtype=np.dtype(storage.byteorder + dtype.code),
                             count=len(storage.data) // np.dtype(dtype.code).itemsize)
    if math.prod(size) > 0:
        # as_strided reads wherever the strides point: every element must lie inside the storage
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= len(elements):
            raise ValueError(f"a tensor of size {tuple(size)} reaches element {last} of a {dtype.name} storage "
                             f"of {len(elements)}")
    # A dimension of length 0 or 1 is never stepped along: its stride may be anything, so it is not used.
    steps = [s * elements.itemsize if n > 1 else 0 for n, s in zip(size, stride)]
    array = np.lib.stride_tricks.as_strided(elements[offset:], shape=tuple(size), strides=steps, writeable=False)
    if dtype.name == "bfloat16":  # bfloat16 is the top half of a float32: exact
        array = (array.astype(np.uint32) << 16).view(np.float32)
    elif not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    array.flags.writeable = False
    return array


def _counts(values: Any) -> bool:
    """Whether values is a tuple or list of non-negative ints (sizes, strides, offsets)."""
    return isinstance(values, (tuple, list)) and all(type(v) is int and v >= 0 for v in values)


def load(path: str | os.PathLike, origin: str) -> Any:
    """What ``torch.load(path, map_location="cpu", weights_only=True)`` returns, with numpy arrays for tensors.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by torch.save, in the zip layout or the legacy one (told apart by the first bytes).
    origin : str
        The file as messages name it: "weights file m.pt".

    Returns
    -------
    Any
        The saved object: dicts (OrderedDict as saved), lists, tuples (torch.Size too), sets, numbers,
        strings (torch.device as "cuda:0"), bytes, None, and one read-only numpy array per tensor, in
        the tensor's shape and dtype (bfloat16 as float32); tensors that share a storage share memory.
        Parameters come back as their tensors.

    Raises
    ------
    NeedsTorch
        The file holds tensors only torch can convert (see TORCH_ONLY); an InputError whose message
        names the type and how to install torch.
    InputError
        A name outside the allowlist (a pickled module or class), or a damaged file; one line naming it.
    """
    path = Path(os.fsdecode(path))
    try:
        return _load_zip(path) if _is_zip(path) else _load_legacy(path)
    except NeedsTorch as exc:
        raise NeedsTorch(f"{origin} holds {exc}, which NumPy cannot hold; reading it needs PyTorch: "
                         f"{install_hint('torch')}") from None
    except _Refused as exc:
        if _pickles_a_module(path):
            raise InputError(f"{origin} holds a pickled module (torch.save(model)), not a state dict; "
                             f"save the state dict instead: {SAVE_STATE_DICT}") from None
        raise InputError(f"{origin} holds a pickled {exc}, which gradscope does not load; if you trust the "
                         f"file, load it in PyTorch and save only the state dict: {SAVE_STATE_DICT}") from None
    except OSError as exc:
        raise InputError(f"cannot read {origin}: {one_line(exc)}") from None
    except Exception as exc:  # pickle, zipfile and the rebuilders report damage as many exception types
        raise InputError(f"{origin} is a damaged torch.save file ({one_line(exc)}); save or copy it again") from None


def _load_zip(path: Path) -> Any:
    """The object of a zip-layout file: data.pkl unpickled, each storage read from data/<key> once."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        pickled = next((n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"), None)
        if pickled is None:
            raise ValueError("no data.pkl in the archive")
        archive = pickled[: -len("data.pkl")]
        byteorder = zf.read(archive + "byteorder") if archive + "byteorder" in names else b"little"
        if byteorder not in (b"little", b"big"):
            raise ValueError(f"byte order {one_line(repr(byteorder), 40)}")
        prefix = "<" if byteorder == b"little" else ">"
        storages: dict[str, _Storage] = {}  # by key: tensors that share a storage share its bytes

        def storage(dtype: DType, key: str, location: Any, numel: Any) -> _Storage:
            if key not in storages:
                name = f"{archive}data/{key}"
                if name not in names:
                    raise ValueError(f"storage {name} is missing")
                data = zf.read(name)
                nbytes = numel * np.dtype(dtype.code).itemsize if type(numel) is int else -1
                if not 0 <= nbytes <= len(data):
                    raise ValueError(f"storage {name} holds {len(data)} bytes, not {numel} {dtype.name} elements")
                storages[key] = _Storage(memoryview(data)[:nbytes], dtype, prefix)
            return storages[key]

        return _Unpickler(io.BytesIO(zf.read(pickled)), storage).load()


def _load_legacy(path: Path) -> Any:
    """The object of a legacy-layout file.

    Its storages follow the object's pickle, and reading them needs each one's dtype, which only that
    pickle tells: a first pass learns them (building no tensors), then the storages are read, then
    the pickle is read again with them.
    """
    with open(path, "rb") as fh:
        magic, protocol, _system = (_Unpickler(fh, _no_storage).load() for _ in range(3))
        if magic != LEGACY_MAGIC:
            raise ValueError("no torch.save magic number")
        if protocol != LEGACY_PROTOCOL:
            raise ValueError(f"protocol version {one_line(repr(protocol), 20)}, not {LEGACY_PROTOCOL}")
        start = fh.tell()
        dtypes: dict[str, tuple[DType, Any]] = {}

        def learn(dtype: DType, key: str, location: Any, numel: Any, view: Any) -> None:
            dtypes.setdefault(key, (dtype, numel))

        _Unpickler(fh, learn).load()
        storages: dict[str, _Storage] = {}
        for key in _Unpickler(fh, _no_storage).load():
            if key not in dtypes:
                raise ValueError(f"storage {key!r} is listed but no tensor uses it")
            dtype, numel = dtypes[key]
            count = int.from_bytes(fh.read(8), "little")
            if count != numel:
                raise ValueError(f"storage {key!r} has {count} elements, not {numel}")
            nbytes = count * np.dtype(dtype.code).itemsize
            data = fh.read(nbytes)
            if len(data) < nbytes:
                raise ValueError(f"storage {key!r} is truncated: {len(data)} of {nbytes} bytes")
            storages[key] = _Storage(data, dtype, "<")  # written little-endian whatever the machine

        def storage(dtype: DType, key: str, location: Any, numel: Any, view: Any) -> _Storage:
            if key not in storages:
                raise ValueError(f"storage {key!r} is missing")
            if view is None:
                return storages[key]
            _view_key, offset, count = view  # a storage view (torch < 0.4): a slice of the root's elements
            itemsize = np.dtype(dtype.code).itemsize
            return _Storage(memoryview(storages[key].data)[offset * itemsize:(offset + count) * itemsize], dtype, "<")

        fh.seek(start)
        return _Unpickler(fh, storage).load()


def _no_storage(*pid: Any) -> None:
    """The storage callback of the pickles around the object's (the legacy header and key list)."""
    raise ValueError("a storage outside the object's pickle")


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(ZIP_MAGIC)) == ZIP_MAGIC


def _pickles_a_module(path: Path) -> bool:
    """Whether the file's pickle holds an nn.Module: read from its opcodes, which pickletools parses
    without running anything. A module pickles its __dict__, whose keys include "_parameters"."""
    try:
        if _is_zip(path):
            with zipfile.ZipFile(path) as zf:
                data = zf.read(next(n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"))
            stream = io.BytesIO(data)
        else:
            with open(path, "rb") as fh:
                stream = io.BytesIO(fh.read(1 << 20))  # the pickles come first, the raw storages after
        for _ in range(4):  # legacy files: magic number, protocol, system info, then the object
            for _opcode, arg, _pos in pickletools.genops(stream):
                if isinstance(arg, str) and (arg == "_parameters" or arg.startswith("torch.nn.modules")):
                    return True
    except (ValueError, EOFError, OSError, KeyError, StopIteration, zipfile.BadZipFile):
        pass  # past the last pickle, or a damaged one: no module found
    return False
