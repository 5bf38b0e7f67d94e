"""The text task wired into the commands: built-in corpus, files, padding, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradscope import analyze
from gradscope.cli import main
from gradscope.errors import InputError
from gradscope.tasks import make_task
from gradscope.config import RunConfig


def test_builtin_corpus_runs_offline_with_a_sigmoid_readout():
    r = analyze(task="text", seq_len=40, batch_size=8)
    assert r.config["output_size"] == 1 and r.config["loss"] == "bce"
    assert r.config["input_size"] == 16  # --embedding-dim default
    assert "500 texts" in r.data
    assert r.baseline_loss == pytest.approx(np.log(2), rel=1e-12)  # balanced corpus
    assert r.grad_norms.shape == (40,)


def test_the_verdict_does_not_depend_on_the_padding_side():
    """Short reviews padded before or after the text run over their real steps only (as
    pack_padded_sequence runs them): the loss, the gradients and the flow are the same either way,
    where running through the pad steps made post-padding look vanishing and pre-padding exploding."""
    pre = analyze(task="text", padding="pre", seq_len=100)
    post = analyze(task="text", padding="post", seq_len=100)
    assert np.all(post.setup.batch.mask[:, -1] == 0)  # every review is shorter than 100 words
    assert np.all(pre.setup.batch.mask[:, 0] == 0)
    assert post.loss == pytest.approx(pre.loss, rel=1e-12)
    assert post.regime == pre.regime
    np.testing.assert_allclose(post.flow_norms, pre.flow_norms, rtol=1e-10, atol=1e-300)
    assert post.flow.ratio_first_last == pytest.approx(pre.flow.ratio_first_last, rel=1e-10)
    assert 0 < pre.flow.ratio_first_last < np.inf
    # per-step norms are at absolute steps: the real steps sit at the end (pre) or the start (post)
    assert np.all(pre.grad_norms[:5] == 0) and np.all(post.grad_norms[-5:] == 0)


def test_multiclass_jsonl_gives_softmax(tmp_path):
    lines = [json.dumps({"text": f"word{i % 7} and more words {i}", "label": ["a", "b", "c"][i % 3]})
             for i in range(60)]
    path = tmp_path / "three.jsonl"
    path.write_text("\n".join(lines) + "\n")
    r = analyze(task="text", text=str(path), seq_len=12, batch_size=5)
    assert (r.config["output_size"], r.config["loss"]) == (3, "ce")
    assert set(np.unique(r.setup.batch.y)) <= {0.0, 1.0, 2.0}


def test_onehot_embedding_sets_the_input_size_to_the_vocabulary():
    task = make_task("text", RunConfig(task="text", embeddings="onehot", seq_len=20, max_vocab=50))
    assert task.dataset.input_size == 50
    assert task.resolve(None, None, None).input_size == 50


def test_training_batches_never_hold_validation_texts():
    task = make_task("text", RunConfig(task="text", seq_len=20))
    assert not set(task.train_idx) & set(task.val_idx)
    assert task.baseline_accuracy() == pytest.approx(0.5)
    shape = task.resolve(None, None, None)
    held_out = sum(b.x.shape[0] for b in task.validation_batches(shape))
    assert held_out == len(task.val_idx) == 100


@pytest.mark.parametrize("argv,needle", [
    (["--padding", "post"], "--padding is a setting of --task text"),
    (["--task", "text", "--text", "missing.csv"], "missing.csv"),
    (["--task", "text", "--loss", "mse"], "--loss must be bce or ce"),
    (["--task", "text", "--max-vocab", "1"], "--max-vocab"),
])
def test_bad_text_settings_exit_2(capsys, argv, needle):
    assert main(["analyze", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and needle in err and len(err.strip().splitlines()) == 1


def test_seq_len_mismatch_is_an_input_error():
    task = make_task("text", RunConfig(task="text", seq_len=20))
    with pytest.raises(InputError, match="--seq-len 20"):
        task.sample(np.random.default_rng(0), 4, 30, task.resolve(None, None, None))
