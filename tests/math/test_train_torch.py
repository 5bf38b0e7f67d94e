"""Training a user's own network, step by step, against torch.optim on the same batches.

The network matrix (cells x layers x directions x embedding x packed) is built in PyTorch, its
state dict read by gradscope (model/statedict.py), and both train on the very same batches: after
every step every parameter agrees to 1e-9 (relative to the parameter's size), for SGD (momentum 0
and 0.9), Adam, clip-norm (torch's clip_grad_norm_), clip-value (clip_grad_value_) and l2
(lambda/2 ||W_hh||^2 on every layer and direction's W_hh added to the loss).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from gradscope.commands.train import train_step  # noqa: E402
from gradscope.mitigations import NoMitigation, Strengths, make_mitigation  # noqa: E402
from gradscope.model.losses import get_loss  # noqa: E402
from gradscope.model.statedict import Choices, export_network, load_network  # noqa: E402
from gradscope.optimizers import make_optimizer  # noqa: E402
from gradscope.tasks import Batch  # noqa: E402

pytestmark = pytest.mark.torch

V, D, H, O, B, T = 12, 5, 6, 1, 7, 9
PAD = 0
MODULES = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class Model(nn.Module):
    """Embedding (padding_idx 0) or not -> nn.RNN/GRU/LSTM -> Linear on the final states."""

    def __init__(self, cell: str, layers: int, bidirectional: bool, embedding: bool, bias: bool = True,
                 nonlinearity: str = "tanh"):
        super().__init__()
        self.embedding = nn.Embedding(V, D, padding_idx=PAD) if embedding else None
        kwargs = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.rnn = MODULES[cell](D, H, num_layers=layers, bidirectional=bidirectional, batch_first=True,
                                 bias=bias, **kwargs)
        self.fc = nn.Linear(H * (2 if bidirectional else 1), O)

    def forward(self, x, lengths=None):
        inputs = self.embedding(x) if self.embedding is not None else x
        if lengths is not None:
            inputs = nn.utils.rnn.pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.rnn(inputs)
        h = h[0] if isinstance(h, tuple) else h
        features = torch.cat([h[-2], h[-1]], dim=1) if self.rnn.bidirectional else h[-1]
        return self.fc(features)


def batches(embedding: bool, packed: bool, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        lengths = rng.integers(2, T + 1, B) if packed else np.full(B, T)
        if embedding:
            x = rng.integers(1, V, (B, T))
            for b in range(B):
                x[b, lengths[b]:] = PAD
        else:
            x = rng.standard_normal((B, T, D))
            for b in range(B):
                x[b, lengths[b]:] = 0.0
        y = rng.integers(0, 2, (B, 1)).astype(np.float64)
        yield x, y, lengths


def torch_step(model, opt, x, y, lengths, packed, mitigation: str, strengths: Strengths):
    opt.zero_grad()
    xt = torch.tensor(x) if x.dtype.kind == "i" else torch.tensor(x, dtype=torch.float64)
    out = model(xt, torch.tensor(lengths) if packed else None)
    loss = nn.functional.binary_cross_entropy_with_logits(out, torch.tensor(y))
    if mitigation == "l2":
        for name, p in model.rnn.named_parameters():
            if name.startswith("weight_hh"):
                loss = loss + 0.5 * strengths.l2 * (p * p).sum()
    loss.backward()
    if mitigation == "clip-norm":
        nn.utils.clip_grad_norm_(model.parameters(), strengths.clip_threshold)
    elif mitigation == "clip-value":
        nn.utils.clip_grad_value_(model.parameters(), strengths.clip_value)
    opt.step()
    return float(loss.detach())


def gradscope_network(model, cell: str, nonlinearity: str = "tanh"):
    arrays = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    net, layout = load_network(arrays, "the test's model", Choices(cell, nonlinearity))
    net.loss = get_loss("bce")
    net.padding_idx = PAD if model.embedding is not None else None
    return net, layout


def assert_same_parameters(model, net, layout, step):
    ours = export_network(net, layout)
    theirs = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        scale = max(1.0, float(np.max(np.abs(value))))
        np.testing.assert_allclose(ours[key], value, rtol=0, atol=1e-9 * scale, err_msg=f"{key} after step {step}")


MATRIX = [
    # cell, layers, bidirectional, embedding, packed
    ("rnn", 1, False, False, False),
    ("rnn", 2, True, True, True),
    ("gru", 1, True, False, True),
    ("gru", 2, False, True, False),
    ("lstm", 1, False, True, True),
    ("lstm", 2, True, True, True),
    ("lstm", 2, True, False, False),
]
RUNS = [
    ("sgd", 0.0, None), ("sgd", 0.9, None), ("adam", 0.9, None),
    ("sgd", 0.9, "clip-norm"), ("adam", 0.9, "clip-value"), ("sgd", 0.0, "l2"),
]


@pytest.mark.parametrize("cell, layers, bidirectional, embedding, packed", MATRIX)
@pytest.mark.parametrize("optimizer, momentum, mitigation", RUNS)
def test_every_step_equals_torch_optim(cell, layers, bidirectional, embedding, packed, optimizer, momentum,
                                       mitigation):
    torch.manual_seed(layers * 10 + bidirectional)
    model = Model(cell, layers, bidirectional, embedding).double()
    net, layout = gradscope_network(model, cell)
    lr = 0.05 if optimizer == "sgd" else 0.01
    strengths = Strengths(clip_threshold=0.05, clip_value=0.01, l2=0.1)
    ours = make_optimizer(optimizer, lr, momentum)
    theirs = (torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum) if optimizer == "sgd"
              else torch.optim.Adam(model.parameters(), lr=lr, betas=(momentum, 0.999)))
    cure = NoMitigation() if mitigation is None else make_mitigation(mitigation, strengths)
    state = ours.init(net.parameters())
    fired = 0
    for step, (x, y, lengths) in enumerate(batches(embedding, packed, 4), start=1):
        mask = np.arange(T)[None, :] < lengths[:, None] if packed else None
        loss = torch_step(model, theirs, x, y, lengths, packed, mitigation, strengths)
        outcome = train_step(net, Batch(x, y, mask), cure, ours, state)
        state = outcome.opt_state
        fired += outcome.clipped
        assert outcome.loss + outcome.penalty == pytest.approx(loss, rel=1e-12)
        assert_same_parameters(model, net, layout, step)
    if mitigation in ("clip-norm", "clip-value"):
        assert fired > 0  # the comparison covered clipped steps
    if embedding:  # nn.Embedding(padding_idx) never updates the pad row
        assert not np.any(net.embedding[PAD])


def test_relu_rnn_without_bias_equals_torch():
    torch.manual_seed(3)
    model = Model("rnn", 2, True, True, bias=False, nonlinearity="relu").double()
    net, layout = gradscope_network(model, "rnn", "relu")
    assert not net.bias and "l0.b" not in net.parameters()
    ours, theirs = make_optimizer("adam", 0.01, 0.9), torch.optim.Adam(model.parameters(), lr=0.01)
    state = ours.init(net.parameters())
    for step, (x, y, lengths) in enumerate(batches(True, True, 3), start=1):
        mask = np.arange(T)[None, :] < lengths[:, None]
        torch_step(model, theirs, x, y, lengths, True, None, Strengths())
        state = train_step(net, Batch(x, y, mask), NoMitigation(), ours, state).opt_state
        assert_same_parameters(model, net, layout, step)
