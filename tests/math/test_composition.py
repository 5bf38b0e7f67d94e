"""Composite mitigations, the gate-bias inits (forget-bias, chrono) and runs over several seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradscope.bptt import bptt
from gradscope.config import RunConfig
from gradscope.errors import InputError
from gradscope.experiment import build
from gradscope.mitigations import Strengths, default_mitigations, make_mitigation
from gradscope.commands.compare import compare
from gradscope.commands.spectrum import jacobian_spectrum
from gradscope.commands.train import TrainOptions, train
from gradscope.seeds import Spread, seed_list

TINY = dict(task="adding", seq_len=8, hidden_size=5, batch_size=4)


# --- composition -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, cell, activation, init, bias", [
    ("identity-relu+clip-norm", "rnn", "relu", "identity", "zero"),
    ("lstm+forget-bias", "lstm", "tanh", "normal", "forget-bias"),
    ("orthogonal+clip-norm+l2", None, None, "orthogonal", "zero"),
    ("gru+chrono", "gru", "tanh", "normal", "chrono"),
])
def test_composites_configure_every_part(name, cell, activation, init, bias):
    config = make_mitigation(name).configure(RunConfig(**TINY))
    assert (config.cell, config.activation, config.init, config.bias_init) == (cell, activation, init, bias)


def test_a_composite_reports_its_name_and_each_parts_settings():
    m = make_mitigation("identity-relu+clip-norm", Strengths(clip_threshold=2.5))
    assert m.name == "identity-relu+clip-norm" and m.settings == {"clip_threshold": 2.5}
    parts = m.part_settings()
    assert [p["name"] for p in parts] == ["identity-relu", "clip-norm"]
    assert parts[0]["settings"]["activation"] == "relu" and parts[1]["settings"] == {"clip_threshold": 2.5}


@pytest.mark.parametrize("name, message", [
    ("lstm+gru", "lstm and gru conflict: both set the cell"),
    ("relu+lstm", "relu and lstm conflict: both set the cell"),
    ("orthogonal+identity-relu", "orthogonal and identity-relu conflict: both set the init of Wa"),
    ("forget-bias+chrono+lstm", "forget-bias and chrono conflict: both set the gate biases"),
    ("clip-norm+clip-value", "clip-norm and clip-value conflict: both set the clipping"),
    ("l2+l2", "names a part twice"),
    ("forget-bias", "forget-bias applies to the lstm cell, not the rnn"),
    ("gru+forget-bias", "forget-bias applies to the lstm cell, not the gru"),
    ("identity-relu+chrono", "chrono applies to the lstm or gru cell, not the rnn"),
    ("lstm+omega", "omega needs the vanilla rnn"),
    ("lstm+magic", "unknown mitigation 'magic'"),
])
def test_conflicts_are_input_errors_naming_them(name, message):
    with pytest.raises(InputError, match=message):
        make_mitigation(name).configure(RunConfig(**TINY))


def test_penalties_are_summed_and_one_clipping_acts():
    config = RunConfig(**TINY)
    net = build(config).network
    batch = build(config).batch
    traj, grads = bptt(net, batch.x, batch.y)
    strengths = Strengths(l2=0.3, omega=0.2, clip_threshold=1e-3)
    both = make_mitigation("l2+omega+clip-norm", strengths)
    value, extra = both.penalty(net, traj, grads)
    l2_value, l2_grad = make_mitigation("l2", strengths).penalty(net, traj, grads)
    om_value, om_grad = make_mitigation("omega", strengths).penalty(net, traj, grads)
    assert value == pytest.approx(l2_value + om_value, rel=1e-14)
    assert set(extra) == {"l0.Wa"}
    np.testing.assert_allclose(extra["l0.Wa"], l2_grad["l0.Wa"] + om_grad["l0.Wa"], rtol=1e-14)
    flat = grads.parameters(net)
    clipped, fired = both.clip(flat)
    alone, _ = make_mitigation("clip-norm", strengths).clip(flat)
    assert fired and all(np.array_equal(clipped[k], alone[k]) for k in alone)


def test_default_comparison_has_the_gate_bias_inits_only_for_gated_cells():
    assert "forget-bias" not in default_mitigations(None) and "chrono" not in default_mitigations("rnn")
    assert {"forget-bias", "chrono"} <= set(default_mitigations("lstm"))
    assert "chrono" in default_mitigations("gru") and "forget-bias" not in default_mitigations("gru")


# --- gate biases -------------------------------------------------------------------------------------


def _biases(**settings):
    params = build(RunConfig(**{**TINY, "hidden_size": 50, **settings})).network.layers[0][0]
    return params["b_ih"], params["b_hh"], 50


def test_forget_bias_sets_b_f_to_one_and_nothing_else():
    b_ih, b_hh, h = _biases(cell="lstm", bias_init="forget-bias")
    assert np.all(b_ih[h : 2 * h] == 1.0) and np.all(b_hh == 0.0)
    assert np.all(np.delete(b_ih, np.s_[h : 2 * h]) == 0.0)


def test_chrono_sets_b_f_in_its_range_and_b_i_opposite_for_the_lstm():
    b_ih, b_hh, h = _biases(cell="lstm", bias_init="chrono", chrono_max=30)
    b_f = b_ih[h : 2 * h] + b_hh[h : 2 * h]  # what acts is the sum; b_hh's block is 0
    assert np.all(b_hh == 0.0)
    assert np.all(b_f >= 0.0) and np.all(b_f <= math.log(29)) and np.ptp(b_f) > 1.0
    np.testing.assert_array_equal(b_ih[:h], -b_f)
    assert np.all(b_ih[2 * h :] == 0.0)


def test_chrono_sets_the_update_gate_of_the_gru_and_defaults_t_max_to_seq_len():
    setup = build(RunConfig(**{**TINY, "hidden_size": 50, "seq_len": 12}, cell="gru", bias_init="chrono"))
    assert setup.config.chrono_max == 12
    b_ih, h = setup.network.layers[0][0]["b_ih"], 50
    assert np.all(b_ih[:h] == 0.0) and np.all(b_ih[2 * h :] == 0.0)
    assert np.all((b_ih[h : 2 * h] >= 0) & (b_ih[h : 2 * h] <= math.log(11)))


@pytest.mark.parametrize("settings, message", [
    (dict(bias_init="forget-bias"), "--bias-init forget-bias applies to the lstm cell, not the rnn"),
    (dict(cell="lstm", chrono_max=10), "--chrono-max is a setting of --bias-init chrono"),
    (dict(cell="lstm", bias_init="chrono", chrono_max=1), "--chrono-max must be a whole number of at least 2"),
    (dict(bias_init="ones"), "--bias-init must be one of zero, forget-bias, chrono"),
])
def test_bad_bias_settings_are_input_errors(settings, message):
    with pytest.raises(InputError, match=message):
        build(RunConfig(**{**TINY, **settings}))


def test_the_cell_path_exponent_at_init_follows_sigmoid_of_the_forget_bias():
    """ln f_t = ln sigmoid(b_f + W_f [x, h]): with the recurrent and input terms small (gain 0.01,
    inputs in [0, 1] through Glorot weights), the cell path's exponent is ln sigmoid(b_f)."""
    base = dict(cell="lstm", task="adding", seq_len=60, hidden_size=8, batch_size=4, init_gain=0.01)
    exponent = {b: jacobian_spectrum(RunConfig(**base, bias_init=b)).cell_path.exponents.mean()
                for b in ("zero", "forget-bias")}
    assert exponent["zero"] == pytest.approx(math.log(0.5), abs=0.06)
    assert exponent["forget-bias"] == pytest.approx(math.log(1 / (1 + math.exp(-1))), abs=0.06)
    chrono = jacobian_spectrum(RunConfig(**base, bias_init="chrono", chrono_max=60)).cell_path
    assert chrono.leading_exponent > exponent["forget-bias"]  # the longest memory: b_f up to ln 59
    assert chrono.horizon > 10


# --- seeds -------------------------------------------------------------------------------------------


def test_train_over_seeds_reports_the_spread_of_each_seeds_run():
    options = TrainOptions(steps=3, eval_size=8)
    result = train(RunConfig(**TINY), options, seeds=3)
    singles = [train(RunConfig(**{**TINY, "seed": s}), options).final_loss for s in (0, 1, 2)]
    assert result.seeds.seeds == [0, 1, 2] and result.seeds.final_loss.values == singles
    assert result.final_loss == singles[0]
    assert result.seeds.final_loss.mean == pytest.approx(np.mean(singles))
    assert result.seeds.final_loss.std == pytest.approx(np.std(singles))
    assert result.seeds.loss_ratio.max == pytest.approx(max(singles) / result.baseline_loss)


def test_compare_over_seeds_is_the_same_in_parallel_and_picks_by_the_mean():
    options = TrainOptions(steps=3, eval_size=8)
    serial = compare(RunConfig(**TINY), options, ["clip-norm", "lstm+forget-bias"], seeds=2)
    parallel = compare(RunConfig(**TINY), options, ["clip-norm", "lstm+forget-bias"], seeds=2, jobs=2)
    assert serial.seeds == [0, 1]
    for a, b in zip(serial.runs, parallel.runs):
        assert a.seeds.final_loss.values == b.seeds.final_loss.values
    best = min(serial.runs, key=lambda r: r.seeds.final_loss.mean)
    assert serial.best == best.mitigation


def test_a_spread_leaves_diverged_seeds_out_of_its_statistics():
    spread = Spread.of([1.0, math.nan, 3.0])
    assert (spread.mean, spread.min, spread.max, spread.std) == (2.0, 1.0, 3.0, 1.0)
    assert Spread.of([math.nan]).mean is None
    with pytest.raises(InputError, match="--seeds must be a whole number of at least 1"):
        seed_list(0, 0)
