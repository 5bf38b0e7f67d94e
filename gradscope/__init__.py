"""gradscope: see how the gradient fades or explodes on its way back through time.

The numpy core (cells, BPTT, spectra, tasks) returns plain result objects; the CLI and the
renderers live in ``gradscope.cli`` and ``gradscope.render`` and are never imported from here.

    >>> import gradscope
    >>> result = gradscope.analyze(seq_len=50, hidden_size=16)
    >>> result.regime, result.grad_norms.shape
    >>> report = gradscope.check(seq_len=50, min_ratio=1e-4)   # the CI gate, without exiting
    >>> report.passed, [c.message for c in report.checks if c.status == "fail"]
    >>> gradscope.dumps(report)                                 # exactly what `--json` prints
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# Each public name and the module that defines it. They are imported on first use (PEP 562), so that
# `import gradscope` and the CLI's start-up do not pay for commands they do not run.
_PUBLIC = {
    "AnalyzeResult": ".commands.analyze", "analyze": ".commands.analyze",
    "gradient_arrays": ".commands.analyze", "weight_arrays": ".commands.analyze",
    "CheckOutcome": ".commands.check", "CheckResult": ".commands.check", "Criteria": ".commands.check",
    "check": ".commands.check",
    "CompareResult": ".commands.compare", "compare": ".commands.compare",
    "HistoryResult": ".commands.history", "history": ".commands.history",
    "SpectrumResult": ".commands.spectrum", "jacobian_spectrum": ".commands.spectrum",
    "SweepResult": ".commands.sweep", "sweep": ".commands.sweep",
    "EXPERIMENTS": ".commands.reproduce", "ReproduceResult": ".commands.reproduce",
    "reproduce": ".commands.reproduce",
    "TrainOptions": ".commands.train", "TrainResult": ".commands.train", "train": ".commands.train",
    "RunConfig": ".config",
    "CheckFailed": ".errors", "InputError": ".errors",
    "MITIGATIONS": ".mitigations", "Strengths": ".mitigations", "make_mitigation": ".mitigations",
    "load_schema": ".schemas",
    "dumps": ".serialize", "payload": ".serialize",
}
# what Python callers get: the same functions, their errors naming keyword arguments, not flags
_IN_PYTHON_TERMS = frozenset({"analyze", "check", "compare", "history", "jacobian_spectrum", "reproduce", "sweep",
                              "train"})


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # the one-line repr, to_dict and notebook views of every result (results.py), before any is made
    importlib.import_module(".results", __name__)
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    if name in _IN_PYTHON_TERMS:
        from .errors import in_python_terms

        value = in_python_terms(value)
    globals()[name] = value  # later look-ups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


__all__ = [
    "AnalyzeResult", "CheckFailed", "CheckOutcome", "CheckResult", "Criteria", "InputError", "RunConfig",
    "__version__", "analyze", "check", "dumps", "load_schema", "payload",
    "MITIGATIONS", "CompareResult", "Strengths", "TrainOptions", "TrainResult", "compare", "make_mitigation",
    "train", "EXPERIMENTS", "ReproduceResult", "reproduce", "gradient_arrays", "weight_arrays",
    "HistoryResult", "history", "SpectrumResult", "jacobian_spectrum", "SweepResult", "sweep",
]
