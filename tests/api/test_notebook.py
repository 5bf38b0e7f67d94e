"""Results in a notebook or a REPL: a one-line repr with the verdict, to_dict() = the JSON document,
and the CLI's tables as HTML (Jupyter) and for rich.print, without the core importing rich."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import gradscope
from gradscope.commands.spectrum import jacobian_spectrum
from gradscope.commands.sweep import plan_sweep, run_sweep

SMALL = dict(seq_len=12, hidden_size=4, batch_size=4)


def _results() -> dict:
    train_options = gradscope.TrainOptions(steps=3, eval_size=8)
    return {
        "analyze": lambda: gradscope.analyze(**SMALL),
        "check": lambda: gradscope.check(min_ratio=1e-30, **SMALL),
        "train": lambda: gradscope.train(gradscope.RunConfig(task="adding", **SMALL), train_options),
        "compare": lambda: gradscope.compare(gradscope.RunConfig(task="adding", **SMALL), train_options,
                                             ["clip-norm"]),
        "reproduce": lambda: gradscope.reproduce("forget-bias", steps=3, seq_len=12, hidden_size=4,
                                                 batch_size=4, eval_size=8),
        "spectrum": lambda: jacobian_spectrum(gradscope.RunConfig(**SMALL)),
        "sweep": lambda: run_sweep(plan_sweep(gradscope.RunConfig(hidden_size=4, batch_size=4),
                                              "spectral_radius=0.5,2", "seq_len=4,8")),
    }


@pytest.fixture(scope="module")
def results():
    return {name: make() for name, make in _results().items()}


@pytest.mark.parametrize("command", list(_results()))
def test_repr_is_one_short_line_with_the_verdict(results, command):
    text = repr(results[command])
    assert "\n" not in text and len(text) < 160, text
    assert text.startswith(f"<{type(results[command]).__name__} {command}: ")


@pytest.mark.parametrize("command", list(_results()))
def test_to_dict_is_the_json_document(results, command):
    result = results[command]
    assert result.to_dict() == json.loads(gradscope.dumps(result))


@pytest.mark.parametrize("command", list(_results()))
def test_html_and_rich_show_the_tables(results, command):
    from rich.console import Console

    result = results[command]
    html = result._repr_html_()
    assert html.startswith("<pre") and f"gradscope {command}" in html
    console = Console(record=True, width=100, file=open("/dev/null", "w"))
    console.print(result)
    assert f"gradscope {command}" in console.export_text()


def test_analyze_repr_names_regime_and_horizon(results):
    r = results["analyze"]
    assert f" {r.regime}, " in repr(r) and "horizon" in repr(r)


def test_repr_and_to_dict_import_no_rich():
    code = ("import sys, gradscope; r = gradscope.analyze(seq_len=6, hidden_size=3); repr(r); r.to_dict(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'typer')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
