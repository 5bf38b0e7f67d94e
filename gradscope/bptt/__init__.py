"""Backpropagation through time, exact, with every intermediate a diagnostic needs.

    logdomain.py     how a gradient that leaves float64 (or float32) is carried exactly
    layer.py         one layer in one direction: the sequence loop forward and backward
    network.py       the one driver: embedding, stacked and bidirectional layers, padding, head
    checkpointed.py  a one-layer run in O(sqrt(T)) memory, for runs whose full path does not fit
    gradcheck.py     central finite differences, the reference every gradient is tested against
"""

from .network import NetworkGradients, NetworkTrajectory, Upstream, backward, bptt, forward, loss_only

__all__ = ["NetworkGradients", "NetworkTrajectory", "Upstream", "backward", "bptt", "forward", "loss_only"]
