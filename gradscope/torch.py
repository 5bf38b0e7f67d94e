"""gradscope's exact per-step report from inside your own PyTorch training loop (the ``torch`` extra).

PyTorch does not show the gradient at each step of its fused nn.RNN / nn.GRU / nn.LSTM
(pytorch/pytorch#1407). ``attach`` hooks the module and, every ``every``-th backward pass, runs
``gradscope analyze`` on exactly what that pass computed:

    weights        module.state_dict(), as numpy arrays
    inputs         the module's input of that forward pass: (B, T, D) (or (T, B, D) when not
                   batch_first, or (T, D) unbatched), or a PackedSequence (padded + lengths)
    initial_state  the hx it was given, h_0 (and c_0 for the LSTM), (L x dirs, B, H), if any
    output_grads   dL/d(output) (B, T, F), dL/dh_n (L x dirs, B, H), and dL/dc_n for the LSTM:
                   what backward brings to the module's outputs (None where nothing arrives)

and BPTT from those gradients gives ||dL/dh_t|| at every step of every layer and direction, the
flow and the verdict, two ways (``measure``):

    "full"   the same ``AnalyzeResult`` as ``gradscope.analyze`` (spectra, Lyapunov exponent, the
             gradient reaching hx): the float64 computation at the module's weights, inputs and
             output gradients (a float32 module's are converted exactly), so it differs from the
             module's own float32 backward by float32 rounding only
    "flow"   the light record (recording.FlowReport): per layer and direction the per-step log10
             norms and the flow, from BPTT without parameter gradients, spectra or Lyapunov
             exponents, in the module's dtype (a float32 module's pass in float32: --dtype
             float32's error bounds); about 1.3 plain training steps of an nn.LSTM(32, 128,
             num_layers=2) at (B, T) = (32, 100) on one thread (benchmarks/bench_torch_adapter.py)

A module with dropout between layers (nn.LSTM(num_layers=2, dropout=p)) in training mode draws
masks the hooks cannot see: its pass is analysed without them, the flow through the same weights,
input and output gradients, and its record says so (``dropout_left_out``).

    import gradscope.torch
    with gradscope.torch.attach(lstm, every=10) as rec:      # or to="grads.ndjson", or to=callable
        for x, y in batches:
            out, (h, c) = lstm(x)
            loss = loss_fn(fc(h[-1]), y)
            opt.zero_grad(); loss.backward(); opt.step()
    rec.records[-1].result.layers[0].grad_norms              # (T,) ||dL/dh_t|| of layer 0, forward

``to`` may also be a TensorBoard ``SummaryWriter`` (gradscope/tensorboard.py): per layer and
direction the ratio, slope and horizon as scalars and the per-step profile as an image.

The hooks only read: the module's outputs and the user's gradients are bit-identical with and
without them. A pass that is not recorded costs a forward hook and a gradient hook, and copies
nothing (benchmarks/bench_torch_adapter.py measures both kinds of pass).
Torch is imported here and nowhere else in gradscope; ``import gradscope`` does not load it.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Any, Callable

try:
    import torch
    from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence
except ImportError as exc:  # pragma: no cover - the extra is missing
    from .extras import install_hint

    raise ImportError(f"gradscope.torch needs PyTorch: {install_hint('torch')}") from exc

import numpy as np

from .config import RunConfig
from .recording import Record, Skips, checked_schedule, measure_pass, sink_for

__all__ = ["Record", "Recorder", "attach"]

# nn.RNNBase.mode -> gradscope's cell and activation
CELLS = {"RNN_TANH": ("rnn", "tanh"), "RNN_RELU": ("rnn", "relu"), "GRU": ("gru", "tanh"), "LSTM": ("lstm", "tanh")}
DTYPES = (torch.float32, torch.float64)


@dataclass
class _Pass:
    """What a forward pass leaves for its backward: references, no copies.

    x : the input (a tensor or a PackedSequence); packed : the same when it is a PackedSequence
    (its batch_sizes and indices also pack the output's gradient), else None.
    hx : the initial state given, or None. training : the module's mode at the forward pass.
    slots : which of (output, h_n, c_n) are hooked.
    """

    x: Any
    packed: PackedSequence | None
    hx: Any
    training: bool
    slots: tuple[int, ...]


class Recorder:
    """Hooks on one nn.RNN / nn.GRU / nn.LSTM that record gradscope's report every ``every`` passes.

    records : the Records, when ``to`` is None (each holds its pass's arrays: tens of MB for a
        large module; for long runs give ``to`` a path or a callable).
    step : backward passes seen so far (one per forward call whose outputs are backpropagated).
    """

    def __init__(self, module: torch.nn.RNNBase, every: int = 10,
                 to: None | str | os.PathLike | Callable[[Record], Any] | Any = None, measure: str = "full") -> None:
        if not isinstance(module, torch.nn.RNNBase) or module.mode not in CELLS:
            raise TypeError(f"gradscope.torch.attach takes an nn.RNN, nn.GRU or nn.LSTM, got {type(module).__name__}")
        self.every = checked_schedule(every, measure)
        self.module = module
        self.measure = measure
        self.step = 0
        self.records: list[Record] = []
        self._sink, self._file = sink_for(to, self.records)
        self._skip = Skips("torch", "gradscope.torch: pass")
        self._pending: dict[int, Any] = {}  # gradient hooks of outputs still alive, by a serial number
        self._serial = 0
        self._attached = True
        self._forward_handle = module.register_forward_hook(self._forward, with_kwargs=True)

    # --- hooks --------------------------------------------------------------------------------

    def _forward(self, module, args, kwargs, output) -> None:
        """After each forward: hook the outputs so that one callback gets all their gradients."""
        if not torch.is_grad_enabled():
            return
        out, state = output
        h_n, c_n = state if isinstance(state, tuple) else (state, None)
        packed = isinstance(out, PackedSequence)
        tensors = (out.data if packed else out, h_n, c_n)
        slots = tuple(i for i, t in enumerate(tensors) if t is not None and t.requires_grad)
        if not slots:
            return
        x = args[0] if args else kwargs.get("input")
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        work = _Pass(x, x if isinstance(x, PackedSequence) else None, hx, module.training, slots)
        self._serial += 1
        key = self._serial
        handle = torch.autograd.graph.register_multi_grad_hook(
            [tensors[i] for i in slots], lambda grads: self._backward(work, grads), mode="all")
        self._pending[key] = handle
        # forget the handle with the output (the hook dies with its graph); no cycle: the
        # callback holds the input, never the outputs
        weakref.finalize(tensors[slots[0]], self._pending.pop, key, None)

    def _backward(self, work: _Pass, grads) -> None:
        """Once backward has produced every gradient the outputs receive (None for the others)."""
        if not self._attached:
            return
        self.step += 1
        if self.step % self.every:
            return  # an unrecorded pass: nothing is copied
        full: list[torch.Tensor | None] = [None, None, None]
        for slot, g in zip(work.slots, grads):
            full[slot] = g
        self._sink(self._record(work, full))

    # --- the recorded pass --------------------------------------------------------------------

    def _record(self, work: _Pass, grads: list[torch.Tensor | None]) -> Record:
        reason = self._unsupported() or _nonfinite(work, grads)
        if reason is None:
            m = self.module
            dropout = work.training and m.dropout > 0 and m.num_layers > 1  # masks the hooks cannot see
            try:
                result = measure_pass(self._config(work, grads), self.measure)
                return Record(self.step, result.regime, result, None, self.measure, dropout)
            except Exception as exc:  # the user's training goes on; the pass says why it is missing
                reason = f"gradscope could not analyse this pass: {type(exc).__name__}: {exc}"
        return self._skip(self.step, reason, self.measure)

    def _unsupported(self) -> str | None:
        """Why this module's passes cannot be reproduced, or None."""
        m = self.module
        dtype = m.weight_hh_l0.dtype
        if dtype not in DTYPES:
            return f"the module is {dtype}; gradscope reproduces float32 and float64 modules"
        if getattr(m, "proj_size", 0) > 0:
            return f"proj_size={m.proj_size}: gradscope does not model LSTM projections"
        return None

    def _config(self, work: _Pass, grads: list[torch.Tensor | None]) -> RunConfig:
        """The pass as analyze's inputs, batch first: float64 copies, or for the light measure of a
        float32 module float32 copies computed in float32."""
        with torch.no_grad():
            return self._arrays(work, grads)

    def _arrays(self, work: _Pass, grads: list[torch.Tensor | None]) -> RunConfig:
        m = self.module
        if work.packed is not None:
            x, lengths = pad_packed_sequence(work.packed, batch_first=True)
            lengths = lengths.numpy().astype(np.int64)
            unbatched = False
        else:
            x, lengths = work.x, None
            unbatched = x.dim() == 2
            x = x.unsqueeze(0) if unbatched else (x if m.batch_first else x.transpose(0, 1))
        out, h_n, c_n = grads
        if out is not None:
            if work.packed is not None:  # the packed data's gradient, back to padded (B, T, F)
                p = work.packed
                out = pad_packed_sequence(PackedSequence(out, p.batch_sizes, p.sorted_indices, p.unsorted_indices),
                                          batch_first=True)[0]
            elif unbatched:
                out = out.unsqueeze(0)
            elif not m.batch_first:
                out = out.transpose(0, 1)
        hx = work.hx if isinstance(work.hx, tuple) or work.hx is None else (work.hx,)
        if unbatched:  # h_n, hx (L x dirs, H) -> (L x dirs, 1, H)
            h_n, c_n = (None if g is None else g.unsqueeze(1) for g in (h_n, c_n))
            hx = None if hx is None else tuple(t.unsqueeze(1) for t in hx)
        cell, activation = CELLS[m.mode]
        light32 = self.measure == "flow" and m.weight_hh_l0.dtype == torch.float32
        dtype = torch.float32 if light32 else torch.float64

        def copy(t: torch.Tensor | None) -> np.ndarray | None:
            """A numpy copy (never a view of the module's memory, which the optimiser changes)."""
            return None if t is None else t.detach().to("cpu", dtype).numpy().copy()

        weights = {k: copy(v) for k, v in m.state_dict().items()}
        initial = None if hx is None else dict(zip(("h_0", "c_0"), (copy(t) for t in hx)))
        return RunConfig(cell=cell, activation=activation, weights=weights, inputs=copy(x), lengths=lengths,
                         output_grads={"output": copy(out), "h_n": copy(h_n), "c_n": copy(c_n)},
                         initial_state=initial, seed=0, dtype="float32" if light32 else "float64")

    # --- lifetime -----------------------------------------------------------------------------

    def detach(self) -> None:
        """Remove every hook (the forward hook and those on outputs not yet backpropagated) and
        close the NDJSON file; the records stay. Calling it twice is harmless."""
        self._attached = False
        self._forward_handle.remove()
        for handle in list(self._pending.values()):
            handle.remove()
        self._pending.clear()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


def _nonfinite(work: _Pass, grads: list[torch.Tensor | None]) -> str | None:
    """Why a pass has nothing to analyse where what it holds is NaN or infinite (a diverged step),
    in the words of the training loop (not the CLI's --output-grads)."""
    x = work.packed.data if work.packed is not None else work.x
    named = [("the module's input", x), *zip(("output", "h_n", "c_n"), grads)]
    with torch.no_grad():
        for name, t in named:
            if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                where = name if name.startswith("the") else f"the gradient reaching the module's {name}"
                return f"{where} holds NaN or infinite values (a diverged step): nothing to analyse"
    return None


def attach(module: torch.nn.RNNBase, every: int = 10,
           to: None | str | os.PathLike | Callable[[Record], Any] | Any = None, measure: str = "full") -> Recorder:
    """Record gradscope's exact report of every ``every``-th backward pass through ``module``.

    module : an nn.RNN (tanh or relu), nn.GRU or nn.LSTM, any layers, directions, batch_first,
        bias, float32 or float64; its input a tensor or a PackedSequence, with or without hx.
    every : record passes every, 2 x every, ... (counted over backward passes that reach the
        module's outputs); the others cost two hooks and no copies.
    to : None keeps the Records in ``recorder.records``; a callable receives each Record; a
        TensorBoard SummaryWriter gets scalars and images (gradscope/tensorboard.py); a path gets
        one compact JSON line per record (schemas/record.json: {"step": n, "source": "torch",
        "measure": ..., ...the report}, or {"step": n, ..., "skipped": reason}), flushed (the file
        is overwritten): what ``gradscope history`` reads.
    measure : "full", analyze's whole report in float64; "flow", the light record (per layer and
        direction the per-step norms and the flow; a float32 module's pass in float32), about
        1.3 plain training steps (docs/python-api.md, "Cost").

    A pass given hx is analysed from it (the full report then holds the gradient reaching it, as
    torch's h0.grad); dropout between layers in training mode is left out of the analysis and the
    record says so (``dropout_left_out``). Passes that cannot be reproduced are recorded as skipped
    with the reason (and one warning per reason): proj_size > 0, a dtype other than
    float32/float64, or an error inside gradscope (the training goes on).
    """
    return Recorder(module, every, to, measure)
