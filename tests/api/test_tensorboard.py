"""attach(module, to=SummaryWriter(...)): what TensorBoard shows, read back with tensorboard's own
event reader (skipped without tensorboard: the ``tensorboard`` extra)."""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")
pytestmark = pytest.mark.torch

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

import gradscope.torch as gt  # noqa: E402
from gradscope.tensorboard import BAD, BAR, PROFILE_HEIGHT, profile_image  # noqa: E402

T = 12


def _events(logdir) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.mark.parametrize("measure", ["full", "flow"])
def test_every_layer_and_direction_is_in_tensorboard(tmp_path, measure):
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 6, num_layers=2, bidirectional=True, batch_first=True)
    got = []
    with SummaryWriter(str(tmp_path)) as writer, gt.attach(gru, every=2, to=writer, measure=measure), \
            gt.attach(gru, every=2, to=got.append, measure=measure):
        for _ in range(4):
            out, h = gru(torch.randn(4, T, 3))
            (out[:, -1].sum() + h.sum()).backward()
    acc = _events(tmp_path)
    scalars = acc.Tags()["scalars"]
    for k in (0, 1):
        for direction in ("forward", "reverse"):
            tag = f"gradscope/l{k}_{direction}"
            for name in ("ratio_first_last", "log10_ratio", "slope"):
                assert f"{tag}/{name}" in scalars
            # the values are the records', step by step
            report = [next(l for l in r.result.layers if (l.layer, l.direction) == (k, direction)) for r in got]
            events = acc.Scalars(f"{tag}/slope")
            assert [e.step for e in events] == [2, 4]
            np.testing.assert_allclose([e.value for e in events], [r.flow.slope for r in report], rtol=1e-6)
            events = acc.Scalars(f"{tag}/log10_ratio")
            np.testing.assert_allclose([e.value for e in events], [r.flow.log10_ratio for r in report], rtol=1e-6)
            if all(r.flow.horizon is not None for r in report):
                np.testing.assert_allclose([e.value for e in acc.Scalars(f"{tag}/horizon")],
                                           [r.flow.horizon for r in report], rtol=1e-6)
            images = acc.Images(f"{tag}/profile")
            assert [i.step for i in images] == [2, 4]
            from PIL import Image

            picture = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)).convert("RGB"))
            # the light record's profile (the reverse direction's counted back from step 1), or the steps
            last = report[-1]
            drawn = getattr(last, "log10_flow_norms", None)
            assert (drawn is not None) == (direction == "reverse" and hasattr(last, "log10_flow_norms"))
            np.testing.assert_array_equal(picture, profile_image(last.log10_grad_norms if drawn is None else drawn))


def test_the_profile_image_draws_each_step_as_a_column():
    logs = np.array([-3.0, -2.0, np.nan, -1.0, -np.inf])
    image = profile_image(logs)
    assert image.shape == (PROFILE_HEIGHT, 5 * 26, 3) and image.dtype == np.uint8
    columns = image[:, ::26]
    heights = [(columns[:, t] == BAR).all(axis=1).sum() for t in range(5)]
    assert heights[0] == 1 and heights[1] == np.rint(1 + (PROFILE_HEIGHT - 1) / 2) and heights[3] == PROFILE_HEIGHT
    assert (columns[:, 2] == BAD).all() and (columns[:, 4] == BAD).all()  # nan, zero norm: red


def test_a_skipped_pass_is_text(tmp_path):
    lstm = torch.nn.LSTM(3, 4, proj_size=2, batch_first=True)
    with SummaryWriter(str(tmp_path)) as writer, pytest.warns(UserWarning, match="proj_size"), \
            gt.attach(lstm, every=1, to=writer):
        out, _ = lstm(torch.randn(2, 5, 3))
        out.sum().backward()
    acc = _events(tmp_path)
    assert acc.Tags()["scalars"] == [] and any("gradscope/skipped" in t for t in acc.Tags()["tensors"])
