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

from ._version import __version__
from .commands.analyze import AnalyzeResult, analyze, gradient_arrays, weight_arrays
from .commands.check import CheckOutcome, CheckResult, Criteria, check
from .commands.compare import CompareResult, compare
from .commands.reproduce import EXPERIMENTS, ReproduceResult, reproduce
from .config import RunConfig
from .errors import CheckFailed, InputError, in_python_terms
from .mitigations import MITIGATIONS, Strengths, make_mitigation
from .schemas import load_schema
from .serialize import dumps, payload
from .commands.train import TrainOptions, TrainResult, train
from . import results as _results  # noqa: F401  (one-line repr, to_dict, notebook views of every result)

# what Python callers get: the same functions, their errors naming keyword arguments, not flags
analyze, check, compare, reproduce, train = (in_python_terms(f) for f in (analyze, check, compare, reproduce, train))

__all__ = [
    "AnalyzeResult", "CheckFailed", "CheckOutcome", "CheckResult", "Criteria", "InputError", "RunConfig",
    "__version__", "analyze", "check", "dumps", "load_schema", "payload",
    "MITIGATIONS", "CompareResult", "Strengths", "TrainOptions", "TrainResult", "compare", "make_mitigation",
    "train", "EXPERIMENTS", "ReproduceResult", "reproduce", "gradient_arrays", "weight_arrays",
]
