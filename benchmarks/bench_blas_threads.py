"""Training steps on one BLAS thread against all of them, by the size of a step's products.

For each (cell, B, H), ``train_setup`` runs the same steps twice: with the BLAS limited to one thread
and with as many as it has (runtime.SMALL_STEP forced to 0, so that nothing is limited). The work
column is what ``runtime.blas_threads`` compares with SMALL_STEP: B x (entries of W_ih and W_hh).
"1 thread / all" below 1 means one thread is faster: SMALL_STEP should sit where that crosses 1.
Run: ``python benchmarks/bench_blas_threads.py`` (``--quick`` for fewer repeats).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, interleaved_medians, ms, print_table  # noqa: E402

from gradscope import runtime  # noqa: E402
from gradscope.commands.defaults import TrainOptions  # noqa: E402
from gradscope.commands.train import train_setup  # noqa: E402
from gradscope.config import RunConfig  # noqa: E402
from gradscope.experiment import build  # noqa: E402

CASES = [("rnn", 32, 32), ("rnn", 32, 64), ("lstm", 32, 32), ("rnn", 64, 64), ("rnn", 32, 128),
         ("lstm", 32, 64), ("rnn", 64, 128), ("rnn", 32, 256), ("lstm", 32, 128), ("rnn", 128, 256),
         ("rnn", 64, 512), ("lstm", 64, 256)]  # (cell, B, H)
SEQ_LEN = 50


def steps(cell: str, batch_size: int, hidden_size: int, count: int):
    setup = build(RunConfig(task="adding", seq_len=SEQ_LEN, batch_size=batch_size, hidden_size=hidden_size,
                            cell=cell))
    options = TrainOptions(steps=count, eval_size=batch_size)
    weights = [setup.model.params[setup.model.cell.input_weight], setup.model.params[setup.model.cell.recurrent]]
    work = batch_size * sum(w.size for w in weights)

    def limited() -> None:
        runtime.SMALL_STEP = 1 << 62  # every size counts as small: one thread
        train_setup(setup, options)

    def unlimited() -> None:
        runtime.SMALL_STEP = 0  # nothing is small: all threads
        train_setup(setup, options)

    return work, limited, unlimited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats, count = (3, 10) if args.quick else (5, 30)
    saved = runtime.SMALL_STEP
    rows = []
    for cell, b, h in CASES:
        work, limited, unlimited = steps(cell, b, h, count)
        one, every = interleaved_medians([limited, unlimited], repeats, warmup=1)
        rows.append([cell, str(b), str(h), f"{work:,}", ms(one / count), ms(every / count), f"{one / every:.2f}",
                     "1" if work < saved else "all"])
    runtime.SMALL_STEP = saved
    print(environment())
    print(f"T = {SEQ_LEN}; per training step; SMALL_STEP = {saved:,}")
    print_table(["cell", "B", "H", "work", "1 thread", "all", "1 thread / all", "chosen"], rows)


if __name__ == "__main__":
    main()
