"""Results in a notebook: the CLI's tables, rendered by the same modules, as HTML or rich renderables.

Called (lazily) by the ``_repr_html_`` and ``__rich_console__`` that ``gradscope/results.py`` gives
every result, so that the core never imports rich.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.text import Text

from .analyze import render_analyze
from .check import render_check
from .compare import render_compare
from .history import render_history
from .reproduce import render_reproduce
from .spectrum import render_spectrum
from .sweep import render_sweep
from .train import render_train

WIDTH = 100
RENDERERS: dict[str, Callable[[Any, Console], None]] = {
    "analyze": lambda r, c: render_analyze(r, c, 16),
    "check": render_check,
    "train": render_train,
    "compare": render_compare,
    "reproduce": render_reproduce,
    "spectrum": lambda r, c: render_spectrum(r, c, 8),
    "sweep": render_sweep,
    "history": render_history,
}


PRE = "<pre style=\"font-family:monospace;line-height:1.2\">{code}</pre>"


def recorded(render: Callable[[Console], None], width: int) -> Console:
    """A Console that ``render`` has printed to, recorded (with its styles) for export."""
    console = Console(file=io.StringIO(), record=True, width=width, highlight=False, soft_wrap=False,
                      force_terminal=True, color_system="truecolor")
    render(console)
    return console


def _recorded(result: Any, width: int) -> Console:
    return recorded(lambda console: RENDERERS[result.command](result, console), width)


def html(result: Any) -> str:
    """The result's tables as an HTML fragment (inline styles, monospace), for Jupyter."""
    return _recorded(result, WIDTH).export_html(inline_styles=True, code_format=PRE)


def renderables(result: Any, width: int) -> Iterator[Text]:
    """The result's tables for ``rich.print(result)``, at the console's width."""
    yield Text.from_ansi(_recorded(result, min(width, WIDTH)).export_text(styles=True))
