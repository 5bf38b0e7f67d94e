"""How the CLI reads to a person: --help at 80 columns, and usage errors in gradscope's own words.

typer (pinned below 0.30 in pyproject.toml) renders --help with rich; three of its habits read badly
in a terminal 80 columns wide, and are changed here, once, for every command:

- the type column: ``<bool>`` beside a flag, ``<tanh|relu|sigmoid|linear>`` folded mid-word. Here a
  flag shows no type, a number INT or FLOAT, a path FILE, and a choice its names when they are short
  (``pre|post``), else NAME, with the names listed in the help text;
- a default given as text shows in parentheses, ``[default: (tanh)]``: here ``[default: tanh]``;
- a bad value is reported in pydantic's words ("Value error, 'lstmm' is not one of ..."): here
  ``--cell: no such choice 'lstmm'; did you mean lstm? (rnn, gru, lstm)``.

``tests/cli/test_cli_habits.py`` renders the help and the errors, so that a typer upgrade that moves
these hooks fails there, not in front of a user.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, Callable

import typer.core
from rich.columns import Columns
from rich.text import Text

SHORT_CHOICES = 14  # longest "a|b|c" shown in the type column; longer lists go in the help text


def choices(param: Any) -> list[str] | None:
    """The names a choice option takes, or None for any other parameter."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None or not desc.is_choice or desc.choices is None:
        return None
    return [str(getattr(c, "value", c)) for c in desc.choices]


def _type_label(self: typer.core.TyperOption, ctx: Any) -> str | None:
    if self.metavar is not None:
        return self.metavar or None
    if self.is_flag:
        return None
    names = choices(self)
    if names is not None:
        joined = "|".join(names)
        return joined if len(joined) <= SHORT_CHOICES else "NAME"
    desc = self.type_descriptor
    if desc.is_path:
        return "DIR" if desc.parameter_info.file_okay is False else "FILE"
    annotation = desc.annotation
    return {int: "INT", float: "FLOAT"}.get(annotation, "TEXT")


_original_default_string = typer.core._get_default_string
_original_parameter_help: Callable[..., Columns] | None = None  # typer's, once help is rendered


def _default_string(obj: Any, *, ctx: Any, show_default_is_str: bool, default_value: Any) -> str:
    if show_default_is_str:
        return str(obj.show_default)  # typer wraps a text default in parentheses
    return _original_default_string(obj, ctx=ctx, show_default_is_str=False, default_value=default_value)


def _parameter_help(*, param: Any, ctx: Any, markup_mode: Any) -> Columns:
    """typer's help cell, with a long choice's names added where the type column shows NAME."""
    cell = _original_parameter_help(param=param, ctx=ctx, markup_mode=markup_mode)
    names = choices(param)
    if names is None or _type_label(param, ctx) != "NAME" or not cell.renderables:
        return cell
    text = cell.renderables[0]
    if isinstance(text, Text) and not all(name in text.plain for name in names):
        text.append(f" One of: {', '.join(names)}.")
    return cell


def _patch_rich_help() -> None:
    """Put _parameter_help in typer's rich_utils. typer imports rich_utils (and with it markdown and
    syntax highlighting, 45 ms) only to render help or an error, so it is patched then, not at start-up."""
    global _original_parameter_help
    import typer.rich_utils

    if typer.rich_utils._get_parameter_help is not _parameter_help:
        _original_parameter_help = typer.rich_utils._get_parameter_help
        typer.rich_utils._get_parameter_help = _parameter_help


def _patching_help(format_help: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(format_help)
    def patched(self: Any, ctx: Any, formatter: Any) -> None:
        _patch_rich_help()
        return format_help(self, ctx, formatter)

    return patched


typer.core.TyperOption.display_type_rich = _type_label
typer.core._get_default_string = _default_string
typer.core.TyperCommand.format_help = _patching_help(typer.core.TyperCommand.format_help)
typer.core.TyperGroup.format_help = _patching_help(typer.core.TyperGroup.format_help)


def did_you_mean(word: str, names: list[str]) -> str:
    """"; did you mean lstm?" when one name is close to ``word``, else ""."""
    close = difflib.get_close_matches(word.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
    return f"; did you mean {names[[n.lower() for n in names].index(close[0])]}?" if close else ""


def _flag(param: Any) -> str:
    opts = getattr(param, "opts", None) or [getattr(param, "name", "value")]
    return max(opts, key=len)


def usage_message(exc: Exception) -> str:
    """A usage error (click's or typer's), as one line in gradscope's words."""
    param = getattr(exc, "param", None)
    cause = exc.__cause__
    errors = cause.errors() if hasattr(cause, "errors") else []
    if param is None or not errors and choices(param) is None:
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        return where + exc.format_message()
    flag = _flag(param)
    first = errors[0] if errors else {}
    value = first.get("input")
    kind = first.get("type", "")
    names = choices(param)
    if names is not None:
        return f"{flag}: no such choice {value!r}{did_you_mean(str(value), names)} ({', '.join(names)})"
    if kind == "int_parsing":
        return f"{flag} takes a whole number, not {value!r}"
    if kind == "float_parsing":
        return f"{flag} takes a number, not {value!r}"
    limits = first.get("ctx") or {}
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(limits.values()), "?")
        return f"{flag} must be {sign} {bound}, not {value!r}"
    return f"{flag}: {first.get('msg', exc.format_message())}"
