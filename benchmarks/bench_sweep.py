"""Throughput of ``gradscope sweep``: grid points per second with one job and with two.

Each point is a fresh run (build, forward, BPTT, analyze's measurements), so the throughput is
what a phase diagram costs. Two grids, both 16 spectral radii of a tanh RNN (H = 32, B = 16):

    default   T = 10, 20, 50, 100: the grid ``gradscope sweep`` draws with no flags
    long      T = 200, 400, 800, 1600: points that take long enough to keep workers busy

One job runs in this process, with its BLAS threads as the environment sets them; two or more
are spawned worker processes, each with one BLAS thread, and their start (about half a second)
is included, which on the default grid's short points is much of the time. BLAS threads on these
small matrices mostly wait for each other (worst on a busy machine), so ``OPENBLAS_NUM_THREADS=1
python benchmarks/bench_sweep.py`` compares one job with two like for like.

Run: ``python benchmarks/bench_sweep.py`` (``--metric lyapunov``, ``--repeats N``, ``--jobs 1,2,4``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, median_time, print_table  # noqa: E402

from gradscope.config import RunConfig  # noqa: E402
from gradscope.commands.sweep import DEFAULT_X, DEFAULT_Y, METRICS, plan_sweep, run_sweep  # noqa: E402


GRIDS = {
    "default": (DEFAULT_X, DEFAULT_Y),
    "long": (DEFAULT_X, "seq_len=200,400,800,1600"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metric", choices=list(METRICS), default="ratio")
    parser.add_argument("--jobs", default="1,2", help="comma-separated job counts to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per job count (median)")
    args = parser.parse_args()

    print(environment())
    rows = []
    for name, (x, y) in GRIDS.items():
        plan = plan_sweep(RunConfig(), x, y, args.metric)
        points, single = len(plan.points), None
        for jobs in (int(j) for j in args.jobs.split(",")):
            seconds = median_time(lambda: run_sweep(plan, jobs), repeats=args.repeats, warmup=1)
            rate = points / seconds
            single = single or rate
            rows.append([f"{name} ({y})", str(points), str(jobs), f"{seconds:.2f} s", f"{rate:.1f}",
                         f"{rate / single:.2f}x"])
    print(f"metric {args.metric}, x {DEFAULT_X}")
    print_table(["grid", "points", "jobs", "time", "points/s", "vs 1 job"], rows)


if __name__ == "__main__":
    main()
