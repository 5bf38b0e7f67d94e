"""From a RunConfig to a model and a batch: the one place where settings meet data.

Randomness comes from two independent streams spawned from ``--seed``: one for the weights, one for
the data. So two models that differ only in cell, activation or init see the very same batch, which
is what a side-by-side comparison needs, and a run is reproducible byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from . import memory
from .model.cells import CELLS, Cell, Params, make_cell
from .config import DEFAULT_BATCH_SIZE, RunConfig, flag
from .errors import InputError
from .io.arrays import load_array, load_npz
from .io.files import is_keras_file
from .io.weights import read_state_dict
from .model.gate_bias import apply_bias_init, check_bias_init
from .model.initializers import rescale_spectral_radius
from .model.losses import get_loss
from .bptt.network import InitialState, Upstream
from .model.network import Network, readout_params
from .model.statedict import Choices, Layout, load_network
from .tasks import Batch, Task, TaskShape, make_task

if TYPE_CHECKING:  # a Keras model's layout: its module is imported where a Keras file is read
    from .model.keras import KerasLayout

DEFAULT_HIDDEN_SIZE = 32


@dataclass
class Setup:
    """A built run: the network, one batch, the task, and the config with every None filled in.

    network : the model every command runs (model/network.py); for the models gradscope builds,
        one layer in one direction.
    upstream : the caller's dL/d(output) in place of a head (``--output-grads``), or None.
    initial : the state the layers start from (``--initial-state``), or None: zero.
    checkpointed : analyze runs checkpointed BPTT (bptt/checkpointed.py): the full path does not fit.
    """

    config: RunConfig
    network: Network
    batch: Batch
    task: Task
    shape: TaskShape
    layout: Layout | KerasLayout
    upstream: Upstream | None = None
    notes: list[str] = field(default_factory=list)
    checkpointed: bool = False
    initial: InitialState | None = None

    def needs_head(self, command: str) -> None:
        """InputError unless the network has a head and a loss of gradscope's: what training needs
        (``--output-grads`` gives a gradient, not a loss to train on)."""
        if self.upstream is not None or self.network.head is None:
            raise InputError(f"{command} trains on a loss: give the model's head (--head-key) and --targets, "
                             "not --output-grads")

    @property
    def baseline_loss(self) -> float:
        return self.task.baseline_loss(self.shape, self.batch.x.shape[1])


def rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(weights stream, data stream), independent and fixed by the seed."""
    weights, data = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(weights), np.random.default_rng(data)


def rescale_recurrent(cell: Cell, params: Params, radius: float) -> None:
    """``--spectral-radius``: scale each gate's (H, H) block of W_hh to that spectral radius, in place.

    Wa itself for the vanilla RNN; each of r, z, n (GRU) or i, f, g, o (LSTM) on its own, since
    a gated cell has no single recurrent matrix and each block drives one gate.
    """
    blocks = cell.gate_blocks(params).values()
    params[cell.recurrent] = np.concatenate([rescale_spectral_radius(b, radius) for b in blocks])


def _scale_recurrent(config: RunConfig, cell: Cell, params: Params) -> None:
    """--spectral-radius, then --recurrent-scale, on one layer and direction's W_hh, in place."""
    if config.spectral_radius is not None:
        rescale_recurrent(cell, params, config.spectral_radius)
    if config.recurrent_scale is not None:
        params[cell.recurrent] = params[cell.recurrent] * config.recurrent_scale


def new_network(config: RunConfig, shape: TaskShape, rng: np.random.Generator) -> Network:
    """A freshly initialised one-layer network for the config's cell, sizes, init and gate biases,
    read out as the task says (chrono's T_max: ``config.chrono_max``, which ``build`` resolves)."""
    cell = make_cell(config.cell or "rnn", config.activation or "tanh")
    check_bias_init(config.bias_init, cell.name)
    hidden = config.hidden_size or DEFAULT_HIDDEN_SIZE
    params = cell.init_params(shape.input_size, hidden, rng, config.init, config.init_gain)
    _scale_recurrent(config, cell, params)
    apply_bias_init(config.bias_init, cell.name, params, config.chrono_max or 2, rng)
    head = readout_params(hidden, shape.output_size, rng)
    return Network(cell, [[params]], head, shape.readout, get_loss(shape.loss))


def check_memory(config: RunConfig, task: Task, shape: TaskShape | None, network: Network | None = None,
                 batch_shape: tuple[int, int] | None = None, checkpointable: bool = False,
                 batch_flag: str | None = None) -> bool:
    """InputError before any large array is made when the run cannot fit in memory (memory.py).

    Sizes come from ``network`` (a loaded state dict: its layers, directions, gates) or else from
    the config (the network ``new_network`` would build); T and B from ``batch_shape`` (B, T) or else
    the config and the task's defaults. checkpointable : the caller can run one layer checkpointed
    (analyze); returns True when the full path does not fit and the checkpointed one does.
    batch_flag : the flag that set B, where it is not --batch-size (train's held-out batch: --eval-size).
    """
    b, t = batch_shape or (config.batch_size or DEFAULT_BATCH_SIZE, config.seq_len or task.default_seq_len)
    if network is not None:
        # the widest layer sizes them all (every layer's, in a PyTorch module)
        cell = max((network.cell_of(k) for k in range(network.num_layers)), key=lambda c: len(c.gates))
        h = max(network.layer(k).hidden_size for k in range(network.num_layers))
        d = network.input_size
        layers, parameters = network.num_layers, network.parameter_count()
        directions = max(len(layer) for layer in network.layers)
        change = "--seq-len or --batch-size (or give a smaller --inputs batch)"
    else:
        cell = CELLS.get(config.cell or "rnn", CELLS["rnn"])
        h, d = config.hidden_size or DEFAULT_HIDDEN_SIZE, shape.input_size
        layers = directions = 1
        parameters = len(cell.gates) * h * (h + d + 2) + shape.output_size * (h + 1)
        change = "--seq-len, --batch-size or --hidden-size"
    itemsize = np.dtype(config.dtype).itemsize  # 4 bytes a float with --dtype float32
    needed = memory.run_bytes(t, b, h, d, states=len(cell.state_names), gates=len(cell.gates), layers=layers,
                              directions=directions, parameters=parameters, itemsize=itemsize)
    if batch_flag is not None:
        change = f"{batch_flag} or --seq-len"
    what = (f"a run of T={t}, B={b}, H={h}" if batch_flag is None else f"{batch_flag} {b}: T={t}, H={h}") + (
        f", {layers} layers" if layers > 1 else "")
    bound = memory.limit()  # /proc/meminfo, the cgroup, ulimit: read once for both checks
    readout = network.readout if network is not None else (config.readout or "last")
    if checkpointable and readout != "every" and not memory.fits(needed, bound):
        memory.check(memory.checkpointed_run_bytes(t, b, h, d, states=len(cell.state_names), gates=len(cell.gates),
                                                   parameters=parameters, itemsize=itemsize, layers=layers,
                                                   directions=directions),
                     what, change + " (even checkpointed BPTT, which keeps sqrt(T) states, does not fit)", bound)
        return True
    memory.check(needed, what, change, bound)
    return False


def _weights_label(config: RunConfig) -> str:
    """How errors name the weights: the file, or a state dict given from Python."""
    return config.weights if isinstance(config.weights, str) else "the state dict"


def keras_weights(config: RunConfig) -> bool:
    """Whether --weights is a Keras model's file (.keras, .h5, .weights.h5: recognised by content)."""
    return isinstance(config.weights, (str, os.PathLike)) and is_keras_file(config.weights)


def _keras_network(config: RunConfig, source: str) -> tuple[Network, KerasLayout]:
    """The network a Keras model file describes; the flags that would contradict it refused."""
    from .io.keras import read_keras  # the Keras reader, only for a Keras file: not at every start
    from .model.keras import load_keras_network

    network, layout = load_keras_network(read_keras(config.weights), source)
    masks = "masks as its layers say (Embedding(mask_zero=True) masks token 0, Masking(v) the steps equal to v)"
    refused = {
        "rnn-key": "names a module of a PyTorch state dict", "head-key": "names a module of a PyTorch state dict",
        "embedding-key": "names a module of a PyTorch state dict", "padding-idx": masks, "lengths": masks,
    }
    for name, why in refused.items():
        if getattr(config, name.replace("-", "_")) is not None:
            raise InputError(f"--{name}: {source} is a Keras model, which {why}; leave --{name} out")
    for name, given, held in (("cell", config.cell, network.cell.name),
                              ("activation", config.activation, network.cell.activation),
                              ("readout", config.readout, network.readout)):
        if given is not None and given != held:
            raise InputError(f"{source} is a Keras model whose {name} is {held}, but --{name} {given} was given")
    return network, layout


def loaded_network(config: RunConfig) -> tuple[Network, Layout | KerasLayout]:
    """The network --weights holds (a PyTorch state dict, or a Keras model file), and where its
    arrays sit; --spectral-radius and --recurrent-scale applied."""
    source = _weights_label(config)
    if keras_weights(config):
        network, layout = _keras_network(config, source)
    else:
        choices = Choices(config.cell, config.activation, config.rnn_key, config.head_key, config.embedding_key)
        network, layout = load_network(read_state_dict(config.weights), source, choices, config.readout or "last")
    for name, given, actual in (
        ("hidden-size", config.hidden_size, network.hidden_size),
        ("input-size", config.input_size, network.input_size),
        ("output-size", config.output_size, network.output_size),
    ):
        if given is not None and given != actual:
            raise InputError(f"--{name} {given} disagrees with the weights in {source} ({actual})")
    for k, d in network.each_layer():
        _scale_recurrent(config, network.cell_of(k), network.layers[k][d])
    network.padding_idx = config.padding_idx
    if config.padding_idx is not None and (network.embedding is None or config.padding_idx >= network.vocab_size):
        where = "the weights hold no embedding" if network.embedding is None else f"the vocabulary has {network.vocab_size} rows"
        raise InputError(f"--padding-idx {config.padding_idx}: {where}")
    return network, layout


def _token_ids(x: np.ndarray, network: Network, what: str) -> np.ndarray:
    """(B, T) inputs as the embedding's row indices, checked."""
    if network.embedding is None:
        raise InputError(f"{what} of shape {x.shape} are token ids, but the weights hold no embedding; "
                         f"give inputs of shape (B, T, {network.input_size})")
    if np.any(x != np.round(x)) or x.min() < 0 or x.max() >= network.vocab_size:
        raise InputError(f"{what}: token ids must be whole numbers in [0, {network.vocab_size - 1}]")
    return x.astype(np.int64)


def _mask(config: RunConfig, x: np.ndarray, network: Network) -> np.ndarray | None:
    """(B, T) bool of real steps from --lengths (the first lengths[b] steps, as
    pack_padded_sequence takes them) or --padding-idx (steps whose token is not the pad)."""
    b, t = x.shape[:2]
    if config.lengths is not None:
        lengths = load_array(config.lengths, "lengths")
        if lengths.shape != (b,):
            hint = (" (inputs are batch first, (B, T, ...); yours look time-major: transpose them)"
                    if lengths.shape == (t,) else "")
            raise InputError(f"lengths must have shape ({b},), one per sequence; got {lengths.shape}{hint}")
        if np.any(lengths != np.round(lengths)) or lengths.min() < 1 or lengths.max() > t:
            raise InputError(f"lengths must be whole numbers in [1, {t}] (the inputs have {t} steps)")
        mask = np.arange(t)[None, :] < lengths[:, None]
        if config.padding_idx is not None and x.ndim == 2:
            # what sits at pad steps is never read; a pad token inside the real steps is a mistake,
            # pre-padded tokens read with --lengths (which takes the first lengths[b] steps) most often
            inside = mask & (x == config.padding_idx)
            if inside.any():
                row, step = (int(i[0]) for i in np.nonzero(inside))
                raise InputError(
                    f"--lengths and --padding-idx {config.padding_idx} disagree at sequence {row}: lengths counts "
                    f"its first {int(lengths[row])} steps as real, but step {step + 1} is the pad token "
                    "(pre-padded tokens need --padding-idx alone)"
                )
        return mask
    if config.padding_idx is not None and x.ndim == 2:
        mask = x != config.padding_idx
        if not mask.any(axis=1).all():
            row = int(np.flatnonzero(~mask.any(axis=1))[0])
            raise InputError(f"inputs: sequence {row} holds only --padding-idx {config.padding_idx} tokens")
        # real steps must be one run: pads before (pre-padding) or after (post-padding) the text
        first, last = mask.argmax(axis=1), t - 1 - mask[:, ::-1].argmax(axis=1)
        gaps = mask.sum(axis=1) != last - first + 1
        if gaps.any():
            row = int(np.flatnonzero(gaps)[0])
            raise InputError(f"inputs: sequence {row} has --padding-idx {config.padding_idx} tokens between "
                             "real ones; give --lengths to say where each sequence ends")
        return mask
    return None


def _named_arrays(source: str | os.PathLike | Mapping, what: str, network: Network, names: tuple[str, ...],
                  cell_state: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz (or a mapping) named ``names`` and, for a cell with a memory cell (the
    LSTM), ``cell_state``: an unknown name, none at all, or the cell state for a cell that has none
    is an InputError naming ``what``."""
    if isinstance(source, Mapping):
        arrays = {k: load_array(v, f"{what} {k!r}") for k, v in source.items() if v is not None}
    else:
        arrays = load_npz(source, what)
    unknown = sorted(set(arrays) - {*names, cell_state})
    if unknown or not arrays:
        expected = ", ".join(f"'{n}'" for n in names)
        raise InputError(f"{what}: expected arrays {expected} (and '{cell_state}' for lstm), "
                         f"got {', '.join(unknown) or 'none'}")
    if cell_state in arrays and len(network.cell.state_names) < 2:
        raise InputError(f"{what}: '{cell_state}' is given, but a {network.cell.name} has no cell state")
    return arrays


def _upstream(config: RunConfig, network: Network, b: int, t: int) -> Upstream | None:
    """The caller's dL/d(output) (B, T, F), and dL/dh_n, dL/dc_n (L x directions, B, H)."""
    if config.output_grads is None:
        return None
    source = config.output_grads
    f, h, n = network.feature_size, network.hidden_size, network.num_layers * network.directions
    npz = isinstance(source, (str, os.PathLike)) and os.fspath(source).lower().endswith(".npz")
    if npz or isinstance(source, Mapping):
        arrays = _named_arrays(source, "output-grads", network, ("output", "h_n"), "c_n")
    else:
        arrays = {"output": load_array(source, "output-grads")}  # dL/d(output) alone: an .npy or an array
    if ("h_n" in arrays or "c_n" in arrays) and not network.uniform:
        raise InputError("output-grads: 'h_n' and 'c_n' stack the final states of layers of one size and cell; "
                         "this model's layers differ: give 'output' alone")
    for name, shape in (("output", (b, t, f)), ("h_n", (n, b, h)), ("c_n", (n, b, h))):
        if name in arrays and arrays[name].shape != shape:
            raise InputError(f"output-grads: {name} must have shape {shape}, got {arrays[name].shape}")
    return Upstream(arrays.get("output"), arrays.get("h_n"), arrays.get("c_n"))


def _initial_state(config: RunConfig, network: Network, b: int) -> InitialState | None:
    """The caller's h_0 (and c_0 for the LSTM), (L x directions, B, H) each; a missing one is zero."""
    source = config.initial_state
    if source is None:
        return None
    if isinstance(source, tuple):  # torch's hx: (h_0, c_0) for the LSTM, (h_0,) too (a list is one array)
        if not 1 <= len(source) <= 2:
            raise InputError(f"initial-state: give (h_0,) or (h_0, c_0), as torch's hx (got {len(source)} arrays)")
        source = dict(zip(("h_0", "c_0"), source))
    elif not isinstance(source, (str, os.PathLike, Mapping)):  # one array: h_0, torch's hx of nn.RNN and nn.GRU
        source = {"h_0": source}
    arrays = _named_arrays(source, "initial-state", network, ("h_0",), "c_0")
    shape = (network.num_layers * network.directions, b, network.hidden_size)
    for name, array in arrays.items():
        if array.shape != shape:
            raise InputError(f"initial-state: {name} must have shape {shape} (layers x directions, batch, hidden), "
                             f"got {array.shape}")
    return InitialState(arrays.get("h_0"), arrays.get("c_0"))


def _random_targets(rng: np.random.Generator, shape: TaskShape, b: int, t: int, every: bool) -> np.ndarray:
    """Targets of the loss's kind drawn at random (as the random task does): one per sequence or,
    for a readout at every step, one per step."""
    y = make_task("random").sample(rng, b * t if every else b, 1, shape).y
    return y.reshape((b, t) + y.shape[1:]) if every else y


def _own_mask(network: Network, x: np.ndarray) -> np.ndarray | None:
    """The mask a Keras model computes from its inputs (model/network.py's OwnMask), None where
    every step is real."""
    mask = network.input_mask(x)
    return None if mask is None or mask.all() else mask


def _class_indices(y: np.ndarray, classes: int, steps: int | None) -> np.ndarray:
    """One-hot targets (B, C), or (B, T, C) at every step, as class indices: categorical
    crossentropy's labels are sparse categorical crossentropy's. Other targets are left as given."""
    one_hot = y.ndim == (2 if steps is None else 3) and y.shape[-1] == classes and (steps is None or y.shape[1] == steps)
    if one_hot and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=-1) == 1):
        return y.argmax(axis=-1).astype(np.float64)
    return y


def _file_batch(config: RunConfig, task: Task, shape: TaskShape, rng: np.random.Generator,
                network: Network, x: np.ndarray | None = None, layout: Layout | KerasLayout = Layout()) -> Batch:
    """The --inputs batch (``x``: its array where the caller has read it already), checked.
    layout : a Keras model's takes one-hot targets for its softmax head."""
    x = load_array(config.inputs, "inputs") if x is None else x
    if x.ndim not in (2, 3):
        raise InputError(f"inputs must have shape (B, T, D) (or (B, T) token ids), got {x.shape}")
    b, t = x.shape[:2]
    if b == 0 or t == 0:
        raise InputError(f"inputs are empty: shape {x.shape}")
    if x.ndim == 2:
        x = _token_ids(x, network, "inputs")
    if x.ndim == 3 and x.shape[2] != network.input_size:
        raise InputError(f"inputs have {x.shape[2]} features per step, the model takes {network.input_size}")
    for name, given, actual in (("seq-len", config.seq_len, t), ("batch-size", config.batch_size, b)):
        if given is not None and given != actual:
            raise InputError(f"--{name} {given} disagrees with the inputs ({actual})")
    mask = _mask(config, x, network) if network.own_mask is None else _own_mask(network, x)
    every = network.readout == "every"  # the network's readout says where the targets sit
    if config.targets is None:
        y = _random_targets(rng, shape, b, t, every)  # only inputs given
    else:
        y = load_array(config.targets, "targets")
        if layout.keras and shape.loss == "ce":
            y = _class_indices(y, shape.output_size, t if every else None)
        if y.ndim == 0 or y.shape[0] != b:
            hint = (f" (inputs are batch first, (B, T{', D' if x.ndim == 3 else ''}); yours look time-major: "
                    "transpose them, as for batch_first=False)" if y.ndim and y.shape[0] == t else "")
            raise InputError(f"targets have shape {y.shape}; the inputs have {b} sequences{hint}")
        problem = get_loss(shape.loss).check_targets(y, shape.output_size, t if every else None)
        if problem:
            raise InputError(f"targets: {problem}")
        if shape.loss == "bce" and not every:
            y = y.reshape(b, 1)
    return Batch(x, y, mask)


def _random_tokens(network: Network, rng: np.random.Generator, batch: Batch) -> Batch:
    """For a network with an embedding and no --inputs: token ids drawn uniformly from the
    vocabulary (never --padding-idx), so that the embedding takes part."""
    b, t = batch.x.shape[:2]
    vocab = [v for v in range(network.vocab_size) if v != network.padding_idx]
    if not vocab:
        raise InputError("the embedding has no row besides --padding-idx")
    return Batch(np.asarray(vocab)[rng.integers(0, len(vocab), (b, t))], batch.y, batch.mask)


def _task_batch(task: Task, shape: TaskShape, network: Network, rng: np.random.Generator, size: int,
                seq_len: int) -> Batch:
    """``size`` fresh sequences of the task for this network: token ids for one with an embedding
    on the random task (other tasks' vectors skip the embedding), random targets at every step for
    one read out at every step where the task has one target per sequence, and the mask the
    network computes from its inputs."""
    batch = task.sample(rng, size, seq_len, shape)
    if network.embedding is not None and task.name == "random":
        batch = _random_tokens(network, rng, batch)
    if network.readout == "every" and shape.readout != "every":
        batch = Batch(batch.x, _random_targets(rng, shape, *batch.x.shape[:2], every=True), batch.mask)
    if network.own_mask is not None:
        batch = Batch(batch.x, batch.y, _own_mask(network, batch.x))
    return batch


def sample(setup: Setup, rng: np.random.Generator, size: int, seq_len: int) -> Batch:
    """``size`` fresh sequences of the setup's task, as ``build`` drew its batch (``_task_batch``)."""
    return _task_batch(setup.task, setup.shape, setup.network, rng, size, seq_len)


def _check_loaded_init(config: RunConfig) -> None:
    """--init and --init-gain draw a new network's recurrent weights: with --weights, which fixes
    them, an input error rather than a flag that changes nothing. (A result's config may name the
    init a cure drew for a loaded network: commands.train.mitigated_setup; it is not built again.)"""
    if config.init not in (None, "normal"):
        raise InputError(f"--init {config.init} draws the recurrent weights at initialisation, which --weights "
                         "fixes (compare's orthogonal and identity-relu cures draw them anew on your model)")
    if config.init_gain not in (None, 1.0):
        raise InputError(f"--init-gain {config.init_gain} scales the recurrent weights' initialisation, which "
                         "--weights fixes (--recurrent-scale scales the weights read)")


def build(config: RunConfig, checkpointable: bool = False) -> Setup:
    """The network and batch a config describes, with every default resolved in the returned config.

    checkpointable : the caller (analyze) runs a single-layer model read out last with checkpointed
    BPTT when the full path does not fit in memory: ``Setup.checkpointed`` says whether it must.
    """
    task = make_task(config.task, config)
    weights_rng, data_rng = rngs(config.seed)
    inputs = None  # the --inputs array, where it is read before the batch is made
    if config.bias_init == "chrono" and config.chrono_max is None:  # T_max: the run's length
        config = replace(config, chrono_max=config.seq_len or task.default_seq_len)
    if config.weights is not None:
        _check_loaded_init(config)
        network, layout = loaded_network(config)
        if config.inputs is None:
            checkpointed = check_memory(config, task, None, network, checkpointable=checkpointable)
        # A state dict says nothing of the loss: the flag, else the task's (mse for adding); a
        # Keras model's head says it (sigmoid: bce, softmax: ce, linear: mse), unless the flag does.
        keras = layout.keras
        if network.head is not None:
            if config.loss == "bce" and network.output_size != 1:
                head = layout.head_label(network) if keras else f"the head {layout.readout}weight"
                raise InputError(f"--loss bce needs one output; {head} has {network.output_size} (ce takes classes)")
            try:
                shape = task.resolve(network.input_size, network.output_size, config.loss or (layout.loss if keras else None))
            except InputError as exc:
                if not keras or config.loss is not None:
                    raise
                raise InputError(f"{layout.head_label(network)} of {_weights_label(config)} computes {layout.loss}, "
                                 f"and {exc}: give your data (--inputs, --targets) or --loss") from None
            network.loss = get_loss(shape.loss)
            if config.readout is None and shape.readout == "every" and not keras:
                network.readout = "every"  # a state dict holds one Linear; the task says where it reads
        else:
            if config.output_grads is None:
                raise InputError(
                    f"{_weights_label(config)}: no Linear "
                    f"readout reads the recurrent module's {network.feature_size} outputs; give --output-grads "
                    "(dL/d(output) from your own head), or name the head with --head-key"
                )
            shape = task.resolve(network.input_size, None, config.loss)
    else:
        shape = task.resolve(config.input_size, config.output_size, config.loss)
        if config.input_size is None and config.inputs is not None:
            given = inputs = load_array(config.inputs, "inputs")  # a built model takes the file's D...
            if given.ndim == 3 and given.shape[2] != shape.input_size:
                try:
                    shape = task.resolve(given.shape[2], config.output_size, config.loss)
                except InputError:
                    pass  # ...unless the task fixes D: then the inputs are refused for their width
        if config.padding_idx is not None:  # the token id of the pads in --inputs, read by an embedding
            raise InputError(f"--padding-idx {config.padding_idx}: the model gradscope builds has no embedding "
                             "(token ids are read by a model of --weights that has one); give --lengths for "
                             "padded --inputs")
        # before new_network makes the (G*H, H) weights
        checkpointed = check_memory(config, task, shape, checkpointable=checkpointable)
        network, layout = new_network(config, shape, weights_rng), Layout()
        if config.readout is not None:
            network.readout = config.readout
    if config.inputs is not None:
        batch = _file_batch(config, task, shape, data_rng, network, inputs, layout)
        checkpointed = check_memory(config, task, shape, network, batch.x.shape[:2], checkpointable)
    else:
        batch = _task_batch(task, shape, network, data_rng, config.batch_size or DEFAULT_BATCH_SIZE,
                            config.seq_len or task.default_seq_len)
    upstream = _upstream(config, network, *batch.x.shape[:2])
    initial = _initial_state(config, network, batch.x.shape[0])
    if upstream is not None and (config.targets is not None or config.readout is not None or config.loss is not None):
        given = [flag(n) for n in ("targets", "readout", "loss") if getattr(config, n) is not None]
        raise InputError(f"{', '.join(given)} and --output-grads: with your head's gradient there is no "
                         "readout or loss of gradscope's; give one or the other")
    if upstream is not None:
        network.head, network.loss = None, None  # the caller's gradient replaces the head
    # --dtype: loaded and drawn in float64 as always, then the parameters and the inputs (not token
    # ids, nor the targets, which BPTT casts to the logits' dtype) cast once; BPTT computes in them
    dtype = np.dtype(config.dtype)
    if not network.cast(dtype):
        raise InputError(f"--dtype {config.dtype}: the weights hold values beyond its range "
                         f"(|w| up to {np.finfo(dtype).max:.3g}); use --dtype float64")
    if batch.x.ndim == 3:
        with np.errstate(over="ignore"):
            batch = Batch(batch.x.astype(dtype, copy=False), batch.y, batch.mask)
        if not np.all(np.isfinite(batch.x)):
            raise InputError(f"--dtype {config.dtype}: the inputs hold values beyond its range "
                             f"(|x| up to {np.finfo(dtype).max:.3g}); use --dtype float64")
    resolved = replace(
        config,
        cell=network.cell.name,
        activation=network.cell.activation,
        hidden_size=network.hidden_size,
        input_size=network.input_size,
        output_size=network.output_size,
        seq_len=batch.x.shape[1],
        batch_size=batch.x.shape[0],
        loss=None if network.loss is None else network.loss.name,
        readout=network.readout,
        init=None if config.weights is not None else config.init,
        init_gain=None if config.weights is not None else config.init_gain,
    )
    setup = Setup(resolved, network, batch, task, shape, layout, upstream, _notes(config, network, batch, layout),
                  checkpointed, initial)
    if checkpointed and not checkpointable_run(setup):
        check_memory(config, task, shape, network, batch.x.shape[:2])  # checkpointed BPTT cannot run it: refused
    return setup


def _notes(config: RunConfig, network: Network, batch: Batch, layout: Layout) -> list[str]:
    """What the user may have meant: a token that looks like padding analysed as a real word, a
    head that may read another recurrent module than the one analysed, or vectors given to a
    model with an embedding (they stand for its output: the embedding, and a mask it makes, unused)."""
    notes = []
    if network.embedding is not None and batch.x.ndim == 3:
        mask = " and makes no mask" if network.own_mask is not None and network.own_mask.token is not None else ""
        notes.append(f"the inputs are vectors ({batch.x.shape[2]} per step), taken as the embedding's output: the "
                     f"embedding is not run{mask}; give token ids, (B, T) integers, to run it")
    if len(layout.others) and network.head is not None:
        notes.append(f"the state dict holds other recurrent modules ({', '.join(layout.others)}); the head "
                     f"{layout.readout}weight is taken to read {layout.recurrent.rstrip('.') or 'the module'}: "
                     "if it reads another, give your head's gradient with --output-grads")
    if (network.embedding is None or batch.x.ndim != 2 or config.inputs is None or config.padding_idx is not None
            or layout.keras):  # a Keras model masks as its layers say
        return notes
    zero_rows = np.flatnonzero(~network.embedding.any(axis=1))  # nn.Embedding(padding_idx=p) keeps row p at 0
    real = np.ones(batch.x.shape, bool) if batch.mask is None else batch.mask
    for p in zero_rows:
        at_ends = (batch.x[:, 0] == p) & real[:, 0] | (batch.x[:, -1] == p) & real[:, -1]
        if at_ends.any():
            notes.append(f"token {p} has an all-zero embedding row and fills the ends of sequences; it is "
                         f"analysed as a real token: if it is padding, pass --padding-idx {p}")
    return notes


def checkpointable_run(setup: Setup) -> bool:
    """Whether checkpointed BPTT (bptt/checkpointed.py) can run the setup: any network of PyTorch's
    kind (one cell, concatenated directions, zero pad outputs) but one read out at every step
    (whose flow needs each step's share: the full path), from the zero state (an initial state
    and its gradient take the full path)."""
    net = setup.network
    if setup.initial is not None:
        return False
    return (setup.upstream is not None or net.head is None or net.readout != "every") and net.pytorch_semantics \
        and net.uniform
