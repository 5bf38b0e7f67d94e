"""What a path names, asked of the file system before anything opens it.

``open()`` on a FIFO blocks until a writer appears, and on a device reads without end: every input
file is checked with ``os.stat`` first, and only a regular file (or a directory, where one is
allowed) goes on. OS errors become InputErrors that name the path and say what went wrong, in words
(``File name too long``, ``Permission denied``), never a traceback.

Standard input is the one stream read (``-``): once, to its end, into a file of its own
(``stdin_copy``), which the rest of the run reads like any other.
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import InputError

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # the first bytes of a zip archive, or of an empty one
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # an HDF5 file's signature (Keras' .h5 and .weights.h5)
KERAS_READ_BY = "Keras models are read by gradscope.io.keras.read_keras"
SAVE_STATE_DICT = 'torch.save(model.state_dict(), "model.pt")'  # what to save instead of a whole model


def os_problem(exc: OSError) -> str:
    """An OSError in words: 'File name too long', 'No space left on device'."""
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def kind_of(mode: int) -> str:
    """What a stat mode names, for messages: 'a named pipe (FIFO)', 'a regular file'."""
    return next((name for test, name in _KINDS if test(mode)), "a regular file" if stat.S_ISREG(mode) else "not a file")


def stat_input(path: str | os.PathLike, what: str) -> os.stat_result:
    """``os.stat(path)``, its OSErrors as InputErrors naming ``what`` and the path."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {path}") from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise InputError(f"{what} file not found: {path} (a folder on the way is a file)") from None
        raise InputError(f"cannot read {what} file {path}: {os_problem(exc)}") from None
    except ValueError as exc:  # a NUL byte in the name
        raise InputError(f"{what} path {path!r} is not a valid file name ({exc})") from None


def regular_file(path: str | os.PathLike, what: str, hint: str = "", missing: str | None = None) -> Path:
    """``path`` if it names a regular file (symlinks followed); otherwise an InputError that says what
    it is instead (``missing``, if given, when there is nothing there). Never opens the file, so a
    FIFO or a device cannot block or stream forever."""
    if missing is not None and not os.path.lexists(path):
        raise InputError(missing)
    mode = stat_input(path, what).st_mode
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} path {path} is {kind_of(mode)}, not a regular file{hint}")
    return Path(path)


def input_head(path: Path, what: str, formats: str, size: int = 16) -> tuple[bytes, int]:
    """The first ``size`` bytes of the input file ``what`` and its length in bytes, for recognising its
    format; an InputError for a missing or empty file, a directory, a FIFO or a device (ending with
    ``formats``, the sentence of what gradscope reads, where that helps)."""
    try:
        mode = stat_input(path, what)
    except InputError as exc:
        raise InputError(f"{exc}; {formats}" if "not found" in str(exc) else str(exc)) from None
    if stat.S_ISDIR(mode.st_mode):
        raise InputError(f"{what} path {path} is a directory, not a file; {formats}")
    regular_file(path, what)  # a FIFO or a device: refused before open() could block on it
    try:
        with open(path, "rb") as fh:
            head = fh.read(size)
    except OSError as exc:
        raise InputError(f"cannot read {what} file {path}: {os_problem(exc)}") from None
    if not head:
        raise InputError(f"{what} file {path} is empty; {formats}")
    return head, mode.st_size


STDIN = "-"
STDIN_COPY = "GRADSCOPE_STDIN_COPY"  # where the copy is, for the processes a run starts


def stdin_copy(flag: str) -> Path:
    """Standard input read to its end into ``<temporary folder>/stdin``, once per run: what is read
    twice (texts are counted, then encoded) or by every process of a run (which finds the copy in
    the environment) reads the copy. It is removed when the process that made it exits."""
    given = os.environ.get(STDIN_COPY)
    if given and os.path.isfile(given):
        return Path(given)
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None or sys.stdin.isatty():
        raise InputError(f"{flag} {STDIN} reads standard input, but nothing is piped to it "
                         f"(cat texts.csv | gradscope ... {flag} {STDIN})")
    folder = Path(tempfile.mkdtemp(prefix="gradscope-"))
    atexit.register(shutil.rmtree, folder, True)
    copy = folder / "stdin"
    try:
        with open(copy, "wb") as out:
            shutil.copyfileobj(stream, out)
    except OSError as exc:
        raise InputError(f"{flag} {STDIN}: cannot keep standard input ({os_problem(exc)})") from None
    if not copy.stat().st_size:
        raise InputError(f"{flag} {STDIN}: standard input is empty")
    os.environ[STDIN_COPY] = str(copy)
    return copy


def check_writable_folder(path: Path, flag: str) -> None:
    """InputError unless ``path`` may be written as a file: its name not too long, its folder there
    and writable, and it not a directory or a device."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        os.stat(parent)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise InputError(f"cannot write {flag} {path}: the folder {parent} does not exist") from None
        raise InputError(f"cannot write {flag} {path}: {os_problem(exc)}") from None
    if not parent.is_dir():
        raise InputError(f"cannot write {flag} {path}: {parent} is not a folder")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:  # a name too long, a loop of symlinks
        raise InputError(f"cannot write {flag} {path}: {os_problem(exc)}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise InputError(f"cannot write {flag} {path}: it is {kind_of(mode)}, not a regular file")
    name_max = _name_max(parent)
    if name_max is not None and len(os.fsencode(path.name)) > name_max:
        raise InputError(f"cannot write {flag} {path}: {os.strerror(errno.ENAMETOOLONG)} "
                         f"(a file name has at most {name_max} bytes here)")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {flag} {path}: the folder {parent} is not writable")


def _name_max(folder: Path) -> int | None:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return None


# -- a Keras model's file, recognised without importing the Keras reader --------------------


def is_keras_file(path: str | os.PathLike) -> bool:
    """Whether the file is one ``read_keras`` reads: a zip holding config.json and model.weights.h5, or
    an HDF5 file (by its signature; HDF5 is Keras' format among those gradscope reads). Never raises."""
    try:
        if not os.path.isfile(path):  # a FIFO or a device must not be opened
            return False
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head.startswith(HDF5_MAGIC):
            return True
        if head.startswith(ZIP_MAGIC):
            with zipfile.ZipFile(path) as zf:
                return is_keras_archive(zf.namelist())
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        pass
    return False


def is_keras_archive(names: list[str]) -> bool:
    """Whether a zip's member names are those of a .keras file."""
    return "config.json" in names and any(n.startswith("model.weights") for n in names)
