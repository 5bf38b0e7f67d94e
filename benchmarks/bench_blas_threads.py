"""BLAS threads: training steps on one thread against all, and whole commands at each thread setting.

Two parts, both run by default (``--steps-table`` or ``--commands`` for one of them):

Steps table. For each (cell, B, H), ``train_setup`` runs the same steps twice in this process: with
the BLAS limited to one thread and with as many as it has (runtime.SMALL_STEP forced to 0, so that
nothing is limited). The work column is what ``runtime.blas_threads`` compares with SMALL_STEP:
B x (entries of W_ih and W_hh). "1 thread / all" below 1 means one thread is faster: SMALL_STEP
should sit where that crosses 1.

Commands. The wall time of whole commands as a user runs them, each run a fresh
``python -c`` that imports ``gradscope.cli.app`` and calls its ``main`` with the command's argv
(what the ``gradscope`` script, ``gradscope.cli:run``, does), start-up, worker processes and
output included (stdout is discarded). The settings:

    default        exactly what the user gets: no thread variable, nothing patched
    1 thread       OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 in the environment
    all threads    runtime.SMALL_STEP = 0 in the child before main runs, so gradscope never lowers
                   the count (and no variable limits it)
    --jobs N       compare's runs N at a time (its default is one per CPU)

With --jobs above 1, compare runs every arm in a spawned worker that sets one BLAS thread itself
(parallel._worker_start), whatever the environment or SMALL_STEP, and the parent only builds the
setups: "1 thread" and "all threads" are crossed with --jobs 1 only, where they change the work.
The settings of one command take turns in every round (interleaved: a shared machine's load drifts
alike for all of them); the table gives the median over the rounds, the fastest..slowest round,
and the median over the best setting's median, and a line per command says whether the default
is within 1.2x of the best setting (issue 11). The larger sizes, and compare, run fewer --steps
than the default 1000 to keep the run short; the --steps shown are part of the command.

Every child's environment is the caller's without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (as
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``: some machines set them, the docs measure without)
and without OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS but where a setting sets them.

Run: ``python benchmarks/bench_blas_threads.py`` (``--quick`` for fewer repeats and rounds;
``--commands`` or ``--steps-table`` for one part). On 2 idle cores the commands part should take about
2 minutes (3 rounds of about 40 s at one thread) and the whole run about 5; on a busy machine the
multi-threaded runs slow down many times over (on a shared 2-core machine at load 2 to 5 the commands
part took 7 to 9 minutes, ``--quick`` with both parts 10).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, interleaved_medians, interleaved_timings, ms, print_table  # noqa: E402

import gradscope  # noqa: E402
from gradscope import runtime  # noqa: E402
from gradscope.commands.defaults import TrainOptions  # noqa: E402
from gradscope.commands.train import train_setup  # noqa: E402
from gradscope.config import RunConfig  # noqa: E402
from gradscope.experiment import build  # noqa: E402
from gradscope.parallel import default_jobs  # noqa: E402

CASES = [("rnn", 32, 32), ("rnn", 32, 64), ("lstm", 32, 32), ("rnn", 64, 64), ("rnn", 32, 128),
         ("lstm", 32, 64), ("rnn", 64, 128), ("rnn", 32, 256), ("lstm", 32, 128), ("rnn", 128, 256),
         ("rnn", 64, 512), ("lstm", 64, 256)]  # (cell, B, H)
SEQ_LEN = 50


def steps(cell: str, batch_size: int, hidden_size: int, count: int):
    setup = build(RunConfig(task="adding", seq_len=SEQ_LEN, batch_size=batch_size, hidden_size=hidden_size,
                            cell=cell))
    options = TrainOptions(steps=count, eval_size=batch_size)
    weights = setup.network.step_weights()  # W_ih and W_hh of its one layer
    work = batch_size * sum(w.size for w in weights)

    def limited() -> None:
        runtime.SMALL_STEP = 1 << 62  # every size counts as small: one thread
        train_setup(setup, options)

    def unlimited() -> None:
        runtime.SMALL_STEP = 0  # nothing is small: all threads...
        runtime.cores_taken = lambda: False  # ...whatever else runs on the machine
        train_setup(setup, options)

    return work, limited, unlimited


def steps_table(quick: bool) -> None:
    repeats, count = (3, 10) if quick else (5, 30)
    saved, saved_taken = runtime.SMALL_STEP, runtime.cores_taken
    rows = []
    for cell, b, h in CASES:
        work, limited, unlimited = steps(cell, b, h, count)
        one, every = interleaved_medians([limited, unlimited], repeats, warmup=1)
        rows.append([cell, str(b), str(h), f"{work:,}", ms(one / count), ms(every / count), f"{one / every:.2f}",
                     "1" if work < saved else "all"])
    runtime.SMALL_STEP, runtime.cores_taken = saved, saved_taken
    print(f"T = {SEQ_LEN}; per training step; SMALL_STEP = {saved:,}")
    print_table(["cell", "B", "H", "work", "1 thread", "all", "1 thread / all", "chosen"], rows)


# --- whole commands, each in a fresh process --------------------------------------------------

# The work per step (B x entries of W_ih and W_hh, runtime.blas_threads) of each: train 35k (one thread
# by SMALL_STEP), 4.2M and 2.1M (all threads); compare's arms 35k to 139k at H = 32 (one thread),
# 532k to 2.1M at H = 128 (all threads, where the arms run in this process).
COMMANDS = [
    ["train"],
    ["train", "--hidden-size", "256", "--batch-size", "64", "--steps", "10"],
    ["train", "--cell", "lstm", "--hidden-size", "128", "--steps", "30"],
    ["compare", "--steps", "100"],
    ["compare", "--hidden-size", "128", "--steps", "20"],
]
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
STRIPPED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") + THREAD_VARIABLES
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
# The gradscope script's body (gradscope.cli:run); importing gradscope.cli.app registers every command.
ENTRY = "import sys\nfrom gradscope.cli.app import main\nsys.exit(main(sys.argv[1:]))\n"
NOTHING_SMALL = ("from gradscope import runtime\nruntime.SMALL_STEP = 0  # gradscope never lowers the count\n"
                 "runtime.cores_taken = lambda: False  # not even on a busy machine\n")


@dataclass
class Setting:
    """One way to run a command: extra flags, extra environment, SMALL_STEP forced to 0 or not."""

    name: str
    flags: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    all_threads: bool = False


def settings_for(command: str) -> list[Setting]:
    """default, 1 thread, all threads; for compare the thread settings where its runs are in this
    process (--jobs 1), and each --jobs of 1 and 2 that is not already the default."""
    threads = [Setting("1 thread", env=ONE_THREAD), Setting("all threads", all_threads=True)]
    if command != "compare":
        return [Setting("default"), *threads]
    jobs = default_jobs()
    chosen = [Setting(f"default (--jobs {jobs})"), *(threads if jobs == 1 else [])]
    for n in (1, 2):
        if n == jobs:
            continue
        flag = ["--jobs", str(n)]
        chosen.append(Setting(f"--jobs {n}", flags=flag))
        if n == 1:
            chosen += [Setting(f"--jobs 1, {t.name}", flag, t.env, t.all_threads) for t in threads]
    return chosen


def child_environment(setting: Setting) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED}
    source = str(Path(gradscope.__file__).resolve().parents[1])  # this checkout's gradscope
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    env.update(setting.env)
    return env


def runner(argv: list[str], setting: Setting):
    """A callable that runs ``gradscope *argv`` at ``setting`` once, in a fresh process."""
    code = (NOTHING_SMALL if setting.all_threads else "") + ENTRY
    args = [sys.executable, "-c", code, *argv, *setting.flags]
    env = child_environment(setting)

    def run() -> None:
        done = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"gradscope {' '.join(argv + setting.flags)} ({setting.name}) exited "
                               f"{done.returncode}: {done.stderr.strip()[-2000:]}")

    return run


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def commands_table(quick: bool) -> None:
    rounds = 2 if quick else 3
    print(f"whole commands, wall time per run; {rounds} interleaved rounds; CPUs for --jobs: {default_jobs()}; "
          f"load average before: {load()}")
    # Untimed: the first start reads gradscope, numpy and typer from disk; every round should find them cached.
    runner(["--version"], Setting("default"))()
    rows, verdicts = [], []
    for argv in COMMANDS:
        chosen = settings_for(argv[0])
        timings = interleaved_timings([runner(argv, s) for s in chosen], rounds, warmup=0)
        best = min(t.median for t in timings)
        command = "gradscope " + " ".join(argv)
        for i, (setting, t) in enumerate(zip(chosen, timings)):
            rows.append(["" if i else command, setting.name, f"{t.median:.2f}", f"{t.low:.2f}..{t.high:.2f}",
                         f"{t.median / best:.2f}"])
        default = round(timings[0].median / best, 2)  # judged as printed
        fastest = chosen[min(range(len(chosen)), key=lambda i: timings[i].median)].name
        verdicts.append(f"{command}: default within 1.2x of best: {'yes' if default <= 1.2 else 'no'}"
                        f" ({default:.2f}x; best: {fastest})")
    print_table(["command", "setting", "median s", "spread (min..max s)", "/ best"], rows)
    print("\n".join(verdicts))
    print(f"load average after: {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and rounds")
    parser.add_argument("--steps-table", action="store_true", help="the in-process table of training steps")
    parser.add_argument("--commands", action="store_true", help="the whole commands, each in a fresh process")
    args = parser.parse_args()
    both = not (args.steps_table or args.commands)
    print(environment())
    if args.steps_table or both:
        steps_table(args.quick)
    if args.commands or both:
        if args.steps_table or both:
            print()
        commands_table(args.quick)


if __name__ == "__main__":
    main()
