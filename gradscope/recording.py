"""Recordings: one NDJSON line per recorded training pass, whoever records it.

gradscope.torch.attach, gradscope.keras.Recorder, ``train --record`` and ``compare --record`` write
the same records, and ``gradscope history`` reads them (schemas/record.json). A record is a pass
measured one of two ways (``measure``):

    full    the whole ``analyze`` report of the pass: {"step": n, "source": ..., "measure": "full",
            ...the analyze document}: BPTT, spectra, the Lyapunov exponent
    flow    the light record: per layer and direction the per-step log10 ||dL/dh_t|| and the flow
            (ratio, slope, horizon, verdict), from BPTT without the parameters' gradients, spectra
            or Lyapunov exponents (profile.layer_flows): {"step", "source", "measure": "flow",
            "loss", "regime", "layers": [{"layer", "direction", "flow", "log10_grad_norms"}]}

A pass analysed without its dropout masks says so (``"dropout_left_out": true``); a pass that
could not be analysed is {"step": n, "skipped": "why"}. The core imports neither torch nor Keras.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar

from .bptt.network import bptt
from .commands.analyze import AnalyzeResult, analyze
from .schemas import MEASURES  # a record's words, which history reads too
from .errors import InputError
from .config import RunConfig
from .io.files import os_problem
from .experiment import Setup, build
from .profile import LayerFlow, headline_of, step_flows
from .runtime import blas_threads_for
from .serialize import dumps_line, payload


@dataclass
class FlowReport:
    """The light measure of one pass (measure "flow").

    loss : the batch's loss where the recorder sees it, else None (a hook sees the gradient only).
    regime : the headline's verdict (the top layer's forward direction, as analyze's).
    layers : one LayerFlow per layer and direction, bottom first, forward before reverse.
    """

    command: ClassVar[str] = "flow"

    loss: float | None
    regime: str
    layers: list[LayerFlow]


def flow_report(layers: list[LayerFlow], loss: float | None) -> FlowReport:
    """The FlowReport of a pass's layer flows; the headline is the top layer's forward direction
    (found by its keys: a Keras stack may mix bidirectional and one-way layers)."""
    return FlowReport(loss, headline_of(layers).flow.regime, layers)


def measure_flow(setup: Setup) -> FlowReport:
    """The light measure of a built setup's pass: BPTT without parameter gradients, and the flow
    of every layer and direction (one BLAS thread for a loop of small steps: runtime.py)."""
    net, batch = setup.network, setup.batch
    with blas_threads_for(len(batch.x), net.step_weights()):
        traj, grads = bptt(net, batch.x, batch.y, batch.mask, setup.upstream, setup.initial, parameters=False)
        layers = step_flows(net, traj, grads, batch.y)
    return flow_report(layers, grads.loss)


def checked_schedule(every: object, measure: object) -> int:
    """A recorder's ``every`` as a whole number, after checking it and ``measure`` (ValueError: the
    arguments of the caller's own code, not a CLI's input)."""
    if (isinstance(every, bool) or not isinstance(every, numbers.Real) or not math.isfinite(every)
            or int(every) != every or every < 1):
        raise ValueError(f"every must be a whole number of at least 1 (got {every!r})")
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)} (got {measure!r})")
    return int(every)


def measure_pass(config: RunConfig, measure: str) -> AnalyzeResult | FlowReport:
    """A recorded pass's report: analyze's whole report ("full") or the light measure ("flow")."""
    return analyze(config) if measure == "full" else measure_flow(build(config))


class Skips:
    """The Records of the passes a recorder could not measure, with one warning per reason (the
    training goes on). who : the warning's first words ("gradscope.torch: pass")."""

    def __init__(self, source: str, who: str) -> None:
        self.source, self.who = source, who
        self.warned: set[str] = set()

    def __call__(self, step: int, reason: str, measure: str) -> Record:
        if reason not in self.warned:
            self.warned.add(reason)
            warnings.warn(f"{self.who} {step} not recorded: {reason}", stacklevel=3)
        return Record(step, None, None, reason, measure, source=self.source)


def pass_record(step: int, report: Any, source: str, measure: str, run: str | None = None,
           dropout_left_out: bool = False) -> dict:
    """The record of one pass: {"step", "source", "measure", ["run"], ["dropout_left_out"], ...the
    report's fields (an AnalyzeResult's document with its header, or a FlowReport's fields)}."""
    head: dict = {"step": step, "source": source, "measure": measure}
    if run is not None:
        head["run"] = run
    if dropout_left_out:
        head["dropout_left_out"] = True
    body = payload(report)
    if measure == "flow":  # the light record carries its fields alone, no document header
        body = {k: v for k, v in body.items() if k not in ("schema_version", "gradscope_version", "command")}
        for layer in body["layers"]:  # only where the flow's profile is not the norms in step order
            if layer.get("log10_flow_norms", 0) is None:
                del layer["log10_flow_norms"]
    return {**head, **body}


def skipped(step: int, reason: str, source: str, measure: str, run: str | None = None) -> dict:
    """The record of a pass that could not be analysed."""
    return {"step": step, "source": source, "measure": measure, **({"run": run} if run is not None else {}),
            "skipped": reason}


@dataclass
class Record:
    """One recorded backward pass.

    step : the backward pass's number (1 for the first pass that reached the module's outputs).
    regime : the verdict ("vanishing", "stable", "exploding"), None when skipped.
    result : the report, None when skipped: an ``AnalyzeResult`` (measure "full"; its ``layers``
        hold every layer and direction) or a ``FlowReport`` (measure "flow").
    skipped : why the pass could not be analysed (then nothing was computed), else None.
    measure : "full" or "flow". dropout_left_out : the model trained with dropout, and the pass
        was analysed without its masks. source : what recorded it ("torch", "keras").
    """

    step: int
    regime: str | None
    result: AnalyzeResult | FlowReport | None
    skipped: str | None = None
    measure: str = "full"
    dropout_left_out: bool = False
    source: str = "torch"

    def as_json(self) -> dict:
        """The NDJSON line's object (schemas/record.json): {"step": n, "source": ..., "measure": ...,
        ...the report} or {"step": n, ..., "skipped": why}."""
        if self.result is None:
            return skipped(self.step, self.skipped, self.source, self.measure)
        return pass_record(self.step, self.result, self.source, self.measure, dropout_left_out=self.dropout_left_out)


Sink = Callable[[Record], Any]


def sink_for(to: Any, records: list[Record]) -> tuple[Sink, "RecordFile | None"]:
    """Where a recorder's Records go, and the file it opened (to close on detach): None appends
    them to ``records``; a path gets one NDJSON line each (the file is overwritten); a TensorBoard
    SummaryWriter (anything with add_scalar and add_image) its scalars and images
    (gradscope/tensorboard.py); any other callable receives each Record."""
    if to is None:
        return records.append, None
    if isinstance(to, (str, os.PathLike)):
        file = RecordFile(to)
        return (lambda r: file.write(r.as_json())), file
    if hasattr(to, "add_scalar") and hasattr(to, "add_image"):
        from .tensorboard import TensorBoardSink

        return TensorBoardSink(to), None
    if not callable(to):
        raise TypeError(f"to must be None, a path, a SummaryWriter or a callable, not {type(to).__name__}")
    return to, None


@dataclass(frozen=True)
class RecordTo:
    """Where a training run writes its light records (``train --record``, ``compare --record``):
    the step's record every ``every`` steps, appended to ``path`` (``start`` begins the file), as
    ``source`` ("train", "compare") and ``run`` (compare's mitigation; None for one run).
    Picklable: compare's worker processes each append to the file the parent started."""

    path: str
    every: int
    source: str
    run: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or int(self.every) != self.every or self.every < 1:
            raise InputError(f"--record-every must be a whole number of at least 1 (got {self.every})")

    def wants(self, step: int) -> bool:
        return step % self.every == 0

    def named(self, run: str | None) -> "RecordTo":
        return replace(self, run=run)

    def start(self) -> "RecordTo":
        """Begin the file afresh (a run that starts again writes a new recording)."""
        RecordFile(self.path).close()
        return self


class RecordFile:
    """An NDJSON recording: one compact line per record, written whole and flushed at once.

    mode "w" starts the file afresh; "a" appends (the runs of ``compare`` in several processes each
    append to the file the parent started: a line is one write() of an O_APPEND file, which Linux
    never interleaves with another's).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "w") -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
        self.path = os.fspath(path)
        try:
            self._fd: int | None = os.open(self.path, flags, 0o666)
        except OSError as exc:
            raise InputError(f"cannot write the recording {self.path}: {os_problem(exc)}") from None

    def write(self, obj: dict) -> None:
        data = (dumps_line(obj) + "\n").encode("utf-8")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RecordFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
