"""Records into TensorBoard: ``attach(module, to=SummaryWriter(...))`` (and gradscope.keras.Recorder).

Per recorded pass, for each layer and direction (tags ``gradscope/l{k}_{direction}/...``):

    ratio_first_last, log10_ratio   ||dL/dh_1|| / ||dL/dh_T|| and its log10 (exact at any depth)
    slope                           fitted d ln||dL/dh_t|| per step back
    horizon                         -1/slope steps, where the gradient fades (else not written)
    profile (an image)              log10 ||dL/dh_t|| over t = 1..T as columns on a white field,
                                    the axis from the pass's lowest to its highest finite value
                                    (both in the image's title tag's text); a red column where the
                                    norm is 0 or not finite

and ``gradscope/regime`` as text. A skipped pass writes its reason as text (``gradscope/skipped``).
Non-finite values are left out of the scalars. The writer is duck-typed: anything with
``add_scalar``, ``add_image`` and ``add_text`` (torch.utils.tensorboard's SummaryWriter,
tensorboardX's); gradscope imports neither. Images are drawn with numpy alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PROFILE_HEIGHT = 64  # pixels
MIN_WIDTH = 128  # pixels: a short run's columns are widened to at least this
BAR = np.array([31, 119, 180], np.uint8)  # the columns' blue
BAD = np.array([214, 39, 40], np.uint8)  # red: the norm is 0 or not finite


def profile_image(log10_norms: np.ndarray) -> np.ndarray:
    """(PROFILE_HEIGHT, W, 3) uint8: a column per step t = 1..T (W = T times a whole factor, at least
    MIN_WIDTH wide), its height log10 ||dL/dh_t|| between the pass's lowest and highest finite values."""
    logs = np.asarray(log10_norms, dtype=np.float64)
    steps = logs.shape[0]
    widen = max(1, math.ceil(MIN_WIDTH / steps))
    finite = np.isfinite(logs)
    image = np.full((PROFILE_HEIGHT, steps * widen, 3), 255, np.uint8)
    if finite.any():
        low, high = logs[finite].min(), logs[finite].max()
        span = high - low if high > low else 1.0
        heights = np.where(finite, np.rint(1 + (PROFILE_HEIGHT - 1) * (np.where(finite, logs, low) - low) / span), 0)
        rows = np.arange(PROFILE_HEIGHT)[::-1, None]  # row 0 at the top
        filled = rows < heights[None, :].astype(int)
        image[np.repeat(filled, widen, axis=1)] = BAR
    image[:, np.repeat(~finite, widen)] = BAD
    return image


class TensorBoardSink:
    """A recorder's ``to``: writes each record to a SummaryWriter, flushed after each pass."""

    def __init__(self, writer: Any, prefix: str = "gradscope") -> None:
        self.writer = writer
        self.prefix = prefix

    def __call__(self, record: Any) -> None:
        """record : a Record (gradscope.torch's, gradscope.keras'): step, result, skipped."""
        w, step = self.writer, record.step
        if record.result is None:
            w.add_text(f"{self.prefix}/skipped", str(record.skipped), step)
            w.flush()
            return
        for layer in record.result.layers:
            tag = f"{self.prefix}/l{layer.layer}_{layer.direction}"
            f = layer.flow
            for name, value in (("ratio_first_last", f.ratio_first_last), ("log10_ratio", f.log10_ratio),
                                ("slope", f.slope), ("horizon", f.horizon)):
                if value is not None and math.isfinite(value):
                    w.add_scalar(f"{tag}/{name}", value, step)
            # the profile the flow is measured on: with padding (or reading backwards), steps counted
            # back from each sequence's readout end, which is the last column either way
            profile = layer.log10_flow_norms  # a light record's LayerFlow and a full one's LayerReport alike
            counted_back = profile is not None
            logs = np.asarray(profile if counted_back else layer.log10_grad_norms, dtype=np.float64)
            w.add_image(f"{tag}/profile", profile_image(logs), step, dataformats="HWC")
            shown = logs[np.isfinite(logs)]
            span = f"{shown.min():.3g} .. {shown.max():.3g}" if shown.size else "none finite"
            steps = (f"{logs.size} steps counted back from the readout's end" if counted_back
                     else f"t = 1..{logs.size}")
            w.add_text(f"{tag}/profile_range", f"log10 ||dL/dh_t||, {steps}: {span}", step)
        w.add_text(f"{self.prefix}/regime", record.result.regime, step)
        w.flush()
