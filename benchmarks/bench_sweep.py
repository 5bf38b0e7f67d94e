"""Throughput of ``gradscope sweep``: grid points per second with one job and with two.

Each point is a fresh run (build, forward, BPTT, analyze's measurements), so the throughput is
what a phase diagram costs. The grid is the default one (16 spectral radii by T = 10, 20, 50,
100; H = 32, B = 16, a tanh RNN) unless the flags change it. One job runs in this process; two
or more are spawned worker processes, each with one BLAS thread, so the second figure includes
starting them. The ratio (two jobs / one job) is what a second core buys.

Run: ``python benchmarks/bench_sweep.py`` (``--metric lyapunov``, ``--repeats N``, ``--jobs 1,2,4``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, median_time, print_table  # noqa: E402

from gradscope.config import RunConfig  # noqa: E402
from gradscope.sweep import DEFAULT_X, DEFAULT_Y, METRICS, plan_sweep, run_sweep  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--x", default=DEFAULT_X, help="the grid's x axis, NAME=VALUES")
    parser.add_argument("--y", default=DEFAULT_Y, help="the grid's y axis, NAME=VALUES")
    parser.add_argument("--metric", choices=list(METRICS), default="ratio")
    parser.add_argument("--jobs", default="1,2", help="comma-separated job counts to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per job count (median)")
    args = parser.parse_args()

    plan = plan_sweep(RunConfig(), args.x, args.y, args.metric)
    points = len(plan.points)
    print(environment())
    print(f"grid: {plan.y.name} x {plan.x.name} = {len(plan.y.values)} x {len(plan.x.values)} "
          f"= {points} points, metric {args.metric}")
    rows, single = [], None
    for jobs in (int(j) for j in args.jobs.split(",")):
        seconds = median_time(lambda: run_sweep(plan, jobs), repeats=args.repeats, warmup=1)
        rate = points / seconds
        single = single or rate
        rows.append([str(jobs), f"{seconds:.2f} s", f"{rate:.1f}", f"{rate / single:.2f}x"])
    print_table(["jobs", "time", "points/s", "vs 1 job"], rows)


if __name__ == "__main__":
    main()
