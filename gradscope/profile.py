"""The flow profile of one pass: how ||dL/dh_t|| changes going back from the readout, per layer.

Every command that reports the gradient flow (analyze's table, train's logged ratio, compare's
rows, sweep's metric) measures it here, on the same numbers:

    flowing        the gradient whose norms measure the flow: the total, or for a readout at
                   every step the part that flows back from each sequence's last real step
                   (bptt.network.last_step_backward), since each step's own loss term would mask
                   how far back the gradient reaches
    profile        (T,) ln of the norm over the batch k steps back from each sequence's readout
                   end (its last real step; its first for a reverse direction), so that pre- and
                   post-padded batches, which compute the same thing, give the same profile
    headline       the top layer's forward direction, the one nearest the loss
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .bptt.layer import Trajectory, pick_rows
from .bptt.logdomain import combine_log_norms
from .bptt.network import NetworkGradients, NetworkTrajectory, bptt, last_real, last_step_backward
from .flow import Flow, flow
from .model.network import DIRECTIONS, Network


def headline(net: Network) -> tuple[int, int]:
    """(layer, direction) of the headline: the top layer's forward direction."""
    return net.num_layers - 1, 0


def flowing(net: Network, traj: NetworkTrajectory, grads: NetworkGradients,
            y: np.ndarray | None) -> NetworkGradients:
    """``grads`` itself, or for a head read out at every step what flows back from each
    sequence's last real step alone (module docstring; its parameters' gradients are left out:
    the total's are ``grads``')."""
    if net.head is not None and net.readout == "every" and y is not None:
        return last_step_backward(net, traj, y, parameters=False)
    return grads


def aligned_log_norms(log_rows: np.ndarray, mask_tm: np.ndarray | None, reverse: bool,
                      log_norms: np.ndarray | None = None) -> np.ndarray:
    """The flow profile in logs: (T,) ln of the norm over the batch k steps from each sequence's
    readout end, from log_rows (T, B) = ln||dL/dh_t[b]|| in absolute steps (-inf at pad steps).

    Without padding it is the step norms (``log_norms`` where the caller has them), reversed for
    the reverse direction, whose readout end is step 1. With padding,
    entry T-1-k is the norm over the sequences that have a real step k steps before their last
    real one (after their first, for the reverse direction). Only the (T, B) logs are gathered,
    never the (T, B, H) gradients.
    """
    if mask_tm is None:  # the readout end: step T, or step 1 for the reverse direction
        logs = combine_log_norms(log_rows, axis=1) if log_norms is None else log_norms
        return logs[::-1].copy() if reverse else logs
    steps, batch = mask_tm.shape
    k = np.arange(steps)[:, None]
    if reverse:
        anchor = mask_tm.argmax(axis=0)  # first real step
        idx = anchor[None, :] + k
    else:
        anchor = last_real(mask_tm)
        idx = anchor[None, :] - k
    valid = (idx >= 0) & (idx < steps)
    idx = np.clip(idx, 0, steps - 1)
    cols = np.arange(batch)[None, :]
    valid &= mask_tm[idx, cols]
    gathered = np.where(valid, log_rows[idx, cols], -np.inf)  # (T, B), row k: k steps from the end
    return combine_log_norms(gathered, axis=1)[::-1].copy()


def _backwards(traj: NetworkTrajectory, k: int, d: int) -> bool:
    """Whether layer k's direction d ran from the sequence's end (the reverse direction, or a
    layer reading backwards): its readout end is then step 1."""
    return traj.backwards[k][d] if traj.backwards else d == 1


def layer_profile(mask_tm: np.ndarray | None, grads, reverse: bool) -> tuple[np.ndarray, int]:
    """One layer and direction's log profile (T,), and the first entry that holds a sequence (with
    padding, the profile's first entries hold none when no sequence is that long).

    grads : what BPTT gave the layer (``log_rows`` (T, B), ``log_norms`` (T,)); mask_tm : (T, B) or None.
    """
    log_profile = aligned_log_norms(grads.log_rows, mask_tm, reverse, grads.log_norms)
    longest = log_profile.shape[0] if mask_tm is None else int(mask_tm.sum(axis=0).max())
    return log_profile, log_profile.shape[0] - longest


def headline_of(layers: list):
    """The headline among per-layer reports (each with ``layer`` and ``direction``): the top
    layer's forward direction, found by its keys, since a Keras stack may mix bidirectional and
    one-way layers (``headline`` gives it for a network)."""
    top = max(r.layer for r in layers)
    return next(r for r in layers if r.layer == top and r.direction == "forward")


def counted_back_log10(mask_tm: np.ndarray | None, log_profile: np.ndarray, backwards: bool) -> np.ndarray | None:
    """log10 of a layer's flow profile (``layer_profile``'s logs) where it is not the norms in step
    order (a padded batch, or a direction that reads backwards), else None: what reports and
    records carry as ``log10_flow_norms``."""
    return log10(log_profile) if mask_tm is not None or backwards else None


@dataclass
class LayerFlow:
    """The flow of one layer and direction, as analyze's ``layers`` reports it: ``flow`` (flow.Flow)
    and ``log10_grad_norms`` (T,), log10 ||dL/dh_t|| at t = 1..T, exact at any depth.

    log10_flow_norms : (T,) the profile ``flow`` is measured on (``layer_profile``), where it is
        not ``log10_grad_norms`` itself: entry T-1-k is log10 of the norm over the sequences k steps
        back from each one's readout end (its last real step; its first for a direction that reads
        backwards), -inf where no sequence is that long. None without padding for a direction that
        reads forwards.
    """

    layer: int
    direction: str
    flow: Flow
    log10_grad_norms: np.ndarray
    log10_flow_norms: np.ndarray | None = None


def layer_flow(k: int, d: int, mask_tm: np.ndarray | None, g, backwards: bool) -> tuple[LayerFlow, np.ndarray]:
    """Layer k, direction d's LayerFlow from what BPTT gave it (``log_rows``, ``log_norms``), and
    its log profile (``layer_profile``); with padding the flow is measured over the steps the
    longest sequences have."""
    with np.errstate(all="ignore"):
        log_profile, start = layer_profile(mask_tm, g, backwards)
        measured = flow(np.exp(log_profile)[start:], log_profile[start:])
        return LayerFlow(k, DIRECTIONS[d], measured, log10(g.log_norms),
                         counted_back_log10(mask_tm, log_profile, backwards)), log_profile


def step_flows(net: Network, traj: NetworkTrajectory, grads: NetworkGradients,
               y: np.ndarray | None, flows: NetworkGradients | None = None) -> list[LayerFlow]:
    """Every layer and direction's flow of a pass BPTT has computed (with the weights it ran with:
    a readout at every step backpropagates its last step again), bottom first, forward before
    reverse; the same numbers as analyze's. flows : ``flowing``'s gradients where the caller has
    them already (a readout at every step: another backward pass)."""
    with np.errstate(all="ignore"):
        flows = flowing(net, traj, grads, y) if flows is None else flows
        return [layer_flow(k, d, traj.mask_tm, flows.layers[k][d], _backwards(traj, k, d))[0]
                for k, d in net.each_layer()]


def layer_flows(net: Network, x: np.ndarray, y: np.ndarray | None, mask: np.ndarray | None = None,
                upstream=None, initial=None) -> list[LayerFlow]:
    """Every layer and direction's flow over one pass (BPTT without the parameters' gradients, and
    the profiles: none of analyze's spectra), bottom first, forward before reverse; the same
    numbers as analyze's. initial : the state the layers start from (bptt.network.InitialState)."""
    traj, grads = bptt(net, x, y, mask, upstream, initial, parameters=False)
    return step_flows(net, traj, grads, y)


def end_to_end_log10_ratio(net: Network, traj: NetworkTrajectory, grads: NetworkGradients,
                           y: np.ndarray | None, flows: NetworkGradients | None = None) -> float:
    """log10 (||dL/dh_1|| / ||dL/dh_T||) of the headline's flowing profile, exact at any depth
    (1 and T: the first and last steps the longest sequences have, counted from the readout).
    flows : as for ``step_flows``."""
    k, d = headline(net)
    flows = flowing(net, traj, grads, y) if flows is None else flows
    logs, start = layer_profile(traj.mask_tm, flows.layers[k][d], _backwards(traj, k, d))
    with np.errstate(all="ignore"):
        return float((logs[start] - logs[-1]) / np.log(10.0))


def end_to_end_ratio(net: Network, traj: NetworkTrajectory, grads: NetworkGradients, y: np.ndarray | None,
                     flows: NetworkGradients | None = None) -> float:
    """||dL/dh_1|| / ||dL/dh_T|| (0 or inf where it leaves float64's range:
    ``end_to_end_log10_ratio`` is exact at any depth)."""
    with np.errstate(all="ignore"):
        return float(10.0 ** end_to_end_log10_ratio(net, traj, grads, y, flows))


def total_norm(log_norms: np.ndarray) -> float:
    """||dL/dh|| over every step from the logs of the steps' norms."""
    with np.errstate(all="ignore"):
        return float(np.exp(combine_log_norms(np.ravel(log_norms))))


def log10(log_norms: np.ndarray | None) -> np.ndarray | None:
    return None if log_norms is None else log_norms / math.log(10.0)


def run_mask(traj: NetworkTrajectory, k: int, d: int) -> np.ndarray | None:
    """(T, B) the real steps of layer k, direction d's run in the order it ran them, or None."""
    if traj.mask_tm is None:
        return None
    return traj.mask_tm[::-1] if _backwards(traj, k, d) else traj.mask_tm


def real_run(traj: NetworkTrajectory, k: int, d: int) -> Trajectory | None:
    """Layer k, direction d's run over the real steps of the longest sequences (processing order),
    for the mean step Jacobian, which pad steps (the identity) would dilute; None without padding
    or under two such steps."""
    mask = run_mask(traj, k, d)
    return None if mask is None else _full_rows(traj.runs[k][d], mask)


def _full_rows(traj: Trajectory, mask_tm: np.ndarray) -> Trajectory | None:
    """The trajectory of the longest sequences over their real steps (processing order), for the
    Jacobian products, which pad steps (the identity) would dilute; None under two steps."""
    lengths = mask_tm.sum(axis=0)
    rows = np.flatnonzero(lengths == lengths.max())
    steps = np.flatnonzero(mask_tm[:, rows].all(axis=1))
    if steps.size < 2:
        return None

    hidden = traj.hidden[np.concatenate(([0], steps + 1))][:, rows]
    return Trajectory(None, hidden, [pick_rows(traj.states[s], rows) for s in steps],
                      [pick_rows(traj.caches[s], rows) for s in steps])
