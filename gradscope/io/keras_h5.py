"""A Keras model's weights, read from HDF5 with h5py: Keras 3's weights store and the legacy layout.

Keras 3's store (``model.weights.h5`` inside a ``.keras`` file; ``save_weights("m.weights.h5")``)
keeps each layer under ``layers/<snake-case class name>[_k]`` in model.layers order, its arrays as
datasets ``vars/0``, ``vars/1``, ... in the order the layer creates them (a recurrent layer's under
``cell/vars``; a Bidirectional's under ``forward_layer/cell/vars`` and ``backward_layer/cell/vars``).
Keras 2.13 to 2.15 wrote ``_layer_checkpoint_dependencies`` for ``layers``.

The legacy layout (``model.save("m.h5")`` under ``model_weights``; Keras 2's ``save_weights("m.h5")`` at
the root) keeps a group per layer name whose attribute ``weight_names`` lists its datasets in order
(``lstm/lstm_cell/kernel:0`` in Keras 2, ``sequential/lstm/lstm_cell/kernel`` in Keras 3); Keras matches
them to the layers that have weights by position, and so does this reader. Attributes too long for an
HDF5 header are split as ``weight_names0``, ``weight_names1``, ...

Every array comes back as float64, exactly (float16, bfloat16 and float32 values are all float64 values).
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .. import memory
from .files import HDF5_MAGIC  # noqa: F401 (the signature the reader checks)
from ..errors import InputError
from ..extras import install_hint
from .arrays import _numeric
from ..errors import one_line
from .keras_config import POOLING, RECURRENT, SUPPORTED, OUTPUT_GRADS, WRAPPERS, LayerSpec, gates, snake_case

STORE_ROOTS = ("layers", "_layer_checkpoint_dependencies")  # Keras 3; Keras 2.13-2.15's .keras files
NEEDS_H5PY = install_hint("keras")

Weights = dict[LayerSpec, dict[str, np.ndarray]]
"""Each layer's arrays under Keras' names (a Bidirectional's under its forward and backward specs)."""


def weight_names(spec: LayerSpec) -> tuple[str, ...]:
    """The arrays a layer holds, in the order Keras creates and saves them."""
    bias = ("bias",) if spec.config.get("use_bias") else ()
    if spec.class_name == "Embedding":
        return ("embeddings",)
    if spec.class_name in RECURRENT:
        return ("kernel", "recurrent_kernel") + bias
    if spec.class_name == "Dense":
        return ("kernel",) + bias
    return ()


@contextmanager
def open_h5(source: Any, origin: str) -> Iterator[Any]:
    """The h5py.File of a path or file object, read-only; a damaged file is an InputError."""
    try:
        import h5py
    except ImportError:
        raise InputError(f"reading {origin} (an HDF5 file) needs h5py: {NEEDS_H5PY}") from None
    try:
        f = h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise InputError(f"{origin} cannot be opened as HDF5 ({one_line(exc)}): it is truncated or damaged; "
                         f"save or copy it again") from None
    try:
        yield f
    except InputError:
        raise
    # h5py reports damage where it reads it: OSError, RuntimeError, KeyError, ValueError, UnicodeError
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise InputError(f"{origin} is damaged ({one_line(exc) or type(exc).__name__}); save or copy it "
                         f"again") from None
    finally:
        f.close()


def text(value: Any) -> str | None:
    """An HDF5 string attribute as str (h5py returns str, bytes or a 0-d array of either)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def names_attribute(group: Any, name: str) -> list[str]:
    """A list-of-strings attribute, joined from its chunks ``name0``, ``name1``, ... where Keras split it."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks = [group.attrs[f"{name}{i}"] for i in itertools.takewhile(lambda i: f"{name}{i}" in group.attrs,
                                                                        itertools.count())]
    return [text(item) or "" for chunk in chunks for item in np.atleast_1d(chunk)]


def store_root(f: Any) -> Any | None:
    """The group holding the layers of Keras 3's weights store, or None."""
    return next((f[name] for name in STORE_ROOTS if name in f and _is_group(f[name])), None)


def _is_group(node: Any) -> bool:
    return hasattr(node, "keys") and not hasattr(node, "shape")


# -- Keras 3's store -------------------------------------------------------------------------------


def store_weights(f: Any, chain: tuple[LayerSpec, ...], origin: str) -> Weights:
    """Each layer's arrays from Keras 3's weights store, found by the group Keras gives the layer."""
    root = store_root(f)
    if root is None:
        raise InputError(f"{origin} holds no Keras layers (no group 'layers'): it is not a Keras weights file")
    out: Weights = {}
    for spec in chain:
        group = root.get(spec.store)
        if spec.class_name == "Bidirectional":
            for part, sub in (("forward_layer", spec.forward), ("backward_layer", spec.backward)):
                out[sub] = _vars(_child(group, f"{part}/cell/vars"), sub, f"{spec.store}/{part}/cell", origin)
        elif spec.class_name in RECURRENT:
            out[spec] = _vars(_child(group, "cell/vars"), spec, f"{spec.store}/cell", origin)
        else:
            inner = f"{WRAPPERS[spec.wrapper]}/" if spec.wrapper else ""  # TimeDistributed(Dense): layer/vars
            out[spec] = _vars(_child(group, f"{inner}vars"), spec, f"{spec.store}/{inner}".rstrip("/"), origin)
    known = {spec.store for spec in chain}
    extra = [name for name in root if name not in known and _holds_arrays(root[name])]
    if extra:
        raise InputError(f"{origin} holds weights of layers the architecture does not have ({', '.join(extra)}); "
                         f"the weights and the architecture are of different models")
    return out


def _child(group: Any, path: str) -> Any | None:
    if group is None:
        return None
    node = group.get(path)
    return node if node is not None and _is_group(node) else None


def _holds_arrays(group: Any) -> bool:
    found = []
    group.visititems(lambda _name, node: found.append(True) if hasattr(node, "shape") else None)
    return bool(found)


def _vars(group: Any, spec: LayerSpec, path: str, origin: str) -> dict[str, np.ndarray]:
    """The datasets 0, 1, ... of a ``vars`` group under the layer's weight names."""
    names = weight_names(spec)
    held = sorted(group.keys()) if group is not None else []
    expected = [str(i) for i in range(len(names))]
    if sorted(held) != sorted(expected):
        what = f"{len(held)} arrays" if held else "no arrays"
        want = ", ".join(names) or "none"
        raise InputError(f"{origin}: {spec.label} has {what} at {path}/vars; expected {want} (a quantized or "
                         f"LoRA layer, or weights of another model?)")
    return {name: dataset(group[key], f"{origin}, {spec.label}, {name},") for name, key in zip(names, expected)}


def dataset(node: Any, where: str) -> np.ndarray:
    """An HDF5 dataset as float64; bfloat16 (which Keras stores as 2-byte opaque values marked
    ``dtype="bfloat16"``) is widened bit for bit: its 16 bits are the top half of a float32."""
    if not hasattr(node, "shape"):
        raise InputError(f"{where} is a group, not an array")
    memory.check(8 * int(np.prod(node.shape, dtype=np.int64)), f"reading {where}", "the size of the model")
    value = np.asarray(node[()])
    if text(node.attrs.get("dtype")) == "bfloat16":
        if value.dtype.itemsize != 2:
            raise InputError(f"{where} is marked bfloat16 but holds {value.dtype.itemsize}-byte values")
        value = (value.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return _numeric(value, where)


def weights_store(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of a Keras 3 weights store holding each array at its dataset path
    (``layers/lstm/cell/vars/0``): what ``save_weights`` writes, and ``model.load_weights`` reads."""
    try:
        import h5py
    except ImportError:
        raise InputError(f"writing Keras weights (an HDF5 file) needs h5py: {NEEDS_H5PY}") from None
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for path, array in arrays.items():
            f.create_dataset(path, data=np.asarray(array))
    return buffer.getvalue()


# -- the legacy layout -----------------------------------------------------------------------------


def legacy_weights(group: Any, chain: tuple[LayerSpec, ...], origin: str) -> Weights:
    """Each layer's arrays from the legacy layout: the file's layers that hold arrays, in the order of
    its ``layer_names``, matched to the model's layers that have weights, in model.layers order."""
    saved = [name for name in names_attribute(group, "layer_names")
             if name in group and names_attribute(group[name], "weight_names")]
    owners = sorted((spec for spec in chain if _parts(spec)), key=lambda spec: spec.position)
    if len(saved) != len(owners):
        raise InputError(f"{origin} holds weights of {len(saved)} layers ({', '.join(saved) or 'none'}), but the "
                         f"architecture has {len(owners)} layers with weights; they are of different models")
    out: Weights = {}
    for name, spec in zip(saved, owners):
        listed = names_attribute(group[name], "weight_names")
        parts = _parts(spec)
        wanted = [n for sub in parts for n in weight_names(sub)]
        if len(listed) != len(wanted):
            raise InputError(f"{origin}: {spec.label} has {len(listed)} arrays in the file ({name}); expected "
                             f"{len(wanted)}: {', '.join(wanted)}")
        values = iter(zip(listed, wanted))
        for sub in parts:
            out[sub] = {}
            for key, want in itertools.islice(values, len(weight_names(sub))):
                if _basename(key) != want:
                    raise InputError(f"{origin}: {spec.label}'s array {key!r} is in the place of its {want}; "
                                     f"expected {', '.join(wanted)} in that order")
                node = group[name].get(key)
                if node is None:
                    raise InputError(f"{origin}: {spec.label}'s array {key!r} is listed but missing")
                out[sub][want] = dataset(node, f"{origin}, {spec.label}, {want},")
    return out


def _parts(spec: LayerSpec) -> tuple[LayerSpec, ...]:
    """The specs that own arrays: a Bidirectional's forward then backward layer (the order Keras saves
    them in), another layer itself if it has weights."""
    if spec.class_name == "Bidirectional":
        return spec.forward, spec.backward
    return (spec,) if weight_names(spec) else ()


def _basename(key: str) -> str:
    """kernel from 'bidirectional/forward_lstm/lstm_cell/kernel:0' (Keras 2) or '.../kernel' (Keras 3)."""
    return key.rsplit("/", 1)[-1].split(":", 1)[0]


# -- a weights store alone: what its names and shapes settle ---------------------------------------

KINDS = {snake_case(cls): cls for cls in ("InputLayer", "Embedding", "Masking", *RECURRENT, "Bidirectional",
                                          *POOLING, "Dropout", "Dense")}
_NUMBERED = re.compile(r"(?P<kind>.+?)(?:_(?P<k>\d+))?")


def infer_store(f: Any, origin: str) -> tuple[tuple[LayerSpec, ...], Weights, list[str]]:
    """The chain a weights store alone describes, its weights, and what the store cannot say.

    Group names give each layer's class (``lstm_1``: the second LSTM); shapes give the sizes, whether
    there is a bias, and GRU's reset_after (bias (2, 3H) True, (3H,) False); the widths chain the
    recurrent layers of different classes (whose relative order the names do not keep) and tell a
    Bidirectional's concat (2H wide) from sum, ave and mul (H wide). Recent Keras 3 versions list the
    layers without weights too (each ``vars`` group carries the user's layer name); older ones do not.
    Dropout layers are put before the head: where they are does not change the arithmetic.

    Returns
    -------
    chain : the layers in the order found (one order, where several fit: see ``unsettled``), each
        config holding only what the store settles.
    weights : as ``store_weights``.
    unsettled : one phrase per fact the store cannot give ("lstm: activation, recurrent_activation").
    """
    root = store_root(f)
    if root is None:
        raise InputError(f"{origin} holds no Keras layers (no group 'layers'): it is not a Keras weights file")
    found: dict[str, list[tuple[int, LayerSpec]]] = {}
    weights: Weights = {}
    unsettled: list[str] = []
    listed = False  # whether the store lists layers without weights (its vars groups carry names)
    for group_name in root:
        match = _NUMBERED.fullmatch(group_name)
        cls = KINDS.get(match["kind"]) if match else None
        if cls is None:
            raise InputError(f"{origin} holds a layer {group_name!r}, of a class gradscope does not model; it reads "
                             f"{SUPPORTED}. For other models, {OUTPUT_GRADS}")
        vars_group = _child(root[group_name], "vars")
        user_name = text(vars_group.attrs.get("name")) if vars_group is not None else None
        listed = listed or user_name is not None
        spec, own = _inferred_layer(cls, user_name or group_name, group_name, root[group_name], origin)
        weights.update(own)
        found.setdefault(cls, []).append((int(match["k"] or 0), spec))
    by_class = {cls: [spec for _k, spec in sorted(items, key=lambda item: item[0])] for cls, items in found.items()}
    for cls in ("Embedding", "Masking", "Dense"):
        if len(by_class.get(cls, [])) > 1:
            raise InputError(f"{origin} holds {len(by_class[cls])} {cls} layers; gradscope reads {SUPPORTED}. "
                             f"For other models, {OUTPUT_GRADS}")
    pooling = [spec for cls in POOLING for spec in by_class.get(cls, [])]
    if len(pooling) > 1:
        raise InputError(f"{origin} holds {len(pooling)} pooling layers; gradscope reads {SUPPORTED}")
    if not by_class.get("Dense"):
        raise InputError(f"{origin} holds no Dense head; gradscope reads {SUPPORTED}. "
                         f"For models without one, {OUTPUT_GRADS}")
    recurrent, merges, several = _recurrent_order(by_class, weights, origin)
    chain = (by_class.get("InputLayer", []) + by_class.get("Embedding", []) + by_class.get("Masking", [])
             + recurrent + pooling + by_class.get("Dropout", []) + by_class["Dense"])
    open_keys: dict[LayerSpec, list[str]] = {spec: [] for spec in chain}
    if several:
        unsettled.append(f"the order of {', '.join(spec.name for spec in recurrent)}")
    for spec, merge in zip([s for s in recurrent if s.class_name == "Bidirectional"], merges):
        if merge == "concat" and not several:
            spec.config["merge_mode"] = "concat"
        else:
            open_keys[spec].append("merge_mode")
    for spec in recurrent[:-1]:
        _set_return_sequences(spec, True)  # a recurrent layer reads a sequence: the one before returned it
    if pooling:
        _set_return_sequences(recurrent[-1], True)
    elif listed:
        open_keys[recurrent[-1]].append("return_sequences")
    else:
        unsettled.append("which layers without weights (Masking, pooling) the model has: the file lists none")
    for spec in chain:
        keys = open_keys[spec] + _unknown(spec)
        if keys:
            unsettled.append(f"{spec.name}: {', '.join(keys)}")
    return tuple(chain), weights, unsettled


def _inferred_layer(cls: str, name: str, store: str, group: Any, origin: str) -> tuple[LayerSpec, Weights]:
    """A layer of the store, with the config its arrays settle."""
    where = f"{origin}, layer {store}"
    if cls == "Bidirectional":
        parts = []
        for part, direction in (("forward_layer", "forward"), ("backward_layer", "backward")):
            arrays = _arrays(_child(group, f"{part}/cell/vars"), where + f"/{part}")
            sub_cls = _recurrent_class(arrays, where + f"/{part}")
            config, named = _recurrent_config(sub_cls, arrays, where + f"/{part}")
            config["go_backwards"] = direction == "backward"  # the wrapper's own setting
            parts.append((LayerSpec(sub_cls, f"{direction}_{name}", config), named))
        (forward, forward_arrays), (backward, backward_arrays) = parts
        if forward.class_name != backward.class_name or forward.config["units"] != backward.config["units"]:
            raise InputError(f"{where}: its forward and backward layers differ ({forward.class_name} of "
                             f"{forward.config['units']}, {backward.class_name} of {backward.config['units']})")
        spec = LayerSpec("Bidirectional", name, {}, store=store, forward=forward, backward=backward)
        return spec, {forward: forward_arrays, backward: backward_arrays}
    if cls in RECURRENT:
        arrays = _arrays(_child(group, "cell/vars"), where)
        if _recurrent_class(arrays, where) != cls:
            raise InputError(f"{where}: its arrays are not those of a {cls}")
        config, named = _recurrent_config(cls, arrays, where)
        spec = LayerSpec(cls, name, config, store=store)
        return spec, {spec: named}
    arrays = _arrays(_child(group, "vars"), where)
    if cls == "Embedding":
        table = _shaped(arrays, 1, [2], where)[0]
        spec = LayerSpec(cls, name, {"input_dim": table.shape[0], "output_dim": table.shape[1]}, store=store)
        return spec, {spec: {"embeddings": table}}
    if cls == "Dense":
        found = _shaped(arrays, 2, [2, 1], where)
        kernel = found[0]
        if len(found) == 2 and found[1].shape != kernel.shape[1:]:
            raise InputError(f"{where}: its bias {found[1].shape} does not match its kernel {kernel.shape}")
        spec = LayerSpec(cls, name, {"units": kernel.shape[1], "use_bias": len(found) == 2}, store=store)
        return spec, {spec: dict(zip(("kernel", "bias"), found))}
    if arrays:
        raise InputError(f"{where} holds arrays, but a {cls} has none")
    return LayerSpec(cls, name, {}, store=store), {}


def _arrays(group: Any, where: str) -> list[np.ndarray]:
    """A vars group's datasets 0, 1, ... in order."""
    if group is None:
        return []
    keys = list(group.keys())
    if sorted(keys) != sorted(str(i) for i in range(len(keys))):
        raise InputError(f"{where} holds arrays named {', '.join(keys)}; expected 0, 1, ...")
    return [dataset(group[str(i)], f"{where}, array {i},") for i in range(len(keys))]


def _shaped(arrays: list[np.ndarray], most: int, ndims: list[int], where: str) -> list[np.ndarray]:
    if not 1 <= len(arrays) <= most or any(a.ndim != d for a, d in zip(arrays, ndims)):
        shapes = ", ".join(str(a.shape) for a in arrays) or "none"
        raise InputError(f"{where} holds arrays of shapes {shapes}, not those of its class")
    return arrays


def _recurrent_class(arrays: list[np.ndarray], where: str) -> str:
    """SimpleRNN, GRU or LSTM from the recurrent kernel (H, G*H): G = 1, 3 or 4."""
    if len(arrays) not in (2, 3) or arrays[1].ndim != 2 or arrays[1].shape[0] == 0:
        raise InputError(f"{where} holds arrays of shapes {', '.join(str(a.shape) for a in arrays) or 'none'}, "
                         f"not a recurrent layer's kernel, recurrent_kernel and bias")
    units, width = arrays[1].shape
    by_gates = {gates(cls): cls for cls in RECURRENT}
    if width % units or width // units not in by_gates:
        raise InputError(f"{where} has a recurrent kernel of shape {arrays[1].shape}: not (H, H), (H, 3H) or (H, 4H)")
    return by_gates[width // units]


def _recurrent_config(cls: str, arrays: list[np.ndarray], where: str
                      ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """units, use_bias and (GRU) reset_after from the arrays (kernel, recurrent_kernel[, bias]; the
    class checked them), and the arrays under Keras' names."""
    recurrent = arrays[1]
    units = recurrent.shape[0]
    width = gates(cls) * units
    kernel = arrays[0]
    if kernel.ndim != 2 or kernel.shape[1] != width or recurrent.shape != (units, width):
        raise InputError(f"{where}: a {cls}'s kernel is (D, {width}) and its recurrent kernel ({units}, {width}); "
                         f"found {kernel.shape} and {recurrent.shape}")
    config: dict[str, Any] = {"units": units, "use_bias": len(arrays) == 3}
    found = dict(zip(("kernel", "recurrent_kernel", "bias"), arrays))
    if len(arrays) == 3:
        bias = arrays[2]
        if cls == "GRU" and bias.shape in ((2, width), (width,)):
            config["reset_after"] = bias.ndim == 2
        elif bias.shape != (width,):
            raise InputError(f"{where}: a {cls}'s bias is ({width},); found {bias.shape}")
    return config, found


def _recurrent_order(by_class: dict[str, list[LayerSpec]], weights: Weights, origin: str
                     ) -> tuple[list[LayerSpec], tuple[str, ...], bool]:
    """The recurrent layers in an order whose widths chain, from the embedding to the head.

    Within a class, Keras' numbering gives the order; across classes only widths can: each layer's
    kernel has as many rows as the layer before outputs (H, or 2H for a concat Bidirectional).
    Returns the order, the merge mode each Bidirectional's widths call for in it ("concat" or "other"),
    and whether other orders fit too.
    """
    classes = [cls for cls in (*RECURRENT, "Bidirectional") if by_class.get(cls)]
    queues = [by_class[cls] for cls in classes]
    if not queues:
        raise InputError(f"{origin} holds no recurrent layer (SimpleRNN, GRU, LSTM); gradscope reads {SUPPORTED}")
    embedding = by_class.get("Embedding")
    start = embedding[0].config["output_dim"] if embedding else None
    head = by_class["Dense"][0]

    def rows(spec: LayerSpec) -> int:  # the width a layer reads: its kernel's rows
        return weights[spec.forward or spec]["kernel"].shape[0]

    fits: list[tuple[list[LayerSpec], tuple[str, ...]]] = []

    def extend(taken: tuple[int, ...], order: list[LayerSpec], merges: tuple[str, ...], width: int | None) -> None:
        if len(fits) > 1:
            return  # two fits already: the order is not settled
        if all(t == len(q) for t, q in zip(taken, queues)):
            if width == rows(head):
                fits.append((order, merges))
            return
        for i, queue in enumerate(queues):
            if taken[i] == len(queue):
                continue
            spec = queue[taken[i]]
            if width is not None and rows(spec) != width:
                continue
            nxt = tuple(t + (j == i) for j, t in enumerate(taken))
            units = (spec.forward or spec).config["units"]
            if spec.class_name == "Bidirectional":
                extend(nxt, order + [spec], merges + ("concat",), 2 * units)
                extend(nxt, order + [spec], merges + ("other",), units)
            else:
                extend(nxt, order + [spec], merges, units)

    extend(tuple(0 for _ in queues), [], (), start)
    if not fits:
        raise InputError(f"{origin}: the layers' shapes do not chain (each kernel's rows must be the width of "
                         f"the layer before); the file is damaged or not of one model")
    order, merges = fits[0]
    return order, merges, len(fits) > 1 and any(f[0] != order for f in fits)


def _set_return_sequences(spec: LayerSpec, value: bool) -> None:
    for sub in (spec.forward, spec.backward) if spec.forward else (spec,):
        sub.config["return_sequences"] = value


def _unknown(spec: LayerSpec) -> list[str]:
    """The config keys a store cannot give for an inferred layer."""
    inner = spec.forward or spec
    keys = {
        "Embedding": ["mask_zero"],
        "Masking": ["mask_value"],
        "Dense": ["activation"],
        "SimpleRNN": ["activation"],
        "LSTM": ["activation", "recurrent_activation"],
        "GRU": ["activation", "recurrent_activation"],
    }.get(inner.class_name, [])
    if inner.class_name == "GRU" and "reset_after" not in inner.config:
        keys.append("reset_after")  # no bias, whose shape would have told
    if inner.class_name in RECURRENT and spec.forward is None:
        keys.append("go_backwards")  # a Bidirectional's are its own: forward, then backward
    return keys
