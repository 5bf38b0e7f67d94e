"""Reading Keras recurrent models into a plain description: the chain of layers, configs and weights.

A file's format is recognised by its content, not its suffix:

    .keras       model.save("m.keras") (Keras 3, and Keras 2.13+): a zip of config.json (the
                 architecture), metadata.json (keras_version) and model.weights.h5 (Keras 3's weights store)
    .h5          model.save("m.h5") (Keras 2, or Keras 3's legacy format): HDF5 with root attributes
                 model_config (the architecture as JSON), keras_version and backend, and the weights in the
                 legacy layout under model_weights
    .weights.h5  model.save_weights("m.weights.h5"): the weights store alone, without the architecture;
                 Keras 2's save_weights("m.h5") writes the legacy layout alone

Only json, zipfile and h5py read them: keras and tensorflow are never imported. The architecture is
read by ``keras_config``, the weights by ``keras_h5``; this module recognises the file, puts the two
together and checks every array's shape against the config.

A weights-only file does not record the layers' activations, whether the embedding masks, the head's
activation and other settings: reading one needs the architecture too (``architecture=``: the JSON
of ``model.to_json()``). ``infer_keras_weights`` reports what a weights store alone settles (classes,
sizes, biases, GRU's reset_after, concat merges, the order of the layers where their widths fix it)
and names what it leaves open; it takes no default for anything that changes the arithmetic (Dropout's
rate is the one thing it leaves out: Dropout is the identity at inference).

What a KerasModel means, for the model layer that turns it into a network (REFERENCE 4a):

- Masks. Embedding(mask_zero=True) masks token 0; Masking(v) masks the steps whose features all
  equal v, and replaces an embedding's mask. A masked step carries the state (h, c) and outputs the
  previous output (0 before the first real step), or 0 where zero_output_for_mask is True (a
  Bidirectional's layers that return sequences). The mask passes on through recurrent layers that
  return sequences, Dropout and a per-step Dense; it ends at a layer returning its last output.
- Bidirectional: the backward layer reads the sequence from its end; with return_sequences its
  outputs are flipped back so that step t of both is input t. merge_mode concat [f, b], sum f + b,
  ave (f + b) / 2, mul f * b; without return_sequences it merges the forward state after the last
  step with the backward state after reading step 0.
- Pooling reads the last recurrent layer's sequence: GlobalAveragePooling1D averages the real
  steps only; GlobalMaxPooling1D takes the maximum over every step, masked ones included.
- The Dense head reads the pooled vector, or the last recurrent layer's last output; where that
  layer returns sequences and no pooling follows, it is applied at every step.
- hard_sigmoid's formula is keras_version's; Keras' weights layout is x @ kernel (model/keras.py
  puts it in the network's).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .. import memory
from ..errors import InputError
from ..errors import one_line
from .files import ZIP_MAGIC, input_head, is_keras_archive, is_keras_file, regular_file  # noqa: F401 (read_keras' own)
from .keras_config import RECURRENT, LayerSpec, gates, read_chain
from .keras_h5 import (HDF5_MAGIC, Weights, infer_store, legacy_weights, names_attribute, open_h5, store_root,
                       store_weights, text, weight_names)

READS = ("gradscope reads Keras models from .keras and .h5 files (model.save) and from .weights.h5 files "
         "(model.save_weights) with the architecture (model.to_json())")
GIVE_ARCHITECTURE = ('give the .keras file (model.save("model.keras")), or the architecture as well: '
                     "architecture= the JSON of model.to_json()")


@dataclass(frozen=True)
class KerasLayer:
    """One layer of a Keras model, as the file describes it.

    class_name : Keras' class: InputLayer, Embedding, Masking, SimpleRNN, GRU, LSTM, Bidirectional,
        GlobalAveragePooling1D, GlobalMaxPooling1D, Dropout or Dense.
    name : the user's layer name (from the config; a weights store's own record of it, or its group).
    config : the keys that decide the arithmetic, read-only. InputLayer: batch_shape, dtype.
        Embedding: input_dim, output_dim, mask_zero. Masking: mask_value. SimpleRNN: units, activation,
        use_bias, return_sequences, go_backwards, zero_output_for_mask; LSTM adds recurrent_activation
        and unit_forget_bias, GRU recurrent_activation and reset_after. Bidirectional: merge_mode. Dropout: rate. Dense:
        units, activation ("sigmoid", "softmax" or "linear"), use_bias. Pooling layers: none.
    weights : read-only float64 arrays in Keras' shapes under Keras' names (x @ kernel, gates in
        consecutive H-wide slices of the last axis):
        Embedding  embeddings (V, D)
        SimpleRNN  kernel (D, H), recurrent_kernel (H, H), bias (H,)
        LSTM       kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,); gates (i, f, c, o)
        GRU        kernel (D, 3H), recurrent_kernel (H, 3H), bias (2, 3H) (rows: input, recurrent) with
                   reset_after, else (3H,); gates (z, r, h)
        Dense      kernel (F, O), bias (O,)
        (no bias where use_bias is False); none for the other classes, a Bidirectional's included.
    forward, backward : a Bidirectional's two recurrent layers, each with its own config and weights
        (backward has go_backwards=True); None for other layers.
    store : the layer's group below ``layers/`` in Keras 3's weights store ("lstm_1"), where
        ``save_weights`` puts its arrays; None for a Bidirectional's own layers.
    wrapper : "TimeDistributed" for the Dense of a TimeDistributed(Dense) (the layer named by the
        wrapper, its arrays under the wrapper's ``layer/``), else None.
    """

    class_name: str
    name: str
    config: Mapping[str, Any]
    weights: Mapping[str, np.ndarray]
    forward: KerasLayer | None = None
    backward: KerasLayer | None = None
    store: str | None = None
    wrapper: str | None = None


@dataclass(frozen=True)
class KerasModel:
    """A Keras recurrent model read from a file.

    source : the file. format : "keras" (a .keras archive), "h5" (model.save's HDF5), "weights.h5"
        (a weights store with the architecture given) or "legacy weights.h5" (Keras 2's save_weights
        HDF5 with the architecture given).
    keras_version : the version that wrote the file ("3.15.1", "2.15.0"), or None where it does not say;
        it decides hard_sigmoid's formula (Keras 2: clip(0.2x + 0.5), Keras 3: clip(x/6 + 0.5)).
    backend : "tensorflow", "torch", "jax", ... where the file says (legacy .h5 files), else None.
    layers : the chain, input first: [InputLayer] [Embedding] [Masking] recurrent layers (or
        Bidirectionals) [a pooling layer] Dense, with any Dropout where the model has it.
    """

    source: Path
    format: str
    keras_version: str | None
    backend: str | None
    layers: tuple[KerasLayer, ...]


@dataclass(frozen=True)
class InferredKeras:
    """What a weights store alone says about a model (``infer_keras_weights``).

    layers : the chain in the order found, each config holding only what the arrays settle.
    unsettled : one phrase per setting the file does not record ("lstm: activation, go_backwards").
    """

    source: Path
    layers: tuple[KerasLayer, ...]
    unsettled: tuple[str, ...]


def read_keras(path: str | os.PathLike, architecture: Any = None) -> KerasModel:
    """A Keras model file's chain of layers, configs and float64 weights.

    Parameters
    ----------
    path : str or os.PathLike
        A .keras, .h5 or .weights.h5 file (recognised by content).
    architecture : dict, str or os.PathLike, optional
        For a weights-only file: the model's config, as ``json.loads(model.to_json())``, that JSON
        text, or a .json file holding it (``config.json`` from a .keras archive does too).

    Raises
    ------
    InputError
        A file that is not a Keras model or is damaged; a layer or option gradscope does not model
        (named by class and layer name); a weights-only file without its architecture (naming what
        the weights cannot say); weights whose shapes disagree with the architecture.
    """
    path = Path(os.fsdecode(path))
    origin = f"Keras file {path}"
    kind = _sniff(path, origin)
    given = None if architecture is None else _architecture(architecture)
    if kind == "archive":
        _refuse_second_architecture(given, origin)
        return _read_archive(path, origin)
    with open_h5(path, origin) as f:
        if "model_config" in f.attrs:
            _refuse_second_architecture(given, origin)
            return _read_legacy_model(f, path, origin)
        if store_root(f) is not None:
            if given is None:
                raise InputError(_weights_only(_infer(f, path, origin), origin))
            chain = read_chain(given, f"the architecture given for {path}")
            return _model(path, "weights.h5", given, chain, store_weights(f, chain, origin), origin)
        if names_attribute(f, "layer_names"):
            if given is None:
                raise InputError(f"{origin} holds weights only (Keras 2's save_weights), without the layers' "
                                 f"settings; {GIVE_ARCHITECTURE}")
            version = text(f.attrs.get("keras_version"))
            _refuse_keras_1(version, origin)
            chain = read_chain(given, f"the architecture given for {path}")
            facts = {"keras_version": version, "backend": text(f.attrs.get("backend"))}
            return _model(path, "legacy weights.h5", facts, chain, legacy_weights(f, chain, origin), origin)
    raise InputError(f"{origin} is an HDF5 file, but not one Keras wrote (no model_config, layers or "
                     f"layer_names); {READS}")


def infer_keras_weights(path: str | os.PathLike) -> InferredKeras:
    """What a weights store (``save_weights("m.weights.h5")``) alone settles about its model.

    Raises
    ------
    InputError
        A file that is not a Keras weights store, layers gradscope does not model, arrays whose
        shapes fit no chain.
    """
    path = Path(os.fsdecode(path))
    origin = f"Keras file {path}"
    if _sniff(path, origin) != "hdf5":
        raise InputError(f"{origin} is a .keras archive, not a weights store: read it with read_keras")
    with open_h5(path, origin) as f:
        if store_root(f) is None:
            raise InputError(f"{origin} is not a weights store written by save_weights (no group 'layers')")
        return _infer(f, path, origin)


# -- recognising the file --------------------------------------------------------------------------


def _sniff(path: Path, origin: str) -> str:
    """'archive' (.keras) or 'hdf5', from the file's first bytes."""
    head, _size = input_head(path, "Keras", READS, 8)
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(ZIP_MAGIC):
        return "archive"
    raise InputError(f"{origin} is neither a .keras archive nor an HDF5 file; {READS}")


def _architecture(given: Any) -> dict:
    """The model config from a dict, JSON text or a JSON file."""
    if isinstance(given, Mapping):
        return dict(given)
    if isinstance(given, str) and given.lstrip().startswith("{"):
        where, raw = "the architecture given", given
    elif isinstance(given, (str, os.PathLike)):
        where = f"architecture file {os.fsdecode(given)}"
        regular_file(given, "architecture")
        try:
            raw = Path(given).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {where}: {one_line(exc)}") from None
    else:
        raise InputError(f"architecture must be a model config (dict), its JSON text or a .json file, "
                         f"not {type(given).__name__}")
    try:
        loaded = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{where} is not JSON ({one_line(exc)}); give the text of model.to_json()") from None
    if not isinstance(loaded, dict):
        raise InputError(f"{where} is JSON but not a model config; give the text of model.to_json()")
    return loaded


def _refuse_second_architecture(given: dict | None, origin: str) -> None:
    if given is not None:
        raise InputError(f"{origin} holds its own architecture; architecture= is for weights-only files")


def _refuse_keras_1(version: str | None, origin: str) -> None:
    if version is None or version.startswith("1"):
        raise InputError(f"{origin} was written by Keras 1 (it records no Keras 2 or 3 version), whose layouts "
                         f"gradscope does not read; load it in Keras 2 and save it again")


# -- the three layouts -----------------------------------------------------------------------------


def _read_archive(path: Path, origin: str) -> KerasModel:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if not is_keras_archive(names):
                raise InputError(f"{origin} is a zip archive, but not a .keras file (it has no config.json and "
                                 f"model.weights.h5); {READS}")
            if "model.weights.h5" not in names:
                raise InputError(f"{origin} keeps its weights as {next(n for n in names if n.startswith('model.weights'))}, "
                                 f"not model.weights.h5; save it again with model.save(\"model.keras\")")
            config = json.loads(zf.read("config.json"))
            metadata = json.loads(zf.read("metadata.json")) if "metadata.json" in names else {}
            size = zf.getinfo("model.weights.h5").file_size
            memory.check(size, f"reading {origin}", "the size of the model")
            weights_file = io.BytesIO(zf.read("model.weights.h5"))
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError) as exc:
        raise InputError(f"{origin} is a damaged .keras archive ({one_line(exc) or type(exc).__name__}); "
                         f"save or copy it again") from None
    chain = read_chain(config, origin)
    with open_h5(weights_file, f"{origin}, model.weights.h5,") as f:
        weights = store_weights(f, chain, origin)
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    return _model(path, "keras", {"keras_version": version}, chain, weights, origin)


def _read_legacy_model(f: Any, path: Path, origin: str) -> KerasModel:
    raw = text(f.attrs["model_config"])
    try:
        config = json.loads(raw or "")
    except ValueError as exc:
        raise InputError(f"{origin} has a damaged model_config ({one_line(exc)}); save it again") from None
    group = f.get("model_weights")
    if group is None or not hasattr(group, "attrs"):
        raise InputError(f"{origin} has an architecture but no model_weights group; save it again with model.save")
    version = text(f.attrs.get("keras_version")) or text(group.attrs.get("keras_version"))
    _refuse_keras_1(version, origin)
    chain = read_chain(config, origin)
    backend = text(f.attrs.get("backend")) or text(group.attrs.get("backend"))
    return _model(path, "h5", {"keras_version": version, "backend": backend}, chain,
                  legacy_weights(group, chain, origin), origin)


def _infer(f: Any, path: Path, origin: str) -> InferredKeras:
    chain, weights, unsettled = infer_store(f, origin)
    return InferredKeras(path, tuple(_layer(spec, weights) for spec in chain), tuple(unsettled))


def _weights_only(inferred: InferredKeras, origin: str) -> str:
    return (f"{origin} holds weights only (save_weights), which do not record {'; '.join(inferred.unsettled)}; "
            f"{GIVE_ARCHITECTURE}")


# -- putting the description together --------------------------------------------------------------


def _model(path: Path, fmt: str, facts: dict, chain: tuple[LayerSpec, ...], weights: Weights,
           origin: str) -> KerasModel:
    _check_shapes(chain, weights, origin)
    version = facts.get("keras_version")
    backend = facts.get("backend")
    return KerasModel(path, fmt, version if isinstance(version, str) else None,
                      backend if isinstance(backend, str) else None,
                      tuple(_layer(spec, weights) for spec in chain))


def _layer(spec: LayerSpec, weights: Weights) -> KerasLayer:
    arrays = weights.get(spec, {})
    for array in arrays.values():
        array.flags.writeable = False
    return KerasLayer(
        spec.class_name, spec.name, MappingProxyType(dict(spec.config)), MappingProxyType(dict(arrays)),
        _layer(spec.forward, weights) if spec.forward else None,
        _layer(spec.backward, weights) if spec.backward else None,
        spec.store, spec.wrapper,
    )


def _check_shapes(chain: tuple[LayerSpec, ...], weights: Weights, origin: str) -> None:
    """Every array in the shape its config and the width of the layer before call for."""
    width = None  # what the next layer reads: unknown until a layer fixes it
    first = chain[0]
    if first.class_name == "InputLayer" and not any(s.class_name == "Embedding" for s in chain):
        shape = first.config.get("batch_shape")
        width = shape[-1] if shape and isinstance(shape[-1], int) else None
    for spec in chain:
        if spec.class_name == "Embedding":
            _expect(spec, weights[spec], {"embeddings": (spec.config["input_dim"], spec.config["output_dim"])}, origin)
            width = spec.config["output_dim"]
        elif spec.class_name in RECURRENT:
            width = _check_cell(spec, weights[spec], width, origin)
        elif spec.class_name == "Bidirectional":
            forward = _check_cell(spec.forward, weights[spec.forward], width, origin)
            backward = _check_cell(spec.backward, weights[spec.backward], width, origin)
            if forward != backward:
                raise InputError(f"{origin}: {spec.label}'s forward and backward layers have {forward} and "
                                 f"{backward} units; Keras requires the same")
            width = forward + backward if spec.config["merge_mode"] == "concat" else forward
        elif spec.class_name == "Dense":
            units = spec.config["units"]
            rows = width if width is not None else weights[spec]["kernel"].shape[0]
            _expect(spec, weights[spec], {"kernel": (rows, units), "bias": (units,)}, origin)


def _check_cell(spec: LayerSpec, arrays: dict[str, np.ndarray], width: int | None, origin: str) -> int:
    """A recurrent layer's arrays against its config and input width; returns its units."""
    units = spec.config["units"]
    size = gates(spec.class_name) * units
    rows = width if width is not None else arrays["kernel"].shape[0]
    bias = (2, size) if spec.class_name == "GRU" and spec.config["reset_after"] else (size,)
    _expect(spec, arrays, {"kernel": (rows, size), "recurrent_kernel": (units, size), "bias": bias}, origin)
    return units


def _expect(spec: LayerSpec, arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
            origin: str) -> None:
    for name in weight_names(spec):
        if arrays[name].shape != shapes[name]:
            raise InputError(f"{origin}: {spec.label}'s {name} has shape {arrays[name].shape}; its config and the "
                             f"layer before it call for {shapes[name]} (weights of another model?)")
