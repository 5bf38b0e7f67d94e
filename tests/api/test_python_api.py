"""The Python API takes arrays and state dicts wherever the CLI takes files, and says what is wrong
in Python's terms (keyword arguments, not flags)."""

from __future__ import annotations

import numpy as np
import pytest

import gradscope
from gradscope.commands.analyze import analyze as analyze_for_the_cli


def state_dict(hidden: int = 5, inputs: int = 3, layers: int = 2, vocab: int | None = None) -> dict:
    """An nn.GRU(num_layers=layers, bidirectional=True) + Linear state dict, numpy arrays."""
    rng = np.random.default_rng(0)
    sd = {}
    if vocab is not None:
        sd["embedding.weight"] = rng.standard_normal((vocab, inputs))
    for k in range(layers):
        width = inputs if k == 0 else 2 * hidden
        for suffix in ("", "_reverse"):
            sd[f"gru.weight_ih_l{k}{suffix}"] = rng.standard_normal((3 * hidden, width)) * 0.3
            sd[f"gru.weight_hh_l{k}{suffix}"] = rng.standard_normal((3 * hidden, hidden)) * 0.3
            sd[f"gru.bias_ih_l{k}{suffix}"] = rng.standard_normal(3 * hidden) * 0.1
            sd[f"gru.bias_hh_l{k}{suffix}"] = rng.standard_normal(3 * hidden) * 0.1
    sd["fc.weight"] = rng.standard_normal((2, 2 * hidden))
    sd["fc.bias"] = np.zeros(2)
    return sd


def test_arrays_and_a_state_dict_in_place_of_files():
    x = np.random.default_rng(1).standard_normal((4, 7, 3))
    r = gradscope.analyze(weights=state_dict(), inputs=x, targets=np.array([0, 1, 1, 0]),
                          lengths=np.array([7, 3, 5, 1]))
    assert r.network.num_layers == 2 and r.network.directions == 2
    assert [(l.layer, l.direction) for l in r.layers] == [(0, "forward"), (0, "reverse"), (1, "forward"),
                                                          (1, "reverse")]
    assert r.config["weights"] == "<state dict of 18 entries>" and r.config["inputs"] == "<array (4, 7, 3)>"
    assert r.network.padded and r.network.lengths == [1, 7]
    # the JSON document carries descriptions, never the user's arrays
    doc = gradscope.payload(r)
    assert doc["config"]["lengths"] == "<array (4,)>"


def test_token_ids_through_the_embedding_and_its_gradient():
    tokens = np.array([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]])
    r = gradscope.analyze(weights=state_dict(vocab=9), inputs=tokens, targets=np.array([1, 0]), padding_idx=0)
    assert r.network.embedding == [9, 3]
    emb = r.gradients.embedding
    assert np.all(emb[0] == 0)  # the pad row never gets a gradient
    assert np.all(emb[[1, 2, 8]] == 0)  # rows no token used
    assert np.all(np.abs(emb[[3, 4, 5, 6, 7]]).sum(axis=1) > 0)


@pytest.mark.parametrize("settings, message", [
    (dict(seq_len=0), "seq_len must be a whole number"),
    (dict(lengths=np.array([3])), "lengths needs inputs"),
    (dict(readout="attention"), "readout must be one of last, mean, max, every"),
    (dict(weights=state_dict(), rnn_key="encoder"), "rnn_key 'encoder' names no recurrent module"),
    (dict(weights={"x": np.zeros(3)}), "the state dict: no recurrent module found"),
    (dict(weights=state_dict(), init="orthogonal"), "init orthogonal draws the recurrent weights at "
                                                    "initialisation, which weights fixes"),
    (dict(weights=state_dict(), init_gain=2.0), "init_gain 2.0 scales the recurrent weights' initialisation"),
    # a setting of another type from Python: its name and what it got, never numpy's TypeError
    (dict(seed="a"), "seed must be a number (got 'a')"),
    (dict(seed=2.5), "seed must be a whole number of at least 0 (got 2.5)"),
    (dict(seq_len="10"), "seq_len must be a number (got '10')"),
    (dict(init_gain=True), "init_gain must be a number (got True)"),
    (dict(inputs=np.zeros((2, 5, 8)), targets=np.array([0.5, 2.0])), "bce targets must be probabilities"),
])
def test_errors_name_keyword_arguments_not_flags(settings, message):
    with pytest.raises(gradscope.InputError) as caught:
        gradscope.analyze(**settings)
    assert message in str(caught.value)
    assert "--" not in str(caught.value)


def test_the_cli_keeps_its_flags():
    with pytest.raises(gradscope.InputError, match="--seq-len must be"):
        analyze_for_the_cli(gradscope.RunConfig(seq_len=0))


def test_a_token_that_looks_like_padding_is_pointed_out():
    sd = state_dict(vocab=9)
    sd["embedding.weight"][0] = 0.0  # as nn.Embedding(padding_idx=0) keeps it
    tokens = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 2, 0]])
    r = gradscope.analyze(weights=sd, inputs=tokens, targets=np.array([1, 0]))
    assert r.warnings == ["token 0 has an all-zero embedding row and fills the ends of sequences; it is "
                          "analysed as a real token: if it is padding, pass --padding-idx 0"]
    assert gradscope.payload(r)["warnings"] == r.warnings
    assert gradscope.analyze(weights=sd, inputs=tokens, targets=np.array([1, 0]), padding_idx=0).warnings == []


def test_compare_from_a_script_read_from_stdin_runs_its_processes():
    """``python - <<EOF`` has a __main__ whose __file__ ('<stdin>') a spawned worker cannot run
    again: the workers died at start (BrokenProcessPool). The mitigations may be the CLI's string."""
    import subprocess
    import sys

    script = ("import gradscope\n"
              "r = gradscope.compare(mitigations='clip-norm,orthogonal', steps=3, seq_len=8, hidden_size=4, jobs=2)\n"
              "print(','.join(run.mitigation for run in r.runs))\n")
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "none,clip-norm,orthogonal"


@pytest.mark.parametrize("call, message", [
    (lambda: gradscope.train(steps=2, clip_threshold=0.5), "clip_threshold applies only to the clip-norm"),
    (lambda: gradscope.train(steps=2, l2=0.5, mitigation="clip-norm"), "l2 applies only to the l2 mitigation"),
    (lambda: gradscope.compare(steps=2, omega=0.5, mitigations="l2"), "^omega applies only to the omega"),
    (lambda: gradscope.compare(steps=2, start="trained", mitigations="l2"),
     "start trained fine-tunes the weights of weights; without them"),
])
def test_a_setting_that_would_change_nothing_is_refused_as_the_cli_refuses_its_flag(call, message):
    with pytest.raises(gradscope.InputError, match=message):
        call()


def test_a_mitigation_of_the_callers_own_trains_and_its_unread_strengths_are_refused():
    from gradscope.mitigations import Mitigation

    class Mine(Mitigation):
        name = "mine"
        help = "changes nothing, but is the caller's"

    result = gradscope.train(mitigation=Mine(), seq_len=10, hidden_size=6, batch_size=4, steps=3)
    assert result.mitigation == "mine" and result.steps == 3
    with pytest.raises(gradscope.InputError, match="^l2 applies only to the l2 mitigation"):
        gradscope.train(mitigation=Mine(), seq_len=10, hidden_size=6, batch_size=4, steps=3, l2=0.1)


def test_an_initial_state_in_torchs_hx_form_is_the_named_one():
    """initial_state=(h_0,) or h_0 alone, as torch's hx for nn.GRU, is {"h_0": h_0} (it was read as a path)."""
    x = np.random.default_rng(1).standard_normal((4, 7, 3))
    h0 = np.random.default_rng(2).standard_normal((4, 4, 5))  # (layers x directions, B, H)
    common = dict(weights=state_dict(), inputs=x, targets=np.array([0, 1, 1, 0]))
    named = gradscope.analyze(**common, initial_state={"h_0": h0})
    for form in ((h0,), h0, h0.tolist()):
        r = gradscope.analyze(**common, initial_state=form)
        assert r.loss == named.loss and r.layers[0].initial_state == named.layers[0].initial_state
    with pytest.raises(gradscope.InputError, match=r"give \(h_0,\) or \(h_0, c_0\)"):
        gradscope.analyze(**common, initial_state=(h0, h0, h0))


def test_bad_training_arguments_and_recorder_schedules_name_themselves():
    with pytest.raises(gradscope.InputError, match=r"lr must be a number \(got 'a'\)"):
        gradscope.train(steps=2, lr="a", seq_len=5, batch_size=2)
    with pytest.raises(gradscope.InputError, match=r"momentum must be a number \(got None\)"):
        gradscope.train(steps=2, momentum=None, seq_len=5, batch_size=2)
    from gradscope.recording import checked_schedule

    for every in ("abc", None, float("nan"), float("inf"), 1.5, 0):
        with pytest.raises(ValueError, match="every must be a whole number of at least 1"):
            checked_schedule(every, "flow")
    assert checked_schedule(2.0, "flow") == 2


def test_spectrum_and_sweep_are_there_with_errors_in_python_terms():
    r = gradscope.jacobian_spectrum(seq_len=20, hidden_size=4)
    assert r.lyapunov.steps > 0 and "SpectrumResult" in repr(r)
    s = gradscope.sweep(x="seq_len=5,10", y="seed=0,1")
    assert np.asarray(s.maps[0].values).shape == (2, 2)
    for call, message in ((lambda: gradscope.jacobian_spectrum(seq_len=0), "seq_len must be a whole number"),
                          (lambda: gradscope.sweep(metric="foo"), "metric must be one of")):
        with pytest.raises(gradscope.InputError) as caught:
            call()
        assert message in str(caught.value) and "--" not in str(caught.value)


def test_numpy_scalars_and_non_finite_numbers_as_settings():
    """A numpy scalar is a plain number in the JSON (it was '<array ()>', against the schema); nan
    and inf are refused by name, never int()'s ValueError or OverflowError."""
    import jsonschema

    r = gradscope.analyze(init_gain=np.float32(1.5), seed=np.int64(2), batch_size=4, seq_len=10)
    assert r.config["init_gain"] == 1.5 and r.config["seed"] == 2
    jsonschema.validate(gradscope.payload(r), gradscope.load_schema("analyze"))
    for call, message in ((lambda: gradscope.analyze(seed=np.float32("nan")), "seed must be a whole number"),
                          (lambda: gradscope.train(steps=float("inf")), "steps must be a finite number"),
                          (lambda: gradscope.train(lr=float("nan")), "lr must be a finite number")):
        with pytest.raises(gradscope.InputError, match=message):
            call()


def test_a_cell_swap_to_a_relu_rnn_says_so_in_the_load_note():
    from gradscope.commands.train import load_note

    assert "nn.RNN(..., nonlinearity='relu')" in load_note((("lstm", "tanh"),), (("rnn", "relu"),), False)
    assert "nn.GRU modules" in load_note((("lstm", "tanh"),), (("gru", "tanh"),), False)
    assert load_note((("rnn", "tanh"),), (("rnn", "tanh"),), False) is None


def test_an_unknown_keyword_is_the_functions_not_runconfigs():
    for function in (gradscope.analyze, gradscope.train, gradscope.check, gradscope.jacobian_spectrum):
        with pytest.raises(TypeError, match=rf"^{function.__name__}\(\) got an unexpected keyword argument 'seqlen'$"):
            function(seqlen=5)
