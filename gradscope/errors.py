"""Errors that the CLI turns into exit codes.

``InputError`` is anything the user can fix: a bad option value, a missing or malformed file,
weights that disagree with the data. The CLI prints its message as one line on stderr and exits
with code 2. Its message names the problem (and the file, and the line where there is one).
"""

from __future__ import annotations


class InputError(ValueError):
    """Invalid user input: a setting, a file, or data that cannot be used. Exit code 2."""


class CheckFailed(Exception):
    """A CI check whose measured value crossed its threshold. Exit code 1."""
