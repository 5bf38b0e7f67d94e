"""Memory, before it is spent: what a run will need, what the machine has, and a refusal in between.

A run's arrays grow with T x B x H: the trajectory (every state and gate cache of every step, layer
and direction), the adjoints dL/dh_t, the per-step contributions, and the inputs. The estimate is an
upper bound of the same order as the real peak (measured: 305 MB for a tanh RNN at (T, B, H) =
(200, 128, 256), estimated 366 MB); it is meant to catch the runs that cannot fit (H = 10^6,
T = 10^9), not to budget to the byte.

The limit is the smallest of: --max-memory (or the GRADSCOPE_MAX_MEMORY variable, which the CLI sets
so that spawned workers inherit it), MemAvailable in /proc/meminfo, the cgroup's memory.max, and
RLIMIT_AS. A run over it is an InputError that names the figure and what to change, unless the
caller can run it checkpointed (analyze's single-layer path, ``checkpointed_run_bytes``): then only a
run that does not fit even so is refused.
"""

from __future__ import annotations

import math
import os
import re
import resource

from .errors import InputError

LIMIT_ENV = "GRADSCOPE_MAX_MEMORY"
FLOAT = 8  # bytes of a float64
UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)

# Floats kept per unit of T x B x H, beyond the cell's states and gates: adjoints, contributions,
# pre-activations and the temporaries of the backward pass.
PER_STEP_EXTRA = 4
# Copies of the parameters a run holds: the parameters, their gradient, an optimizer's two moments.
PARAMETER_COPIES = 4


def parse_size(text: str, flag: str = "--max-memory") -> int:
    """Bytes from "4G", "512M", "1.5GiB", "1000000" (bytes); InputError otherwise."""
    match = _SIZE.match(str(text))
    if not match:
        raise InputError(f"{flag} {text!r}: give a size such as 512M, 4G or 1.5GiB")
    value = float(match.group(1)) * UNITS[match.group(2).upper()]
    if not math.isfinite(value) or value < 1 or value >= 1 << 62:
        raise InputError(f"{flag} {text!r}: must be at least 1 byte and below 4 EiB")
    return int(value)


def human(size: float) -> str:
    """Bytes for a message: '7.3 TiB', '512 MiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_limit() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            text = fh.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _address_space_limit() -> int | None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def limit() -> tuple[int | None, str]:
    """(bytes a run may use, where that figure comes from); (None, "") when nothing is known."""
    candidates = []
    given = os.environ.get(LIMIT_ENV)
    if given:
        candidates.append((parse_size(given, f"--max-memory ({LIMIT_ENV})"), "--max-memory"))
    for value, source in ((_mem_available(), "the available memory"), (_cgroup_limit(), "the cgroup's memory.max"),
                          (_address_space_limit(), "the address-space limit (ulimit -v)")):
        if value is not None:
            candidates.append((value, source))
    return min(candidates, default=(None, ""))


def run_bytes(seq_len: int, batch_size: int, hidden_size: int, input_size: int, *, states: int = 1,
              gates: int = 1, layers: int = 1, directions: int = 1, parameters: int = 0,
              itemsize: int = FLOAT) -> int:
    """Bytes a BPTT run of these sizes needs, at most: per step and layer, ``states`` states
    (2 for an LSTM's h and c) and ``gates`` gate caches; ``parameters`` floats of weights;
    ``itemsize`` bytes a float (4 with ``--dtype float32``).

    Python ints throughout: no overflow, whatever the sizes.
    """
    t, b, h, d = (int(v) for v in (seq_len, batch_size, hidden_size, input_size))
    per_step = layers * directions * t * b * h * (2 * states + gates + PER_STEP_EXTRA)
    inputs = 2 * t * b * d  # the batch and its gradient
    return itemsize * (per_step + inputs + PARAMETER_COPIES * int(parameters))


# Floats kept per step by a checkpointed run whatever B and H: the per-step norms, their logs, the
# ratios, the contributions and the report's copies of them.
PER_STEP_SCALARS = 24


def checkpointed_run_bytes(seq_len: int, batch_size: int, hidden_size: int, input_size: int, *, states: int = 1,
                           gates: int = 1, parameters: int = 0, itemsize: int = FLOAT, layers: int = 1,
                           directions: int = 1) -> int:
    """Bytes a checkpointed BPTT run (bptt/checkpointed.py) needs in memory, at most: one segment
    of k = ceil(sqrt(T)) steps as ``run_bytes`` counts a whole run, ceil(T / k) checkpointed
    states of every layer and direction, the per-step logs of every sequence (float64 whatever
    ``itemsize``) and the batch itself. The (T, B, F) sequences between layers are not counted: they
    go to files on disk where they do not fit (bptt/checkpointed.py's ``_Sequences``)."""
    t, b, h, d = (int(v) for v in (seq_len, batch_size, hidden_size, input_size))
    k = math.isqrt(t - 1) + 1 if t > 1 else 1
    segment = run_bytes(k, b, h, d, states=states, gates=gates, itemsize=itemsize)
    checkpoints = layers * directions * -(-t // k) * b * h * states
    logs = layers * directions * t * b * (1 + (states > 1)) + 2 * t * b  # log rows; the units of dL/dx
    return (segment + itemsize * (checkpoints + t * b * d + PARAMETER_COPIES * int(parameters))
            + FLOAT * (PER_STEP_SCALARS * t + logs))


def fits(needed: int, bound: tuple[int | None, str] | None = None) -> bool:
    """Whether ``needed`` bytes are within the limit (or no limit is known); ``bound``: ``limit()``
    where the caller has read it already."""
    allowed, _source = bound or limit()
    return allowed is None or needed <= allowed


def check(needed: int, what: str, change: str, bound: tuple[int | None, str] | None = None) -> None:
    """InputError when ``needed`` bytes exceed the limit; ``what`` names the run ("this run (T=.., B=..)"),
    ``change`` what to lower ("--seq-len, --batch-size or --hidden-size"); ``bound`` as for ``fits``."""
    allowed, source = bound or limit()
    if allowed is not None and needed > allowed:
        raise InputError(
            f"{what} needs about {human(needed)} of memory, more than {source} ({human(allowed)}); "
            f"lower {change}"
        )


def out_of_memory_message(exc: MemoryError) -> str:
    """The one line for a MemoryError that the estimate did not foresee."""
    detail = " ".join(str(exc).split())
    return (f"out of memory{f' ({detail})' if detail else ''}; "
            "lower --seq-len, --batch-size or --hidden-size, or run on a machine with more memory")
