"""Peak memory and time of ``analyze`` on a 2-layer bidirectional LSTM at long T, checkpointed.

The model of docs/own-model.md (nn.Embedding -> nn.LSTM(num_layers=2, bidirectional=True) ->
nn.Linear on cat(h_n[-2], h_n[-1])), saved as a state dict, and one sequence of T token ids. Each T
runs ``gradscope analyze --weights ... --inputs ... --max-memory M`` in a fresh process: M is below
what the full path needs, so analyze runs checkpointed BPTT (the report says so), and the table
gives the process's peak RSS (``ru_maxrss``), what the full path would have needed
(memory.run_bytes), and the wall time. Run: ``python benchmarks/bench_checkpointed_network.py``
(``--seq-lens 10000,100000,1000000``; needs numpy only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, print_table  # noqa: E402

from gradscope import memory  # noqa: E402

V, D, H = 50, 16, 32
CHILD = """
import json, resource, sys
from gradscope.commands.analyze import analyze
from gradscope.config import RunConfig
r = analyze(RunConfig(weights=sys.argv[1], inputs=sys.argv[2], targets=sys.argv[3]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": peak, "checkpointed": r.setup.checkpointed, "regime": r.regime,
                  "ratio": r.flow.log10_ratio}))
"""


def model(folder: Path) -> Path:
    """The state dict, in PyTorch's layout, built with numpy (U(-1/sqrt(H), 1/sqrt(H)), as torch)."""
    rng = np.random.default_rng(0)
    k = 1 / np.sqrt(H)
    arrays = {"embedding.weight": rng.standard_normal((V, D))}
    for layer in range(2):
        for suffix in ("", "_reverse"):
            width = D if layer == 0 else 2 * H
            arrays[f"lstm.weight_ih_l{layer}{suffix}"] = rng.uniform(-k, k, (4 * H, width))
            arrays[f"lstm.weight_hh_l{layer}{suffix}"] = rng.uniform(-k, k, (4 * H, H))
            arrays[f"lstm.bias_ih_l{layer}{suffix}"] = rng.uniform(-k, k, 4 * H)
            arrays[f"lstm.bias_hh_l{layer}{suffix}"] = rng.uniform(-k, k, 4 * H)
    arrays["fc.weight"] = rng.uniform(-k, k, (1, 2 * H))
    arrays["fc.bias"] = np.zeros(1)
    path = folder / "model.npz"
    np.savez(path, **arrays)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", default="10000,100000,1000000")
    parser.add_argument("--max-memory", default="1G", help="--max-memory of each run (below the full path's need)")
    args = parser.parse_args()
    print(environment())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = model(folder)
        np.save(folder / "y.npy", np.array([1]))
        for t in (int(v) for v in args.seq_lens.split(",")):
            np.save(folder / "x.npy", np.random.default_rng(t).integers(1, V, (1, t)))
            full = memory.run_bytes(t, 1, H, D, states=2, gates=4, layers=2, directions=2)
            env = {"GRADSCOPE_MAX_MEMORY": args.max_memory}
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, str(weights), str(folder / "x.npy"),
                                  str(folder / "y.npy")], capture_output=True, text=True,
                                 env={**__import__("os").environ, **env}, check=True)
            wall = time.perf_counter() - started
            doc = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append([str(t), memory.human(full), memory.human(doc["peak"]), str(doc["checkpointed"]),
                         f"{wall:.0f} s", doc["regime"]])
    print_table(["T", "full path needs", "peak RSS", "checkpointed", "wall", "verdict"], rows)


if __name__ == "__main__":
    main()
