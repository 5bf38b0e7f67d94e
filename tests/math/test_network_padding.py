"""Pad steps are not computed: what sits in the inputs there changes nothing in the report."""

from __future__ import annotations

import numpy as np
import pytest

from gradscope import RunConfig
from gradscope.commands.analyze import analyze
from gradscope.serialize import payload


def lstm_state_dict(rng: np.random.Generator, d: int = 4, h: int = 5) -> dict:
    sd = {}
    for suffix in ("", "_reverse"):
        sd["lstm.weight_ih_l0" + suffix] = rng.standard_normal((4 * h, d)) * 0.5
        sd["lstm.weight_hh_l0" + suffix] = rng.standard_normal((4 * h, h)) * 0.5
        sd["lstm.bias_ih_l0" + suffix] = rng.standard_normal(4 * h) * 0.1
        sd["lstm.bias_hh_l0" + suffix] = rng.standard_normal(4 * h) * 0.1
    sd["fc.weight"] = rng.standard_normal((1, 2 * h))
    sd["fc.bias"] = np.zeros(1)
    return sd


@pytest.mark.parametrize("readout", ["last", "mean", "max"])
def test_values_at_pad_steps_change_nothing(readout):
    rng = np.random.default_rng(3)
    sd = lstm_state_dict(rng)
    x = rng.standard_normal((3, 7, 4))
    lengths = np.array([4, 7, 2])
    y = np.array([1.0, 0.0, 1.0])
    pad = np.arange(7)[None, :, None] >= lengths[:, None, None]
    reports = [payload(analyze(RunConfig(weights=sd, inputs=np.where(pad, fill, x), targets=y, lengths=lengths,
                                         readout=readout)))
               for fill in (0.0, 1e3)]
    for doc in reports:
        doc.pop("config")  # names the arrays, which differ
    assert reports[0] == reports[1]
