"""The Typer application, the error boundary, and the single path from result to stdout."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
import signal
import sys
import threading
import traceback
from typing import Annotated, Any, Callable, Iterator, Optional

import typer
from rich.console import Console

from .._version import __version__
from ..errors import CheckFailed, Incomplete, InputError
from ..memory import out_of_memory_message
from ..runtime import keep_freed_memory
from ..render.common import console
from ..serialize import dumps
from .usage import usage_message

# Exit codes (REFERENCE §6). An internal error must not look like a failed check.
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

app = typer.Typer(
    name="gradscope",
    help="See how the gradient fades or explodes on its way back through time.",
    add_completion=True,  # --install-completion, --show-completion (typer's)
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"gradscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """See how the gradient fades or explodes on its way back through time."""


def emit(result: Any, as_json: bool, render: Callable[[Console], None], report: Path | None = None) -> None:
    """Data to stdout: the JSON document, or the rich view of the same result; and with
    ``--report`` the same view, as an HTML page, to ``report`` first."""
    if report is not None:
        from ..render.report import write_report  # the page's renderers: only when one is asked for

        write_report(report, result, render)
    if as_json:
        sys.stdout.write(dumps(result) + "\n")
        sys.stdout.flush()
    else:
        render(console())


@contextlib.contextmanager
def keeping_partial(as_json: bool) -> Iterator[None]:
    """Runs the cluster cut short (errors.Incomplete): with --json, the partial result (its
    ``partial`` says what is missing) to stdout, then the error, one line on stderr, exit 2. The
    table view prints nothing: a partial table would read as a finished one."""
    try:
        yield
    except Incomplete as exc:
        if as_json:
            sys.stdout.write(dumps(exc.result) + "\n")
            sys.stdout.flush()
        raise


def _error(message: str) -> None:
    # One line, no markup: scripts grep it, people read it.
    print(f"gradscope: error: {' '.join(str(message).split())}", file=sys.stderr)


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread. Not a KeyboardInterrupt, which click would turn
    into an Abort (after printing a blank line); a BaseException, so that no ``except Exception``
    swallows it, while every ``finally`` (a worker pool's, a temporary file's) still runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted while the command runs (in the main thread only: Python
    delivers signals there); a SIGINT that the parent shell ignores stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, previous in saved.items():
        if previous is not signal.SIG_IGN:
            signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, previous in saved.items():
            if previous is not None:
                signal.signal(sig, previous)


def _stdout_closed() -> int:
    """The reader went away (| head): not an error of ours. Point stdout at /dev/null so that
    Python's flush at exit does not complain, and exit 0, as Unix filters do."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of raising (0 ok, 1 check failed, 2 input, 3 internal,
    130 SIGINT, 143 SIGTERM)."""
    try:
        with _signals_interrupt():
            return _main(argv)
    except Interrupted as exc:  # between _main's return and the handlers' restoration
        _error("interrupted")
        return 128 + exc.signum


def _main(argv: list[str] | None) -> int:
    keep_freed_memory()  # commands repeat BPTT: reuse its arrays' memory (runtime.py)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="gradscope", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort as exc:
        _error("interrupted" if isinstance(exc.__cause__, KeyboardInterrupt) else "aborted")
        return 130
    except InputError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except CheckFailed as exc:
        _error(str(exc))
        return EXIT_CHECK_FAILED
    except typer.TyperException as exc:
        # Bad flags and values, as typer's (vendored) click reports them: exit code 2.
        if type(exc).__name__ == "NoArgsIsHelpError":
            return EXIT_OK  # bare `gradscope`: the help was printed, nothing went wrong
        _error(usage_message(exc))
        return getattr(exc, "exit_code", EXIT_USAGE)
    except Interrupted as exc:
        _error("interrupted")  # the pools and temporary files were cleaned up on the way here
        return 128 + exc.signum
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        return _stdout_closed()
    except SystemExit as exc:
        # click answers a closed stdout (EPIPE) with sys.exit(1), which would read as a failed check
        if isinstance(exc.__context__, OSError) and exc.__context__.errno == errno.EPIPE:
            return _stdout_closed()
        raise
    except MemoryError as exc:
        # a run the estimate (memory.py) let through: the input is too large, not our fault
        _error(out_of_memory_message(exc))
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the boundary: nothing escapes as a traceback
        if os.environ.get("GRADSCOPE_DEBUG"):
            traceback.print_exc()
        _error(f"internal error: {type(exc).__name__}: {exc} (set GRADSCOPE_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL
    return code if isinstance(code, int) else EXIT_OK
