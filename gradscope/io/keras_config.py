"""A Keras model's architecture, read from its JSON config: the chain of layers gradscope models.

The config is what ``model.to_json()`` writes, the ``config.json`` inside a ``.keras`` file, and the
``model_config`` attribute of a legacy ``.h5`` file, in Keras 3's format (layers with ``module`` and
``registered_name``; functional nodes ``{"args": [...], "kwargs": {...}}``) or Keras 2's (functional
nodes ``[[name, node, tensor, kwargs], ...]``). The chain gradscope reads is

    InputLayer -> [Embedding] -> [Masking] -> SimpleRNN | GRU | LSTM (or Bidirectional of one), 1 or more
    -> [GlobalAveragePooling1D | GlobalMaxPooling1D] -> Dense (sigmoid, softmax or linear)

(TimeDistributed(Dense) read as that Dense, which Keras applies at every step alike) with Dropout (the identity at inference) anywhere after the embedding. A functional model must be
this chain too: one input, one output, each layer called once on the previous layer's output. Keras 3
records the mask that Masking and Embedding(mask_zero=True) compute as small operation nodes
(``NotEqual``, ``Any``) passed as ``mask=`` to the layers after them; those are recognised as the
mask Keras itself would pass, and any other mask, extra input or branch is refused.

Each layer's config keeps the keys that decide its arithmetic, as the file gives them (activation
names are kept, not judged), and the LSTM's unit_forget_bias, which decides its initialisation;
keys that Keras omits when they hold its default are filled with it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

RECURRENT = ("SimpleRNN", "GRU", "LSTM")
POOLING = ("GlobalAveragePooling1D", "GlobalMaxPooling1D")
HEAD_ACTIVATIONS = ("sigmoid", "softmax", "linear")
SUPPORTED = (
    "Input -> [Embedding] -> [Masking] -> SimpleRNN/GRU/LSTM layers, each possibly Bidirectional -> "
    "[GlobalAveragePooling1D/GlobalMaxPooling1D] -> Dense (sigmoid, softmax or linear; or TimeDistributed of it), "
    "with Dropout anywhere after the embedding"
)
OUTPUT_GRADS = "give the gradient at the recurrent layers' output with --output-grads (dL/d(output))"

# The place of each class in the chain; the recurrent layers may repeat, Dropout goes anywhere after
# the embedding (it has no place of its own).
RANK = {"InputLayer": 0, "Embedding": 1, "Masking": 2, **dict.fromkeys(RECURRENT + ("Bidirectional",), 3),
        **dict.fromkeys(POOLING, 4), "Dense": 5, "TimeDistributed": 5}
# TimeDistributed(Dense) is the Dense itself: Keras' Dense applies its kernel at every step of a
# sequence (and passes the mask on) just as the wrapper does; its arrays sit one group deeper
WRAPPERS = {"TimeDistributed": "layer"}
MASK_OPS = ("NotEqual", "Any")  # how Keras 3 records Masking's and Embedding's mask in a functional graph
MODEL_CLASSES = ("Sequential", "Functional", "Model")  # "Model": functional models of Keras 2.0 to 2.3

_GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}


@dataclass(frozen=True, eq=False)
class LayerSpec:
    """One layer of the chain as the config describes it.

    class_name : Keras' class ("LSTM"); name : the user's layer name ("lstm_1", "encoder").
    config : the keys that decide the layer's arithmetic (units, activation, return_sequences, ...).
    position : its index in the config's layers (model.layers' order, by which Keras' legacy .h5 files
        match weights to layers); -1 for a Bidirectional's own layers.
    wrapper : "TimeDistributed" for a Dense inside one (named by the wrapper, its arrays in the
        wrapper's group under ``layer/``), else None.
    store : its group below ``layers/`` in Keras 3's weights file ("lstm_1": the snake-case class name
        numbered in model.layers order, not the user's name); None for a Bidirectional's own layers.
    forward, backward : a Bidirectional's two recurrent layers; None otherwise.

    Compared and hashed by identity: the readers key each layer's weights by its spec.
    """

    class_name: str
    name: str
    config: dict[str, Any]
    position: int = -1
    store: str | None = None
    forward: LayerSpec | None = None
    backward: LayerSpec | None = None
    wrapper: str | None = None

    @property
    def label(self) -> str:
        """How messages name the layer: ``LSTM layer 'encoder'``, ``TimeDistributed(Dense) layer 'td'``."""
        kind = self.class_name if self.wrapper is None else f"{self.wrapper}({self.class_name})"
        return f"{kind} layer {self.name!r}"


def gates(class_name: str) -> int:
    """How many H-wide slices a recurrent layer's kernel holds: 1 SimpleRNN, 3 GRU, 4 LSTM."""
    return _GATES[class_name]


def snake_case(class_name: str) -> str:
    """Keras' own snake case of a class name, as its weights files name groups: SimpleRNN -> simple_rnn,
    GlobalAveragePooling1D -> global_average_pooling1d (keras.src.utils.naming.to_snake_case)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def read_chain(model_config: Any, origin: str) -> tuple[LayerSpec, ...]:
    """The chain of layers a model config describes, input first.

    Parameters
    ----------
    model_config : dict
        ``{"class_name": "Sequential" | "Functional", "config": {"layers": [...], ...}}``.
    origin : str
        What the config came from, for messages: "Keras file m.keras".

    Raises
    ------
    InputError
        A config that is not a model's, a layer gradscope does not model (named by class and name), a
        graph that is not a straight chain, or options that change the arithmetic gradscope models
        (stateful, return_state, a Dense head of another activation, ...).
    """
    if not isinstance(model_config, dict) or not isinstance(model_config.get("config"), (dict, list)):
        raise InputError(f"{origin} has no model architecture (a config with class_name and config)")
    kind = model_config.get("class_name")
    config = model_config["config"]
    entries = config if isinstance(config, list) else config.get("layers")  # a list: Keras 2.0/2.1 Sequential
    if kind not in MODEL_CLASSES or not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"{origin} describes a {kind or 'model'} that is not a Sequential or functional Keras "
                         f"model; gradscope reads {SUPPORTED}")
    if kind == "Sequential":
        for entry in entries:
            _refuse_unknown(entry, origin)
        ordered = entries
    else:
        ordered = _functional_chain(config, entries, origin)
    stores = _store_names(entries)
    positions = {id(entry): i for i, entry in enumerate(entries)}
    chain = tuple(_spec(entry, positions[id(entry)], stores[id(entry)], origin) for entry in ordered)
    _check_order(chain, origin)
    return chain


# -- one layer -------------------------------------------------------------------------------------


def _name(entry: dict) -> str:
    config = entry.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    return str(name if name is not None else entry.get("name", "?"))


def _label(entry: dict) -> str:
    """How messages name a layer of the config: ``LSTM layer 'encoder'``."""
    return f"{entry.get('class_name')} layer {_name(entry)!r}"


def _refuse_unknown(entry: dict, origin: str) -> None:
    """InputError for a layer of a class gradscope does not model, or a custom class of a known name."""
    cls = entry.get("class_name")
    module = entry.get("module")
    registered = entry.get("registered_name")
    custom = (module is not None and not str(module).startswith("keras.")) or registered not in (None, cls)
    if (cls in RANK or cls == "Dropout") and not custom:
        return
    if custom:
        what = f"is a custom layer ({registered or module}), which gradscope does not model"
    elif cls in MODEL_CLASSES:
        what = "is a model nested inside the model, which gradscope does not model"
    else:
        what = "is of a class gradscope does not model"
    raise InputError(f"{origin}: {_label(entry)} {what}; it reads {SUPPORTED}. For other models, {OUTPUT_GRADS}")


def _spec(entry: dict, position: int, store: str, origin: str) -> LayerSpec:
    cls = entry["class_name"]
    name = _name(entry)
    config = entry.get("config")
    if not isinstance(config, dict):
        raise InputError(f"{origin}: {cls} layer {name!r} has no config")
    where = f"{origin}: {cls} layer {name!r}"
    if cls == "Bidirectional":
        return _bidirectional(config, name, position, store, where, origin)
    if cls in WRAPPERS:
        inner = config.get("layer")
        if not isinstance(inner, dict) or inner.get("class_name") != "Dense" or not isinstance(inner.get("config"), dict):
            what = inner.get("class_name") if isinstance(inner, dict) else "nothing"
            raise InputError(f"{where} wraps {what}; gradscope reads {cls}(Dense) as the head. For other models, "
                             f"{OUTPUT_GRADS}")
        return LayerSpec("Dense", name, _settings("Dense", inner["config"], f"{where}, its Dense,"), position, store,
                         wrapper=cls)
    return LayerSpec(cls, name, _settings(cls, config, where), position, store)


def _bidirectional(config: dict, name: str, position: int, store: str, where: str, origin: str) -> LayerSpec:
    merge_mode = config.get("merge_mode", "concat")
    if merge_mode is None:
        raise InputError(f"{where} returns its two directions as two tensors (merge_mode=None), not one; "
                         f"gradscope reads merge_mode concat, sum, ave or mul. Or {OUTPUT_GRADS}")
    if merge_mode not in ("concat", "sum", "ave", "mul"):
        raise InputError(f"{where} has merge_mode {merge_mode!r}; Keras' merge modes are concat, sum, ave and mul")
    inner = config.get("layer")
    if not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
        raise InputError(f"{where} does not say which recurrent layer it wraps")
    _refuse_unknown(inner, origin)
    if inner["class_name"] not in RECURRENT:
        raise InputError(f"{where} wraps a {inner['class_name']} layer; gradscope reads Bidirectional "
                         f"SimpleRNN, GRU or LSTM layers. For other models, {OUTPUT_GRADS}")
    forward = _sublayer(inner, "forward", where)
    given = config.get("backward_layer")
    if isinstance(given, dict) and isinstance(given.get("config"), dict):
        _refuse_unknown(given, origin)
        if given["class_name"] not in RECURRENT:
            raise InputError(f"{where} has a {given['class_name']} backward layer; gradscope reads SimpleRNN, "
                             f"GRU or LSTM layers. For other models, {OUTPUT_GRADS}")
        backward = _sublayer(given, "backward", where)
    else:
        # Keras 2 writes backward_layer only when the user gave one: it is then the forward layer's copy
        # that reads the sequence the other way (keras.layers.Bidirectional).
        mirrored = dict(inner["config"], go_backwards=not inner["config"].get("go_backwards", False))
        backward = _sublayer(dict(inner, config=mirrored), "backward", where)
    if forward.config["return_sequences"] != backward.config["return_sequences"]:
        raise InputError(f"{where}: its forward and backward layers disagree on return_sequences")
    return LayerSpec("Bidirectional", name, {"merge_mode": merge_mode}, position, store, forward, backward)


def _sublayer(entry: dict, direction: str, where: str) -> LayerSpec:
    """A Bidirectional's forward or backward layer; Keras names them forward_<name>, backward_<name>."""
    name = _name(entry)
    prefix = f"{direction}_"
    name = name if name.startswith(prefix) else prefix + name
    config = _settings(entry["class_name"], entry["config"], f"{where}, {direction} layer {name!r},")
    # the wrapper sets it: masked steps output zeros in both directions when it returns sequences
    config["zero_output_for_mask"] = bool(entry["config"].get("zero_output_for_mask", config["return_sequences"]))
    return LayerSpec(entry["class_name"], name, config)


def _settings(cls: str, config: dict, where: str) -> dict[str, Any]:
    """The keys of a layer's config that decide its arithmetic, checked for what gradscope models."""
    if cls == "InputLayer":
        shape = config.get("batch_shape", config.get("batch_input_shape"))  # Keras 3, Keras 2
        return {"batch_shape": tuple(shape) if isinstance(shape, (list, tuple)) else None,
                "dtype": config.get("dtype") if isinstance(config.get("dtype"), str) else None}
    if cls == "Embedding":
        return {"input_dim": _count(config, "input_dim", where), "output_dim": _count(config, "output_dim", where),
                "mask_zero": bool(config.get("mask_zero", False))}
    if cls == "Masking":
        value = config.get("mask_value", 0.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise InputError(f"{where} has mask_value {value!r}; expected a number")
        return {"mask_value": float(value)}
    if cls in RECURRENT:
        return _recurrent(cls, config, where)
    if cls in POOLING:
        if config.get("data_format", "channels_last") != "channels_last":
            raise InputError(f"{where} pools over the features (data_format={config['data_format']!r}), not "
                             f"over time; gradscope reads channels_last pooling. Or {OUTPUT_GRADS}")
        if config.get("keepdims", False):
            raise InputError(f"{where} keeps the time axis (keepdims=True); gradscope reads pooling that "
                             f"returns one vector per sequence. Or {OUTPUT_GRADS}")
        return {}
    if cls == "Dropout":
        return {"rate": config.get("rate")}  # as given: Dropout is the identity at inference
    # Dense
    activation = config.get("activation") or "linear"
    if activation not in HEAD_ACTIVATIONS:
        raise InputError(f"{where} has activation {str(activation)[:60]!r}; gradscope models a Dense head with sigmoid, "
                         f"softmax or linear activation. For other heads, {OUTPUT_GRADS}")
    return {"units": _count(config, "units", where), "activation": activation,
            "use_bias": bool(config.get("use_bias", True))}


def _recurrent(cls: str, config: dict, where: str) -> dict[str, Any]:
    refused = {
        "stateful": "carries its state over from the previous batch (stateful=True)",
        "return_state": "returns its state besides its output (return_state=True)",
        "time_major": "reads time-major input (time_major=True)",
    }
    for key, what in refused.items():
        if config.get(key):
            raise InputError(f"{where} {what}, which gradscope does not model. Or {OUTPUT_GRADS}")
    out = {"units": _count(config, "units", where), "activation": _activation(config, "activation", where)}
    if cls != "SimpleRNN":
        out["recurrent_activation"] = _activation(config, "recurrent_activation", where)
    out["use_bias"] = bool(config.get("use_bias", True))
    if cls == "LSTM":  # how Keras initialises the forget gate's bias (model/keras.py's keras_init)
        out["unit_forget_bias"] = bool(config.get("unit_forget_bias", True))
    if cls == "GRU":
        if "reset_after" not in config:  # Keras 2.0/2.1 configs: the option did not exist yet
            raise InputError(f"{where} does not say reset_after; re-save the model with Keras 2.3 or later")
        out["reset_after"] = bool(config["reset_after"])
    out["return_sequences"] = bool(config.get("return_sequences", False))
    out["go_backwards"] = bool(config.get("go_backwards", False))
    out["zero_output_for_mask"] = bool(config.get("zero_output_for_mask", False))
    return out


def _activation(config: dict, key: str, where: str) -> str:
    """The activation's name, as given ("tanh", "hard_sigmoid", "relu"): the model layer judges it."""
    value = config.get(key)
    if not isinstance(value, str):
        shown = "missing" if value is None else f"{value!r}"[:80]
        raise InputError(f"{where}: its {key} is {shown}, not the name of one of Keras' activations")
    return value


def _count(config: dict, key: str, where: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{where} has {key} {value!r}; expected a positive whole number")
    return value


def _store_names(entries: list[dict]) -> dict[int, str]:
    """Each layer's group in Keras 3's weights file: its class in snake case, numbered _1, _2, ... after
    the first of its class, in model.layers order (the config's; operation nodes are not layers)."""
    used: dict[str, int] = {}
    names = {}
    for entry in entries:
        if entry.get("class_name") in MASK_OPS:
            continue
        base = snake_case(str(entry.get("class_name")))
        count = used.get(base, -1) + 1
        used[base] = count
        names[id(entry)] = base if count == 0 else f"{base}_{count}"
    return names


# -- the chain's order -----------------------------------------------------------------------------


def _check_order(chain: tuple[LayerSpec, ...], origin: str) -> None:
    """The classes in the chain's order, each recurrent layer but the last returning its sequence."""
    ranked = [spec for spec in chain if spec.class_name != "Dropout"]
    for before, after in zip(ranked, ranked[1:]):
        if RANK[after.class_name] < RANK[before.class_name] or (
                RANK[after.class_name] == RANK[before.class_name] and RANK[after.class_name] != 3):
            raise InputError(f"{origin}: {after.label} comes after {before.label}; gradscope reads {SUPPORTED}. "
                             f"For other models, {OUTPUT_GRADS}")
    if any(spec.class_name == "Embedding" for spec in chain):
        first_dropout = next((i for i, s in enumerate(chain) if s.class_name == "Dropout"), len(chain))
        embedding = next(i for i, s in enumerate(chain) if s.class_name == "Embedding")
        if first_dropout < embedding:
            raise InputError(f"{origin}: {chain[first_dropout].label} comes before the embedding; "
                             f"gradscope reads {SUPPORTED}")
    recurrent = [spec for spec in chain if RANK.get(spec.class_name) == 3]
    if not recurrent:
        raise InputError(f"{origin} has no recurrent layer (SimpleRNN, GRU, LSTM); gradscope reads {SUPPORTED}")
    if ranked[-1].class_name != "Dense":
        raise InputError(f"{origin} ends with {ranked[-1].label}, not a Dense head; gradscope reads {SUPPORTED}. "
                         f"For models without one, {OUTPUT_GRADS}")
    for layer, after in zip(recurrent, recurrent[1:]):
        if not returns_sequences(layer):
            raise InputError(f"{origin}: {layer.label} returns only its last output (return_sequences=False), "
                             f"but {after.label} reads a sequence: Keras could not have run this model")
    if any(spec.class_name in POOLING for spec in chain) and not returns_sequences(recurrent[-1]):
        raise InputError(f"{origin}: {recurrent[-1].label} returns only its last output (return_sequences=False), "
                         f"but the pooling after it reads a sequence: Keras could not have run this model")


def returns_sequences(spec: LayerSpec) -> bool:
    """Whether a recurrent layer (or a Bidirectional) outputs one vector per step."""
    return (spec.forward or spec).config["return_sequences"]


# -- functional models -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """A layer's one call in a functional graph: the tensors it reads and its keyword arguments.

    inputs : (layer name, node index, tensor index) of each tensor argument; constants : the other
    positional arguments (NotEqual's mask value); kwargs : keyword arguments, tensors as above.
    """

    inputs: tuple[tuple[str, int, int], ...]
    constants: tuple[Any, ...]
    kwargs: dict[str, Any]


def _history(value: Any) -> tuple[str, int, int] | None:
    """The (layer, node, tensor) a serialised tensor comes from: Keras 3 writes
    ``{"class_name": "__keras_tensor__", "config": {"keras_history": [...]}}``, Keras 2 ``[name, 0, 0]``."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
        if isinstance(history, list) and len(history) == 3:
            return str(history[0]), int(history[1]), int(history[2])
    if (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:])):
        return value[0], value[1], value[2]
    return None


def _parse_call(node: Any) -> _Call:
    if isinstance(node, dict):  # Keras 3
        args = node.get("args") or []
        inputs = tuple(h for h in map(_history, args) if h is not None)
        constants = tuple(a for a in args if _history(a) is None)
        kwargs = node.get("kwargs") or {}
        return _Call(inputs, constants, kwargs if isinstance(kwargs, dict) else {"?": kwargs})
    inputs, kwargs = [], {}
    for item in node if isinstance(node, list) else []:  # Keras 2: [[name, node, tensor, kwargs], ...]
        if isinstance(item, list) and len(item) >= 3:
            inputs.append((str(item[0]), int(item[1]), int(item[2])))
            if len(item) > 3 and isinstance(item[3], dict):
                kwargs.update(item[3])
    return _Call(tuple(inputs), (), kwargs)


def _endpoints(value: Any) -> list[str]:
    """The layer names of input_layers / output_layers: ``[name, 0, 0]`` or ``[[name, 0, 0], ...]``."""
    if _history(value) is not None:
        return [value[0]]
    return [v[0] for v in value if _history(v) is not None] if isinstance(value, list) else []


def _functional_chain(config: dict, entries: list[dict], origin: str) -> list[dict]:
    """A functional model's layers in the chain's order, from its one input to its one output."""
    by_name: dict[str, dict] = {}
    for entry in entries:
        if entry.get("class_name") not in MASK_OPS:
            _refuse_unknown(entry, origin)
        by_name[_name(entry)] = entry
    inputs, outputs = _endpoints(config.get("input_layers")), _endpoints(config.get("output_layers"))
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(f"{origin} is a functional model of {len(inputs)} inputs and {len(outputs)} outputs; "
                         f"gradscope reads a chain of one input and one output. For other models, {OUTPUT_GRADS}")
    if inputs[0] not in by_name or by_name[inputs[0]].get("class_name") != "InputLayer":
        raise InputError(f"{origin}: its input {inputs[0]!r} is not one of its InputLayers")
    calls: dict[str, _Call] = {}
    readers: dict[str, list[str]] = {name: [] for name in by_name}
    for name, entry in by_name.items():
        nodes = entry.get("inbound_nodes") or []
        if entry.get("class_name") == "InputLayer":
            continue
        if len(nodes) != 1:
            raise InputError(f"{origin}: {_label(entry)} is called {len(nodes)} times; gradscope reads a chain "
                             f"that calls each layer once. For other models, {OUTPUT_GRADS}")
        call = calls[name] = _parse_call(nodes[0])
        if len(call.inputs) != 1 or call.inputs[0][0] not in by_name or call.inputs[0][1:] != (0, 0):
            read = ", ".join(repr(i[0]) for i in call.inputs) or "nothing"
            raise InputError(f"{origin}: {_label(entry)} reads {read}; gradscope reads a chain in which each layer "
                             f"reads the one before it. For other models, {OUTPUT_GRADS}")
        if entry.get("class_name") not in MASK_OPS:
            readers[call.inputs[0][0]].append(name)
    chain = [by_name[inputs[0]]]
    while readers[_name(chain[-1])]:
        following = readers[_name(chain[-1])]
        if len(following) > 1:
            raise InputError(f"{origin}: the output of {_label(chain[-1])} is read by "
                             f"{', '.join(map(repr, following))}; gradscope reads a straight chain. "
                             f"For other models, {OUTPUT_GRADS}")
        chain.append(by_name[following[0]])
    names = [_name(entry) for entry in chain]
    layers = [n for n, e in by_name.items() if e.get("class_name") not in MASK_OPS]
    if names[-1] != outputs[0] or len(names) != len(layers):
        stray = next((n for n in layers if n not in names), names[-1])
        raise InputError(f"{origin}: {_label(by_name[stray])} is not on the chain from {inputs[0]!r} to {outputs[0]!r}; "
                         f"gradscope reads a straight chain. For other models, {OUTPUT_GRADS}")
    _check_call_arguments(chain, calls, by_name, origin)
    return chain


def _check_call_arguments(chain: list[dict], calls: dict[str, _Call], by_name: dict[str, dict],
                          origin: str) -> None:
    """Each layer called with no keyword argument but training=False and the mask Keras itself passes:
    the one the nearest Embedding(mask_zero=True) or Masking before it computes, until a recurrent layer
    that returns only its last output or a pooling layer consumes it."""
    used_ops: set[str] = set()
    carried = None  # the mask the current layer's input carries, as _mask_of describes it
    for index, entry in enumerate(chain[1:], start=1):
        name, cls = _name(entry), entry["class_name"]
        call = calls[name]
        for key, value in call.kwargs.items():
            if key == "training" and value in (None, False):
                continue
            if key == "mask" and value is not None:
                given = _mask_of(value, calls, by_name, used_ops)
                if given is None or given != carried:
                    raise InputError(f"{origin}: {_label(entry)} is called with a mask other than the one Keras "
                                     f"derives from Masking or Embedding(mask_zero=True); gradscope reads only "
                                     f"those. For other models, {OUTPUT_GRADS}")
                continue
            if value is None:
                continue
            raise InputError(f"{origin}: {_label(entry)} is called with {key}={str(value)[:60]}; gradscope reads a "
                             f"chain of plain calls. For other models, {OUTPUT_GRADS}")
        source = _name(chain[index - 1])
        config = entry.get("config") or {}
        if cls == "Embedding" and config.get("mask_zero"):
            carried = ("not_equal", source, 0.0)
        elif cls == "Masking":
            carried = ("any", ("not_equal", source, float(config.get("mask_value", 0.0))))
        elif cls in POOLING or (cls in RANK and RANK[cls] == 3 and not _returns_sequences_entry(entry)):
            carried = None
    stray = [n for n, e in by_name.items() if e.get("class_name") in MASK_OPS and n not in used_ops]
    if stray:
        raise InputError(f"{origin}: the operation {stray[0]!r} ({by_name[stray[0]]['class_name']}) is not "
                         f"part of the chain; gradscope reads {SUPPORTED}. For other models, {OUTPUT_GRADS}")


def _returns_sequences_entry(entry: dict) -> bool:
    config = entry.get("config") or {}
    if entry["class_name"] == "Bidirectional":
        config = (config.get("layer") or {}).get("config") or {}
    return bool(config.get("return_sequences", False))


def _mask_of(value: Any, calls: dict[str, _Call], by_name: dict[str, dict], used: set[str]) -> tuple | None:
    """What a mask tensor computes, if it is one of Keras' own: ("not_equal", layer, v) for
    ``ops.not_equal(<layer's output>, v)`` and ("any", that) for ``ops.any(that, axis=-1)``; else None."""
    history = _history(value)
    if history is None or history[0] not in calls or by_name[history[0]].get("class_name") not in MASK_OPS:
        return None
    name = history[0]
    used.add(name)
    call, entry = calls[name], by_name[name]
    if entry["class_name"] == "NotEqual":
        if len(call.constants) != 1 or not isinstance(call.constants[0], (int, float)):
            return None
        return "not_equal", call.inputs[0][0], float(call.constants[0])
    config = entry.get("config") or {}
    if config.get("axis") != -1 or config.get("keepdims") or call.constants:
        return None
    inner = _mask_of({"class_name": "__keras_tensor__", "config": {"keras_history": list(call.inputs[0])}},
                     calls, by_name, used)
    return None if inner is None or inner[0] != "not_equal" else ("any", inner)
