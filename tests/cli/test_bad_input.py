"""Bad options, files and settings: exit code 2, one line on stderr naming the problem, no stdout.

Every case runs through both commands that build a model (analyze and check); the settings-file
and CI-output cases through check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradscope.cli import main

H, D = 4, 8  # the saved model: hidden size, input size (the random task's)


@pytest.fixture
def weights(tmp_path) -> dict[str, np.ndarray]:
    """A valid nn.RNN + nn.Linear state dict, as gradscope (and PyTorch) write it."""
    path = tmp_path / "good.npz"
    assert main(["analyze", "--hidden-size", str(H), "--save-weights", str(path), "--json"]) == 0
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def savez(path: Path, arrays: dict) -> str:
    np.savez(path, **arrays)
    return str(path)


def saved_npy(path: Path, array: np.ndarray) -> str:
    np.save(path, array)
    return str(path)


def without(arrays: dict, prefix: str) -> dict:
    return {k: v for k, v in arrays.items() if not k.startswith(prefix)}


def truncated(tmp: Path, arrays: dict) -> str:
    whole = Path(savez(tmp / "whole.npz", arrays)).read_bytes()
    (tmp / "cut.npz").write_bytes(whole[: len(whole) // 2])
    return str(tmp / "cut.npz")


def objects() -> np.ndarray:
    out = np.empty(2, dtype=object)
    out[:] = [{"a": 1}, [2]]
    return out


def pickled(tmp: Path, arrays: dict) -> str:
    return savez(tmp / "pickled.npz", {**arrays, "extra": objects()})


def pickled_npy(tmp: Path) -> str:
    np.save(tmp / "x.npy", objects(), allow_pickle=True)
    return str(tmp / "x.npy")


def with_nan(arrays: dict) -> dict:
    bad = {k: v.copy() for k, v in arrays.items()}
    bad["rnn.weight_hh_l0"][0, 0] = np.nan
    return bad


# Each case: (argv given the tmp directory and a valid state dict, what stderr must name).
OPTION_CASES = {
    "hidden size 0": (lambda tmp, w: ["--hidden-size", "0"], "--hidden-size"),
    "negative length": (lambda tmp, w: ["--seq-len", "-5"], "--seq-len"),
    "unknown activation": (lambda tmp, w: ["--activation", "swish"], "'swish'"),
    "unknown cell": (lambda tmp, w: ["--cell", "transformer"], "'transformer'"),
    "unknown task": (lambda tmp, w: ["--task", "sorting"], "'sorting'"),
    "unknown init": (lambda tmp, w: ["--init", "kaiming"], "'kaiming'"),
    "unknown loss": (lambda tmp, w: ["--loss", "hinge"], "'hinge'"),
    "zero spectral radius": (lambda tmp, w: ["--spectral-radius", "0"], "--spectral-radius"),
    "negative spectral radius": (lambda tmp, w: ["--spectral-radius", "-1"], "--spectral-radius"),
    "not a number": (lambda tmp, w: ["--init-gain", "big"], "--init-gain"),
    "not an integer": (lambda tmp, w: ["--hidden-size", "ten"], "--hidden-size"),
    "unknown flag": (lambda tmp, w: ["--frobnicate"], "--frobnicate"),
    "targets without inputs": (lambda tmp, w: ["--targets", str(tmp / "y.npy")], "--targets needs --inputs"),
    "--padding-idx on a built model": (lambda tmp, w: ["--padding-idx", "0"], "the model gradscope builds has no embedding"),
    # sizes: refused before anything is allocated (memory.py), never a MemoryError or an overflow
    "23-digit --seq-len": (lambda tmp, w: ["--seq-len", "1" * 23], "--seq-len 11111111111111111111111 is too large"),
    "--seq-len too long to fit": (lambda tmp, w: ["--seq-len", "1000000000"], "lower --seq-len"),
    "--hidden-size too large to fit": (lambda tmp, w: ["--hidden-size", "1000000"], "B=16, H=1000000 needs about"),
    "--batch-size too large to fit": (lambda tmp, w: ["--batch-size", "100000000"], "B=100000000, H=32 needs about"),
    "run over --max-memory": (lambda tmp, w: ["--max-memory", "100K"], "more than --max-memory (100 KiB)"),
    "--max-memory not a size": (lambda tmp, w: ["--max-memory", "4X"], "--max-memory '4X'"),
}
FILE_CASES = {
    "missing file": (lambda tmp, w: ["--weights", str(tmp / "nope.npz")], "not found"),
    "a directory": (lambda tmp, w: ["--weights", str(tmp)], "directory"),
    "not an npz": (lambda tmp, w: ["--weights", text_file(tmp, "hello", "w.npz")], "holds text, not weights"),
    "not an npy": (lambda tmp, w: ["--inputs", text_file(tmp, "1,2,3\n", "x.npy")], "not in NumPy's"),
    "empty file": (lambda tmp, w: ["--weights", text_file(tmp, "", "w.npz")], "is empty"),
    "truncated npz": (lambda tmp, w: ["--weights", truncated(tmp, w)], "not a valid .npz"),
    "pickled object arrays": (lambda tmp, w: ["--weights", pickled(tmp, w)], "pickled"),
    "pickled inputs": (lambda tmp, w: ["--inputs", pickled_npy(tmp)], "pickled"),
    "npz given for inputs": (lambda tmp, w: ["--inputs", savez(tmp / "x.npz", {"x": np.zeros((2, 3, D))})],
                             ".npz archive"),
    "inputs of the wrong shape": (lambda tmp, w: ["--inputs", saved_npy(tmp / "x.npy", np.zeros((2, D)))],
                                  f"(B, T, {D})"),
    "NaN in the weights": (lambda tmp, w: ["--weights", savez(tmp / "nan.npz", with_nan(w))], "NaN or infinite"),
    "Inf in the inputs": (lambda tmp, w: ["--inputs", saved_npy(tmp / "x.npy", np.full((2, 3, D), np.inf))],
                          "NaN or infinite"),
    "weights disagree with the inputs": (
        lambda tmp, w: ["--weights", savez(tmp / "w.npz", w), "--inputs", saved_npy(tmp / "x.npy", np.zeros((2, 3, 5)))],
        "features per step"),
    "weights disagree with --hidden-size": (
        lambda tmp, w: ["--weights", savez(tmp / "w.npz", w), "--hidden-size", str(H + 1)],
        "disagrees with the weights"),
    "no readout": (lambda tmp, w: ["--weights", savez(tmp / "w.npz", without(w, "fc."))], "readout"),
    "two readouts": (
        lambda tmp, w: ["--weights", savez(tmp / "w.npz", {**without(w, "fc."), "out.weight": w["fc.weight"], "head.weight": w["fc.weight"], "head.bias": w["fc.bias"]})],
        "choose one with --head-key"),
    "two layers": (
        lambda tmp, w: ["--weights", savez(tmp / "w.npz", {**w, "rnn.weight_hh_l1": w["rnn.weight_hh_l0"]})],
        "missing rnn.weight_ih_l1"),
    "bidirectional": (
        lambda tmp, w: ["--weights", savez(tmp / "w.npz", {**w, "rnn.weight_hh_l0_reverse": w["rnn.weight_hh_l0"]})],
        "missing rnn.weight_ih_l0_reverse"),
    "LSTM projection": (
        lambda tmp, w: ["--weights", savez(tmp / "w.npz", {**w, "rnn.weight_hr_l0": w["rnn.weight_hh_l0"]})],
        "projection"),
    "two recurrent modules": (
        lambda tmp, w: ["--weights", savez(tmp / "w.npz", {**w, **{"enc." + k: v for k, v in w.items() if k.startswith("rnn.")}})],
        "--rnn-key"),
    "lengths out of range": (
        lambda tmp, w: ["--inputs", saved_npy(tmp / "x.npy", np.zeros((2, 3, D))), "--lengths", saved_npy(tmp / "l.npy", np.array([3, 4]))],
        "lengths must be whole numbers in [1, 3]"),
    "lengths without inputs": (lambda tmp, w: ["--lengths", str(tmp / "l.npy")], "--lengths needs --inputs"),
    "token ids without an embedding": (
        lambda tmp, w: ["--inputs", saved_npy(tmp / "x.npy", np.zeros((2, 3))), "--padding-idx", "0"],
        "no embedding"),
    "output grads of the wrong shape": (
        lambda tmp, w: ["--inputs", saved_npy(tmp / "x.npy", np.zeros((2, 3, D))),
                        "--output-grads", saved_npy(tmp / "g.npy", np.zeros((2, 3)))],
        "output must have shape"),
    "unknown readout": (lambda tmp, w: ["--readout", "attention"], "'attention'"),
    # headers are read before the data: a claimed shape is checked against the bytes there are
    "npz member claiming (10^6, 10^6)": (lambda tmp, w: ["--weights", lying_npz(tmp, w)],
                                         "claims shape (1000000, 1000000)"),
    "npy claiming (10^6, 10^6)": (lambda tmp, w: ["--inputs", lying_npy(tmp)], "claims shape (1000000, 1000000)"),
    "0-d targets": (lambda tmp, w: ["--inputs", saved_npy(tmp / "x.npy", np.zeros((2, 3, D))),
                                    "--targets", saved_npy(tmp / "y.npy", np.array(1.0))], "targets have shape ()"),
    "recurrent bias of the wrong length": (
        lambda tmp, w: ["--weights", savez(tmp / "w.npz", {**w, "rnn.bias_hh_l0": np.zeros(H + 1)})],
        f"bias_hh_l0 must have shape ({H},)"),
    "head bias of the wrong length": (
        lambda tmp, w: ["--weights", savez(tmp / "w.npz", {**w, "fc.bias": np.zeros(3)})], "fc.bias has shape (3,)"),
    "a device as --inputs": (lambda tmp, w: ["--inputs", "/dev/zero"], "/dev/zero is a character device"),
    "input name too long": (lambda tmp, w: ["--weights", str(tmp / ("w" * 300 + ".npz"))], "File name too long"),
    "npy given for weights": (lambda tmp, w: ["--weights", saved_npy(tmp / "w.npy", np.zeros(3))],
                              "single .npy array, not a state dict"),
}


def lying_header(shape: tuple) -> bytes:
    """An .npy header claiming ``shape`` of float64, followed by 64 bytes of data."""
    import io

    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return out.getvalue() + bytes(64)


def lying_npz(tmp: Path, arrays: dict) -> str:
    import zipfile

    path = Path(savez(tmp / "lying.npz", without(arrays, "rnn.weight_hh")))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("rnn.weight_hh_l0.npy", lying_header((10**6, 10**6)))
    return str(path)


def lying_npy(tmp: Path) -> str:
    (tmp / "x.npy").write_bytes(lying_header((10**6, 10**6)))
    return str(tmp / "x.npy")


def text_file(tmp: Path, text: str, name: str = "gradscope.toml") -> str:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def found_in_cwd(tmp: Path, text: str) -> list[str]:
    """A pyproject.toml in the current directory (the tests run in tmp), found without --config."""
    text_file(tmp, text, "pyproject.toml")
    return []


CHECK_CASES = {
    "unknown --fail-on": (lambda tmp, w: ["--fail-on", "vanishing,bogus"], "'bogus'"),
    "empty --fail-on": (lambda tmp, w: ["--fail-on", " , "], "--fail-on is empty"),
    "zero --min-ratio": (lambda tmp, w: ["--min-ratio", "0"], "--min-ratio"),
    "NaN --max-ratio": (lambda tmp, w: ["--max-ratio", "nan"], "--max-ratio"),
    "min above max": (lambda tmp, w: ["--min-ratio", "1", "--max-ratio", "0.1"], "no ratio can pass"),
    "unknown --format": (lambda tmp, w: ["--format", "xml"], "--format"),
    "missing --config": (lambda tmp, w: ["--config", str(tmp / "none.toml")], "config file not found"),
    "unknown key": (lambda tmp, w: ["--config", text_file(tmp, "hidden = 4\n")], "gradscope.toml: unknown key 'hidden'"),
    "wrong type": (lambda tmp, w: ["--config", text_file(tmp, 'hidden-size = "32"\n')],
                   "gradscope.toml: hidden-size must be an integer, not a string"),
    "wrong type of fail-on": (lambda tmp, w: ["--config", text_file(tmp, "fail-on = [1]\n")],
                              "gradscope.toml: fail-on must be a string or an array of strings"),
    "bad value": (lambda tmp, w: ["--config", text_file(tmp, "hidden-size = 0\n")],
                  "gradscope.toml: hidden-size must be a whole number"),
    "bad name": (lambda tmp, w: ["--config", text_file(tmp, 'activation = "swish"\n')],
                 "gradscope.toml: activation = 'swish' is not one of"),
    "bad threshold": (lambda tmp, w: ["--config", text_file(tmp, "min-ratio = -1.0\n")],
                      "gradscope.toml: min-ratio must be a positive"),
    "key given twice": (lambda tmp, w: ["--config", text_file(tmp, "seq-len = 5\nseq_len = 6\n")], "repeats"),
    "not TOML": (lambda tmp, w: ["--config", text_file(tmp, "seq-len = \n")], "gradscope.toml is not valid TOML"),
    "pyproject without the table": (
        lambda tmp, w: ["--config", text_file(tmp, '[tool.black]\nline-length = 99\n', "pyproject.toml")],
        "has a [tool] table but no [tool.gradscope]"),
    "broken pyproject.toml found by the search": (
        lambda tmp, w: found_in_cwd(tmp, "[tool.gradscope\n"), "pyproject.toml is not valid TOML"),
    "unwritable --junit": (lambda tmp, w: ["--junit", str(tmp / "no" / "such" / "dir.xml")], "cannot write --junit"),
    "--junit name too long": (lambda tmp, w: ["--junit", str(tmp / ("j" * 300 + ".xml"))], "File name too long"),
    "23-digit seq-len in the file": (lambda tmp, w: ["--config", text_file(tmp, f"seq-len = {'9' * 23}\n")],
                                     "gradscope.toml: seq-len 99999999999999999999999 is too large"),
}


def assert_one_line_error(capsys, argv: list[str], expected: str) -> None:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code} for {argv}: {err}"
    assert out == "", "nothing may reach stdout on an input error"
    assert len(err.splitlines()) == 1 and err.startswith("gradscope: error: "), err
    assert expected in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["analyze", "check"])
@pytest.mark.parametrize("case", [*OPTION_CASES, *FILE_CASES])
def test_bad_option_or_file(case, command, tmp_path, weights, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make, expected = {**OPTION_CASES, **FILE_CASES}[case]
    assert_one_line_error(capsys, [command, *make(tmp_path, weights)], expected)


@pytest.mark.parametrize("case", CHECK_CASES)
def test_bad_check_setting(case, tmp_path, weights, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make, expected = CHECK_CASES[case]
    assert_one_line_error(capsys, ["check", "--seq-len", "5", *make(tmp_path, weights)], expected)


def test_the_valid_state_dict_loads(tmp_path, weights, capsys, monkeypatch):
    """The cases above break a file that is otherwise good."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    code = main(["check", "--weights", savez(tmp_path / "w.npz", weights), "--seq-len", "5"])
    capsys.readouterr()
    assert code == 0



@pytest.mark.parametrize("row, ok", [([3, 4, 0, 0], True), ([0, 0, 3, 4], True), ([3, 0, 4, 0], False),
                                     ([0, 3, 0, 4], False), ([3, 0, 0, 4], False)])
def test_pad_tokens_inside_a_sequence_need_lengths(tmp_path, capsys, row, ok):
    """--padding-idx derives the real steps from the tokens only where they are one run."""
    rng = np.random.default_rng(0)
    weights = {"emb.weight": rng.standard_normal((6, D)), "rnn.weight_ih_l0": rng.standard_normal((H, D)),
               "rnn.weight_hh_l0": rng.standard_normal((H, H)) * 0.3, "rnn.bias_ih_l0": np.zeros(H),
               "rnn.bias_hh_l0": np.zeros(H), "fc.weight": rng.standard_normal((1, H)), "fc.bias": np.zeros(1)}
    argv = ["--weights", savez(tmp_path / "w.npz", weights),
            "--inputs", saved_npy(tmp_path / "x.npy", np.array([row, [1, 2, 3, 4]])), "--padding-idx", "0"]
    if ok:
        assert main(["analyze", *argv, "--json"]) == 0
    else:
        assert_one_line_error(capsys, ["analyze", *argv], "give --lengths")
