"""The vanilla RNN against PyTorch autograd in float64: nn.RNN + nn.Linear, saved as people save them."""

from __future__ import annotations

import numpy as np
import pytest

from gradscope import analyze
from gradscope.cli import main

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

RTOL = 1e-9


def torch_model(d, h, o, nonlinearity, seed):
    torch.manual_seed(seed)
    model = torch.nn.ModuleDict({
        "rnn": torch.nn.RNN(d, h, nonlinearity=nonlinearity, batch_first=True),
        "fc": torch.nn.Linear(h, o),
    }).double()
    with torch.no_grad():  # make the biases matter
        for p in model.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.3)
    return model


def torch_loss(logits, y, loss):
    """PyTorch's loss modules with mean reduction, as REFERENCE §4 lists them."""
    if loss == "bce":
        return torch.nn.BCEWithLogitsLoss()(logits, torch.tensor(y))
    if loss == "ce":
        return torch.nn.CrossEntropyLoss()(logits, torch.tensor(y).long())
    return torch.nn.MSELoss()(logits, torch.tensor(y))


def torch_grads(model, x, y, loss):
    """Loss and parameter gradients of nn.RNN + nn.Linear on the last step."""
    out, _ = model["rnn"](torch.tensor(x))
    value = torch_loss(model["fc"](out[:, -1]), y, loss)
    model.zero_grad()
    value.backward()
    return value.item(), {k: p.grad.numpy().copy() for k, p in model.named_parameters()}


def unrolled_dL_dh(model, x, y, loss):
    """dL/dh_t, the total derivative, from an unrolled nn.RNNCell with retain_grad."""
    rnn = model["rnn"]
    cell = torch.nn.RNNCell(rnn.input_size, rnn.hidden_size, nonlinearity=rnn.nonlinearity).double()
    with torch.no_grad():
        cell.weight_ih.copy_(rnn.weight_ih_l0)
        cell.weight_hh.copy_(rnn.weight_hh_l0)
        cell.bias_ih.copy_(rnn.bias_ih_l0)
        cell.bias_hh.copy_(rnn.bias_hh_l0)
    xt = torch.tensor(x)
    h = torch.zeros(x.shape[0], rnn.hidden_size, dtype=torch.float64)
    hs = []
    for t in range(x.shape[1]):
        h = cell(xt[:, t], h)
        h.retain_grad()
        hs.append(h)
    torch_loss(model["fc"](h), y, loss).backward()
    return np.stack([h.grad.numpy() for h in hs])


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("loss,outputs", [("bce", 1), ("ce", 4), ("mse", 2)])
def test_saved_torch_model_matches_autograd(tmp_path, nonlinearity, loss, outputs):
    b, t, d, h = 5, 9, 3, 7
    model = torch_model(d, h, outputs, nonlinearity, seed=outputs)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, t, d))
    y = {"bce": rng.integers(0, 2, (b, 1)).astype(np.float64),
         "ce": rng.integers(0, outputs, b).astype(np.float64),
         "mse": rng.standard_normal((b, outputs))}[loss]
    np.savez(tmp_path / "w.npz", **{k: v.detach().numpy() for k, v in model.state_dict().items()})
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)

    code = main(["analyze", "--weights", str(tmp_path / "w.npz"), "--inputs", str(tmp_path / "x.npy"),
                 "--targets", str(tmp_path / "y.npy"), "--activation", nonlinearity, "--loss", loss,
                 "--save-grads", str(tmp_path / "g.npz"), "--json"])
    assert code == 0
    ours = np.load(tmp_path / "g.npz", allow_pickle=False)

    value, grads = torch_grads(model, x, y, loss)
    assert float(ours["loss"]) == pytest.approx(value, rel=RTOL)
    np.testing.assert_allclose(ours["dL_da"], unrolled_dL_dh(model, x, y, loss), rtol=RTOL, atol=1e-14)
    assert set(grads) <= set(ours.files)
    for key, g in grads.items():
        np.testing.assert_allclose(ours[key], g, rtol=RTOL, atol=1e-14, err_msg=key)


def test_saved_weights_load_into_torch_and_give_the_same_loss(tmp_path):
    assert main(["analyze", "--seq-len", "12", "--hidden-size", "6", "--output-size", "3",
                 "--save-weights", str(tmp_path / "w.npz"), "--save-grads", str(tmp_path / "g.npz"),
                 "--json"]) == 0
    state = np.load(tmp_path / "w.npz", allow_pickle=False)
    model = torch.nn.ModuleDict({"rnn": torch.nn.RNN(8, 6, batch_first=True),
                                 "fc": torch.nn.Linear(6, 3)}).double()
    model.load_state_dict({k: torch.tensor(state[k]) for k in state.files})  # strict: same keys
    # the same run through gradscope's Python API gives the batch to replay in torch
    r = analyze(seq_len=12, hidden_size=6, output_size=3)
    value, grads = torch_grads(model, r.setup.batch.x, r.setup.batch.y, "ce")
    saved = np.load(tmp_path / "g.npz", allow_pickle=False)
    assert value == pytest.approx(r.loss, rel=RTOL)
    for key, g in grads.items():
        np.testing.assert_allclose(saved[key], g, rtol=RTOL, atol=1e-14, err_msg=key)
