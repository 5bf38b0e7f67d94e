"""--readout last-output: the head of many tutorials, fc(output[:, -1]) on an unpacked padded
batch, against PyTorch autograd (for a bidirectional module it differs from cat(h_n[-2], h_n[-1]))."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gradscope.bptt.network import bptt  # noqa: E402
from gradscope.model.losses import get_loss  # noqa: E402
from gradscope.model.statedict import Choices, export_network_grads, load_network  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("module", ["LSTM", "GRU"])
def test_last_output_readout_equals_autograd_on_fc_of_output_at_minus_one(module):
    torch.manual_seed(0)
    rnn = getattr(torch.nn, module)(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    fc = torch.nn.Linear(8, 1).double()
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    x[1, 4:] = 0.0  # padding, run as real steps (no packing), as an unpacked batch is
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0], [1.0]], dtype=torch.float64)
    out, _ = rnn(x)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(fc(out[:, -1]), y)
    loss.backward()
    arrays = {f"rnn.{k}": v.detach().numpy() for k, v in rnn.state_dict().items()}
    arrays.update({f"fc.{k}": v.detach().numpy() for k, v in fc.state_dict().items()})
    net, layout = load_network(arrays, "test", Choices(module.lower()), readout="last-output")
    net.loss = get_loss("bce")
    _, grads = bptt(net, x.numpy(), y.numpy())
    assert grads.loss == pytest.approx(loss.item(), rel=1e-13)
    theirs = {f"rnn.{k}": p.grad.numpy() for k, p in rnn.named_parameters()}
    theirs.update({f"fc.{k}": p.grad.numpy() for k, p in fc.named_parameters()})
    ours = export_network_grads(net, grads, layout)
    assert ours.keys() == theirs.keys()
    for key, g in theirs.items():
        np.testing.assert_allclose(ours[key], g, rtol=1e-10, atol=1e-14, err_msg=key)
    # the last state's readout is another model: its loss differs
    net.readout = "last"
    _, other = bptt(net, x.numpy(), y.numpy())
    assert abs(other.loss - grads.loss) > 1e-6
