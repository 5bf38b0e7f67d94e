"""Every output file, written whole or not at all.

``atomic_write(path, flag)`` hands out a temporary file in the target's folder; when the block ends
normally the file is flushed, fsync'd, given the target's permissions and moved into place with
``os.replace`` (atomic on POSIX within one file system), and the folder is fsync'd so the rename
survives a crash. When the block raises (a full disk, a file-size limit, Ctrl-C, SIGTERM) the
temporary file is removed and the previous file, if any, is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import InputError
from .files import check_writable_folder, os_problem

TEMP_SUFFIX = ".tmp"


def _temp_name(path: Path) -> Path:
    # short whatever the target's name, so that a long name still leaves room for it
    return path.with_name(f".{path.name[:48]}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _mode_for(path: Path) -> int:
    """The target's permissions if it exists, else what open() would give a new file (0o666 & ~umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, flag: str = "output file") -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through; ``path`` changes only if the block completes.

    An OSError (opening, writing, syncing, renaming) is an InputError naming ``flag`` and the path.
    """
    target = Path(path)
    check_writable_folder(target, flag)
    temp = _temp_name(target)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise InputError(f"cannot write {flag} {target}: {os_problem(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temp, _mode_for(target))
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise InputError(f"cannot write {flag} {target}: {os_problem(exc)}") from None
        raise
    _sync_folder(target.parent)


def write_bytes(path: str | os.PathLike, data: bytes, flag: str = "output file") -> None:
    """``data`` to ``path``, atomically."""
    with atomic_write(path, flag) as fh:
        fh.write(data)


def _sync_folder(folder: Path) -> None:
    """fsync the folder so that the rename is on disk; not every file system allows it."""
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
