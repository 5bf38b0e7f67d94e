"""``--dtype float32`` against float64: the BPTT core and the whole report, beside torch in float32.

For each cell and (B, T, D, H) (benchmarks/common.py SIZES) the same weights and batch, in the
same process, the contenders taking turns in every round (common.interleaved_timings):

- gradscope core, float64 and float32: ``gradscope.bptt.bptt`` on a setup built with
  ``dtype="float64"`` / ``"float32"`` (forward and BPTT with dL/dh_t at every step, every gradient);
- gradscope report, float64 and float32: ``analyze_setup`` (everything ``gradscope analyze``
  computes; its spectra and Lyapunov exponent are float64 in both: precision.py), the spectrum
  cache emptied before every run;
- torch fused, float32: nn.RNN / nn.GRU / nn.LSTM forward + backward in float32 (parameter
  gradients only), the fair opponent of gradscope's float32 core.

The error of float32 against float64 is not measured here: tests/math/test_float32.py measures and
bounds it (``python tests/math/test_float32.py`` prints it). Ratios: "f32 speed-up" = float64 time /
float32 time; "vs fused f32" = torch's float32 time / gradscope's float32 core time (> 1: gradscope
is faster).
Run: ``python benchmarks/bench_dtype.py`` (``--quick`` for 3 rounds, ``--cell rnn|gru|lstm|all``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bptt import torch_rnn as torch_fused  # noqa: E402  (any nn.RNN/GRU/LSTM + nn.Linear)
from common import SIZES, environment, interleaved_timings, ms_spread, print_table, torch_modules  # noqa: E402

from gradscope.bptt import bptt  # noqa: E402
from gradscope.commands.analyze import analyze_setup  # noqa: E402
from gradscope.config import RunConfig  # noqa: E402
from gradscope.experiment import build  # noqa: E402
from gradscope.linalg import clear_cache  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--cell", default="all", choices=["rnn", "gru", "lstm", "all"])
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    print(environment())
    rows = []
    for cell in ["rnn", "gru", "lstm"] if args.cell == "all" else [args.cell]:
        for size in SIZES:
            module, _, fc, x, y = torch_modules(cell, *size)
            state = {f"rnn.{k}": v.detach().numpy() for k, v in module.state_dict().items()}
            state.update({f"fc.{k}": v.detach().numpy() for k, v in fc.state_dict().items()})
            setups = {dtype: build(RunConfig(weights=state, inputs=x.numpy(), targets=y.numpy(), loss="bce",
                                             dtype=dtype)) for dtype in ("float64", "float32")}
            module32, fc32, x32, y32 = module.float(), fc.float(), x.float(), y.float()

            def core(setup):
                return lambda: bptt(setup.network, setup.batch.x, setup.batch.y)

            def report(setup):
                return lambda: analyze_setup(setup)

            fns = [core(setups["float64"]), core(setups["float32"]), report(setups["float64"]),
                   report(setups["float32"]), lambda: torch_fused(module32, fc32, x32, y32)]
            before = [None, None, clear_cache, clear_cache, None]
            c64, c32, r64, r32, fused = interleaved_timings(fns, rounds, before=before)
            rows.append([cell, str(size), ms_spread(c64), ms_spread(c32), f"{c64.median / c32.median:.2f}x",
                         ms_spread(r64), ms_spread(r32), f"{r64.median / r32.median:.2f}x", ms_spread(fused),
                         f"{fused.median / c32.median:.2f}x"])
    print_table(["cell", "(B, T, D, H)", "core f64 ms", "core f32 ms", "f32 speed-up", "report f64 ms",
                 "report f32 ms", "f32 speed-up", "fused f32 ms", "vs fused f32"], rows)
    print(f"median ± half the interquartile range over {rounds} rounds")


if __name__ == "__main__":
    main()
