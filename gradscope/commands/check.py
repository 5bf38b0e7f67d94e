"""``check``: a CI gate on the gradient flow of one BPTT pass.

With n_t = ||dL/da_t|| and the end-to-end ratio r = n_1 / n_T (flow.py), every run is tested for

    min_ratio   r >= the given minimum       (only when a minimum is given)
    max_ratio   r <= the given maximum       (only when a maximum is given)
    vanishing   the verdict is not "vanishing"   (r >= 0.01)
    exploding   the verdict is not "exploding"   (r <= 100 and nothing overflowed)
    nonfinite   the loss and every n_t are finite (float64 did not overflow)

A ratio that cannot be measured (NaN: the gradients overflowed, or n_T = 0) fails both ratio
checks: a gate that cannot see must not pass. The three verdict checks always run; those named in
``fail_on`` fail the check, the others only warn. By default only ``nonfinite`` fails it.

The ratio and the verdicts are the headline's (the top layer's forward direction, analyze's), or
with ``every_layer`` each layer and direction's: a check then holds where it holds for every one,
and reports the worst (the lowest ratio for min_ratio and vanishing, the highest for max_ratio and
exploding), naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Iterable

import numpy as np

from .analyze import AnalyzeResult, analyze
from ..config import RunConfig, flag
from ..errors import InputError
from ..flow import Flow
from ..serialize import HIDDEN

FAILURE_MODES = ("vanishing", "exploding", "nonfinite")
DEFAULT_FAIL_ON = ("nonfinite",)


def parse_fail_on(names: str | Iterable[str]) -> tuple[str, ...]:
    """'vanishing,exploding' (or a list of names) -> the names in canonical order; 'none' -> ().

    An unknown name is an InputError listing the choices.
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    chosen = {str(n).strip().lower() for n in items} - {""}  # case-insensitive, as every choice is
    if not chosen and isinstance(names, str):  # --fail-on "$UNSET" would silently drop every gate (a list
        # given empty, () in Python, is none: what parsing "none" returns)
        raise InputError("--fail-on is empty: name the conditions that fail the check "
                         f"({', '.join(FAILURE_MODES)}), or none")
    if "none" in chosen:
        if len(chosen) > 1:
            raise InputError("--fail-on none cannot be combined with other conditions")
        return ()
    unknown = sorted(chosen - set(FAILURE_MODES))
    if unknown:
        raise InputError(
            f"--fail-on: unknown condition {unknown[0]!r}; choose from {', '.join(FAILURE_MODES)} "
            "(comma-separated), or none"
        )
    return tuple(m for m in FAILURE_MODES if m in chosen)


@dataclass(frozen=True)
class Criteria:
    """What makes a check fail.

    min_ratio, max_ratio : bounds on n_1 / n_T, or None.
    fail_on : verdicts that fail the check (a subset of FAILURE_MODES; a comma string is parsed).
    every_layer : test every layer and direction, not the headline alone (module docstring).
    """

    min_ratio: float | None = None
    max_ratio: float | None = None
    fail_on: tuple[str, ...] = DEFAULT_FAIL_ON
    every_layer: bool = False

    def __post_init__(self) -> None:
        for name in ("min_ratio", "max_ratio"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value > 0
            ):
                raise InputError(f"{flag(name)} must be a positive finite number (got {value})")
            object.__setattr__(self, name, float(value))
        if self.min_ratio is not None and self.max_ratio is not None and self.min_ratio > self.max_ratio:
            raise InputError(
                f"--min-ratio {show(self.min_ratio)} is above --max-ratio {show(self.max_ratio)}: "
                "no ratio can pass"
            )
        object.__setattr__(self, "fail_on", parse_fail_on(self.fail_on))
        if not isinstance(self.every_layer, bool):
            raise InputError(f"--every-layer is true or false (got {self.every_layer!r})")


@dataclass(frozen=True)
class Subject:
    """What one check is made on: a flow, its norms (T,) and their log10 (exact at any depth);
    ``where`` names it in messages ("" for the headline alone, "layer 1 reverse: " otherwise)."""

    where: str
    flow: Flow
    norms: np.ndarray
    log10_norms: np.ndarray


def subjects(analysis: "AnalyzeResult", every_layer: bool) -> list[Subject]:
    """The headline, or every layer and direction (named where there are several)."""
    if not every_layer:
        return [Subject("", analysis.flow, analysis.grad_norms, analysis.log10_grad_norms)]
    named = len(analysis.layers) > 1
    return [Subject(f"layer {r.layer} {r.direction}: " if named else "", r.flow, r.grad_norms, r.log10_grad_norms)
            for r in analysis.layers]


def _log10_ratio(subject: Subject) -> float:
    """log10 n_1 / n_T of a subject, nan where it cannot be measured."""
    f = subject.flow
    if f.log10_ratio is not None:
        return f.log10_ratio
    with np.errstate(all="ignore"):
        return float(np.log10(f.ratio_first_last)) if f.ratio_first_last > 0 else float("nan")


def worst(items: list[Subject], highest: bool) -> Subject:
    """The subject with the lowest ratio (or the highest), one that cannot be measured first."""
    def key(s: Subject) -> tuple[bool, float]:
        value = _log10_ratio(s)
        return (not math.isnan(value), -value if highest else value)
    return min(items, key=key)


@dataclass
class CheckOutcome:
    """One check of one run.

    name : min_ratio, max_ratio, vanishing, exploding or nonfinite.
    status : "pass"; "fail" (an enforced check that is violated); "warn" (violated, not enforced).
    enforced : whether a violation fails the whole check.
    measured : the value tested (n_1 / n_T, or a count of non-finite values).
    threshold : the value it is compared with.
    message : one line with the measured value and the threshold.
    """

    name: str
    status: str
    enforced: bool
    measured: float | None
    threshold: float | None
    message: str


@dataclass
class CheckResult:
    """What ``gradscope check`` reports, and what ``gradscope.check(...)`` returns.

    passed : no enforced check failed. failures, warnings : how many checks failed or warned.
    checks : every check, in a fixed order. criteria : the thresholds in force.
    settings_file : the TOML file the settings were read from, or None.
    settings_sources : where each setting not left at its default came from: "flag" (the command
        line, or a keyword argument in Python) or "file" (settings_file).
    config, loss, regime, flow, grad_norms (T,) : as in ``gradscope analyze``.
    analysis : the full AnalyzeResult (Python only, not in the JSON).
    """

    command: ClassVar[str] = "check"

    passed: bool
    failures: int
    warnings: int
    checks: list[CheckOutcome]
    criteria: Criteria
    settings_file: str | None
    config: dict
    loss: float
    regime: str
    flow: Flow
    grad_norms: np.ndarray
    analysis: AnalyzeResult = field(metadata=HIDDEN, repr=False)
    settings_sources: dict[str, str] = field(default_factory=dict)


def show(x: float) -> str:
    """A threshold as the user wrote it: the shortest text that reads back as the same float."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def show_against(x: float, threshold: float) -> str:
    """A measured value with 3 significant digits, or as many more as it takes to show truthfully
    which side of the threshold it lies on (0.00099996 is not printed as 0.001 against 0.001)."""
    if not math.isfinite(x):
        return str(x)
    for digits in range(3, 18):
        text = f"{x:.{digits}g}"
        rounded = float(text)
        if (rounded < threshold) == (x < threshold) and (rounded > threshold) == (x > threshold):
            return text
    return repr(x)


def ratio_label(analysis: AnalyzeResult) -> str:
    """How messages name n_1 / n_T: with the lesson's a_t for the vanilla RNN, h_t for gated cells."""
    state = "a" if analysis.gate_spectra is None else "h"
    return f"ratio ||dL/d{state}_1||/||dL/d{state}_T||"


def _outcome(name: str, enforced: bool, ok: bool, measured, threshold, message: str) -> CheckOutcome:
    status = "pass" if ok else ("fail" if enforced else "warn")
    return CheckOutcome(name, status, enforced, measured, threshold, message)


def _bad_norms(subject: Subject) -> int:
    """Steps whose gradient norm is nan or truly infinite, from BPTT's log domain: a norm beyond
    float64's range (inf or 0 in grad_norms) is still measured exactly in log10_grad_norms."""
    logs = subject.log10_norms
    return int(np.sum(np.isnan(logs) | (logs == np.inf)))


def _beyond_float64(label: str, log10_ratio: float, limit: float, limit_text: str, lower: bool) -> tuple[bool, str]:
    """As ``_against`` for a ratio that float64 cannot hold (0 or inf), compared in log10."""
    ok = log10_ratio >= math.log10(limit) if lower else log10_ratio <= math.log10(limit)
    word = ("at least" if ok else "below") if lower else ("at most" if ok else "above")
    return ok, f"{label} = 10^{log10_ratio:.6g} is {word} {limit_text}"


def _beyond(ratio: float) -> bool:
    """Whether float64 cannot hold the ratio (0 or inf, or nan), so its log10 must say it."""
    return not math.isfinite(ratio) or ratio == 0.0


def _unmeasurable(norms: np.ndarray) -> str:
    """Why n_1 / n_T is not a finite number."""
    if not np.all(np.isfinite(norms)):
        return "the gradients overflowed float64"
    return "the last gradient norm is 0"


def _against(label: str, ratio: float, limit: float, limit_text: str, lower: bool) -> tuple[bool, str]:
    """Whether a finite ratio respects a lower (or an upper) bound, and the sentence that says so."""
    ok = ratio >= limit if lower else ratio <= limit
    word = ("at least" if ok else "below") if lower else ("at most" if ok else "above")
    return ok, f"{label} = {show_against(ratio, limit)} is {word} {limit_text}"


def _bound(name: str, analysis: AnalyzeResult, limit: float, among: list[Subject]) -> CheckOutcome:
    """min_ratio (ratio >= limit) or max_ratio (ratio <= limit) on the worst subject; an
    unmeasurable ratio fails."""
    subject = worst(among, highest=name == "max_ratio")
    ratio, label = subject.flow.ratio_first_last, subject.where + ratio_label(analysis)
    opt = f"{flag(name)} {show(limit)}"
    log10_ratio = subject.flow.log10_ratio
    if _beyond(ratio) and log10_ratio is not None:
        ok, message = _beyond_float64(label, log10_ratio, limit, opt, lower=name == "min_ratio")
        return _outcome(name, True, ok, ratio, limit, message)
    if not math.isfinite(ratio):
        message = f"{label} is {ratio} ({_unmeasurable(subject.norms)}), so {opt} cannot be met"
        return _outcome(name, True, False, ratio, limit, message)
    ok, message = _against(label, ratio, limit, opt, lower=name == "min_ratio")
    return _outcome(name, True, ok, ratio, limit, message)


VERDICT_WORDS = {"vanishing": "the gradient vanishes", "exploding": "the gradient explodes"}


def _verdict(name: str, analysis: AnalyzeResult, enforced: bool, among: list[Subject]) -> CheckOutcome:
    """vanishing or exploding: the verdict of flow.regime, with the measurement behind it; over
    several subjects, of one whose verdict it is (the worst), else of the worst."""
    hit = [s for s in among if s.flow.regime == name]
    subject = worst(hit or among, highest=name == "exploding")
    ratio, norms, label = subject.flow.ratio_first_last, subject.norms, subject.where + ratio_label(analysis)
    limit = getattr(analysis.thresholds, f"{name}_ratio")
    ok = not hit
    overflowed = _bad_norms(subject)
    if overflowed:
        measured = f"{overflowed} of {norms.size} gradient norms are not finite"
    elif _beyond(ratio) and subject.flow.log10_ratio is not None:
        measured = _beyond_float64(label, subject.flow.log10_ratio, limit, show(limit),
                                   lower=name == "vanishing")[1]
    elif not math.isfinite(ratio):
        measured = f"{label} is {ratio} ({_unmeasurable(norms)})"
    else:
        measured = _against(label, ratio, limit, show(limit), lower=name == "vanishing")[1]
    verdict = f"not {name}" if ok else VERDICT_WORDS[name]
    return _outcome(name, enforced, ok, ratio, limit, f"{measured}: {verdict}")


def _nonfinite(analysis: AnalyzeResult, enforced: bool, among: list[Subject]) -> CheckOutcome:
    """nonfinite: counts the loss and the gradient norms (of every subject) that are NaN or infinite."""
    norms = np.concatenate([s.norms for s in among])
    bad_norms = sum(_bad_norms(s) for s in among)
    bad_loss = analysis.loss is not None and not math.isfinite(analysis.loss)  # None: --output-grads, no loss
    count = bad_norms + int(bad_loss)
    if count == 0:
        what = "the loss and all" if analysis.loss is not None else "all"
        message = f"{what} {norms.size} gradient norms are finite"
    elif not bad_norms:
        message = f"the loss is {analysis.loss}: float64 overflowed"
    else:
        loss = f"the loss ({analysis.loss}) and " if bad_loss else ""
        message = f"{loss}{bad_norms} of {norms.size} gradient norms are not finite: float64 overflowed"
    return _outcome("nonfinite", enforced, count == 0, count, 0, message)


def evaluate(analysis: AnalyzeResult, criteria: Criteria, settings_file: str | None = None,
             settings_sources: dict[str, str] | None = None) -> CheckResult:
    """Test an analysed run against the criteria."""
    checks, among = [], subjects(analysis, criteria.every_layer)
    if criteria.min_ratio is not None:
        checks.append(_bound("min_ratio", analysis, criteria.min_ratio, among))
    if criteria.max_ratio is not None:
        checks.append(_bound("max_ratio", analysis, criteria.max_ratio, among))
    checks.append(_verdict("vanishing", analysis, "vanishing" in criteria.fail_on, among))
    checks.append(_verdict("exploding", analysis, "exploding" in criteria.fail_on, among))
    checks.append(_nonfinite(analysis, "nonfinite" in criteria.fail_on, among))
    failures = sum(c.status == "fail" for c in checks)
    return CheckResult(
        passed=failures == 0,
        failures=failures,
        warnings=sum(c.status == "warn" for c in checks),
        checks=checks,
        criteria=criteria,
        settings_file=settings_file,
        settings_sources=dict(sorted((settings_sources or {}).items())),
        config=analysis.config,
        loss=analysis.loss,
        regime=analysis.regime,
        flow=analysis.flow,
        grad_norms=analysis.grad_norms,
        analysis=analysis,
    )


def check(
    config: RunConfig | None = None,
    *,
    min_ratio: float | None = None,
    max_ratio: float | None = None,
    fail_on: str | Iterable[str] = DEFAULT_FAIL_ON,
    every_layer: bool = False,
    **settings,
) -> CheckResult:
    """Analyse one BPTT pass and test it: ``gradscope.check(seq_len=200, min_ratio=1e-4)``.

    Takes the RunConfig fields as keywords (or a RunConfig) and the thresholds of ``Criteria``;
    never raises for a failed check: look at ``result.passed``.
    """
    criteria = Criteria(min_ratio, max_ratio, fail_on, every_layer)  # bad thresholds fail before the run
    given = [*settings, *(k for k, v in (("min_ratio", min_ratio), ("max_ratio", max_ratio)) if v is not None)]
    if fail_on != DEFAULT_FAIL_ON:
        given.append("fail_on")
    if every_layer:
        given.append("every_layer")
    return evaluate(analyze(config, **settings), criteria, settings_sources=dict.fromkeys(given, "flag"))


def failure_summary(result: CheckResult) -> str:
    """One line naming every failed check with its measured value and threshold."""
    failed = [f"{c.name}: {c.message}" for c in result.checks if c.status == "fail"]
    return "check failed: " + "; ".join(failed)
