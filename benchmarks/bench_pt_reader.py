"""Reading .pt weights without torch (gradscope/io/torch_pickle.py): the whole command, and the reader alone.

1. The whole command a user runs, start-up included, as a subprocess:
   ``python -m gradscope analyze --weights W --inputs x.npy --targets y.npy --loss bce -q`` for the
   vanilla RNN at benchmarks/common.py's SIZES (torch_modules("rnn", ...): nn.RNN(D, H) and
   nn.Linear(H, 1) in float64, keys "rnn.*" and "fc.*"), W the same state dict saved with np.savez
   and with torch.save. With ``--baseline DIR``, also the .pt run with the gradscope package in DIR
   (a checkout of an earlier commit: ``git archive 8b6a68e gradscope | tar -x -C DIR`` is the one
   whose reader called torch.load). Medians of the rounds, the commands taking turns in each round.
2. In one process: ``torch_pickle.load`` against ``torch.load(map_location="cpu", weights_only=True)``
   on those three .pt files and on a larger checkpoint (a 2-layer bidirectional nn.LSTM, H = 512,
   float32, with Adam's state after one step: 126 MB), torch imported beforehand (its import is
   timed apart, ``python -c "import torch"`` against ``python -c "pass"``). Files are read from the
   page cache (each read once, untimed, first), as a repeated run reads them.

Ratios are slow / fast (> 1: the reader without torch, or the .npz run, is faster).
Run: ``python benchmarks/bench_pt_reader.py`` (``--rounds N``, ``--baseline DIR``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import SIZES, environment, interleaved_timings, ms, print_table, ratio, torch_modules

from gradscope.io import torch_pickle

REPO = Path(__file__).resolve().parents[1]


def command_time(argv: list[str], pythonpath: Path) -> float:
    """Wall time of one run of ``python -m gradscope <argv>`` with gradscope imported from pythonpath."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    t0 = time.perf_counter()
    # run from "/": python -m puts the working directory first on sys.path, ahead of PYTHONPATH
    subprocess.run([sys.executable, "-m", "gradscope", *argv], env=env, cwd="/", check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def python_time(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def write_rnn(folder: Path, size: tuple[int, int, int, int]) -> dict[str, Path]:
    """weights.npz, weights.pt, x.npy and y.npy of the RNN at size (B, T, D, H), in folder."""
    import torch

    module, _step, fc, x, y = torch_modules("rnn", *size)
    state = {f"rnn.{k}": v for k, v in module.state_dict().items()}
    state.update({f"fc.{k}": v for k, v in fc.state_dict().items()})
    folder.mkdir()
    paths = {name: folder / name for name in ("weights.npz", "weights.pt", "x.npy", "y.npy")}
    np.savez(paths["weights.npz"], **{k: v.numpy() for k, v in state.items()})
    torch.save(state, paths["weights.pt"])
    np.save(paths["x.npy"], x.numpy())
    np.save(paths["y.npy"], y.numpy())
    return paths


def write_checkpoint(path: Path) -> Path:
    """A training checkpoint of a 2-layer bidirectional LSTM (H = 512, float32) with Adam's state."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.LSTM(512, 512, num_layers=2, bidirectional=True)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(3, 2, 512))[0].sum().backward()
    optimizer.step()
    torch.save({"epoch": 1, "model_state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    return path


def whole_commands(folders: list[dict[str, Path]], rounds: int, baseline: Path | None) -> None:
    header = ["(B, T, D, H)", ".npz", ".pt", ".pt / .npz"]
    if baseline is not None:
        header += [".pt, baseline", "baseline / now"]
    rows = []
    for size, paths in zip(SIZES, folders):
        argv = {suffix: ["analyze", "--weights", str(paths[f"weights{suffix}"]), "--inputs", str(paths["x.npy"]),
                         "--targets", str(paths["y.npy"]), "--loss", "bce", "-q"] for suffix in (".npz", ".pt")}
        runs = [lambda: command_time(argv[".npz"], REPO), lambda: command_time(argv[".pt"], REPO)]
        if baseline is not None:
            runs.append(lambda: command_time(argv[".pt"], baseline))
        times: list[list[float]] = [[] for _ in runs]
        for _ in range(rounds):
            for run, kept in zip(runs, times):
                kept.append(run())
        medians = [float(np.median(t)) for t in times]
        row = [str(size), ms(medians[0]), ms(medians[1]), ratio(medians[1], medians[0])]
        if baseline is not None:
            row += [ms(medians[2]), ratio(medians[2], medians[1])]
        rows.append(row)
    print_table(header, rows)


def readers(files: dict[str, Path], rounds: int) -> None:
    import torch

    rows = []
    for name, path in files.items():
        pure = lambda: torch_pickle.load(path, name)  # noqa: E731
        loaded = lambda: torch.load(path, map_location="cpu", weights_only=True)  # noqa: E731
        t_pure, t_torch = interleaved_timings([pure, loaded], rounds, warmup=1)
        size = path.stat().st_size / 1e6
        rows.append([name, f"{size:.2f} MB", ms(t_pure.median), ms(t_torch.median),
                     ratio(t_torch.median, t_pure.median)])
    print_table(["file", "size", "torch_pickle.load", "torch.load", "torch.load / reader"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="a folder holding an earlier gradscope package, for comparison")
    args = parser.parse_args()
    print(environment())
    with tempfile.TemporaryDirectory() as tmp:
        folders = [write_rnn(Path(tmp) / f"rnn{i}", size) for i, size in enumerate(SIZES)]
        checkpoint = write_checkpoint(Path(tmp) / "checkpoint.pt")
        start = [python_time("pass") for _ in range(args.rounds)]
        imports = [python_time("import torch") for _ in range(args.rounds)]
        print(f"\npython -c 'pass': {ms(float(np.median(start)))}; "
              f"python -c 'import torch': {ms(float(np.median(imports)))} (medians of {args.rounds})\n")
        print("Whole command (subprocess, start-up included), medians of", args.rounds, "rounds")
        whole_commands(folders, args.rounds, args.baseline)
        files = {f"rnn {size}": paths["weights.pt"] for size, paths in zip(SIZES, folders)}
        files["lstm 2x512 bidir + Adam"] = checkpoint
        print(f"\nReader alone, in one process (torch imported), medians of {args.rounds} rounds")
        readers(files, args.rounds)


if __name__ == "__main__":
    main()
