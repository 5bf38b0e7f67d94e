"""The runs whose output is pinned byte for byte (tests/contract/test_pinned_outputs.py).

Each case is a name and the argv of one `gradscope` command with ``--json``. Files a case writes
(``{tmp}/...``) are pinned by their keys, shapes and a digest of each array's bytes. The pins were
written by ``python tests/contract/pinned_cases.py`` from main at 8b6a68e, before the one-model
restructuring, so that the built models' outputs stay exactly what they were; rerun it only when
an output is meant to change, and say why in the commit (git log -- tests/contract/pinned lists
each re-pin: the end-to-end ratio of train --task text, clip-norm's eps, and the LSTM step's
rounding after its gate derivatives were folded into the forward step and W_hh^T made contiguous).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

PINNED = Path(__file__).parent / "pinned"
SMALL = ["--seq-len", "12", "--hidden-size", "6", "--batch-size", "4"]
TRAIN = ["--seq-len", "10", "--hidden-size", "6", "--batch-size", "8", "--eval-size", "16",
         "--steps", "12", "--log-every", "4"]

CASES: dict[str, list[str]] = {
    "analyze-rnn": ["analyze", *SMALL],
    "analyze-relu-exploding": ["analyze", *SMALL, "--activation", "relu", "--spectral-radius", "2.5"],
    "analyze-gru-adding": ["analyze", *SMALL, "--cell", "gru", "--task", "adding"],
    "analyze-lstm-copy": ["analyze", "--cell", "lstm", "--task", "copy", "--seq-len", "22", "--hidden-size", "5",
                          "--batch-size", "3"],
    "analyze-rnn-copy": ["analyze", "--task", "copy", "--seq-len", "22", "--hidden-size", "5", "--batch-size", "3"],
    "analyze-text": ["analyze", "--task", "text", "--seq-len", "16", "--hidden-size", "6", "--batch-size", "8"],
    "analyze-float32": ["analyze", *SMALL, "--cell", "lstm", "--dtype", "float32"],
    "analyze-save": ["analyze", *SMALL, "--cell", "gru", "--save-grads", "{tmp}/grads.npz",
                     "--save-weights", "{tmp}/weights.npz"],
    "train-none": ["train", *TRAIN],
    "train-clip-norm": ["train", *TRAIN, "--mitigation", "clip-norm", "--clip-threshold", "0.05"],
    "train-omega-sgd": ["train", *TRAIN, "--mitigation", "omega", "--optimizer", "sgd"],
    "train-lstm-chrono": ["train", *TRAIN, "--cell", "lstm", "--mitigation", "chrono"],
    "train-copy": ["train", *TRAIN, "--task", "copy", "--seq-len", "22"],
    "train-text": ["train", *TRAIN, "--task", "text", "--seq-len", "16"],
    "train-save": ["train", *TRAIN, "--cell", "gru", "--mitigation", "l2", "--save-weights", "{tmp}/trained.npz"],
    "compare": ["compare", *TRAIN, "--steps", "6"],
    "compare-lstm-seeds": ["compare", *TRAIN, "--steps", "5", "--cell", "lstm", "--seeds", "2",
                           "--mitigations", "clip-value,forget-bias,gru"],
    "sweep-ratio": ["sweep", "--x", "spectral_radius=0.5,1,2", "--y", "seq_len=5,20", "--hidden-size", "6",
                    "--batch-size", "4", "--jobs", "1"],
    "sweep-lyapunov": ["sweep", "--metric", "lyapunov", "--cells", "rnn,lstm", "--x", "spectral_radius=0.8,1.2",
                       "--y", "seq_len=10,20", "--hidden-size", "5", "--batch-size", "3", "--jobs", "1"],
    "spectrum-rnn": ["spectrum", *SMALL, "--seq-len", "20"],
    "spectrum-lstm": ["spectrum", *SMALL, "--cell", "lstm", "--seq-len", "20"],
    "check": ["check", *SMALL, "--fail-on", "none"],
    "check-fails": ["check", *SMALL, "--min-ratio", "0.5"],
    "reproduce-list": ["reproduce", "--list"],
    # a one-layer model read from a file: the same model kind as the built ones
    "analyze-weights": ["analyze", "--weights", "{pinned}/rnn-one.npz", "--seq-len", "12", "--batch-size", "4"],
    "train-weights": ["train", "--weights", "{pinned}/rnn-one.npz", *TRAIN[2:], "--task", "random",
                      "--mitigation", "clip-value"],
    "spectrum-weights": ["spectrum", "--weights", "{pinned}/rnn-one.npz", "--seq-len", "20", "--batch-size", "4"],
}


def file_digest(path: Path) -> dict:
    """Keys, shapes, dtypes and a sha256 of each array's bytes: the file pinned byte for byte."""
    with np.load(path) as arrays:
        return {k: [list(arrays[k].shape), str(arrays[k].dtype), hashlib.sha256(arrays[k].tobytes()).hexdigest()]
                for k in arrays.files}


def run_case(name: str, run) -> tuple[int, str, dict]:
    """(exit code, stdout, {file name: digest}) of one case; ``run(argv) -> (code, stdout)``."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [a.replace("{tmp}", tmp).replace("{pinned}", str(PINNED)) for a in CASES[name]] + ["--json"]
        code, out = run(argv)
        out = out.replace(tmp, "{tmp}").replace(str(PINNED), "{pinned}")  # the same bytes on any machine
        files = {p.name: file_digest(p) for p in sorted(Path(tmp).iterdir())}
    return code, out, files


def _cli(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    from gradscope.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    return code, buffer.getvalue()


if __name__ == "__main__":
    PINNED.mkdir(exist_ok=True)
    for case in sys.argv[1:] or CASES:
        code, out, files = run_case(case, _cli)
        (PINNED / f"{case}.json").write_text(out)
        (PINNED / f"{case}.meta.json").write_text(json.dumps({"exit_code": code, "files": files}, indent=1) + "\n")
        print(case, code, len(out))
