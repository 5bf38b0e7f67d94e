"""What gradscope.torch costs inside a training loop: a recorded pass (full and light), and an unrecorded one.

The loop: nn.LSTM(32, 128, num_layers=2, batch_first=True) + nn.Linear(128, 1) on (B, T) = (32, 100),
float32, MSE on the last step, Adam; one step = zero_grad, forward, loss, backward, step. Four loops,
each with its own copy of the same model and data, take turns within each round (so that a loaded
machine slows them alike), and every step is timed on its own:

- plain       no adapter;
- unrecorded  attached with an ``every`` never reached: the hooks alone;
- every=50    one recorded pass in 50 (its recorded and unrecorded steps are told apart);
- every=1     every pass recorded: gradscope's full report (float64 BPTT through both layers,
              spectra, Lyapunov exponent) computed inside backward;
- light       every pass recorded with measure="flow": per layer the per-step norms and the flow,
              from BPTT without parameter gradients, in float32 like the module.

Figures are medians over steps, of wall-clock time and of the main thread's CPU time
(time.thread_time). On a shared machine the wall clock moves with the other work (and torch's and
BLAS's threads wait for cores); ``--threads 1`` runs torch and BLAS on one thread each, where the
main thread's CPU time is all the work either side does: the steady comparison. The cost of a recorded pass is every=1 (or light) minus plain, and
its ratio to a plain step is that cost over plain's median, both measured in the same rounds; the
overhead of an unrecorded pass is unrecorded minus plain. After a loop that ran numpy, the thread pools are
left to go idle before the next one (as in bench_gated.py).
Run: ``python benchmarks/bench_torch_adapter.py`` (``--rounds N``; ``--quick`` for 15 rounds).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, ms, print_table  # noqa: E402

import torch  # noqa: E402

import gradscope.torch as gt  # noqa: E402

B, T, D, H = 32, 100, 32, 128
NEVER = 10 ** 9
SETTLE = 0.3  # seconds: longer than an OpenMP / OpenBLAS thread pool spins after its last job


class Loop:
    """One training loop (its own copy of the model and optimiser), optionally with the adapter."""

    def __init__(self, every: int | None, seed: int = 0, measure: str = "full") -> None:
        torch.manual_seed(seed)
        self.lstm = torch.nn.LSTM(D, H, num_layers=2, batch_first=True)
        self.fc = torch.nn.Linear(H, 1)
        self.opt = torch.optim.Adam(list(self.lstm.parameters()) + list(self.fc.parameters()), lr=1e-3)
        gen = torch.Generator().manual_seed(seed + 1)
        self.x = torch.randn(B, T, D, generator=gen)
        self.y = torch.randn(B, 1, generator=gen)
        self.recorder = None if every is None else gt.attach(self.lstm, every=every, to=lambda record: None,
                                                             measure=measure)

    def step(self) -> None:
        self.opt.zero_grad()
        out, _ = self.lstm(self.x)
        loss = torch.nn.functional.mse_loss(self.fc(out[:, -1]), self.y)
        loss.backward()
        self.opt.step()

    def time_step(self) -> tuple[float, float, bool]:
        """Wall time and the main thread's CPU time of one step in seconds, and whether the adapter
        recorded it."""
        t0, c0 = time.perf_counter(), time.thread_time()
        self.step()
        elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
        recorded = self.recorder is not None and self.recorder.step % self.recorder.every == 0
        return elapsed, cpu, recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="15 rounds")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's and BLAS's threads (default: as they are); 1 makes CPU time the measure")
    args = parser.parse_args()
    rounds = 15 if args.quick else args.rounds
    limit = contextlib.nullcontext()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        limit = threadpool_limits(args.threads, user_api="blas")
    with limit:
        run(rounds)


def run(rounds: int) -> None:
    loops = {"plain": Loop(None), "unrecorded": Loop(NEVER), "every=50": Loop(50), "every=1": Loop(1),
             "light": Loop(1, measure="flow")}
    per_round = {"plain": 5, "unrecorded": 5, "every=50": 5, "every=1": 1, "light": 3}
    for loop in loops.values():  # warm up: allocators, thread pools, the first analyze
        loop.step()
    loops["every=50"].step()  # so that its recorded passes (50, 100, ...) fall inside the rounds
    times: dict[str, list[float]] = {name: [] for name in [*loops, "every=50 recorded"]}
    cpu: dict[str, list[float]] = {name: [] for name in times}
    for _ in range(rounds):
        for name, loop in loops.items():
            ran_numpy = False
            for _ in range(per_round[name]):
                elapsed, spent, recorded = loop.time_step()
                key = name + (" recorded" if recorded and name == "every=50" else "")
                times[key].append(elapsed)
                cpu[key].append(spent)
                ran_numpy |= recorded or name == "light"
            if ran_numpy:
                time.sleep(SETTLE)
    for loop in loops.values():
        if loop.recorder is not None:
            loop.recorder.detach()

    med = {name: statistics.median(t) if t else float("nan") for name, t in times.items()}
    med_cpu = {name: statistics.median(t) if t else float("nan") for name, t in cpu.items()}
    plain, plain_cpu = med["plain"], med_cpu["plain"]
    rows = [[name, str(len(times[name])), ms(med[name]), f"{(med[name] / plain - 1) * 100:+.1f}%",
             ms(med_cpu[name]), f"{(med_cpu[name] / plain_cpu - 1) * 100:+.1f}%"] for name in times]
    recorded_cost = med["every=1"] - plain
    light_cost = med["light"] - plain
    unrecorded_cost = med["unrecorded"] - plain
    print(environment())
    print(f"nn.LSTM({D}, {H}, num_layers=2, batch_first=True) + Linear({H}, 1), (B, T) = ({B}, {T}), "
          f"float32, Adam; {rounds} rounds, medians over steps\n")
    print_table(["loop", "steps", "per step", "vs plain", "CPU per step", "vs plain"], rows)
    print()
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"cost of a recorded pass:        {ms(recorded_cost)} ({recorded_cost / plain:.1f} plain steps)")
    print(f"cost of a light pass (flow):    {ms(light_cost)} ({light_cost / plain:.2f} plain steps)")
    light_cpu = med_cpu["light"] - plain_cpu
    print(f"  in the main thread's CPU time: {ms(light_cpu)} ({light_cpu / plain_cpu:.2f} plain steps)")
    print(f"overhead of an unrecorded pass: {ms(unrecorded_cost)} ({unrecorded_cost / plain * 100:+.1f}% of a step)")
    print(f"every=50, mean cost per step:   {ms(unrecorded_cost + recorded_cost / 50)} "
          f"({(unrecorded_cost + recorded_cost / 50) / plain * 100:+.1f}% of a step)")


if __name__ == "__main__":
    main()
