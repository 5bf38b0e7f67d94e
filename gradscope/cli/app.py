"""The Typer application, the error boundary, and the single path from result to stdout."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from .._version import __version__
from ..errors import CheckFailed, InputError
from ..runtime import keep_freed_memory
from ..render.common import console
from ..serialize import dumps

# Exit codes (REFERENCE §6). An internal error must not look like a failed check.
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

app = typer.Typer(
    name="gradscope",
    help="See how the gradient fades or explodes on its way back through time.",
    add_completion=False,
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


def emit(result: Any, as_json: bool, render: Callable[[Console], None]) -> None:
    """Data to stdout: the JSON document, or the rich view of the same result."""
    if as_json:
        sys.stdout.write(dumps(result) + "\n")
        sys.stdout.flush()
    else:
        render(console())


def _error(message: str) -> None:
    # One line, no markup: scripts grep it, people read it.
    print(f"gradscope: error: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of raising (0 ok, 1 check failed, 2 input, 3 internal)."""
    keep_freed_memory()  # commands repeat BPTT: reuse its arrays' memory (runtime.py)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="gradscope", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        _error("aborted")
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
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        _error(where + exc.format_message())
        return getattr(exc, "exit_code", EXIT_USAGE)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (| head): not an error of ours; keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the boundary: nothing escapes as a traceback
        if os.environ.get("GRADSCOPE_DEBUG"):
            traceback.print_exc()
        _error(f"internal error: {type(exc).__name__}: {exc} (set GRADSCOPE_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL
    return code if isinstance(code, int) else EXIT_OK
