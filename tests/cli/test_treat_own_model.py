"""Every command and every cure on the network a user trained (issue "Treat your own model"):
the tutorial's sentiment model (Embedding(padding_idx) -> 2-layer bidirectional LSTM -> Linear on
cat(h_n[-2], h_n[-1])), saved by torch, through train, compare, spectrum and sweep; what they write
loads back into torch with load_state_dict(strict=True)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from gradscope.cli import main  # noqa: E402

pytestmark = pytest.mark.torch


class Sentiment(nn.Module):
    def __init__(self, cell=nn.LSTM):
        super().__init__()
        self.embedding = nn.Embedding(30, 8, padding_idx=0)
        self.lstm = cell(8, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(12, 1)


@pytest.fixture
def own(tmp_path, monkeypatch):
    """model.pt, tokens.npy (20 post-padded sequences), labels.npy in a scratch folder."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save(Sentiment().state_dict(), "model.pt")
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 30, (20, 12))
    for b, n in enumerate(rng.integers(3, 13, 20)):
        tokens[b, n:] = 0
    np.save("tokens.npy", tokens)
    np.save("labels.npy", rng.integers(0, 2, 20))
    return ["--weights", "model.pt", "--inputs", "tokens.npy", "--targets", "labels.npy", "--padding-idx", "0"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out) if "--json" in argv else out


def test_train_minibatches_and_saves_the_users_keys(own, capsys):
    doc = run(capsys, "train", *own, "--steps", "6", "--batch-size", "4", "--save-weights", "trained.npz", "--json")
    assert doc["config"]["batch_size"] == 4 and doc["evaluated_on"] == "held-out sequences"
    assert doc["parameter_count"] == sum(p.numel() for p in Sentiment().parameters())
    model = Sentiment()
    saved = np.load("trained.npz")
    model.load_state_dict({k: torch.tensor(saved[k]) for k in saved.files}, strict=True)
    before = torch.load("model.pt")
    changed = [k for k in before if not np.array_equal(before[k].numpy(), saved[k])]
    assert "embedding.weight" in changed and "lstm.weight_hh_l1_reverse" in changed and "fc.weight" in changed
    assert np.array_equal(saved["embedding.weight"][0], before["embedding.weight"][0].numpy())  # the pad row


def test_compare_trains_the_users_architecture_and_saves_the_best(own, capsys):
    doc = run(capsys, "compare", *own, "--steps", "4", "--jobs", "1", "--mitigations",
              "clip-norm,orthogonal,gru,chrono", "--save-best", "best.npz", "--json")
    assert doc["start"] == "init" and [r["mitigation"] for r in doc["runs"]] == [
        "none", "clip-norm", "orthogonal", "gru", "chrono"]
    for r in doc["runs"]:
        assert [(c["layer"], c["direction"]) for c in r["layers"]] == [
            (0, "forward"), (0, "reverse"), (1, "forward"), (1, "reverse")]
        top = r["layers"][2]["start"]
        assert top["ratio_first_last"] == r["ratio_first_last"] and top["regime"] == r["regime"]
    runs = {r["mitigation"]: r for r in doc["runs"]}
    assert runs["gru"]["cell"] == "gru" and runs["none"]["cell"] == "lstm"
    # the same start for every run but what the cure sets: none and clip-norm start alike
    assert runs["none"]["layers"] == runs["clip-norm"]["layers"] or runs["clip-norm"]["clip_events"] > 0
    assert runs["none"]["ratio_first_last"] == runs["clip-norm"]["ratio_first_last"]
    best = doc["best"]
    model = Sentiment(nn.GRU if best == "gru" else nn.LSTM)
    saved = np.load("best.npz")
    model.load_state_dict({k: torch.tensor(saved[k]) for k in saved.files}, strict=True)


def test_compare_from_the_trained_weights_starts_where_analyze_is(own, capsys):
    analyzed = run(capsys, "analyze", *own, "--json")
    doc = run(capsys, "compare", *own, "--steps", "2", "--jobs", "1", "--mitigations", "l2",
              "--start", "trained", "--json")
    assert doc["start"] == "trained"
    for run_ in doc["runs"]:
        assert run_["ratio_first_last"] == analyzed["flow"]["ratio_first_last"]
        assert [c["start"] for c in run_["layers"]] == [layer["flow"] for layer in analyzed["layers"]]


def test_spectrum_reports_every_layer_over_real_steps(own, capsys):
    doc = run(capsys, "spectrum", *own, "--json")
    assert [(s["layer"], s["direction"]) for s in doc["layers"]] == [
        (0, "forward"), (0, "reverse"), (1, "forward"), (1, "reverse")]
    assert doc["lyapunov"] == doc["layers"][2]["lyapunov"] and doc["state"] == ["h", "c"]
    # the headline's steps: the longest sequence's, not the padded length
    lengths = (np.load("tokens.npy") != 0).sum(axis=1)
    assert doc["product"]["steps"] == lengths.max() - 1


def test_sweep_scales_the_recurrent_matrices_around_the_model(own, capsys):
    doc = run(capsys, "sweep", *own, "--x", "recurrent_scale=0.5,1,2", "--y", "seq_len=6,12", "--jobs", "1", "--json")
    assert doc["x"]["name"] == "recurrent_scale" and doc["maps"][0]["cell"] == "lstm"
    assert doc["model_at"] == {"x": 1.0, "y": 12}  # scale 1, and the file's T
    values = np.array(doc["maps"][0]["values"], dtype=float)
    assert values.shape == (2, 3) and np.all(np.isfinite(values))
    assert np.all(np.diff(values, axis=1) > 0)  # larger recurrent weights carry more of the gradient back


def test_spectrum_says_when_a_short_run_leaves_the_exponents_unordered(own, capsys):
    """Over the fixture's 3-12 real steps the QR frame has not aligned: some lambda_{i+1} > lambda_i,
    and the table says so; the product's singular values descend whatever the length."""
    doc = run(capsys, "spectrum", *own, "--json")
    exponents = np.array(doc["lyapunov"]["exponents"])
    rises = np.flatnonzero(np.diff(exponents) > 0)
    assert rises.size and np.all(np.diff(doc["product"]["log10_singular_values"]) <= 0)
    first = rises[0] + 1
    assert f"lambda_{first + 1} > lambda_{first}: over" in " ".join(run(capsys, "spectrum", *own).split())


def test_check_draws_the_end_aligned_profile_its_ratio_is_read_from(own, capsys):
    from gradscope.render.common import sparkline

    analyzed = run(capsys, "analyze", *own, "--json")
    out = run(capsys, "check", *own)
    aligned = sparkline(np.log10(np.array(analyzed["flow_norms"], dtype=float)), 60)
    raw = sparkline(np.array(analyzed["log10_grad_norms"], dtype=float), 60)
    assert aligned != raw and f"  {aligned}\n" in out


def test_the_swap_to_the_model_s_own_cell_is_refused_from_either_start(own, capsys):
    for start in ("init", "trained"):
        code = main(["compare", *own, "--steps", "2", "--start", start, "--mitigations", "gru,lstm"])
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and "mitigation lstm changes nothing here" in err


def test_lambda_1_is_the_same_in_analyze_spectrum_and_sweep_on_a_padded_batch(own, capsys):
    """Each sequence's real steps, each after its own transient, in every command (analyze took the
    longest sequences alone, spectrum every sequence)."""
    analyzed = run(capsys, "analyze", *own, "--json")["lyapunov"]
    spectrum = run(capsys, "spectrum", *own, "--json")["lyapunov"]
    assert analyzed["leading_exponent"] == pytest.approx(spectrum["leading_exponent"], rel=1e-12)
    assert analyzed["exponents_std"][0] == pytest.approx(spectrum["exponents_std"][0], rel=1e-9)
    swept = run(capsys, "sweep", *own, "--x", "recurrent_scale=1,2", "--y", "seq_len=6,12", "--metric", "lyapunov",
                "--jobs", "1", "--json")
    assert swept["maps"][0]["values"][1][0] == pytest.approx(spectrum["leading_exponent"], rel=1e-12)


def test_history_draws_a_padded_recording_counted_back_from_each_sequence_s_end(own, capsys):
    """A recording of a padded batch carries each layer's flow profile (steps counted back from each
    sequence's readout end, what the ratio is read from), and the heatmap draws it; a history --json
    is unchanged by it."""
    from gradscope.commands.history import heatmap, history

    run(capsys, "train", *own, "--steps", "4", "--batch-size", "8", "--record", "rec.ndjson", "--record-every", "2",
        "--json")
    records = [json.loads(line) for line in open("rec.ndjson")]
    assert all("log10_flow_norms" in layer for r in records for layer in r["layers"])
    result = history("rec.ndjson")
    for k, direction in ((1, "forward"), (0, "reverse")):
        h = heatmap(result, k, direction, None)
        i = 2 * k + (direction == "reverse")
        expected = [[np.nan if v is None else v for v in r["layers"][i]["log10_flow_norms"]] for r in records]
        np.testing.assert_array_equal(h.values, np.array(expected, dtype=float))
        assert h.counted_back
    out = run(capsys, "history", "rec.ndjson")
    assert "columns: steps back from the readout's end, t = 12" in " ".join(out.split())
    doc = run(capsys, "history", "rec.ndjson", "--json")
    assert "log10_profile" not in json.dumps(doc) and "counted_back" not in json.dumps(doc)


def test_a_full_record_of_a_packed_batch_carries_the_profile_the_heatmap_draws(own, capsys):
    """gradscope.torch's default measure ("full": analyze's document) on packed sequences: each
    layer's log10_flow_norms, which history's heatmap draws, as for a light record."""
    import gradscope.torch as gt
    from gradscope.commands.history import heatmap, history
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    model = Sentiment()
    tokens = torch.tensor(np.load("tokens.npy"))
    lengths = (tokens != 0).sum(dim=1)
    with gt.attach(model.lstm, every=1, to="full.ndjson"):
        for _ in range(2):
            packed = pack_padded_sequence(model.embedding(tokens), lengths, batch_first=True, enforce_sorted=False)
            _, (h, _) = model.lstm(packed)
            model.fc(torch.cat([h[-2], h[-1]], dim=1)).sum().backward()
    records = [json.loads(line) for line in open("full.ndjson")]
    assert len(records) == 2 and all(r["measure"] == "full" for r in records)
    h = heatmap(history("full.ndjson"), 1, "forward", None)
    expected = [[np.nan if v is None else v for v in r["layers"][2]["log10_flow_norms"]] for r in records]
    assert h.counted_back
    np.testing.assert_array_equal(h.values, np.array(expected, dtype=float))


def test_spectrum_says_a_one_step_sequence_is_what_it_cannot_take(own, capsys):
    tokens = np.load("tokens.npy")
    tokens[0, 1:] = 0  # one real step
    np.save("short.npy", tokens)
    code = main(["spectrum", *own[:2], "--inputs", "short.npy", *own[4:]])
    _, err = capsys.readouterr()
    assert code == 2 and "a sequence of the batch has 1 real step" in err and "--seq-len" not in err


def test_saved_weights_say_what_to_load_them_into_when_a_cure_changed_it(own, capsys):
    """A state dict records neither the module class nor the nonlinearity: after a cell swap or
    the relu cure, saving says which module the weights belong to (a warning on stderr), and they
    load into it; a cure that changes neither says nothing."""
    assert main(["train", *own, "--steps", "2", "--mitigation", "gru", "--save-weights", "gru.npz"]) == 0
    err = capsys.readouterr().err
    assert "the weights are nn.GRU's" in err and "in place of nn.LSTM" in err
    saved = np.load("gru.npz")
    Sentiment(nn.GRU).load_state_dict({k: torch.tensor(saved[k]) for k in saved.files}, strict=True)
    assert main(["train", *own, "--steps", "2", "--mitigation", "clip-norm", "--save-weights", "clip.npz"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["compare", *own, "--steps", "2", "--jobs", "1", "--mitigations", "clip-norm,gru",
                 "--save-best", "best.npz", "--json"]) == 0
    out, err = capsys.readouterr()
    best = json.loads(out)["best"]
    assert ("nn.GRU's" in err) == (best == "gru") and ("warning" in err) == (best == "gru")


def test_relu_trained_weights_load_into_a_relu_rnn(tmp_path, monkeypatch, capsys):
    """The relu cure on a user's tanh nn.RNN keeps the weights' shapes: the saved state dict says
    to build nn.RNN(nonlinearity='relu'), and that module computes the trained model's loss."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self, nonlinearity="tanh"):
            super().__init__()
            self.rnn = nn.RNN(3, 5, batch_first=True, nonlinearity=nonlinearity)
            self.fc = nn.Linear(5, 1)

    torch.save(Net().state_dict(), "model.pt")
    rng = np.random.default_rng(1)
    np.save("x.npy", rng.normal(size=(8, 6, 3)))
    np.save("y.npy", rng.normal(size=(8, 1)))
    data = ["--weights", "model.pt", "--inputs", "x.npy", "--targets", "y.npy", "--loss", "mse"]
    assert main(["train", *data, "--steps", "3", "--mitigation", "relu", "--save-weights", "relu.npz"]) == 0
    assert "nonlinearity='relu'" in capsys.readouterr().err
    saved = np.load("relu.npz")
    model = Net("relu").double()
    model.load_state_dict({k: torch.tensor(saved[k]) for k in saved.files}, strict=True)
    doc = json.loads(_analyze(capsys, *data[2:], "--weights", "relu.npz", "--activation", "relu"))
    out, _ = model.rnn(torch.tensor(np.load("x.npy")))
    loss = torch.nn.functional.mse_loss(model.fc(out[:, -1]), torch.tensor(np.load("y.npy")))
    assert doc["loss"] == pytest.approx(loss.item(), rel=1e-12)


def _analyze(capsys, *argv):
    assert main(["analyze", *argv, "--json"]) == 0
    return capsys.readouterr().out


def test_vectors_given_to_a_model_with_an_embedding_say_so_and_train_the_rest(own, capsys):
    """(B, T, D) floats stand for the embedding's output: analyze warns that the embedding is not
    run, and train trains the rest with the embedding's gradient 0 (it was a KeyError)."""
    np.save("vectors.npy", np.random.default_rng(3).normal(size=(20, 12, 8)))
    data = ["--weights", "model.pt", "--inputs", "vectors.npy", "--targets", "labels.npy"]
    doc = run(capsys, "analyze", *data, "--json")
    assert any("the embedding is not run" in w for w in doc["warnings"])
    run(capsys, "train", *data, "--steps", "2", "--save-weights", "trained.npz")
    saved, before = np.load("trained.npz"), torch.load("model.pt")
    assert np.array_equal(saved["embedding.weight"], before["embedding.weight"].numpy())
    assert not np.array_equal(saved["lstm.weight_hh_l0"], before["lstm.weight_hh_l0"].numpy())
