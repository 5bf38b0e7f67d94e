"""gradscope: see how the gradient fades or explodes on its way back through time.

The numpy core (cells, BPTT, spectra, tasks) returns plain result objects; the CLI and the
renderers live in ``gradscope.cli`` and ``gradscope.render`` and are never imported from here.

    >>> import gradscope
    >>> result = gradscope.analyze(seq_len=50, hidden_size=16)
    >>> result.regime, result.grad_norms.shape
"""

from ._version import __version__
from .analysis import AnalyzeResult, analyze
from .config import RunConfig
from .errors import CheckFailed, InputError
from .serialize import dumps, payload

__all__ = ["AnalyzeResult", "CheckFailed", "InputError", "RunConfig", "__version__", "analyze", "dumps", "payload"]
