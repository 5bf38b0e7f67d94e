"""The initial state (``--initial-state``, PyTorch's ``hx``) and the gradient reaching it against
PyTorch autograd in float64: every cell, one and two layers, one and two directions, packed or not.

The reference: the fused torch module called as users call it, ``rnn(x, h0)`` or ``rnn(x, (h0, c0))``
with h0, c0 leaves that require grad, a loss on everything it returns (the output sequence, h_n
and c_n); gradscope runs ``analyze`` from the same state dict, inputs, initial state and upstream
gradients (what that loss sends back to the outputs), and its dL_dh_0, dL_dc_0 must be torch's
h0.grad, c0.grad (1e-9 relative, 1e-12 absolute), its per-step norms and parameter gradients too.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gradscope import analyze
from gradscope.bptt.network import InitialState, bptt
from gradscope.commands.analyze import gradient_arrays
from gradscope.config import RunConfig
from gradscope.errors import InputError
from gradscope.model.statedict import export_network_grads
from helpers import random_model

RTOL, ATOL = 1e-9, 1e-12
B, T, D, H = 4, 6, 3, 5
LENGTHS = np.array([3, 6, 1, 5])
CELLS = ("rnn_tanh", "rnn_relu", "gru", "lstm")
CASES = [(cell, layers, bi, packed) for cell, layers, bi, packed in itertools.product(CELLS, (1, 2), (False, True),
                                                                                   (False, True))]


def _case_id(case) -> str:
    cell, layers, bi, packed = case
    return f"{cell}-{layers}l{'-bi' if bi else ''}{'-packed' if packed else ''}"


def torch_reference(cell: str, layers: int, bidirectional: bool, packed: bool, seed: int = 0):
    """(state dict, x, lengths, h0, c0, upstream gradients, h0.grad, c0.grad, parameter grads)."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(seed)
    module = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}.get(cell, torch.nn.RNN)
    extra = {"nonlinearity": cell[4:]} if cell.startswith("rnn") else {}
    rnn = module(D, H, num_layers=layers, bidirectional=bidirectional, batch_first=True, **extra).double()
    with torch.no_grad():
        for p in rnn.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.5)
    gen = torch.Generator().manual_seed(seed + 1)
    dirs = 2 if bidirectional else 1
    x = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    h0 = torch.randn(layers * dirs, B, H, generator=gen, dtype=torch.float64).requires_grad_()
    c0 = torch.randn(layers * dirs, B, H, generator=gen, dtype=torch.float64).requires_grad_()
    r_out = torch.randn(B, T, H * dirs, generator=gen, dtype=torch.float64)
    r_h = torch.randn(layers * dirs, B, H, generator=gen, dtype=torch.float64)
    r_c = torch.randn(layers * dirs, B, H, generator=gen, dtype=torch.float64)
    hx = (h0, c0) if cell == "lstm" else h0
    lengths = LENGTHS if packed else None
    if packed:
        out, state = rnn(pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False), hx)
        out = pad_packed_sequence(out, batch_first=True, total_length=T)[0]
    else:
        out, state = rnn(x, hx)
    h_n, c_n = state if cell == "lstm" else (state, None)
    out.retain_grad(), h_n.retain_grad()
    loss = (out * r_out).sum() + (torch.tanh(h_n) * r_h).sum()
    if c_n is not None:
        c_n.retain_grad()
        loss = loss + (c_n ** 2 * r_c).sum()
    loss.backward()
    upstream = {"output": out.grad.numpy(), "h_n": h_n.grad.numpy()}
    if c_n is not None:
        upstream["c_n"] = c_n.grad.numpy()
    weights = {k: v.detach().numpy() for k, v in rnn.state_dict().items()}
    grads = {k: p.grad.numpy() for k, p in rnn.named_parameters()}
    initial = {"h_0": h0.detach().numpy()}
    if cell == "lstm":
        initial["c_0"] = c0.detach().numpy()
    wanted = {"dL_dh_0": h0.grad.numpy()}
    if cell == "lstm":
        wanted["dL_dc_0"] = c0.grad.numpy()
    return weights, x.numpy(), lengths, initial, upstream, wanted, grads


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_the_gradient_reaching_the_initial_state_is_torchs_h0_grad(case):
    cell, layers, bi, packed = case
    weights, x, lengths, initial, upstream, wanted, grads = torch_reference(cell, layers, bi, packed)
    result = analyze(RunConfig(weights=weights, inputs=x, lengths=lengths, output_grads=upstream,
                               initial_state=initial, cell=cell.split("_")[0],
                               activation=cell[4:] if cell.startswith("rnn") else None),
                     full_gradients=True)
    arrays = gradient_arrays(result)
    for name, want in wanted.items():
        np.testing.assert_allclose(arrays[name], want, rtol=RTOL, atol=ATOL, err_msg=name)
    for name, want in grads.items():  # the whole pass runs from the initial state
        np.testing.assert_allclose(arrays[name], want, rtol=RTOL, atol=ATOL, err_msg=name)
    # the report's figures: the norm of each layer and direction's dL/dh_0 (and dL/dc_0)
    for i, report in enumerate(result.layers):
        assert report.initial_state.log10_grad_norm == pytest.approx(
            np.log10(np.linalg.norm(wanted["dL_dh_0"][i])), rel=1e-12)
        if cell == "lstm":
            assert report.initial_state.log10_cell_grad_norm == pytest.approx(
                np.log10(np.linalg.norm(wanted["dL_dc_0"][i])), rel=1e-12)
        else:
            assert report.initial_state.log10_cell_grad_norm is None


def test_a_zero_initial_state_is_the_default_state_exactly():
    """h_0 = 0 given is the run without it, bit for bit; and dL/dh_0 is there either way."""
    net = random_model("lstm", "tanh", "mse", 3, 5, 2)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 7, 3)), rng.standard_normal((4, 2))
    _, plain = bptt(net, x, y)
    _, given = bptt(net, x, y, initial=InitialState(np.zeros((1, 4, 5)), np.zeros((1, 4, 5))))
    for name, g in plain.parameters(net).items():
        np.testing.assert_array_equal(given.parameters(net)[name], g)
    for name, g in plain.initial_state().items():
        np.testing.assert_array_equal(given.initial_state()[name], g)
    assert set(plain.initial_state()) == {"dL_dh_0", "dL_dc_0"}


def test_the_initial_gradient_is_exact_far_below_float64():
    """A vanishing run: dL/dh_0 underflows float64 to zero, its logarithm does not."""
    net = random_model("rnn", "linear", "mse", 3, 5, 2, init="orthogonal")
    recurrent = net.cell.recurrent
    net.layers[0][0][recurrent] = net.layers[0][0][recurrent] * 0.05  # every step: 0.05 times the norm
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((2, 300, 3)), rng.standard_normal((2, 2))
    _, grads = bptt(net, x, y, initial=InitialState(rng.standard_normal((1, 2, 5))))
    g = grads.layers[0][0]
    assert not g.initial[0].any()  # at true scale: below the smallest float64
    # ln||dL/dh_0|| = ln||dL/dh_T|| + 300 ln 0.05, to rounding
    expected = g.log_norms[-1] + 300 * np.log(0.05)
    assert g.log_initial[0] == pytest.approx(expected, rel=1e-10)
    assert g.log_initial[0] / np.log(10) < -380


def test_initial_state_shapes_are_checked():
    x = np.zeros((2, 5, 8))
    with pytest.raises(InputError, match=r"initial-state: h_0 must have shape \(1, 2, 32\)"):
        analyze(inputs=x, initial_state={"h_0": np.zeros((1, 3, 32))})
    with pytest.raises(InputError, match="c_0.*a rnn has no cell state"):
        analyze(inputs=x, initial_state={"c_0": np.zeros((1, 2, 32))})
    with pytest.raises(InputError, match="expected arrays 'h_0'"):
        analyze(inputs=x, initial_state={"h0": np.zeros((1, 2, 32))})
