"""The vanilla RNN against PyTorch autograd in float64: nn.RNN + nn.Linear, saved as people save them,
and trained as a torch loop trains them (both biases, the global norm, clipping, SGD and Adam)."""

from __future__ import annotations

import numpy as np
import pytest

from gradscope import analyze
from gradscope.bptt import bptt
from gradscope.cli import main
from gradscope.commands.train import TRAINING_BATCH, TrainOptions, train
from gradscope.config import RunConfig
from gradscope.mitigations import Strengths, global_norm, make_mitigation
from gradscope.model.losses import get_loss
from gradscope.model.statedict import Choices, export_network, export_network_grads, load_network

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


# --- nn.RNN's two biases: kept apart, each with its own gradient, trained as torch trains them ----------

NAMES = {"l0.Wx": "rnn.weight_ih_l0", "l0.Wa": "rnn.weight_hh_l0", "l0.b": "rnn.bias_ih_l0",
         "l0.b_hh": "rnn.bias_hh_l0", "head.Wy": "fc.weight", "head.by": "fc.bias"}


def state_dict(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def ce_batch(b, t, d, o, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, t, d)), rng.integers(0, o, b).astype(np.float64)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_a_loaded_rnn_keeps_both_biases_and_gets_torchs_gradient_for_each(nonlinearity):
    b, t, d, h, o = 5, 8, 3, 6, 3
    net = torch_model(d, h, o, nonlinearity, seed=11)
    state = state_dict(net)
    model, layout = load_network(state, "torch", Choices(activation=nonlinearity))
    model.loss = get_loss("ce")
    np.testing.assert_array_equal(model.layers[0][0]["b"], state["rnn.bias_ih_l0"])  # not their sum
    np.testing.assert_array_equal(model.layers[0][0]["b_hh"], state["rnn.bias_hh_l0"])
    x, y = ce_batch(b, t, d, o, seed=3)
    _, grads = bptt(model, x, y)
    value, theirs = torch_grads(net, x, y, "ce")
    assert grads.loss == pytest.approx(value, rel=1e-12)
    flat = grads.parameters(model)
    assert set(flat) == set(NAMES)
    for ours, key in NAMES.items():  # each parameter, both biases included, as autograd has it
        np.testing.assert_allclose(flat[ours], theirs[key], rtol=RTOL, atol=1e-14, err_msg=ours)
    assert export_network_grads(model, grads, layout).keys() == theirs.keys()
    # so the global norm, which clipping and the logs use, is torch's: each bias counted once
    total = torch.nn.utils.get_total_norm([p.grad for p in net.parameters()]).item()
    assert global_norm(flat) == pytest.approx(total, rel=1e-12)


def torch_training(net, x, y, optimizer, lr, momentum, threshold, steps):
    """A torch loop on one batch: backward, Pascanu's clipping, the optimizer's step. Returns the
    unclipped global norm and the state dict after each step."""
    params = list(net.parameters())
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    else:
        opt = torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999), eps=1e-8)
    norms, states = [], []
    for _ in range(steps):
        opt.zero_grad()
        out, _ = net["rnn"](torch.tensor(x))
        torch_loss(net["fc"](out[:, -1]), y, "ce").backward()
        norm = torch.nn.utils.get_total_norm([p.grad for p in params]).item()
        # Algorithm 1 as torch computes it, which gradscope's clip-norm follows: c = threshold / (norm + 1e-6)
        torch.nn.utils.clip_grad_norm_(params, threshold)
        opt.step()
        norms.append(norm)
        states.append(state_dict(net))
    return norms, states


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("adam", 0.05)])
def test_training_a_loaded_rnn_follows_a_torch_training_loop(tmp_path, optimizer, lr):
    b, t, d, h, o, steps = 6, 7, 3, 5, 3, 4
    net = torch_model(d, h, o, "tanh", seed=5)
    x, y = ce_batch(b, t, d, o, seed=8)
    np.savez(tmp_path / "w.npz", **state_dict(net))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    _, first = torch_grads(net, x, y, "ce")
    threshold = 0.8 * float(np.sqrt(sum(np.sum(g * g) for g in first.values())))  # fires at step 1
    norms, states = torch_training(net, x, y, optimizer, lr, 0.9, threshold, steps)

    config = RunConfig(weights=str(tmp_path / "w.npz"), inputs=str(tmp_path / "x.npy"),
                       targets=str(tmp_path / "y.npy"), loss="ce")
    clip = make_mitigation("clip-norm", Strengths(clip_threshold=threshold))
    for k in range(1, steps + 1):
        r = train(config, TrainOptions(steps=k, optimizer=optimizer, lr=lr, log_every=1), clip)
        assert r.evaluated_on == TRAINING_BATCH  # 6 sequences: every one is trained on
        logged = [s.grad_norm for s in r.history]
        np.testing.assert_allclose(logged, norms[:k], rtol=RTOL)
        for s, norm in zip(r.history, norms):
            coef = threshold / (norm + 1e-6)
            assert s.clipped == (coef < 1)
            assert s.clipped_grad_norm == pytest.approx(norm * min(coef, 1.0), rel=RTOL)
        saved = export_network(r.network, r.layout)
        assert saved.keys() == states[k - 1].keys()
        for key, value in states[k - 1].items():  # every parameter after step k, both biases
            np.testing.assert_allclose(saved[key], value, rtol=RTOL, atol=1e-12, err_msg=f"{key} @ {k}")
    assert r.clip_events >= 1
    assert not np.allclose(states[-1]["rnn.bias_ih_l0"], states[-1]["rnn.bias_hh_l0"])


def test_save_weights_of_a_loaded_rnn_loads_into_torch_with_both_biases(tmp_path):
    net = torch_model(3, 5, 2, "tanh", seed=2)
    original = state_dict(net)
    np.savez(tmp_path / "w.npz", **original)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((4, 6, 3)))
    assert main(["analyze", "--weights", str(tmp_path / "w.npz"), "--inputs", str(tmp_path / "x.npy"),
                 "--loss", "ce", "--save-weights", str(tmp_path / "out.npz"), "--json"]) == 0
    with np.load(tmp_path / "out.npz", allow_pickle=False) as saved:
        assert set(saved.files) == set(original)
        for key, value in original.items():  # bit for bit: bias_hh is not folded into bias_ih
            np.testing.assert_array_equal(saved[key], value, err_msg=key)
        net.load_state_dict({k: torch.tensor(saved[k]) for k in saved.files})  # strict: same keys
