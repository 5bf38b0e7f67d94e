"""Errors that the CLI turns into exit codes.

``InputError`` is anything the user can fix: a bad option value, a missing or malformed file,
weights that disagree with the data. The CLI prints its message as one line on stderr and exits
with code 2. Its message names the problem (and the file, and the line where there is one).
"""

from __future__ import annotations

import re
from typing import Callable


class InputError(ValueError):
    """Invalid user input: a setting, a file, or data that cannot be used. Exit code 2."""


def one_line(reason: object, limit: int = 160) -> str:
    """An exception's message (or any text) on one line, cut short: the CLI prints errors as one line."""
    text = " ".join(str(reason).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Incomplete(InputError):
    """Runs lost on the way (a Dask cluster's scheduler, or one run's workers twice: cluster.Lost):
    exit code 2, and ``result``, the command's result over the runs that finished, whose
    ``partial`` (cluster.Partial) says what is missing; the CLI prints it with --json."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


class CheckFailed(Exception):
    """A CI check whose measured value crossed its threshold. Exit code 1."""


# a flag in a message: --seq-len, not the tail of a word or of another flag
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")


def reword_flags(message: str, word: Callable[[str], str]) -> str:
    """``message`` with each ``--flag`` replaced by ``word(flag)`` (the flag without its dashes):
    a check's words for another place than the command line (Python, a settings file)."""
    return FLAG.sub(lambda m: word(m.group(1)), message)


def in_python_terms(function):
    """The same function for Python callers: an InputError names keyword arguments, not flags.

    The core words its errors for the command line (``--seq-len must be ...``), where most of them
    are read; ``gradscope.analyze(seq_len=0)`` should say ``seq_len must be ...``. The CLI calls the
    undecorated functions in gradscope.commands.
    """
    import functools

    keyword = {"omega-strength": "omega"}  # flags whose keyword is not their name (Strengths.omega)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except InputError as exc:  # the same exception, so that what it carries (Incomplete.result) stays
            named = reword_flags(str(exc), lambda f: keyword.get(f, f.replace("-", "_")))
            exc.args = (named, *exc.args[1:])
            raise
        except TypeError as exc:  # a keyword no setting has: the function's, not RunConfig's own words
            unknown = re.search(r"^RunConfig\.__init__\(\) got an unexpected keyword argument ('[^']*')$", str(exc))
            if unknown is None:
                raise
            raise TypeError(f"{function.__name__}() got an unexpected keyword argument {unknown.group(1)}") from None

    return wrapper
