"""Whole networks against PyTorch autograd in float64: an optional nn.Embedding, a stacked and
bidirectional nn.RNN / nn.GRU / nn.LSTM run on packed padded sequences, a readout and an nn.Linear,
handed to ``analyze`` as the state dict people save.

    references   the fused torch module (loss, parameter gradients, upstream gradients), and an
                 unrolled copy of it (one torch cell call per layer, direction and step; a pad step
                 carries the state, as pack_padded_sequence runs it) for the per-step dL/dh_t, dL/dc_t
    tolerance    1e-9 relative, 1e-12 absolute
    padding      lengths (3, 6, 1, 5, 2) of T = 6 steps: unsorted, one length-1 sequence, one full
"""

from __future__ import annotations

import itertools
from dataclasses import asdict

import numpy as np
import pytest

from gradscope import analyze
from gradscope.config import RunConfig
from gradscope.errors import InputError
from gradscope.io.weights import read_state_dict
from gradscope.model.losses import get_loss
from gradscope.bptt import NetworkGradients, bptt, forward
from gradscope.model.statedict import Choices, export_network_grads, load_network

RTOL, ATOL = 1e-9, 1e-12
B, T, D, H, VOCAB, PAD = 5, 6, 3, 4, 11, 0
LENGTHS = np.array([3, 6, 1, 5, 2])
OUTPUTS = {"ce": 3, "mse": 2, "bce": 1}
CELLS = ("rnn_tanh", "rnn_relu", "gru", "lstm")
READOUTS = ("last", "mean", "max", "every")


def real_steps(lengths: np.ndarray | None) -> np.ndarray:
    """(B, T) bool, True at the first lengths[b] steps (every step without lengths)."""
    return np.ones((B, T), bool) if lengths is None else np.arange(T)[None, :] < lengths[:, None]


def make_batch(embedding: bool, lengths: np.ndarray | None, loss: str, readout: str, seed: int):
    """Inputs ((B, T) token ids or (B, T, D) floats) and targets. Pad steps hold garbage (tokens
    other than PAD, large floats): with lengths given, nothing may read them."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (B, T)) if embedding else rng.standard_normal((B, T, D))
    if lengths is not None and not embedding:
        x[~real_steps(lengths)] = 50.0
    every = readout == "every"
    shape = (B, T) if every else (B,)
    if loss == "ce":
        y = rng.integers(0, OUTPUTS["ce"], shape).astype(np.float64)
    elif loss == "bce":
        y = rng.integers(0, 2, shape if every else (B, 1)).astype(np.float64)
    else:
        y = rng.standard_normal(shape + (OUTPUTS["mse"],))
    return x, y


# --- the torch side ----------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


def torch_network(cell: str, num_layers: int = 2, bidirectional: bool = True, bias: bool = True,
                  embedding: bool = False, outputs: int | None = 3, seed: int = 0):
    """ModuleDict(embedding?, rnn, fc?) in float64, every bias non-zero so that each term counts."""
    torch = _torch()
    torch.manual_seed(seed)
    nn = torch.nn
    module = {"gru": nn.GRU, "lstm": nn.LSTM}.get(cell, nn.RNN)
    extra = {"nonlinearity": cell[4:]} if cell.startswith("rnn") else {}
    parts = {}
    if embedding:
        parts["embedding"] = nn.Embedding(VOCAB, D, padding_idx=PAD)
    parts["rnn"] = module(D, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias,
                          batch_first=True, **extra)
    if outputs is not None:
        parts["fc"] = nn.Linear(H * (2 if bidirectional else 1), outputs)
    model = nn.ModuleDict(parts).double()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.5)
    return model


def torch_inputs(model, x: np.ndarray):
    """Layer 0's input (B, T, D): the embedded tokens, or the floats (a leaf that takes a grad)."""
    torch = _torch()
    if "embedding" in model:
        return model["embedding"](torch.as_tensor(x))
    return torch.tensor(x, requires_grad=True)


def fused(rnn, inp, lengths: np.ndarray | None):
    """The module as users call it: output (B, T, F) zero at pad steps, h_n, c_n (None but LSTM)."""
    torch = _torch()
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    if lengths is None:
        out, state = rnn(inp)
    else:
        packed = pack_padded_sequence(inp, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False)
        out, state = rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    h_n, c_n = state if isinstance(state, tuple) else (state, None)
    return out, h_n, c_n


def unrolled(cell: str, rnn, inp, lengths: np.ndarray | None):
    """The same network, one torch cell call per layer, direction and step.

    A pad step keeps the state (h_t = h_{t-1}) and outputs zero, which is how a packed sequence
    runs. Every state is retained: states[k][d] = (hs, cs), lists of T tensors (B, H) in absolute
    time order (cs None but for the LSTM). Returns output, h_n, c_n, states.
    """
    torch = _torch()
    functional = torch.nn.functional
    step = {"rnn_tanh": torch._VF.rnn_tanh_cell, "rnn_relu": torch._VF.rnn_relu_cell,
            "gru": torch._VF.gru_cell}.get(cell)
    lstm = cell == "lstm"
    real = torch.as_tensor(real_steps(lengths))[:, :, None]
    dirs = 2 if rnn.bidirectional else 1
    layer_in, finals_h, finals_c, states = inp, [], [], []
    for k in range(rnn.num_layers):
        outs, layer_states = [], []
        for d in range(dirs):
            suffix = f"_l{k}" + ("_reverse" if d else "")
            w_ih, w_hh, b_ih, b_hh = [
                getattr(rnn, name + suffix) if rnn.bias or name.startswith("weight") else None
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            h = c = torch.zeros(B, H, dtype=torch.float64)
            hs, cs = [None] * T, [None] * T
            for t in (range(T) if d == 0 else range(T - 1, -1, -1)):
                if lstm:  # REFERENCE §4, with h_t computed from the retained c_t, so that c_t's
                    # gradient is the total one (through h_t as well)
                    gates = functional.linear(layer_in[:, t], w_ih, b_ih) + functional.linear(h, w_hh, b_hh)
                    i, f, g, o = gates.chunk(4, dim=1)
                    c = torch.where(real[:, t], torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g), c)
                    c.retain_grad()
                    cs[t] = c
                    h_new = torch.sigmoid(o) * torch.tanh(c)
                else:
                    h_new = step(layer_in[:, t], h, w_ih, w_hh, b_ih, b_hh)
                h = torch.where(real[:, t], h_new, h)  # a pad step carries the state
                h.retain_grad()
                hs[t] = h
            outs.append(torch.stack(hs, dim=1) * real)  # pad outputs are zero
            finals_h.append(h)
            finals_c.append(c)
            layer_states.append((hs, cs if lstm else None))
        states.append(layer_states)
        layer_in = torch.cat(outs, dim=2)
    return layer_in, torch.stack(finals_h), torch.stack(finals_c) if lstm else None, states


def torch_features(out, h_n, lengths: np.ndarray | None, readout: str, dirs: int):
    """What the head reads: the final states, the mean or max over real steps, or every step."""
    torch = _torch()
    if readout == "last":
        return torch.cat([h_n[-2], h_n[-1]], dim=1) if dirs == 2 else h_n[-1]
    n = torch.as_tensor(np.full(B, T) if lengths is None else lengths, dtype=torch.float64)
    if readout == "mean":
        return out.sum(dim=1) / n[:, None]
    if readout == "max":
        pads = ~torch.as_tensor(real_steps(lengths))[:, :, None]
        return out.masked_fill(pads, float("-inf")).max(dim=1).values
    return out


def torch_loss(logits, y: np.ndarray, loss: str, lengths: np.ndarray | None, readout: str):
    """nn.CrossEntropyLoss / BCEWithLogitsLoss / MSELoss, mean reduction; at every step over the
    real positions only."""
    torch = _torch()
    target = torch.as_tensor(y)
    if readout == "every":
        real = torch.as_tensor(real_steps(lengths))
        logits, target = logits[real], target[real]
    if loss == "ce":
        return torch.nn.CrossEntropyLoss()(logits, target.long())
    if loss == "bce":
        return torch.nn.BCEWithLogitsLoss()(logits, target.reshape(logits.shape))
    return torch.nn.MSELoss()(logits, target)


def torch_reference(model, x, y, lengths, readout: str, loss: str):
    """Loss and every named parameter's gradient of the fused module."""
    model.zero_grad()
    rnn = model["rnn"]
    out, h_n, _ = fused(rnn, torch_inputs(model, x), lengths)
    value = torch_loss(model["fc"](torch_features(out, h_n, lengths, readout, 1 + rnn.bidirectional)),
                       y, loss, lengths, readout)
    value.backward()
    return value.item(), {k: p.grad.numpy().copy() for k, p in model.named_parameters()}


# --- the gradscope side ------------------------------------------------------------------------

def activation_of(model) -> str | None:
    rnn = model["rnn"]
    return rnn.nonlinearity if hasattr(rnn, "nonlinearity") else None


def run_analyze(model, x, y=None, lengths=None, readout="last", loss="ce", output_grads=None):
    """``analyze`` on the module's state dict (torch tensors, as ``model.state_dict()`` gives them)."""
    return analyze(RunConfig(
        weights=model.state_dict(), inputs=x, targets=y, lengths=lengths,
        padding_idx=PAD if "embedding" in model else None,
        readout=None if output_grads is not None else readout,  # no readout of ours with the caller's gradient
        loss=None if output_grads is not None else loss, activation=activation_of(model),
        output_grads=output_grads,
    ))


def exported(result) -> dict[str, np.ndarray]:
    """Every parameter gradient under its state-dict key (one layer and direction included)."""
    setup, grads = result.setup, result.gradients
    assert isinstance(grads, NetworkGradients)  # the full path, not checkpointed
    return export_network_grads(setup.network, grads, setup.layout)


def run_network(model, x, y, lengths, readout: str, loss: str):
    """What analyze does, one layer down (load_network + bptt): for the readout at every
    step. Returns (loss, exported gradients, grads)."""
    net, layout = load_network(read_state_dict(model.state_dict()), "the state dict",
                               Choices(activation=activation_of(model)), readout)
    net.loss = get_loss(loss)
    net.padding_idx = PAD if net.embedding is not None else None
    _, grads = bptt(net, x, y, None if lengths is None else real_steps(lengths))
    return grads.loss, export_network_grads(net, grads, layout), grads


def gradscope_run(model, x, y, lengths, readout: str, loss: str):
    """(loss, exported gradients, NetworkGradients): analyze, but for ``every``."""
    if readout == "every":
        return run_network(model, x, y, lengths, readout, loss)
    result = run_analyze(model, x, y, lengths, readout, loss)
    return result.loss, exported(result), result.gradients


def assert_same_grads(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> None:
    assert sorted(ours) == sorted(theirs)  # nothing more, nothing less
    for key, g in theirs.items():
        np.testing.assert_allclose(ours[key], g, rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tensors this small gain nothing from torch's thread pool, which on a busy machine costs
    ten times the work in waiting."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- 1. every cell, depth, direction and bias; embedding and packing -----------------------------

ARCHITECTURES = list(itertools.product(CELLS, (1, 2, 3), (False, True), (True, False)))
INPUT_KINDS = list(itertools.product((False, True), (False, True)))  # (embedding, padded)


@pytest.mark.torch
@pytest.mark.parametrize("embedding,padded", INPUT_KINDS,
                         ids=["float-full", "float-packed", "emb-full", "emb-packed"])
@pytest.mark.parametrize("cell,layers,bidirectional,bias", ARCHITECTURES,
                         ids=[f"{c}-L{n}-{'bi' if bi else 'uni'}-{'bias' if b else 'nobias'}"
                              for c, n, bi, b in ARCHITECTURES])
def test_loss_and_every_parameter_gradient_match_torch(cell, layers, bidirectional, bias, embedding, padded):
    model = torch_network(cell, layers, bidirectional, bias, embedding, seed=layers)
    lengths = LENGTHS if padded else None
    x, y = make_batch(embedding, lengths, "ce", "last", seed=layers + 10 * bidirectional)
    result = run_analyze(model, x, y, lengths)
    value, grads = torch_reference(model, x, y, lengths, "last", "ce")
    assert result.loss == pytest.approx(value, rel=RTOL)
    assert_same_grads(exported(result), grads)


# --- 2. readouts, with padding ---------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "uni"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("readout", READOUTS)
def test_each_readout_over_packed_sequences_matches_torch(readout, cell, bidirectional):
    loss = ("ce", "mse", "bce")[(READOUTS.index(readout) + CELLS.index(cell) + bidirectional) % 3]
    embedding = CELLS.index(cell) % 2 == 1
    model = torch_network(cell, 2, bidirectional, True, embedding, OUTPUTS[loss], seed=7)
    x, y = make_batch(embedding, LENGTHS, loss, readout, seed=3)
    ours, ours_grads, _ = gradscope_run(model, x, y, LENGTHS, readout, loss)
    value, grads = torch_reference(model, x, y, LENGTHS, readout, loss)
    assert ours == pytest.approx(value, rel=RTOL)
    assert_same_grads(ours_grads, grads)


@pytest.mark.torch
def test_analyze_takes_a_state_dict_read_out_at_every_step():
    model = torch_network("gru", 1, False, True, False, seed=7)
    x, y = make_batch(False, LENGTHS, "ce", "every", seed=3)
    result = run_analyze(model, x, y, LENGTHS, "every", "ce")
    value, grads = torch_reference(model, x, y, LENGTHS, "every", "ce")
    assert result.loss == pytest.approx(value, rel=RTOL)
    assert_same_grads(exported(result), grads)


# --- 3. per-step dL/dh_t and dL/dc_t of every layer and direction ------------------------------------

STATE_CASES = [pytest.param(cell, readout, 2, True, True, True, id=f"{cell}-{readout}-L2-bi")
               for cell in CELLS for readout in READOUTS]
STATE_CASES += [pytest.param(cell, "last", 3, False, False, False, id=f"{cell}-last-L3-uni-nobias-full")
                for cell in ("gru", "lstm")]


@pytest.mark.torch
@pytest.mark.parametrize("cell,readout,layers,bidirectional,bias,padded", STATE_CASES)
def test_per_step_state_gradients_match_unrolled_torch(cell, readout, layers, bidirectional, bias, padded):
    lengths = LENGTHS if padded else None
    embedding = readout in ("mean", "every")
    model = torch_network(cell, layers, bidirectional, bias, embedding, seed=5)
    rnn, dirs = model["rnn"], 1 + bidirectional
    x, y = make_batch(embedding, lengths, "ce", readout, seed=8)
    value, grads = torch_reference(model, x, y, lengths, readout, "ce")

    model.zero_grad()
    out, h_n, _, states = unrolled(cell, rnn, torch_inputs(model, x), lengths)
    unrolled_loss = torch_loss(model["fc"](torch_features(out, h_n, lengths, readout, dirs)), y, "ce",
                               lengths, readout)
    unrolled_loss.backward()
    # the reference is itself checked: the unrolled network is the fused one
    assert unrolled_loss.item() == pytest.approx(value, rel=1e-12)
    for key, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[key], rtol=RTOL, atol=ATOL, err_msg=key)

    _, _, ours = gradscope_run(model, x, y, lengths, readout, "ce")
    real = real_steps(lengths).T[:, :, None]  # (T, B, 1)

    def stacked(tensors):  # a state nothing reads (the last c_t without c_n) has no grad
        return np.stack([np.zeros((B, H)) if s.grad is None else s.grad.numpy() for s in tensors])

    for k in range(layers):
        for d in range(dirs):
            hs, cs = states[k][d]
            where = f"layer {k} direction {d}"
            # gradscope reports dL/dh_t at real steps and zero at pad steps
            np.testing.assert_allclose(ours.layers[k][d].dL_dh, stacked(hs) * real, rtol=RTOL, atol=ATOL,
                                       err_msg=f"dL/dh, {where}")
            if cell == "lstm":
                np.testing.assert_allclose(ours.layers[k][d].dL_dc, stacked(cs) * real, rtol=RTOL,
                                           atol=ATOL, err_msg=f"dL/dc, {where}")
            else:
                assert ours.layers[k][d].dL_dc is None


# --- 4. upstream gradients in place of a head ------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "uni"])
@pytest.mark.parametrize("given", ["output", "output+states", "states"])
@pytest.mark.parametrize("cell", CELLS)
def test_upstream_gradients_match_torch_backward(cell, given, bidirectional):
    torch = _torch()
    embedding = given == "output+states" and bidirectional
    model = torch_network(cell, 2, bidirectional, True, embedding, outputs=None, seed=11)
    dirs, lstm = 1 + bidirectional, cell == "lstm"
    x, _ = make_batch(embedding, LENGTHS, "ce", "last", seed=12)
    rng = np.random.default_rng(13)
    g_out = rng.standard_normal((B, T, H * dirs))  # pad positions hold values too: they must be ignored
    g_h = rng.standard_normal((2 * dirs, B, H))
    g_c = rng.standard_normal((2 * dirs, B, H))

    inp = torch_inputs(model, x)
    out, h_n, c_n = fused(model["rnn"], inp, LENGTHS)
    pairs = [(out, g_out)] if "output" in given else []
    if "states" in given:
        pairs += [(h_n, g_h)] + ([(c_n, g_c)] if lstm else [])
    torch.autograd.backward([t for t, _ in pairs], [torch.as_tensor(g) for _, g in pairs])
    theirs = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}

    if given == "output":
        upstream = g_out  # a bare array is dL/d(output)
    else:
        upstream = {"h_n": g_h} | ({"c_n": g_c} if lstm else {})
        if "output" in given:
            upstream["output"] = g_out
    result = run_analyze(model, x, lengths=LENGTHS, output_grads=upstream)
    assert result.loss is None
    assert_same_grads(exported(result), theirs)
    if not embedding:  # the gradient reaching the inputs, zero at pad steps
        np.testing.assert_allclose(result.gradients.dL_dx.transpose(1, 0, 2), inp.grad.numpy(), rtol=RTOL,
                                   atol=ATOL)


# --- 5. pre-padding and post-padding are the same computation ---------------------------------------


def pre_and_post_padded(readout: str, loss: str, seed: int):
    """The same token sequences padded after the text and before it, and their targets (at every
    step, they move with their steps)."""
    post, y_post = make_batch(True, LENGTHS, loss, readout, seed)
    post[~real_steps(LENGTHS)] = PAD
    pre, y_pre = post.copy(), y_post.copy()
    for b, n in enumerate(LENGTHS):
        pre[b] = np.roll(post[b], T - n)
        if readout == "every":
            y_pre[b] = np.roll(y_post[b], T - n, axis=0)
    return post, y_post, pre, y_pre


def flows(result) -> list[dict]:
    return [asdict(result.flow)] + [asdict(layer.flow) for layer in result.layers]


@pytest.mark.torch
@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("cell", CELLS)
def test_pre_and_post_padding_give_the_same_gradients_and_flow(cell, readout):
    model = torch_network(cell, 2, True, True, True, seed=17)
    post, y_post, pre, y_pre = pre_and_post_padded(readout, "ce", seed=18)
    a, b = (analyze(RunConfig(weights=model.state_dict(), inputs=x, targets=y, padding_idx=PAD,
                              readout=readout, loss="ce", activation=activation_of(model)))
            for x, y in ((post, y_post), (pre, y_pre)))
    assert a.network.padded and b.network.padded
    assert b.loss == pytest.approx(a.loss, rel=1e-12)
    grads_a, grads_b = exported(a), exported(b)
    assert sorted(grads_a) == sorted(grads_b)
    for key in grads_a:
        np.testing.assert_allclose(grads_b[key], grads_a[key], rtol=RTOL, atol=ATOL, err_msg=key)
    np.testing.assert_allclose(b.ratios, a.ratios, rtol=RTOL, atol=ATOL)
    for layer_a, layer_b in zip(a.layers, b.layers, strict=True):
        np.testing.assert_allclose(layer_b.ratios, layer_a.ratios, rtol=RTOL, atol=ATOL,
                                   err_msg=f"layer {layer_a.layer} {layer_a.direction}")
    for flow_a, flow_b in zip(flows(a), flows(b), strict=True):
        assert flow_b["regime"] == flow_a["regime"]
        for field, value in flow_a.items():
            if field != "regime":
                assert flow_b[field] == pytest.approx(value, rel=RTOL, abs=ATOL), field
    # and the post-padded batch is the packed one torch runs
    value, grads = torch_reference(model, post, y_post, LENGTHS, readout, "ce")
    assert a.loss == pytest.approx(value, rel=RTOL)
    assert_same_grads(grads_a, grads)


# --- 6. finite differences, no torch ---------------------------------------------------------------


def _gru_state_dict(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A 2-layer bidirectional GRU with an embedding and a head, in PyTorch's keys."""
    arrays = {"embedding.weight": rng.standard_normal((VOCAB, D))}
    arrays["embedding.weight"][PAD] = 0.0
    for k in range(2):
        width = D if k == 0 else 2 * H
        for suffix in (f"_l{k}", f"_l{k}_reverse"):
            arrays[f"rnn.weight_ih{suffix}"] = 0.6 * rng.standard_normal((3 * H, width))
            arrays[f"rnn.weight_hh{suffix}"] = 0.6 * rng.standard_normal((3 * H, H))
            arrays[f"rnn.bias_ih{suffix}"] = 0.5 * rng.standard_normal(3 * H)
            arrays[f"rnn.bias_hh{suffix}"] = 0.5 * rng.standard_normal(3 * H)
    arrays["fc.weight"] = rng.standard_normal((3, 2 * H))
    arrays["fc.bias"] = rng.standard_normal(3)
    return arrays


def test_gradients_of_a_padded_bidirectional_gru_match_finite_differences():
    rng = np.random.default_rng(21)
    net, _ = load_network(_gru_state_dict(rng), "test", Choices(), readout="mean")
    net.loss, net.padding_idx = get_loss("ce"), PAD
    ours = {v: k for k, v in net.cell.torch_names.items()}  # weight_hh_l0 -> W_hh
    x = rng.integers(1, VOCAB, (B, T))
    mask = real_steps(LENGTHS)
    x[~mask] = PAD
    y = rng.integers(0, 3, B).astype(np.float64)
    _, grads = bptt(net, x, y, mask)

    def loss() -> float:
        return net.loss.value_and_grad(forward(net, x, mask).logits, y)[0]

    def central_difference(array: np.ndarray, index: tuple, eps: float = 1e-6) -> float:
        saved = array[index]
        array[index] = saved + eps
        up = loss()
        array[index] = saved - eps
        down = loss()
        array[index] = saved
        return (up - down) / (2 * eps)

    w_ih, w_hh, b_ih, b_hh = (ours[f"{name}_l0"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    entries = [  # (where, the array, its gradient, index)
        ("embedding row 4", net.embedding, grads.embedding, (4, 1)),
        ("layer 0 reverse W_hh", net.layers[0][1][w_hh], grads.layers[0][1].params[w_hh], (2 * H + 1, 3)),
        ("layer 0 reverse W_ih", net.layers[0][1][w_ih], grads.layers[0][1].params[w_ih], (H, 0)),
        ("layer 1 forward b_ih", net.layers[1][0][b_ih], grads.layers[1][0].params[b_ih], (H + 2,)),
        ("layer 1 reverse b_hn", net.layers[1][1][b_hh], grads.layers[1][1].params[b_hh], (2 * H + 3,)),
        ("head Wy", net.head["Wy"], grads.head["Wy"], (1, 5)),
    ]
    for where, array, grad, index in entries:
        assert abs(grad[index]) > 1e-4, where  # a gradient large enough for the check to mean something
        assert grad[index] == pytest.approx(central_difference(array, index), rel=1e-6), where
    # the pad row reaches nothing (pad tokens sit at pad steps only) and is held at zero
    assert central_difference(net.embedding, (PAD, 2)) == 0.0
    assert np.all(grads.embedding[PAD] == 0.0)


@pytest.mark.torch
@pytest.mark.parametrize("readout", ["last", "every"])
def test_soft_bce_labels_are_torchs_loss_and_gradients(readout):
    """bce targets are probabilities: soft labels (0.3, 0.9) give nn.BCEWithLogitsLoss's loss and
    gradients, as torch and Keras take them (they were refused as not 0 or 1)."""
    model = torch_network("gru", 2, True, True, False, OUTPUTS["bce"], seed=5)
    x, y = make_batch(False, LENGTHS, "bce", readout, seed=6)
    y = np.random.default_rng(7).uniform(0.0, 1.0, y.shape)
    ours, ours_grads, _ = gradscope_run(model, x, y, LENGTHS, readout, "bce")
    value, grads = torch_reference(model, x, y, LENGTHS, readout, "bce")
    assert ours == pytest.approx(value, rel=RTOL)
    assert_same_grads(ours_grads, grads)
