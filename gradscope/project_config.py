"""Settings a repository pins for ``gradscope check``: a ``[tool.gradscope]`` table in pyproject.toml.

    [tool.gradscope]
    weights = "models/rnn.npz"     # paths are relative to the directory of the file
    seq-len = 200                  # any RunConfig field, kebab-case or snake_case
    min-ratio = 1e-4               # and the thresholds: min-ratio, max-ratio, fail-on, every-layer
    fail-on = ["vanishing", "nonfinite"]

Where the settings come from: the file given with ``--config`` (its ``[tool.gradscope]`` table when
it has a ``[tool]`` table, as a pyproject.toml does, otherwise its top level); without --config, the
nearest pyproject.toml that has a ``[tool.gradscope]`` table, from the current directory upwards.
Precedence: a flag given on the command line > the file > the built-in default. Unknown keys,
wrong types and bad values are InputErrors naming the file and the key.
"""

from __future__ import annotations

import os
import stat
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model.activations import ACTIVATIONS
from .model.cells import CELLS
from .commands.check import Criteria
from .config import FIELD_TYPES, RunConfig
from .errors import InputError, reword_flags
from .io.files import os_problem, regular_file, stat_input
from .model.initializers import INITIALIZERS
from .model.losses import LOSSES
from .tasks import TASKS
from .text.encode import PADDINGS

PYPROJECT = "pyproject.toml"
TABLE = "[tool.gradscope]"
PATH_KEYS = ("weights", "inputs", "targets", "text", "embeddings", "initial_state")
CHOICES: dict[str, typing.Collection[str]] = {
    "cell": CELLS, "activation": ACTIVATIONS, "task": TASKS, "init": INITIALIZERS, "loss": LOSSES,
    "padding": PADDINGS,
}


CRITERIA_TYPES: dict[str, type] = {"min_ratio": float, "max_ratio": float, "fail_on": list, "every_layer": bool}
ALLOWED_KEYS = tuple(k.replace("_", "-") for k in (*FIELD_TYPES, *CRITERIA_TYPES))

_TOML_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
               dict: "a table"}


@dataclass(frozen=True)
class ProjectSettings:
    """Validated settings from a file, snake_case keys.

    source : the file as shown to the user (relative to the current directory when found by
        search), or None when no file was used.
    run : RunConfig fields. criteria : min_ratio, max_ratio, fail_on, every_layer.
    """

    source: str | None = None
    run: dict[str, Any] = field(default_factory=dict)
    criteria: dict[str, Any] = field(default_factory=dict)

    def run_config(self, flags: dict[str, Any]) -> RunConfig:
        """The RunConfig of the file's settings, overridden by the flags given on the command line."""
        return RunConfig(**{**self.run, **flags})

    def thresholds(self, flags: dict[str, Any]) -> Criteria:
        """The Criteria of the file's thresholds, overridden by the flags given on the command line."""
        return Criteria(**{**self.criteria, **flags})


def _toml_type(value: object) -> str:
    return next((name for t, name in _TOML_NAMES.items() if type(value) is t), "a date or time")


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not valid TOML: it is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {os_problem(exc)}") from None


def _tool_table(data: dict, path: Path) -> dict | None:
    """The [tool.gradscope] table of a parsed file, or None when it has none."""
    tool = data.get("tool")
    table = tool.get("gradscope") if isinstance(tool, dict) else None
    if table is not None and not isinstance(table, dict):
        raise InputError(f"{path}: tool.gradscope must be a table, not {_toml_type(table)}")
    return table


def find_pyproject(start: Path) -> tuple[Path, dict] | None:
    """The nearest pyproject.toml with a [tool.gradscope] table, from ``start`` upwards, and the table."""
    for directory in (start, *start.parents):
        candidate = directory / PYPROJECT
        if candidate.is_file():
            table = _tool_table(_read_toml(candidate), candidate)
            if table is not None:
                return candidate, table
    return None


def _check_type(where: str, key: str, value: object, expected: type) -> None:
    if expected is list:  # fail-on: "vanishing,exploding" or ["vanishing", "exploding"]
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        wanted = "a string or an array of strings"
    else:
        ok = not isinstance(value, bool) or expected is bool
        ok = ok and isinstance(value, (int, float) if expected is float else expected)
        wanted = _TOML_NAMES[expected]
    if not ok:
        raise InputError(f"{where}: {key} must be {wanted}, not {_toml_type(value)} ({value!r})")


def parse_table(table: dict, where: str, base: str = ".") -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a settings table; return (RunConfig fields, Criteria fields), snake_case.

    ``where`` names the file (and table) in errors; relative paths are taken from ``base``.
    """
    run: dict[str, Any] = {}
    criteria: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name in spelled:
            raise InputError(f"{where}: {key} repeats {spelled[name]}")
        spelled[name] = key
        if name not in FIELD_TYPES and name not in CRITERIA_TYPES:
            raise InputError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(ALLOWED_KEYS)}")
        expected = FIELD_TYPES.get(name) or CRITERIA_TYPES[name]
        _check_type(where, key, value, expected)
        if name in CHOICES and value not in CHOICES[name]:
            raise InputError(f"{where}: {key} = {value!r} is not one of {', '.join(CHOICES[name])}")
        if name in PATH_KEYS:
            value = _resolve(value, base, must_exist=name == "embeddings")
        (run if name in FIELD_TYPES else criteria)[name] = value
    # The file must make sense on its own (a --targets needs its --inputs in the same place).
    try:
        RunConfig(**run)
        thresholds = Criteria(**criteria)
    except InputError as exc:
        raise InputError(f"{where}: {_as_keys(str(exc), spelled)}") from None
    return run, {name: getattr(thresholds, name) for name in criteria}


def _as_keys(message: str, spelled: dict[str, str]) -> str:
    """A check's message in the file's words: each ``--flag`` that names a setting becomes the key,
    as the file spells it where it has one ("--hidden-size must be ..." -> "hidden-size must be ...")."""
    def key(flag: str) -> str:
        name = flag.replace("-", "_")
        if name in spelled:
            return spelled[name]
        return flag if name in FIELD_TYPES or name in CRITERIA_TYPES else f"--{flag}"

    return reword_flags(message, key)


def _resolve(value: str, base: str, must_exist: bool) -> str:
    """A path from the file, taken relative to the file's directory (as the file's author meant).

    --embeddings is a name (random, onehot) or a file: only an existing file is resolved.
    """
    resolved = os.path.normpath(os.path.join(base, value))
    return value if must_exist and not os.path.exists(resolved) else resolved


def load_project_settings(
    config_file: str | os.PathLike | None = None, start: Path | None = None
) -> ProjectSettings:
    """The settings of ``config_file``, or of the nearest pyproject.toml with [tool.gradscope]."""
    if config_file is not None:
        path = Path(config_file)
        if stat.S_ISDIR(stat_input(path, "config").st_mode):
            raise InputError(f"config file {path} is a directory, not a TOML file")
        regular_file(path, "config")  # a FIFO must not be opened: open() would wait for a writer
        data = _read_toml(path)
        if "tool" in data:
            table = _tool_table(data, path)
            if table is None:
                raise InputError(f"config file {path} has a [tool] table but no {TABLE}")
            where = f"{path} {TABLE}"
        else:
            table, where = data, str(path)
        shown = str(path)
    else:
        start = start if start is not None else Path.cwd()
        found = find_pyproject(start)
        if found is None:
            return ProjectSettings()
        path, table = found
        shown = os.path.relpath(path, start)
        where = f"{shown} {TABLE}"
    run, criteria = parse_table(table, where, os.path.dirname(shown) or ".")
    return ProjectSettings(shown, run, criteria)
