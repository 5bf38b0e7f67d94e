"""--report FILE.html: one page to look at, and to send, that needs nothing but a browser.

The page holds the run's terminal view, rendered by the command's own renderer from the same result
object (so it shows exactly what the terminal does, header included), and the command's pictures as
inline SVG. Everything is inside the file: no scripts, no stylesheets, no fonts or images fetched
from anywhere. Without matplotlib the page says how to install it in place of the pictures.

    analyze   the gradient norm back through time with Pascanu's bound and the eigenvalues with the
              unit circle; |dL/da_t| as a heatmap over steps and hidden units
    compare   the training loss of each run (mitigation) against the step
    spectrum  the Lyapunov exponents and the product's finite-time exponents
    sweep     the phase diagram
    history   log10 ||dL/dh_t|| over training step x time step, per run, layer and direction: drawn
              as SVG by gradscope itself (render/history.py), so without matplotlib too
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from .._version import __version__
from ..io.arrays import check_output
from ..io.atomic import write_bytes
from . import plots

FLAG = "--report"
# The width of the terminal view on a pipe (common.console): the page shows what `> file` would hold.
WIDTH = 80

Picture = tuple[str, Callable[[Any], Any]]  # caption, result -> Figure

PICTURES: dict[str, list[Picture]] = {
    "analyze": [
        ("The gradient back through time, and the eigenvalues", plots.analyze_figure),
        ("|dL/da_t| over steps and hidden units", plots.gradient_heatmap_figure),
    ],
    "compare": [
        ("Training loss of each run", lambda result: plots.training_losses_figure(
            {run.mitigation: run.history for run in result.runs}, result.config, result.baseline_loss)),
    ],
    "spectrum": [("The Lyapunov spectrum", plots.spectrum_figure)],
    "sweep": [("The phase diagram", plots.sweep_figure)],
}


def _history_pictures(result: Any) -> list[tuple[str, str]]:
    from .history import report_pictures  # the command's own renderer, when its page is written

    return report_pictures(result)


# Pictures gradscope draws as SVG itself, without matplotlib: result -> [(caption, SVG element)]
OWN_PICTURES: dict[str, Callable[[Any], list[tuple[str, str]]]] = {"history": _history_pictures}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="gradscope {version}">
<title>{title}</title>
<style>
body {{ margin: 2em auto; max-width: 72em; padding: 0 1em; font-family: sans-serif; color: #111; }}
h1 {{ font-size: 1.4em; }}
h2 {{ font-size: 1.1em; margin-top: 2em; }}
pre {{ background: #fff; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto; }}
figure {{ margin: 1em 0; }}
figure svg {{ max-width: 100%; height: auto; }}
footer {{ margin-top: 3em; color: #666; font-size: 0.9em; }}
</style>
</head>
<body>
<h1>{title}</h1>
{tables}
{warnings}<h2>Pictures</h2>
{pictures}
<footer>Written by gradscope {version}.</footer>
</body>
</html>
"""


def prepare(path: str | Path) -> Path:
    """Check --report FILE before any work is done: it ends in .html and its folder is writable."""
    return check_output(path, FLAG, (".html",))


def write_report(path: Path, result: Any, render: Callable[[Console], None]) -> None:
    """Write the page for ``result``, whose terminal view ``render`` prints, to ``path`` atomically."""
    from .notebook import PRE, recorded  # every command's renderer: imported when a page is written

    tables = recorded(render, WIDTH).export_html(inline_styles=True, code_format=PRE)
    warnings = getattr(result, "warnings", None) or []
    page = PAGE.format(
        version=html.escape(__version__),
        title=html.escape(f"gradscope {result.command}"),
        tables=tables,
        warnings=_warnings(warnings) if isinstance(warnings, list) else "",
        pictures=_pictures(result),
    )
    write_bytes(path, page.encode("utf-8"), FLAG)


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(' '.join(str(w).split()))}</li>\n" for w in warnings)
    return f"<h2>Warnings</h2>\n<ul>\n{items}</ul>\n"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>\n{svg}\n<figcaption>{html.escape(caption)}</figcaption>\n</figure>"


def _pictures(result: Any) -> str:
    if result.command in OWN_PICTURES:
        return "\n".join(_figure(svg, caption) for caption, svg in OWN_PICTURES[result.command](result))
    if not plots.available():
        return f"<p>Pictures need matplotlib: <code>{html.escape(plots.INSTALL_HINT)}</code></p>"
    figures = []
    for number, (caption, draw) in enumerate(PICTURES[result.command], start=1):
        if draw is plots.gradient_heatmap_figure and getattr(getattr(result, "setup", None), "checkpointed", False):
            figures.append("<p>No heatmap: this run kept only every k-th state (checkpointed BPTT), "
                           "not the gradient at every step.</p>")
            continue
        figures.append(_figure(inline_svg(plots.svg(draw(result)), f"fig{number}-"), caption))
    return "\n".join(figures)


def inline_svg(svg: str, prefix: str) -> str:
    """matplotlib's SVG document as an element of an HTML page.

    The XML prolog and DOCTYPE go, and so do the namespace declarations (the HTML parser puts <svg>
    and xlink:href in their namespaces itself), so that the page names no address. Every element id
    gets ``prefix``, as do the references to it, so that two pictures on one page (matplotlib numbers
    each figure's ids from 1) cannot point into each other.
    """
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg, count=2)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', svg)
    svg = re.sub(r'\bhref="#', f'href="#{prefix}', svg)
    return re.sub(r"url\(#", f"url(#{prefix}", svg)
