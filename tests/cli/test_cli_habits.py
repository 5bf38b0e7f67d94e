"""The CLI's manners (issue 13): choices in any case with a did-you-mean, errors in gradscope's words on
one line (exit 2), --json on every command that prints something, -q/-v, shell completion, and help
that reads at 80 columns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from gradscope.cli import main

COMMANDS = ["analyze", "check", "train", "compare", "spectrum", "sweep", "reproduce", "schema", "history"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradscope: error: "), err
    return lines[0].removeprefix("gradscope: error: ")


def help_text(*argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TERM")}
    env.update(COLUMNS="80", NO_COLOR="1", TERM="dumb")
    done = subprocess.run([sys.executable, "-m", "gradscope", *argv, "--help"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("argv, message", [
    (["analyze", "--cell", "lstmm"], "--cell: no such choice 'lstmm'; did you mean lstm? (rnn, gru, lstm)"),
    (["analyze", "--activation", "tahn"], "--activation: no such choice 'tahn'; did you mean tanh?"),
    (["analyze", "--task", "zzz"], "--task: no such choice 'zzz' (random, adding"),
    (["analyze", "--hidden-size", "abc"], "--hidden-size takes a whole number, not 'abc'"),
    (["analyze", "--hidden-size", "0"], "--hidden-size must be >= 1, not '0'"),
    (["analyze", "--init-gain", "x"], "--init-gain takes a number, not 'x'"),
    (["train", "--optimizer", "adma"], "--optimizer: no such choice 'adma'; did you mean adam?"),
    (["schema", "anlyze"], "no JSON schema for 'anlyze'; did you mean analyze?"),
    (["analyze", "-q", "-v"], "--quiet and --verbose are opposites"),
])
def test_bad_values_are_one_line_in_our_words(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert message in line
    assert "Value error" not in line and "Input should" not in line


@pytest.mark.parametrize("argv, field, value", [
    (["analyze", "--cell", "LSTM"], "cell", "lstm"),
    (["analyze", "--activation", "ReLU"], "activation", "relu"),
    (["analyze", "--task", "Adding"], "task", "adding"),
])
def test_choices_ignore_case(capsys, argv, field, value):
    code, out, err = run(capsys, *argv, "--seq-len", "6", "--hidden-size", "3", "--batch-size", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["config"][field] == value


def test_schema_json(capsys):
    code, out, _ = run(capsys, "schema", "--json")
    assert code == 0 and "analyze" in json.loads(out)["commands"]
    code, out, _ = run(capsys, "schema", "Analyze", "--json")
    assert code == 0 and json.loads(out)["title"].startswith("gradscope analyze")


def test_reproduce_list_json(capsys):
    code, out, _ = run(capsys, "reproduce", "--list", "--json")
    names = [e["name"] for e in json.loads(out)["experiments"]]
    assert code == 0 and "forget-bias" in names


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_json(command):
    assert "--json" in help_text(command)


def test_quiet_silences_warnings_and_verbose_times(capsys):
    from gradscope.cli.options import verbosity
    from gradscope.render.common import warn

    with verbosity(quiet=False, verbose=False, command="analyze"):
        warn("a token looks like padding")
    with verbosity(quiet=True, verbose=False, command="analyze"):
        warn("a token looks like padding")
    assert capsys.readouterr().err == "gradscope: warning: a token looks like padding\n"
    code, quiet_out, err = run(capsys, "analyze", "--seq-len", "5", "-q", "--json")
    assert code == 0 and err == ""
    code, out, err = run(capsys, "analyze", "--seq-len", "5", "-v", "--json")
    assert code == 0 and re.fullmatch(r"gradscope: analyze took \d+\.\d\d s \(\d+\.\d\d s with start-up\)\n", err)
    assert json.loads(out)["grad_norms"] == json.loads(quiet_out)["grad_norms"]


def test_help_reads_at_80_columns():
    text = help_text("analyze")
    assert "<bool>" not in text and "<int" not in text and "[default: (" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "--cell" in text and "rnn|gru|lstm" in text  # short choices whole, in the type column
    activation = " ".join(text[text.index("--activation"):text.index("--hidden-size")].replace("│", " ").split())
    assert "NAME" in activation and "One of:" in activation  # long ones in the help text, whole words
    assert all(name in activation for name in ("tanh", "relu", "sigmoid", "linear"))
    assert "[default: tanh]" in text


def test_python_m_says_gradscope():
    assert "Usage: gradscope [OPTIONS] COMMAND" in help_text()


def test_shell_completion():
    assert "--install-completion" in help_text()
    env = {**os.environ, "_GRADSCOPE_COMPLETE": "complete_bash", "COMP_WORDS": "gradscope analyze --cell ",
           "COMP_CWORD": "3"}
    done = subprocess.run([sys.executable, "-m", "gradscope"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.stdout.split() == ["rnn", "gru", "lstm"]
