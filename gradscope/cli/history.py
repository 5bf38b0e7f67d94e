"""``gradscope history FILE.ndjson``: the gradient's flow over training, from a recording."""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional

import typer

from ..errors import InputError
from ..render import plots
from ..render.common import console, warn
from ..render.report import prepare as prepare_report
from ..serialize import dumps_line
from .app import Interrupted, app, emit
from .options import OUTPUT, JsonFlag, PlotFile, Quiet, Verbose, verbosity

# history draws its heatmap itself: its page needs no matplotlib, unlike the other commands' pictures
HistoryReportFile = Annotated[Optional[Path], typer.Option(
    "--report", help="Also write one self-contained page to FILE (.html): the table and the heatmap as inline "
    "SVG (drawn without matplotlib).",
    rich_help_panel=OUTPUT, dir_okay=False, show_default=False, metavar="FILE")]

if TYPE_CHECKING:  # the reader is imported when the command runs (tests/test_startup.py)
    from ..commands.history import HistoryResult, Update

VIEW = "View"
FOLLOW = "Follow a run"


@app.command("history")
def history_command(
    file: Annotated[Path, typer.Argument(
        help="The recording: one JSON record per line and recorded pass, as gradscope.torch.attach(module, "
             "every=N, to=FILE) writes it (gradscope schema record).", show_default=False, metavar="FILE")],
    layer: Annotated[Optional[int], typer.Option(
        help="The heatmap's layer, 0 the bottom one.", rich_help_panel=VIEW, min=0,
        show_default="the top layer")] = None,
    direction: Annotated[Literal["forward", "reverse"], typer.Option(
        help="The heatmap's direction (reverse: of a bidirectional layer).", rich_help_panel=VIEW,
        case_sensitive=False)] = "forward",
    run: Annotated[Optional[str], typer.Option(
        help="Only this run, where the records name runs (compare's: the mitigation).", rich_help_panel=VIEW,
        metavar="NAME", show_default="every run")] = None,
    rows: Annotated[int, typer.Option(
        help="Passes shown per run in the table and the heatmap, evenly spaced, the first and the last always "
             "(--json has them all).", rich_help_panel=VIEW, min=2)] = 20,
    all_rows: Annotated[bool, typer.Option(
        "--all", help="Show every recorded pass.", rich_help_panel=VIEW)] = False,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep reading as the file grows (every 0.5 s) until Ctrl-C or --follow-timeout: "
        "a live view on a terminal; on a pipe one row per new pass as it arrives, or with --json one JSON "
        "line per pass.", rich_help_panel=FOLLOW)] = False,
    follow_timeout: Annotated[Optional[float], typer.Option(
        help="With --follow, stop after this many seconds without the file growing.", rich_help_panel=FOLLOW,
        min=0, show_default="never: Ctrl-C stops")] = None,
    json: JsonFlag = False,
    plot: PlotFile = None,
    report: HistoryReportFile = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """How the gradient's flow changed over training: a table per recorded pass and a heatmap of
    log10 ||dL/dh_t|| over training step x time step."""
    with verbosity(quiet, verbose, "history"):
        _history(file, layer, direction, run, None if all_rows else rows, follow, follow_timeout, json, plot, report)


def _history(file, layer, direction, run, rows, follow, follow_timeout, json, plot, report) -> None:
    # imported here, not at the top: the CLI's start-up registers every command (tests/test_startup.py)
    from ..commands.history import history, layer_key
    from ..render.history import render_history

    if follow_timeout is not None and not follow:
        raise InputError("--follow-timeout goes with --follow")
    picture = plots.prepare(plot) if plot is not None else None
    page = prepare_report(report) if report is not None else None
    if follow:
        result = _follow(file, run, layer, direction, rows, follow_timeout, json)
        if result is None:
            return
    else:
        result = history(file, run)
    key = layer_key(result, layer, direction)
    if result.incomplete_last_line:
        warn(f"the last line of {file} is unfinished (a run still writing it?): left out")
    if picture is not None:
        plots.save(plots.history_figure(result, *key), picture)
    render = lambda console: render_history(result, console, rows, key)  # noqa: E731
    if follow:  # the passes are out already: only the page is left to write
        if page is not None:
            from ..render.report import write_report

            write_report(page, result, render)
    else:
        emit(result, json, render, page)


def _follow(file: Path, run: str | None, layer: int | None, direction: str, rows: int | None,
            timeout: float | None, as_json: bool) -> HistoryResult | None:
    """Show the recording as it grows until Ctrl-C or the timeout; the history at the end (None when
    Ctrl-C came before any pass)."""
    from ..commands.history import follow, layer_key

    out = console()
    show = _LiveView(out, rows) if out.is_terminal and not as_json else _Stream(as_json)
    result = None
    try:
        with show.live if isinstance(show, _LiveView) else contextlib.nullcontext():
            for update in follow(file, run, timeout=timeout):
                result = update.result
                key = layer_key(result, layer, direction)
                if update.restarted:
                    warn(f"{file} was replaced (a run started again?): reading it from the start")
                show.update(update, key)
    except (Interrupted, KeyboardInterrupt) as exc:  # Ctrl-C: the way to stop following
        if getattr(exc, "signum", signal.SIGINT) != signal.SIGINT:
            raise
        if result is None:
            warn(f"no pass recorded in {file} yet")
    return result


class _Stream:
    """--follow on a pipe: the header once (again after a restart), then one row per new pass; or
    with --json one compact JSON line per pass, each flushed as it is written. A pass the recorder
    skipped is said on stderr, once per reason (stdout keeps the passes alone)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.started = False
        self.reasons: set[str] = set()

    def update(self, update: Update, key: tuple[int, str]) -> None:
        from ..commands.history import unpadded
        from ..render.history import stream_header, stream_row

        lines = []
        if not self.as_json and (not self.started or update.restarted):
            lines.append(stream_header(update.result))
        self.started = True
        for p in update.new:
            lines.append(dumps_line(unpadded(p)) if self.as_json else stream_row(update.result, p))
        for s in update.new_skipped:
            if s.reason not in self.reasons:
                self.reasons.add(s.reason)
                run = "" if s.run is None else f" of run {s.run}"
                warn(f"the recorder skipped the pass at step {s.step}{run}: {s.reason} (passes skipped for this "
                     "reason again are not repeated)")
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()


class _LiveView:
    """--follow on a terminal: the whole view, redrawn in place as passes arrive (rich Live), its
    rows fitted to the terminal's height."""

    def __init__(self, out, rows: int | None) -> None:
        from rich.live import Live

        self.out, self.rows = out, rows
        self.live = Live(console=out, auto_refresh=False, redirect_stderr=False)
        self.columns = None  # every pass's column widths so far: each poll measures its new passes only

    def update(self, update: Update, key: tuple[int, str]) -> None:
        from ..render.history import history_view, in_colour, rows_to_fit, widened

        self.columns = widened(None if update.restarted else self.columns, update.result, update.new)
        rows = rows_to_fit(update.result, self.out.width, self.out.height, self.rows, self.columns)
        self.live.update(history_view(update.result, self.out.width, in_colour(self.out), rows, key), refresh=True)
