"""Flags shared by every command that builds a model and a batch, defined once.

``run_options`` adds the RunConfig flags to a command's signature and hands the command a built
``RunConfig`` as its ``config`` argument, so each command declares only the flags of its own.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import inspect
import logging
import sys
import time
import typing
import warnings
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from .. import memory
from ..model.cells import FLAG_CELLS
from ..model.activations import ACTIVATIONS
from ..config import DEFAULT_BATCH_SIZE, RunConfig
from ..precision import DTYPES, GRADIENT_ERROR, LOG_NORM_ERROR_PER_STEP, LOSS_ERROR
from ..errors import InputError
from ..render.common import set_verbosity, warn
from ..experiment import DEFAULT_HIDDEN_SIZE
from ..model.gate_bias import BIAS_INITS
from ..model.initializers import INITIALIZERS
from ..model.losses import LOSSES
from ..model.network import READOUTS
from ..tasks import TASKS, Task

MODEL = "Model"
DATA = "Data"
FILES = "Files"
TEXT = "Text (--task text)"
OUTPUT = "Output"


def _choices(registry: dict) -> object:
    return Literal[tuple(registry)]  # the registry's names, shown in --help and checked by click


def _seq_len_default() -> str:
    """The default --seq-len for --help: the usual one and the tasks that differ, "100 (copy 120)"."""
    usual = Task.default_seq_len
    others = [f"{name} {task.default_seq_len}" for name, task in TASKS.items() if task.default_seq_len != usual]
    return f"{usual}" + (f" ({', '.join(others)})" if others else "")


def _opt(panel: str, help: str, **kw) -> typer.models.OptionInfo:
    # case_sensitive only matters to a choice: --cell LSTM is --cell lstm
    return typer.Option(help=help, rich_help_panel=panel, case_sensitive=False, **kw)


# --dtype's help: the measured error against float64 (precision.py, tests/math/test_float32.py)
DTYPE_HELP = (
    "What BPTT computes in: float64, or float32 (BPTT's arrays in half the memory, faster at large H). float32 against "
    f"float64, measured: loss within {LOSS_ERROR:.0e} and gradients within {GRADIENT_ERROR:.0e} relative, "
    f"||dL/da_t|| within {LOG_NORM_ERROR_PER_STEP:.1e} relative per step back (5e-4 at 1,000 steps), "
    "in runs that are not chaotic: see docs/analyze.md."
)


RUN_OPTIONS: dict[str, tuple[object, object]] = {
    "cell": (
        Annotated[Optional[_choices(FLAG_CELLS)], _opt(MODEL, "Recurrent cell.", show_default="rnn, or what --weights holds")],
        None,
    ),
    "activation": (
        Annotated[Optional[_choices(ACTIVATIONS)], _opt(MODEL, "Hidden activation f of the vanilla RNN (gru and lstm: tanh only).", show_default="tanh")],
        None,
    ),
    "hidden_size": (
        Annotated[Optional[int], _opt(MODEL, "Hidden units H.", min=1, show_default=str(DEFAULT_HIDDEN_SIZE))],
        None,
    ),
    "input_size": (
        Annotated[Optional[int], _opt(MODEL, "Input features D per step.", min=1, show_default="from the task, 8 for random")],
        None,
    ),
    "output_size": (
        Annotated[Optional[int], _opt(MODEL, "Outputs O (classes for ce).", min=1, show_default="from the task and loss")],
        None,
    ),
    "init": (
        Annotated[_choices(INITIALIZERS), _opt(MODEL, "Initialiser of the recurrent matrix Wa (of each gate's block of W_hh for gru, lstm).")],
        "normal",
    ),
    "init_gain": (
        Annotated[float, _opt(MODEL, "Gain of the initialiser (std * sqrt(H) for normal).")],
        1.0,
    ),
    "spectral_radius": (
        Annotated[Optional[float], _opt(MODEL, "Rescale Wa (each gate's block of W_hh for gru, lstm) to this spectral radius after init.", show_default=False)],
        None,
    ),
    "recurrent_scale": (
        Annotated[Optional[float], _opt(MODEL, "Multiply every recurrent matrix W_hh (each gate block alike) by this factor, after init or as read from --weights: the model with larger or smaller recurrent weights.", show_default=False)],
        None,
    ),
    "bias_init": (
        Annotated[Literal[BIAS_INITS], _opt(MODEL, "Gate biases of lstm, gru at init: zero (f = 0.5), forget-bias (lstm b_f = 1), chrono (Tallec & Ollivier: lstm b_f ~ ln U[1, T_max-1], b_i = -b_f; gru b_z likewise).")],
        "zero",
    ),
    "chrono_max": (
        Annotated[Optional[int], _opt(MODEL, "T_max of --bias-init chrono: the longest memory the gates start with.", min=2, show_default="--seq-len")],
        None,
    ),
    "dtype": (
        Annotated[Literal[DTYPES], _opt(MODEL, DTYPE_HELP)],
        "float64",
    ),
    "loss": (
        Annotated[Optional[_choices(LOSSES)], _opt(MODEL, "Loss: bce (1 output), ce (classes), mse.", show_default="from the task")],
        None,
    ),
    "task": (
        Annotated[_choices(TASKS), _opt(DATA, "Where the sequences come from.")],
        "random",
    ),
    "seq_len": (
        Annotated[Optional[int], _opt(DATA, "Sequence length T. analyze and check switch to checkpointed BPTT (sqrt(T) states kept) when the full run does not fit in memory.", min=1, show_default=f"{_seq_len_default()}, or what --inputs holds")],
        None,
    ),
    "batch_size": (
        Annotated[Optional[int], _opt(DATA, "Batch size B.", min=1, show_default=f"{DEFAULT_BATCH_SIZE}, or what --inputs holds")],
        None,
    ),
    "seed": (
        Annotated[int, _opt(DATA, "Seed for weights and data: same seed, same output, byte for byte.", min=0)],
        0,
    ),
    "weights": (
        Annotated[Optional[Path], _opt(FILES, "Your model: a PyTorch state dict, torch.save(model.state_dict()) .pt/.pth (or a checkpoint holding one), .safetensors, or np.savez .npz (nn.RNN/GRU/LSTM of any depth, bidirectional, with an nn.Embedding in front and an nn.Linear head); or a Keras model, model.save() .keras or .h5 (SimpleRNN/GRU/LSTM layers, Bidirectional, Embedding or Masking, a Dense head).", show_default=False, dir_okay=False)],
        None,
    ),
    "inputs": (
        Annotated[Optional[Path], _opt(FILES, "Input batch, .npy, batch first: (B, T, D) vectors, or (B, T) token ids for a model with an embedding.", show_default=False, dir_okay=False)],
        None,
    ),
    "lengths": (
        Annotated[Optional[Path], _opt(FILES, "Real steps per sequence, .npy (B,): sequence b runs over its first lengths[b] steps, as pack_padded_sequence(..., enforce_sorted=False).", show_default=False, dir_okay=False)],
        None,
    ),
    "padding_idx": (
        Annotated[Optional[int], _opt(FILES, "Pad token id: real steps are those whose token differs (pads before or after the text), and the embedding's row of that id gets no gradient, as nn.Embedding(padding_idx) holds it.", show_default=False, min=0)],
        None,
    ),
    "readout": (
        Annotated[Optional[Literal[READOUTS]], _opt(MODEL, "What the Linear head reads: last (final states, cat(h_n[-2], h_n[-1]) if bidirectional), mean or max over the real steps of the output, every step, or last-output (output[:, -1]: the output at step T, as fc(output[:, -1]) reads an unpacked padded batch).", show_default="last, every for copy")],
        None,
    ),
    "output_grads": (
        Annotated[Optional[Path], _opt(FILES, "Your own head's gradient instead of a readout: .npy dL/d(output) (B, T, H x directions), or .npz with 'output', 'h_n' (and 'c_n') (L x directions, B, H).", show_default=False, dir_okay=False)],
        None,
    ),
    "initial_state": (
        Annotated[Optional[Path], _opt(FILES, "The state every layer starts from instead of zero, as PyTorch's hx: .npz with 'h_0' (and 'c_0' for lstm), (layers x directions, B, H), layer by layer, forward before reverse; a missing one is zero. analyze's report and --save-grads then hold the gradient reaching it (dL_dh_0, dL_dc_0: torch's h0.grad, c0.grad).", show_default=False, dir_okay=False)],
        None,
    ),
    "rnn_key": (
        Annotated[Optional[str], _opt(FILES, "Prefix of the recurrent module in --weights, where it holds several (e.g. encoder.lstm).", show_default=False)],
        None,
    ),
    "head_key": (
        Annotated[Optional[str], _opt(FILES, "Prefix of the Linear head in --weights, where several could be (e.g. classifier).", show_default=False)],
        None,
    ),
    "embedding_key": (
        Annotated[Optional[str], _opt(FILES, "Prefix of the nn.Embedding in --weights, where several could be.", show_default=False)],
        None,
    ),
    "targets": (
        Annotated[Optional[Path], _opt(FILES, "Targets for --inputs, .npy: (B,) classes, or 0/1 (or probabilities) for bce, (B, O) values.", show_default=False, dir_okay=False)],
        None,
    ),
    "text": (
        Annotated[Optional[Path], _opt(TEXT, "Texts: CSV/TSV with a header, JSON Lines, or a directory of class folders (aclImdb).", show_default="built-in movie reviews")],
        None,
    ),
    "text_column": (Annotated[str, _opt(TEXT, "Column (or JSON field) holding the text.")], "text"),
    "label_column": (Annotated[str, _opt(TEXT, "Column (or JSON field) holding the label.")], "label"),
    "padding": (
        Annotated[Literal["pre", "post"], _opt(TEXT, "Pad (and truncate) short texts at the start (pre) or the end (post).")],
        "pre",
    ),
    "max_vocab": (Annotated[int, _opt(TEXT, "Largest vocabulary, <pad> and <unk> included.", min=2)], 5000),
    "min_count": (Annotated[int, _opt(TEXT, "Fewest occurrences for a word to enter the vocabulary.", min=1)], 1),
    "embeddings": (
        Annotated[str, _opt(TEXT, "Word vectors: random (fixed), onehot, or a GloVe-format text file.")],
        "random",
    ),
    "embedding_dim": (Annotated[int, _opt(TEXT, "Size D of the random word vectors.", min=1)], 16),
}


MaxMemory = Annotated[Optional[str], typer.Option(
    "--max-memory", help="Refuse a run whose estimated memory exceeds SIZE (512M, 4G); the available memory is "
    "always a limit.", rich_help_panel=DATA, show_default=False, metavar="SIZE")]


Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress bar and no warnings on stderr (errors still show).",
    rich_help_panel=OUTPUT)]
Verbose = Annotated[bool, typer.Option(
    "--verbose", "-v", help="Also say on stderr how long the command took.", rich_help_panel=OUTPUT)]


RUNNING = "Running"
Scheduler = Annotated[Optional[str], typer.Option(
    help="Run on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786) instead of local processes, "
         "with the same results; needs pip install 'gradscope-bptt\\[dask]' here and gradscope on the workers.",
    metavar="ADDRESS", show_default=False, rich_help_panel=RUNNING)]


def check_scheduler(scheduler: str | None, jobs: int | None) -> None:
    """--jobs and --scheduler are alternatives: local processes, or the cluster's workers."""
    if scheduler is not None and jobs is not None:
        raise InputError("--jobs sets local processes; with --scheduler the cluster's workers do the work")


class _Warnings(logging.Handler):
    """The core's logged warnings (a Dask worker lost: cluster.py) as the CLI's warning lines."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


@contextlib.contextmanager
def verbosity(quiet: bool, verbose: bool, command: str) -> typing.Iterator[None]:
    """-q and -v for the command's run: the progress bar and the warnings read the level."""
    if quiet and verbose:
        raise InputError("--quiet and --verbose are opposites: give one")
    set_verbosity(-1 if quiet else 1 if verbose else 0)
    started = time.perf_counter()
    logger, handler = logging.getLogger("gradscope"), _Warnings(logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # said once, as ours, not also by logging
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            yield
        if verbose:
            from . import STARTED

            now = time.perf_counter()
            print(f"gradscope: {command} took {now - started:.2f} s ({now - STARTED:.2f} s with start-up)",
                  file=sys.stderr)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        set_verbosity(0)


@contextlib.contextmanager
def memory_limit(size: str | None) -> typing.Iterator[None]:
    """--max-memory for the command's run, and for the workers it spawns (they read the variable)."""
    if size is None:
        yield
        return
    memory.parse_size(size)
    saved = os.environ.get(memory.LIMIT_ENV)
    os.environ[memory.LIMIT_ENV] = size
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(memory.LIMIT_ENV, None)
        else:
            os.environ[memory.LIMIT_ENV] = saved


# Settings of one pass, which commands that train or sweep many batches do not take.
ONE_PASS_OPTIONS = ("initial_state",)


def run_options(command: typing.Callable) -> typing.Callable:
    """Give ``command(config: RunConfig, **own)`` every RunConfig flag, defined in RUN_OPTIONS."""
    return _with_run_flags(command, "config", lambda settings: RunConfig(**settings))


def run_options_with(**defaults: object) -> typing.Callable[[typing.Callable], typing.Callable]:
    """``run_options`` with other defaults for some data flags, which give way to an --inputs file.

    ``@run_options_with(task="adding", seq_len=50)``: for a command whose job needs other data by
    default (``train``, ``compare``: a task that can be learned, sequences that train in seconds).
    With --inputs the file is the data: a flag left out takes the usual default instead (task
    random; T and B from the file), while a flag given is kept, and checked against the file.
    These flags default to None, so the command can tell a flag given from one left out; --help
    shows both defaults ("50, or what --inputs holds").
    """
    return lambda command: _with_run_flags(
        command, "config", lambda settings: RunConfig(**settings), defaults, excluded=ONE_PASS_OPTIONS
    )


def run_options_without(*excluded: str) -> typing.Callable[[typing.Callable], typing.Callable]:
    """``run_options`` without some shared flags, for a command that takes those settings its own
    way: ``@run_options_without("cell", "activation")`` for ``sweep``, which takes lists of them.
    The RunConfig gets their defaults."""
    return lambda command: _with_run_flags(
        command, "config", lambda settings: RunConfig(**settings), excluded=excluded + ONE_PASS_OPTIONS
    )


def _defaults_to_none(annotation: object, shown: str) -> object:
    """The flag's annotation made Optional, its OptionInfo copied to show ``shown`` in --help."""
    base, info = typing.get_args(annotation)
    info = copy.copy(info)
    info.show_default = shown
    return Annotated[Optional[base], info]


def _shown_defaults(name: str, value: object) -> str:
    """--help's default of a flag whose default gives way to --inputs: "50, or what --inputs holds"."""
    usual = RUN_OPTIONS[name][1]
    return f"{value}, or " + ("what --inputs holds" if usual is None else f"{usual} with --inputs")


def run_settings(command: typing.Callable) -> typing.Callable:
    """Like ``run_options``, but give ``command(settings: dict, **own)`` the flags' raw values.

    ``settings`` maps every RunConfig field to its flag's value (paths as str), for a command that
    merges them with a settings file before building the RunConfig (``gradscope check``).
    """
    return _with_run_flags(command, "settings", dict)


def _with_run_flags(
    command: typing.Callable, param: str, make: typing.Callable[[dict], object],
    defaults: dict[str, object] | None = None, excluded: tuple[str, ...] = (),
) -> typing.Callable:
    own = inspect.signature(command, eval_str=True)
    hints = typing.get_type_hints(command, include_extras=True)
    kept = [p.replace(annotation=hints.get(p.name, p.annotation))
            for p in own.parameters.values() if p.name != param]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in RUN_OPTIONS.items() if name not in excluded
    ]
    shared.append(inspect.Parameter("max_memory", inspect.Parameter.KEYWORD_ONLY, default=None,
                                     annotation=MaxMemory))
    shared += [inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Quiet),
               inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Verbose)]
    defaults = defaults or {}
    for name, value in defaults.items():
        i = [p.name for p in shared].index(name)
        shown = _shown_defaults(name, value)
        shared[i] = shared[i].replace(default=None, annotation=_defaults_to_none(shared[i].annotation, shown))

    @functools.wraps(command)
    def wrapper(**kwargs):
        settings = {name: kwargs.pop(name) for name in RUN_OPTIONS if name not in excluded}
        for name, value in defaults.items():
            if settings[name] is None:  # not given: the command's default, unless --inputs is the data
                settings[name] = RUN_OPTIONS[name][1] if settings["inputs"] is not None else value
        for name in ("weights", "inputs", "targets", "text", "lengths", "output_grads", "initial_state"):
            if settings.get(name) is not None:
                settings[name] = str(settings[name])
        name = command.__name__.removesuffix("_command")
        with verbosity(kwargs.pop("quiet"), kwargs.pop("verbose"), name), memory_limit(kwargs.pop("max_memory")):
            return command(**{param: make(settings)}, **kwargs)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + shared
    wrapper.__signature__ = own.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__
    return wrapper


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.", rich_help_panel=OUTPUT)]
PlotFile = Annotated[Optional[Path], typer.Option(
    "--plot", help="Also draw the picture to FILE, .png or .svg (needs matplotlib: pip install 'gradscope-bptt\\[plot]').",
    rich_help_panel=OUTPUT, dir_okay=False, show_default=False, metavar="FILE")]
ReportFile = Annotated[Optional[Path], typer.Option(
    "--report", help="Also write one self-contained page to FILE (.html): the run's tables and its pictures as "
    "inline SVG (pictures need matplotlib: pip install 'gradscope-bptt\\[plot]').",
    rich_help_panel=OUTPUT, dir_okay=False, show_default=False, metavar="FILE")]
