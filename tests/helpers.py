"""Builders shared by the test groups (math, cli, data, contract)."""

from __future__ import annotations

import numpy as np

from gradscope.model.cells import make_cell
from gradscope.model.losses import get_loss
from gradscope.model.network import Network, readout_params


def random_model(cell: str, activation: str, loss: str, d: int, h: int, o: int, seed: int = 0,
                 bias_scale: float = 0.1, init: str = "normal", readout: str = "last") -> Network:
    """A small one-layer network with non-zero biases, so that every gradient term is exercised."""
    rng = np.random.default_rng(seed)
    c = make_cell(cell, activation)
    params = c.init_params(d, h, rng, init, 1.0)
    for name, p in params.items():
        if p.ndim == 1:
            p[:] = bias_scale * rng.standard_normal(p.shape)
    head = readout_params(h, o, rng)
    head["by"][:] = bias_scale * rng.standard_normal(o)
    return Network(c, [[params]], head, readout, get_loss(loss))


def random_targets(loss: str, b: int, o: int, rng: np.random.Generator) -> np.ndarray:
    if loss == "bce":
        return rng.integers(0, 2, (b, 1)).astype(np.float64)
    if loss == "ce":
        return rng.integers(0, o, b).astype(np.float64)
    return rng.standard_normal((b, o))


def light_record(step: int, seq_len: int = 12, keys=((0, "forward"),), slope: float = -0.2,
                 loss: float | None = 0.5, run: str | None = None, **extra) -> dict:
    """A light record (measure "flow", schemas/record.json) whose norms fade by e^slope per step back
    from the readout (layer k's start k decades lower), with the flow that flow.py gives them."""
    import dataclasses
    import math

    from gradscope.flow import flow

    layers = []
    for layer, direction in keys:
        ln = slope * np.arange(seq_len - 1, -1, -1, dtype=np.float64) - layer * math.log(10)
        summary = dataclasses.asdict(flow(np.exp(ln), ln))
        layers.append({"layer": layer, "direction": direction, "log10_grad_norms": (ln / math.log(10)).tolist(),
                       "flow": {k: summary[k] for k in ("ratio_first_last", "log10_ratio", "slope", "horizon",
                                                        "regime")}})
    record = {"step": step, "loss": loss, "layers": layers, "measure": "flow", "source": "train", **extra}
    if run is not None:
        record["run"] = run
    return record


def write_records(path, records, tail: str = "") -> None:
    """An .ndjson recording: one compact line per record, then ``tail`` as it is."""
    import json

    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in records)
        fh.write(tail)
