"""What a result shows in a notebook or a REPL: a one-line repr, ``to_dict()``, and the rich view.

Every command's result dataclass gets, here and in one place:

- ``repr(result)``: one line, the command, its verdict and key figures (the dataclass repr of an
  AnalyzeResult ran to 13.6 KB of arrays);
- ``result.to_dict()``: the JSON document as Python values, exactly ``serialize.payload(result)``;
- ``_repr_html_`` (Jupyter) and ``__rich_console__`` (``rich.print(result)``): the tables the CLI
  prints. The core never imports rich: these two import ``gradscope.render.notebook`` when called.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .commands.analyze import AnalyzeResult
from .commands.check import CheckResult
from .commands.compare import CompareResult
from .commands.history import HistoryResult
from .commands.reproduce import ReproduceResult
from .commands.sweep import SweepResult
from .commands.train import TrainResult
from .commands.spectrum import SpectrumResult
from .serialize import payload


def _g(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _steps(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.1f}" if abs(x) < 10 else f"{x:.0f}"


def _model(config: dict) -> str:
    cell = f"{config['cell']}/{config['activation']}" if config.get("cell") == "rnn" else config.get("cell")
    return f"{cell} H={config.get('hidden_size')} T={config.get('seq_len')}"


def _analyze(r: AnalyzeResult) -> str:
    f = r.flow
    return (f"{r.regime}, ratio 1/T {_g(f.ratio_first_last)}, horizon {_steps(f.horizon)} steps, "
            f"{_model(r.config)}")


def _check(r: CheckResult) -> str:
    verdict = "passed" if r.passed else "FAILED"
    return f"{verdict} ({r.failures} failed, {r.warnings} warned), {r.regime}, {_model(r.config)}"


def _train(r: TrainResult) -> str:
    return (f"{r.mitigation}: {r.status}, loss {_g(r.initial_loss)} -> {_g(r.final_loss)} "
            f"(baseline {_g(r.baseline_loss)}) in {r.steps} steps, {_model(r.config)}")


def _compare(r: CompareResult) -> str:
    return f"{len(r.runs)} runs, best {r.best or '-'} (baseline loss {_g(r.baseline_loss)}), {_model(r.config)}"


def _reproduce(r: ReproduceResult) -> str:
    return f"{r.name}: {'reproduced' if r.reproduced else 'NOT reproduced'}, {len(r.arms)} arms, {r.scale} scale"


def _sweep(r: SweepResult) -> str:
    return f"{r.metric} over {r.x.name} x {r.y.name} ({len(r.x.values)} x {len(r.y.values)}), {len(r.maps)} maps"


def _history(r: HistoryResult) -> str:
    last = r.passes[-1]
    top = next(f for f in last.layers if (f.layer, f.direction) == (r.layers[-1]["layer"], "forward"))
    return (f"{len(r.passes)} passes of {r.file}, last (step {last.step}) layer {top.layer} forward: "
            f"{top.regime}, ratio 1/T {_g(top.ratio_first_last)}, horizon {_steps(top.horizon)} steps")


def _spectrum(r: SpectrumResult) -> str:
    lyap = r.lyapunov
    return (f"{lyap.regime}, lambda_1 {_g(lyap.leading_exponent)} per step, horizon {_steps(lyap.horizon)} "
            f"steps, {_model(r.config)}")


SUMMARIES: dict[type, Callable[[Any], str]] = {
    AnalyzeResult: _analyze, CheckResult: _check, TrainResult: _train, CompareResult: _compare,
    ReproduceResult: _reproduce, SweepResult: _sweep, SpectrumResult: _spectrum, HistoryResult: _history,
}


def summary(result: Any) -> str:
    """One line: the command, its verdict and key figures."""
    return f"<{type(result).__name__} {result.command}: {SUMMARIES[type(result)](result)}>"


def _to_dict(self: Any) -> dict:
    """The --json document as Python values (``gradscope.payload(result)``)."""
    return payload(self)


def _repr_html_(self: Any) -> str:
    from .render.notebook import html  # rich, only when a notebook asks

    return html(self)


def _rich_console_(self: Any, console: Any, options: Any) -> Any:
    from .render.notebook import renderables

    yield from renderables(self, options.max_width)


for _cls in SUMMARIES:
    _cls.__repr__ = summary
    _cls.to_dict = _to_dict
    _cls._repr_html_ = _repr_html_
    _cls.__rich_console__ = _rich_console_
