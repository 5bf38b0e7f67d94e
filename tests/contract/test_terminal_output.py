"""Output on a pipe is plain text: no ANSI escape codes from any command, with or without NO_COLOR."""

from __future__ import annotations

import subprocess
import sys

import pytest
from contract_support import SCHEMA_COMMANDS, clean_env, cli_commands, sample_argv

ESC = b"\x1b"


def every_invocation() -> list[list[str]]:
    """Each command's help, a real run of every command with a sample, a failed check, an error."""
    argvs = [["--help"]] + [[c, "--help"] for c in sorted(cli_commands())]
    argvs += [sample_argv(c) for c in SCHEMA_COMMANDS]
    argvs += [["check", "--seq-len", "30", "--min-ratio", "1", "--format", "github"],
              ["analyze", "--hidden-size", "0"], ["no-such-command"]]
    return argvs


def run_all(**env: str) -> tuple[bytes, bytes]:
    """Every invocation in one subprocess whose stdout and stderr are pipes."""
    script = ("import sys\nfrom gradscope.cli import main\n"
              f"codes = [main(argv) for argv in {every_invocation()!r}]\n"
              "print(codes, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, env=clean_env(**env),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout, proc.stderr


@pytest.mark.parametrize("env", [{}, {"NO_COLOR": "1"}], ids=["plain", "NO_COLOR"])
def test_no_escape_codes_on_a_pipe(env):
    out, err = run_all(**env)
    assert b"Usage" in out and b"PASSED" in out and b"FAILED" in out  # everything ran
    assert ESC not in out, out[out.index(ESC) - 40: out.index(ESC) + 40]
    assert ESC not in err


def test_the_probe_sees_escape_codes_when_colour_is_forced():
    """FORCE_COLOR makes rich colour a pipe: the test above would notice a leak."""
    out, _ = run_all(FORCE_COLOR="1")
    assert ESC in out


def test_a_model_chain_wider_than_the_terminal_breaks_at_its_arrows():
    from gradscope.render.common import chain_lines

    chain = "Embedding 'embedding' 100x16 mask_zero -> LSTM 'lstm' H=24 -> Dense 'dense' 24->1 sigmoid"
    assert chain_lines("model: ", chain, 80) == ("model: Embedding 'embedding' 100x16 mask_zero -> LSTM 'lstm' H=24 ->\n"
                                                 "       Dense 'dense' 24->1 sigmoid")
    assert chain_lines("model: ", chain, 200) == "model: " + chain
    assert chain_lines("model: ", "a -> b", 3) == "model: a ->\n       b"  # a link wider than the width: whole


def test_a_positive_exponent_says_how_slowly_the_gradient_grows():
    from gradscope.render.common import growth_time

    assert growth_time(8.2e-4) == ", x e every 1220 steps"  # 1 / 8.2e-4 = 1219.5
    assert growth_time(0.5) == ", x e every 2.0 steps"
    assert growth_time(-0.1) == growth_time(float("nan")) == growth_time(float("inf")) == ""
