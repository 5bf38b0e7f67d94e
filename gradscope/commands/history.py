"""``gradscope history``: how the gradient's flow changed over training, read from a recording.

A recording is an NDJSON file, one record per line and per recorded backward pass, as
``gradscope.torch.attach(module, every=N, to=FILE)`` writes it. A record holds what history needs
(``gradscope/schemas/record.json``, ``gradscope schema record``):

    step              int, the training step (backward pass) it was taken at
    loss              float, or null where the recorder does not see the loss (gradscope.torch)
    layers            one entry per layer and direction, bottom layer first, forward before reverse:
      layer             int, 0 the bottom
      direction         "forward" | "reverse"
      log10_grad_norms  T values log10 ||dL/dh_t||, t = 1..T, null where the norm is 0 or not finite
      flow              {ratio_first_last, log10_ratio, slope, horizon, regime}, as flow.Flow
    source            optional: "torch" | "keras" | "train" | "compare", what wrote it
    run               optional: the run it belongs to (a compare run's mitigation name)
    measure           optional: "full" (the whole analyze document) | "flow" (these fields only)
    dropout_left_out  optional: true when the pass was analysed without the module's dropout masks

or ``{"step": n, "skipped": "why"}`` for a pass that could not be analysed. A full analyze document
with a step, ``{"step": n, **payload(analyze result)}``, is a record; other fields are ignored.

Reading is meant for files that a run is still writing: blank lines are passed over, skipped
records counted, and a last line without its newline that is not yet JSON (the writer is mid-line)
is left out and said so. Any other line that is not a record is an InputError naming the line.
Records with a ``run`` are grouped by it (runs in the order they first appear, passes in file order).

Sequences of different lengths T (a text task's batches, say) are aligned at their readout end:
``log10_grad_norms`` of a pass with T < seq_len (the longest) is padded at the start with
seq_len - T nulls, so that column seq_len is always the step the readout sees.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator

import numpy as np

from ..errors import InputError
from ..io.files import os_problem, regular_file, stat_input
from ..schemas import MEASURES, SOURCES
from ..serialize import HIDDEN

DIRECTIONS = ("forward", "reverse")
FLOW_FIELDS = ("ratio_first_last", "log10_ratio", "slope", "horizon", "regime")
REGIMES = ("vanishing", "exploding", "stable")
WHAT = "recording"  # how messages name the file


@dataclass
class LayerFlow:
    """One layer and direction of one recorded pass.

    layer, direction : which one (0 the bottom layer; "forward" or "reverse").
    ratio_first_last, log10_ratio, slope, horizon, regime : the record's flow (flow.Flow); None
        where the record has null.
    log10_grad_norms : seq_len values, log10 ||dL/dh_t|| end-aligned (module docstring): None where
        the record has null and at the padding before a shorter pass's first step.
    log10_flow_norms : the record's, aligned as log10_grad_norms is, where it has them (a padded
        batch: counted back from each sequence's own end; a direction that reads backwards: from
        step 1), else None. ``log10_profile``, what the heatmap draws, is these or log10_grad_norms.
    """

    layer: int
    direction: str
    ratio_first_last: float | None
    log10_ratio: float | None
    slope: float | None
    horizon: float | None
    regime: str
    log10_grad_norms: list[float | None]
    log10_flow_norms: list[float | None] | None = field(default=None, metadata=HIDDEN, repr=False)

    @property
    def counted_back(self) -> bool:
        """Whether the profile is counted back from the readout's end (the record's flow norms)."""
        return self.log10_flow_norms is not None

    @property
    def log10_profile(self) -> list[float | None]:
        """The steps counted back from the readout's end, the last one: what the heatmap draws."""
        return self.log10_grad_norms if self.log10_flow_norms is None else self.log10_flow_norms


@dataclass
class Pass:
    """One recorded pass.

    step : the training step. run : its run's name, or None. loss : None where not recorded.
    seq_len : this pass's T (its log10_grad_norms start with seq_len(history) - T nulls of padding).
    source, measure : the record's (None where absent). dropout_left_out : the record's, else False.
    line : the line of the file it was read from. layers : one per layer and direction.
    """

    step: int
    run: str | None
    loss: float | None
    seq_len: int
    source: str | None
    measure: str | None
    dropout_left_out: bool
    line: int
    layers: list[LayerFlow]


@dataclass
class Skipped:
    """A pass the recorder could not analyse: its step, run, the reason given, its line."""

    step: int
    run: str | None
    reason: str
    line: int


@dataclass
class HistoryResult:
    """What ``gradscope history`` reports.

    file : the recording's path, as given. runs : the runs' names in order of appearance ([None]
        when the records name none). layers : [{"layer", "direction"}] present in every pass.
    seq_len : the longest pass's T; padded : whether any pass is shorter (end-aligned, padded).
    passes : every recorded pass, grouped by run, in file order within a run.
    skipped : the passes recorded as skipped. incomplete_last_line : whether the file's last line
        was left out, unfinished (a run still writing it).
    """

    command: ClassVar[str] = "history"

    file: str
    runs: list[str | None]
    layers: list[dict]
    seq_len: int
    padded: bool
    passes: list[Pass]
    skipped: list[Skipped]
    incomplete_last_line: bool


@dataclass
class Heatmap:
    """log10 ||dL/dh_t|| of one layer and direction over recorded pass x time step.

    steps : (P,) the passes' training steps. values : (P, seq_len), the passes' profiles
    (LayerFlow.log10_profile: the last column is the readout's end), nan where the record has null
    or the pass is padded. lengths : (P,) each pass's T: row p's first seq_len - lengths[p]
    columns are padding, the others the pass's steps. counted_back : some row's steps are counted
    back from each sequence's readout end (a padded batch, or a direction that reads backwards),
    not the steps t = 1..T in order.
    """

    run: str | None
    layer: int
    direction: str
    steps: np.ndarray
    values: np.ndarray
    lengths: np.ndarray
    counted_back: bool = False

    @property
    def padding(self) -> np.ndarray:
        """(P, seq_len) True at the columns before each pass's first step (a pass shorter than the
        longest), which hold no step of it."""
        steps = self.values.shape[1]
        return np.arange(steps)[None, :] < (steps - np.asarray(self.lengths))[:, None]


# --- reading records ---------------------------------------------------------------------------


class NotARecord(ValueError):
    """What is wrong with a line's object, in words; the reader adds the file and the line."""


def _number(value: object, what: str) -> float | None:
    """A JSON number as a float, None for null (and for NaN or infinity, which JSON lacks)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NotARecord(f"{what} is {value!r}, not a number or null")
    x = float(value)
    return x if math.isfinite(x) else None


def _field(obj: dict, key: str, where: str = "") -> object:
    if key not in obj:
        raise NotARecord(f"no {where}{key!r}")
    return obj[key]


def _choice(obj: dict, key: str, names: tuple[str, ...]) -> str | None:
    value = obj.get(key)
    if value is not None and value not in names:
        raise NotARecord(f"{key} is {value!r}, not one of {', '.join(names)}")
    return value


def _layer(entry: object, i: int) -> LayerFlow:
    """One entry of a record's layers (its T norms, unpadded)."""
    at = f"layers[{i}]."
    if not isinstance(entry, dict):
        raise NotARecord(f"layers[{i}] is not an object")
    layer = _field(entry, "layer", at)
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise NotARecord(f"{at}layer is {layer!r}, not a whole number >= 0")
    direction = _field(entry, "direction", at)
    if direction not in DIRECTIONS:
        raise NotARecord(f"{at}direction is {direction!r}, not forward or reverse")
    logs = _field(entry, "log10_grad_norms", at)
    if not isinstance(logs, list) or not logs:
        raise NotARecord(f"{at}log10_grad_norms is not a non-empty list")
    values = [_number(v, f"{at}log10_grad_norms[{t}]") for t, v in enumerate(logs)]
    profile = entry.get("log10_flow_norms")
    if profile is not None and (not isinstance(profile, list) or len(profile) != len(values)):
        raise NotARecord(f"{at}log10_flow_norms is not a list of {len(values)} values, as log10_grad_norms is")
    if profile is not None:
        profile = [_number(v, f"{at}log10_flow_norms[{t}]") for t, v in enumerate(profile)]
    flow = _field(entry, "flow", at)
    if not isinstance(flow, dict):
        raise NotARecord(f"{at}flow is not an object")
    numbers = {k: _number(_field(flow, k, f"{at}flow."), f"{at}flow.{k}") for k in FLOW_FIELDS[:-1]}
    regime = _field(flow, "regime", f"{at}flow.")
    if regime not in REGIMES:
        raise NotARecord(f"{at}flow.regime is {regime!r}, not one of {', '.join(REGIMES)}")
    return LayerFlow(layer, direction, **numbers, regime=regime, log10_grad_norms=values, log10_flow_norms=profile)


def parse_record(obj: object, line: int) -> Pass | Skipped:
    """The Pass or Skipped a record's JSON object describes (NotARecord if it is none)."""
    if not isinstance(obj, dict):
        raise NotARecord(f"a JSON {type(obj).__name__}, not an object")
    step = _field(obj, "step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise NotARecord(f"step is {step!r}, not a whole number >= 0")
    run = obj.get("run")
    if run is not None and not isinstance(run, str):
        raise NotARecord(f"run is {run!r}, not a string")
    source = _choice(obj, "source", SOURCES)
    if "skipped" in obj:
        return Skipped(step, run, str(obj["skipped"]), line)
    loss = _number(_field(obj, "loss"), "loss")
    layers = _field(obj, "layers")
    if not isinstance(layers, list) or not layers:
        raise NotARecord("layers is not a non-empty list")
    parsed = [_layer(entry, i) for i, entry in enumerate(layers)]
    dropout = obj.get("dropout_left_out", False)
    if not isinstance(dropout, bool):
        raise NotARecord(f"dropout_left_out is {dropout!r}, not true or false")
    return Pass(step, run, loss, max(len(f.log10_grad_norms) for f in parsed), source,
                _choice(obj, "measure", MEASURES), dropout, line, parsed)


class RecordReader:
    """Reads a recording a line at a time, from where the last ``read`` stopped.

    ``read()`` returns the records of the lines completed since the last call; a last line without
    its newline is kept back (a writer may be mid-line) until it ends, or until ``finish()``, which
    takes it if it is a whole record and otherwise notes ``incomplete_last_line``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.offset = 0  # bytes of complete lines read
        self.lines = 0
        self.tail = b""  # the last line so far, without its newline
        self.last = b""  # the last complete line read, the bytes just before ``offset``
        self.incomplete_last_line = False
        self.identity: tuple[int, int] | None = None  # (device, inode) of the file read

    def _where(self, line: int) -> str:
        return f"{self.path}, line {line}"

    def _parse(self, raw: bytes, line: int) -> Pass | Skipped | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self._where(line)}: not UTF-8 text; a {WHAT} is JSON, one record a line") from None
        if not text.strip():
            return None
        try:
            obj = json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{self._where(line)}: not JSON ({exc.msg.removesuffix(' at')} at column {exc.colno}); "
                             f"a {WHAT} holds one JSON record a line") from None
        except RecursionError:
            raise InputError(f"{self._where(line)}: JSON nested too deeply") from None
        try:
            return parse_record(obj, line)
        except NotARecord as exc:
            raise InputError(f"{self._where(line)}: not a gradscope record: {exc} "
                             "(see gradscope schema record)") from None

    def replaced(self) -> bool:
        """Whether the file now is another, or shorter, than the one read so far, or no longer holds
        the last line read where it was: a run that started again truncates it (gradscope.torch.attach
        and train --record open their file with "w"), and may have written past the old length
        before this poll. A file rewritten with the same bytes up to there reads on as one."""
        info = stat_input(self.path, WHAT)
        if (info.st_dev, info.st_ino) != self.identity or info.st_size < self.offset:
            return True
        if not self.last:
            return False
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset - len(self.last))
                return fh.read(len(self.last)) != self.last
        except OSError:
            return True  # gone or unreadable meanwhile: read() says why

    def read(self) -> list[Pass | Skipped]:
        """The records of the lines completed since the last call, in file order."""
        path = regular_file(self.path, WHAT)
        records: list[Pass | Skipped] = []
        try:
            with open(path, "rb") as fh:
                info = os.fstat(fh.fileno())
                self.identity = (info.st_dev, info.st_ino)
                fh.seek(self.offset)
                self.tail = b""
                for raw in fh:
                    if not raw.endswith(b"\n"):
                        self.tail = raw
                        break
                    self.offset += len(raw)
                    self.lines += 1
                    self.last = raw
                    record = self._parse(raw, self.lines)
                    if record is not None:
                        records.append(record)
        except OSError as exc:
            raise InputError(f"cannot read {WHAT} {self.path}: {os_problem(exc)}") from None
        return records

    def finish(self) -> list[Pass | Skipped]:
        """The unfinished last line's record if it is whole JSON (an InputError if that is not a
        record); else none, noted."""
        raw, self.tail = self.tail, b""
        if not raw.strip():
            return []
        try:
            json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # cut off mid-line
            self.incomplete_last_line = True
            return []
        record = self._parse(raw, self.lines + 1)
        self.offset += len(raw)
        self.lines += 1
        self.last = raw
        return [] if record is None else [record]


# --- the result --------------------------------------------------------------------------------


def _keys(p: Pass) -> list[tuple[int, str]]:
    return [(f.layer, f.direction) for f in p.layers]


def _named(keys: list[tuple[int, str]]) -> str:
    return ", ".join(f"{layer} {direction}" for layer, direction in keys)


def build(path: str | os.PathLike, records: list[Pass | Skipped], incomplete_last_line: bool = False,
          run: str | None = None) -> HistoryResult:
    """The HistoryResult of records read from ``path`` (only run ``run``'s, when given).

    Every pass must describe the same layers and directions (one file, one model); InputError
    otherwise, and when no pass is left to show.
    """
    passes = [r for r in records if isinstance(r, Pass)]
    skipped = [r for r in records if isinstance(r, Skipped)]
    names = list(dict.fromkeys(r.run for r in records))
    if run is not None:
        if run not in names:
            known = ", ".join(n for n in names if n is not None) or "none: its records name no run"
            raise InputError(f"--run {run}: no such run in {path} (runs: {known})")
        names = [run]
        passes = [p for p in passes if p.run == run]
        skipped = [s for s in skipped if s.run == run]
    if not passes:
        raise InputError(_nothing_to_show(path, skipped, incomplete_last_line))
    keys = _keys(passes[0])
    for p in passes[1:]:
        if sorted(_keys(p)) != sorted(keys):
            raise InputError(f"{path}, line {p.line}: layers ({_named(_keys(p))}) differ from line "
                             f"{passes[0].line}'s ({_named(keys)}): one {WHAT}, one model")
    keys = sorted(keys, key=lambda k: (k[0], DIRECTIONS.index(k[1])))
    order = {name: i for i, name in enumerate(names)}
    passes.sort(key=lambda p: order[p.run])  # grouped by run; stable: file order within a run
    seq_len = max(_longest(p) for p in passes)
    padded = any(len(f.log10_grad_norms) < seq_len for p in passes for f in p.layers)
    return HistoryResult(str(path), names, [{"layer": k[0], "direction": k[1]} for k in keys], seq_len, padded,
                         [_aligned(p, keys, seq_len) for p in passes], skipped, incomplete_last_line)


def _longest(p: Pass) -> int:
    return max(len(f.log10_grad_norms) for f in p.layers)


def _aligned(p: Pass, keys: list[tuple[int, str]], seq_len: int) -> Pass:
    """The pass with its layers in ``keys``' order, each end-aligned to seq_len steps: new objects,
    the record's own untouched (follow builds again from the same records)."""
    return dataclasses.replace(p, layers=[_end_aligned(f, seq_len) for f in
                                          sorted(p.layers, key=lambda f: keys.index((f.layer, f.direction)))])


def extended(result: HistoryResult, new: list[Pass | Skipped], incomplete_last_line: bool
             ) -> tuple[HistoryResult, list[Pass]] | None:
    """``result`` with records read after it (already only the shown run's), and their passes as
    the result holds them; only the new passes are aligned, so that following a long recording
    costs each poll what it brought. None where the whole must be built again (``build``): a run
    not seen before, layers unlike the others (build says so), or a pass longer than every earlier
    one, which moves the alignment of all."""
    passes = [r for r in new if isinstance(r, Pass)]
    keys = [(k["layer"], k["direction"]) for k in result.layers]
    if any(r.run not in result.runs for r in new) or any(
            sorted(_keys(p)) != sorted(keys) or _longest(p) > result.seq_len for p in passes):
        return None
    aligned = [_aligned(p, keys, result.seq_len) for p in passes]
    grouped: dict[str | None, list[Pass]] = {name: [] for name in result.runs}
    for p in result.passes + aligned:  # grouped by run, file order within each: references only
        grouped[p.run].append(p)
    padded = result.padded or any(len(f.log10_grad_norms) < result.seq_len for p in passes for f in p.layers)
    return dataclasses.replace(
        result, padded=padded, passes=[p for group in grouped.values() for p in group],
        skipped=result.skipped + [r for r in new if isinstance(r, Skipped)],
        incomplete_last_line=incomplete_last_line), aligned


def _end_aligned(f: LayerFlow, seq_len: int) -> LayerFlow:
    """The layer's norms padded at the start to seq_len steps, so that the readout ends align."""
    pad = [None] * (seq_len - len(f.log10_grad_norms))
    return dataclasses.replace(f, log10_grad_norms=pad + f.log10_grad_norms,
                               log10_flow_norms=None if f.log10_flow_norms is None else pad + f.log10_flow_norms)


def _nothing_to_show(path: str | os.PathLike, skipped: list[Skipped], incomplete_last_line: bool) -> str:
    if skipped:
        return (f"every pass in {path} was skipped ({len(skipped)}), e.g. step {skipped[0].step}: "
                f"{skipped[0].reason}")
    what = "holds only an unfinished line" if incomplete_last_line else "is empty"
    return (f"{path} {what}: no records yet; a {WHAT} has one JSON line per recorded pass, as "
            "gradscope.torch.attach(module, every=N, to=FILE) writes them")


def history(path: str | os.PathLike, run: str | None = None) -> HistoryResult:
    """Read the recording at ``path`` whole and report it (only run ``run``, when given)."""
    reader = RecordReader(path)
    records = reader.read()
    records += reader.finish()
    return build(path, records, reader.incomplete_last_line, run)


def layer_key(result: HistoryResult, layer: int | None, direction: str) -> tuple[int, str]:
    """The layer and direction asked for, checked against the recording's; layer None is the top."""
    keys = [(k["layer"], k["direction"]) for k in result.layers]
    top = max(k[0] for k in keys)
    chosen = (top if layer is None else layer, direction)
    if chosen not in keys:
        have = sorted({k[0] for k in keys})
        if chosen[0] not in have:
            raise InputError(f"--layer {chosen[0]}: the {WHAT} has layer(s) {', '.join(map(str, have))}")
        raise InputError(f"--direction {direction}: layer {chosen[0]} of the {WHAT} has only "
                         f"{', '.join(d for k, d in keys if k == chosen[0])}")
    return chosen


def heatmap(result: HistoryResult, layer: int, direction: str, run: str | None) -> Heatmap:
    """log10 ||dL/dh_t|| of one layer and direction (and run) over pass x time step."""
    passes = [p for p in result.passes if p.run == run]
    rows = [next(f for f in p.layers if (f.layer, f.direction) == (layer, direction)) for p in passes]
    values = np.array([[np.nan if v is None else v for v in f.log10_profile] for f in rows],
                      dtype=np.float64).reshape(len(rows), result.seq_len)
    return Heatmap(run, layer, direction, np.array([p.step for p in passes], dtype=np.int64), values,
                   np.array([p.seq_len for p in passes], dtype=np.int64), any(f.counted_back for f in rows))


# --- following a growing file ------------------------------------------------------------------


@dataclass
class Update:
    """What ``follow`` yields: the history so far, the passes and skips new since the last update
    (in file order), and whether the file was replaced (read again from its start)."""

    result: HistoryResult
    new: list[Pass]
    new_skipped: list[Skipped]
    restarted: bool = False


@dataclass
class Follower:
    """Polls a recording that a run is writing; see ``follow``."""

    path: Path
    run: str | None = None
    reader: RecordReader = field(init=False)
    records: list[Pass | Skipped] = field(default_factory=list)
    restarted: bool = False  # replaced since the last Update
    built: HistoryResult | None = None  # the last Update's result, which the next one extends

    def __post_init__(self) -> None:
        self.reader = RecordReader(self.path)

    def poll(self) -> list[Pass | Skipped]:
        """The records new since the last poll (none while the file is missing); when the file was
        replaced since, its records from the start."""
        if not os.path.lexists(self.path):
            return []
        restarted = self.reader.identity is not None and self.reader.replaced()
        if restarted:
            self.reader = RecordReader(self.path)
            self.records = []
            self.restarted = True
            self.built = None
        new = self.reader.read()
        self.records += new
        return new

    def size(self) -> int:
        """The file's size now (-1 while it is missing): growth is what keeps ``follow`` going."""
        try:
            return os.stat(self.path).st_size
        except OSError:
            return -1

    def update(self, new: list[Pass | Skipped], last: bool = False) -> Update | None:
        """An Update of every record so far, or None while nothing new is there to show (``last``:
        an Update in any case, or the InputError that says why there is nothing)."""
        mine = [r for r in new if self.run is None or r.run == self.run]
        if not mine and not self.restarted and not last:
            return None
        grown = None if self.built is None else extended(self.built, mine, self.reader.incomplete_last_line)
        if grown is not None:
            result, shown = grown
        else:
            try:
                result = build(self.path, list(self.records), self.reader.incomplete_last_line, self.run)
            except InputError:
                if not last and not any(isinstance(r, Pass) and (self.run is None or r.run == self.run)
                                        for r in self.records):
                    return None  # only skips so far, or not this run's passes yet: wait
                raise
            by_line = {p.line: p for p in result.passes}  # the new passes, in file order as they came
            shown = [by_line[r.line] for r in mine if r.line in by_line]
        self.built = result
        restarted, self.restarted = self.restarted, False
        return Update(result, shown, [r for r in mine if isinstance(r, Skipped)], restarted)

    def finish(self) -> Update:
        """The last Update: the unfinished last line taken if whole (InputError if no pass came)."""
        regular_file(self.path, WHAT)  # an InputError if it never came
        tail = self.reader.finish()
        self.records += tail
        return self.update(tail, last=True)


def follow(path: str | os.PathLike, run: str | None = None, interval: float = 0.5,
           timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Update]:
    """Read the recording now and then every ``interval`` seconds as it grows, yielding an Update
    whenever there are new passes (the first as soon as there is any).

    The file may not exist yet, or be empty: it is waited for. Stops when ``timeout`` seconds pass
    without the file growing (never, when None); the caller stops it otherwise (Ctrl-C). The last
    Update, after the timeout, has the unfinished last line taken if it is whole, as ``history``
    does; InputError if by then no pass was recorded.
    """
    follower = Follower(Path(path), run)
    last_size, last_growth = follower.size(), clock()
    while True:
        update = follower.update(follower.poll())
        if update is not None:
            yield update
        size = follower.size()
        if size != last_size:
            last_size, last_growth = size, clock()
        elif timeout is not None and clock() - last_growth >= timeout:
            break
        sleep(interval)
    yield follower.finish()


def unpadded(p: Pass) -> Pass:
    """The pass with its own T norms in each layer (the end-aligned padding taken off)."""
    return dataclasses.replace(p, layers=[
        dataclasses.replace(f, log10_grad_norms=f.log10_grad_norms[len(f.log10_grad_norms) - p.seq_len:],
                            log10_flow_norms=None if f.log10_flow_norms is None
                            else f.log10_flow_norms[len(f.log10_flow_norms) - p.seq_len:])
        for f in p.layers])
