"""Errors that the CLI turns into exit codes.

``InputError`` is anything the user can fix: a bad option value, a missing or malformed file,
weights that disagree with the data. The CLI prints its message as one line on stderr and exits
with code 2. Its message names the problem (and the file, and the line where there is one).
"""

from __future__ import annotations


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


def in_python_terms(function):
    """The same function for Python callers: an InputError names keyword arguments, not flags.

    The core words its errors for the command line (``--seq-len must be ...``), where most of them
    are read; ``gradscope.analyze(seq_len=0)`` should say ``seq_len must be ...``. The CLI calls the
    undecorated functions in gradscope.commands.
    """
    import functools
    import re

    flag = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")
    keyword = {"omega-strength": "omega"}  # flags whose keyword is not their name (Strengths.omega)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except InputError as exc:  # the same exception, so that what it carries (Incomplete.result) stays
            named = flag.sub(lambda m: keyword.get(m.group(1), m.group(1).replace("-", "_")), str(exc))
            exc.args = (named, *exc.args[1:])
            raise

    return wrapper
