"""Peak memory of ``analyze`` against the sequence length T, vanilla tanh RNN, float64.

Each T runs in a fresh process (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is a process-wide
high-water mark); the table gives the peak RSS over the process's start-up RSS in units of
T*B*H*8 bytes (one (T, B, H) float64 array), the figure the issue-11 target (at most 3) is about,
and the share of grad_norms that float64 alone would have shown as 0.
Run: ``python benchmarks/bench_memory.py`` (``--seq-lens 1000,10000,100000``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, print_table  # noqa: E402

CHILD = """
import json, resource, sys
import numpy as np
from gradscope.commands.analyze import analyze
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
r = analyze(seq_len={t}, batch_size={b}, hidden_size={h}, init_gain=0.5)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"base": base, "peak": peak, "zeros": float(np.mean(r.grad_norms == 0)),
                  "finite_logs": float(np.mean(np.isfinite(r.log10_grad_norms)))}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", default="1000,10000,100000")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hidden-size", type=int, default=64)
    args = parser.parse_args()
    b, h = args.batch_size, args.hidden_size
    print(environment())
    rows = []
    for t in (int(v) for v in args.seq_lens.split(",")):
        out = subprocess.run([sys.executable, "-c", CHILD.format(t=t, b=b, h=h)], capture_output=True,
                             text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        unit = t * b * h * 8
        grown = r["peak"] - r["base"]
        rows.append([str(t), f"{grown / 2**20:.0f} MiB", f"{grown / unit:.2f}", f"{r['zeros']:.1%}",
                     f"{r['finite_logs']:.1%}"])
    print_table(["T", "peak RSS - start", "x T*B*H*8", "grad_norms == 0", "log10 finite"], rows)


if __name__ == "__main__":
    main()
