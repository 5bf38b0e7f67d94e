"""The JSON of a set of runs, byte for byte as it was before the one-model restructuring
(pinned_cases.py): one model kind and one BPTT driver must not change a single digit of what the
built models report, nor the keys (`rnn.*`, `fc.*`) and bytes of the files they write."""

from __future__ import annotations

import json

import pytest

from pinned_cases import CASES, PINNED, run_case


def _cli(capsys):
    from gradscope.cli import main

    def run(argv):
        capsys.readouterr()
        code = main(argv)
        return code, capsys.readouterr().out

    return run


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_is_byte_for_byte_the_pinned_one(name, capsys):
    code, out, files = run_case(name, _cli(capsys))
    meta = json.loads((PINNED / f"{name}.meta.json").read_text())
    assert code == meta["exit_code"]
    assert files == meta["files"]
    assert out == (PINNED / f"{name}.json").read_text()
