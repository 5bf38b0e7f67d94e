"""Process-level tuning for runs that repeat BPTT many times (train, compare, sweep, benchmarks).

Each BPTT pass allocates a few arrays of T x B x H floats (megabytes). glibc serves blocks that
large with mmap and gives them back on free, so every pass page-faults its memory in afresh: on a
virtual machine that costs as much as the arithmetic (measured here: 8 ms of a 25 ms pass at
(B, T, H) = (32, 200, 128)). Raising glibc's mmap and trim thresholds keeps freed blocks in the
heap for the next pass. Only the CLI and the benchmarks call this; importing gradscope changes
nothing in the caller's process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB: larger blocks still come from mmap


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed large blocks instead of unmapping them; True where it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
