"""The command-line interface: a thin layer over the core. Nothing imports it but the entry points.

Each command is one module registering itself on ``app``; importing them here wires them up.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the commands' imports (numpy, rich, typer): -v's start-up

import sys  # noqa: E402

from . import analyze  # noqa: F401  (registers the command)
from . import check  # noqa: F401  (registers the command)
from . import compare  # noqa: F401  (registers the command)
from . import history  # noqa: F401  (registers the command)
from . import reproduce  # noqa: F401  (registers the command)
from . import schema  # noqa: F401  (registers the command)
from . import spectrum  # noqa: F401  (registers the command)
from . import sweep  # noqa: F401  (registers the command)
from . import train  # noqa: F401  (registers the command)
from .app import app, main


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


__all__ = ["app", "main", "run"]
