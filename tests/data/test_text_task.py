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


def test_post_padding_makes_the_gradient_cross_the_pad_steps():
    """Short reviews padded after the text: the readout sees only pad steps last, and the gradient
    has to travel back through them to reach any word, so it arrives far weaker than with pre-padding."""
    pre = analyze(task="text", padding="pre", seq_len=100)
    post = analyze(task="text", padding="post", seq_len=100)
    batch = post.setup.batch.x
    assert np.all(batch[:, -1] == 0)  # every review is shorter than 100 words: the last step is padding
    assert post.flow.ratio_first_last < 1e-3 * pre.flow.ratio_first_last


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
