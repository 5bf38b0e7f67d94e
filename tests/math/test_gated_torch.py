"""GRU and LSTM against PyTorch autograd in float64: nn.GRU / nn.LSTM + nn.Linear, saved as people do."""

from __future__ import annotations

import numpy as np
import pytest

from gradscope import analyze
from gradscope.bptt import bptt
from gradscope.cli import main
from helpers import random_model, random_targets
from test_torch_rnn import torch_grads, torch_loss  # nn.RNN/GRU/LSTM + nn.Linear alike

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

RTOL = 1e-9
MODULES = {"gru": (torch.nn.GRU, torch.nn.GRUCell), "lstm": (torch.nn.LSTM, torch.nn.LSTMCell)}


def torch_model(cell, d, h, o, seed):
    torch.manual_seed(seed)
    model = torch.nn.ModuleDict({
        "rnn": MODULES[cell][0](d, h, batch_first=True),
        "fc": torch.nn.Linear(h, o),
    }).double()
    with torch.no_grad():  # make every bias matter, b_hn and the forget gate's included
        for p in model.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.5)
    return model


def unrolled_state_grads(cell, model, x, y, loss):
    """dL/dh_t (and dL/dc_t for the LSTM), (T, B, H), from the unrolled *Cell with retain_grad."""
    rnn = model["rnn"]
    step = MODULES[cell][1](rnn.input_size, rnn.hidden_size).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(step, name).copy_(getattr(rnn, name + "_l0"))
    xt = torch.tensor(x)
    zeros = torch.zeros(x.shape[0], rnn.hidden_size, dtype=torch.float64)
    state = zeros if cell == "gru" else (zeros, zeros)
    hs, cs = [], []
    for t in range(x.shape[1]):
        state = step(xt[:, t], state)
        for s, keep in zip(state if cell == "lstm" else (state,), (hs, cs)):
            s.retain_grad()
            keep.append(s)
    h_last = state if cell == "gru" else state[0]
    torch_loss(model["fc"](h_last), y, loss).backward()
    dh = np.stack([s.grad.numpy() for s in hs])
    return dh, (np.stack([s.grad.numpy() for s in cs]) if cs else None)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("loss,outputs", [("bce", 1), ("ce", 4), ("mse", 2)])
def test_saved_torch_model_matches_autograd(tmp_path, cell, loss, outputs):
    b, t, d, h = 4, 7, 3, 5
    model = torch_model(cell, d, h, outputs, seed=outputs)
    rng = np.random.default_rng(outputs)
    x = rng.standard_normal((b, t, d))
    y = random_targets(loss, b, outputs, rng)
    np.savez(tmp_path / "w.npz", **{k: v.detach().numpy() for k, v in model.state_dict().items()})
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)

    code = main(["analyze", "--weights", str(tmp_path / "w.npz"), "--inputs", str(tmp_path / "x.npy"),
                 "--targets", str(tmp_path / "y.npy"), "--loss", loss,
                 "--save-grads", str(tmp_path / "g.npz"), "--json"])
    assert code == 0
    ours = np.load(tmp_path / "g.npz", allow_pickle=False)

    value, grads = torch_grads(model, x, y, loss)
    assert float(ours["loss"]) == pytest.approx(value, rel=RTOL)
    assert set(grads) <= set(ours.files)
    for key, g in grads.items():
        np.testing.assert_allclose(ours[key], g, rtol=RTOL, atol=1e-14, err_msg=key)
    dh, dc = unrolled_state_grads(cell, model, x, y, loss)
    np.testing.assert_allclose(ours["dL_da"], dh, rtol=RTOL, atol=1e-14)
    if cell == "lstm":
        np.testing.assert_allclose(ours["dL_dc"], dc, rtol=RTOL, atol=1e-14)
    else:
        assert "dL_dc" not in ours.files


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_saved_weights_load_into_torch_and_give_the_same_loss_and_grads(tmp_path, cell):
    settings = {"cell": cell, "seq_len": 9, "hidden_size": 6, "output_size": 3, "init": "orthogonal"}
    argv = ["analyze", "--cell", cell, "--seq-len", "9", "--hidden-size", "6", "--output-size", "3",
            "--init", "orthogonal", "--save-weights", str(tmp_path / "w.npz"),
            "--save-grads", str(tmp_path / "g.npz"), "--json"]
    assert main(argv) == 0
    state = np.load(tmp_path / "w.npz", allow_pickle=False)
    model = torch.nn.ModuleDict({"rnn": MODULES[cell][0](8, 6, batch_first=True),
                                 "fc": torch.nn.Linear(6, 3)}).double()
    model.load_state_dict({k: torch.tensor(state[k]) for k in state.files})  # strict: same keys
    r = analyze(**settings)
    value, grads = torch_grads(model, r.setup.batch.x, r.setup.batch.y, "ce")
    saved = np.load(tmp_path / "g.npz", allow_pickle=False)
    assert value == pytest.approx(r.loss, rel=RTOL)
    for key, g in grads.items():
        np.testing.assert_allclose(saved[key], g, rtol=RTOL, atol=1e-14, err_msg=key)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_jacobian_matches_torch_autograd(cell):
    b, h = 2, 4
    model = random_model(cell, "tanh", "bce", d=3, h=h, o=1, seed=2, bias_scale=0.5)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((b, 3, 3))
    traj, _ = bptt(model, x, random_targets("bce", b, 1, rng))
    traj, params = traj.runs[0][0], model.layers[0][0]
    p = {k: torch.tensor(v) for k, v in params.items()}
    step = MODULES[cell][1](3, h).double()
    with torch.no_grad():
        for ours, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"),
                             ("b_hh", "bias_hh")):
            getattr(step, theirs).copy_(p[ours])
    x2 = torch.tensor(x[:, 2])  # step 3, from the state after step 2
    prev = torch.tensor(np.concatenate(traj.states[1], axis=1))

    def flat_step(flat):
        if cell == "gru":
            return step(x2, flat)
        return torch.cat(step(x2, (flat[:, :h], flat[:, h:])), dim=1)

    for i in range(b):
        jac = torch.autograd.functional.jacobian(lambda s: flat_step(s)[i], prev)[:, i].numpy()
        np.testing.assert_allclose(model.cell.step_jacobian(params, traj.caches[2])[i], jac,
                                   rtol=RTOL, atol=1e-14)
