"""The optional extras and the one line that installs each: every "needs X" hint comes from here.

The distribution is ``gradscope-bptt`` ("gradscope" on PyPI is another project); the import package
and the command are ``gradscope``. pip resolves ``gradscope-bptt[plot]`` against the installed
distribution, so the hint works for an install from a clone or a wheel as well as from PyPI.
"""

from __future__ import annotations

DISTRIBUTION = "gradscope-bptt"


def install_hint(extra: str) -> str:
    """The command that adds an extra's dependencies: ``pip install 'gradscope-bptt[plot]'``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
