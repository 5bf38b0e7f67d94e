"""The entry point: options, the built-in corpus, determinism, batches, splits and baselines."""

from __future__ import annotations

import csv
import io
import json
from importlib import resources

import numpy as np
import pytest

from gradscope.errors import InputError
from gradscope.text import PAD_ID, UNK_ID, TextOptions, load_text_dataset, tokenize


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


# ---- options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("seq_len", 0, "--seq-len must be at least 1 (got 0)"),
    ("seq_len", 2.5, "--seq-len must be a whole number (got 2.5)"),
    ("seq_len", True, "--seq-len must be a whole number"),
    ("max_vocab", 0, "--max-vocab must be at least 2 (got 0)"),
    ("min_count", 0, "--min-count must be at least 1 (got 0)"),
    ("embedding_dim", -3, "--embedding-dim must be at least 1 (got -3)"),
    ("padding", "mid", "--padding must be 'pre' or 'post' (got 'mid')"),
    ("embedding", "word2vec", "--embeddings must be 'random', 'onehot' or a GloVe-format file"),
    ("text_column", " ", "--text-column must not be empty"),
    ("label_column", "text", "--text-column and --label-column must differ"),
])
def test_options_are_validated_with_flag_names(field, value, message):
    with pytest.raises(InputError) as caught:
        TextOptions(**{field: value})
    assert message in str(caught.value)


def test_onehot_and_an_embeddings_file_conflict():
    with pytest.raises(InputError, match="--embeddings"):
        TextOptions(embedding="onehot", embeddings_file="glove.txt")


def test_missing_text_and_embeddings_files(tmp_path):
    with pytest.raises(InputError, match="nope.csv: no such file"):
        load_text_dataset(TextOptions(path=str(tmp_path / "nope.csv")), seed=0)
    with pytest.raises(InputError, match="glove.txt: no such file.*--embeddings"):
        load_text_dataset(TextOptions(embeddings_file=str(tmp_path / "glove.txt")), seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5])
def test_seed_is_validated(seed):
    with pytest.raises(InputError, match="--seed"):
        load_text_dataset(TextOptions(), seed=seed)


# ---- the built-in corpus ---------------------------------------------------------------------

def test_builtin_corpus_ships_with_the_package_and_is_balanced_and_small():
    resource = resources.files("gradscope.text").joinpath("data/reviews.csv")
    raw = resource.read_bytes()
    assert len(raw) < 200_000
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    labels = [r["label"] for r in rows]
    assert len(rows) >= 400 and labels.count("pos") == labels.count("neg") == len(rows) // 2
    lengths = [len(tokenize(r["text"])) for r in rows]
    assert min(lengths) >= 10 and max(lengths) <= 80
    assert len({r["text"] for r in rows}) == len(rows)  # no duplicates


def test_builtin_corpus_loads_by_default():
    data = load_text_dataset(TextOptions(), seed=0)
    assert len(data) >= 400 and data.class_names == ("neg", "pos") and data.num_classes == 2
    assert data.ids.shape == (len(data), 100) and data.ids.dtype == np.int32
    assert data.mask.dtype == bool and data.labels.dtype == np.int64
    assert data.input_size == 16 and data.vocab[:2] == ("<pad>", "<unk>")
    assert "built-in" in data.source and data.num_truncated == 0
    np.testing.assert_array_equal(data.mask, data.ids != PAD_ID)
    assert data.mask[:, -1].all() and not data.mask[:, 0].any()  # pre-padding: text at the end


def test_same_seed_same_dataset_other_seed_other_vectors():
    options = TextOptions(seq_len=30)
    a, b = load_text_dataset(options, seed=1), load_text_dataset(options, seed=1)
    c = load_text_dataset(options, seed=2)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.batch(np.arange(8))[0], b.batch(np.arange(8))[0])
    np.testing.assert_array_equal(a.ids, c.ids)  # the texts do not depend on the seed
    assert not np.array_equal(a.embedding.table, c.embedding.table)


# ---- labels, vocabulary and encoding through the entry point ---------------------------------

def test_integer_labels_keep_numeric_order_and_map_to_indices(tmp_path):
    path = write_csv(tmp_path / "r.csv", [("a", "10"), ("b", "2"), ("c", "02"), ("d", "-1")])
    data = load_text_dataset(TextOptions(path=path), seed=0)
    assert data.class_names == ("-1", "2", "10") and data.num_classes == 3
    assert data.labels.tolist() == [2, 1, 1, 0]


def test_vocabulary_options_and_oov(tmp_path):
    path = write_csv(tmp_path / "r.csv", [("good good good film", "pos"), ("bad bad film", "neg"),
                                          ("rare", "neg")])
    data = load_text_dataset(TextOptions(path=path, max_vocab=4, seq_len=4), seed=0)
    assert data.vocab == ("<pad>", "<unk>", "good", "bad")
    assert data.ids[0].tolist() == [2, 2, 2, UNK_ID]  # "film" fell outside max_vocab
    data = load_text_dataset(TextOptions(path=path, min_count=2, seq_len=4), seed=0)
    assert data.vocab == ("<pad>", "<unk>", "good", "bad", "film")
    assert data.ids[2].tolist() == [0, 0, 0, UNK_ID]


def test_padding_and_truncation_through_the_entry_point(tmp_path):
    path = write_csv(tmp_path / "r.csv", [("a b c d e", "pos"), ("a", "neg")])
    pre = load_text_dataset(TextOptions(path=path, seq_len=3, padding="pre"), seed=0)
    post = load_text_dataset(TextOptions(path=path, seq_len=3, padding="post"), seed=0)
    words = pre.vocab
    assert [words[i] for i in pre.ids[0]] == ["c", "d", "e"]  # pre keeps the end
    assert [words[i] for i in post.ids[0]] == ["a", "b", "c"]  # post keeps the start
    assert pre.mask[1].tolist() == [False, False, True] and post.mask[1].tolist() == [True, False, False]
    assert pre.num_truncated == post.num_truncated == 1


def test_onehot_and_glove_embeddings_through_the_entry_point(tmp_path):
    path = write_csv(tmp_path / "r.csv", [("good film", "pos"), ("bad film", "neg")])
    onehot = load_text_dataset(TextOptions(path=path, embedding="onehot", seq_len=3), seed=0)
    x, y = onehot.batch(np.array([0, 1]))
    assert onehot.input_size == len(onehot.vocab) == x.shape[2] and x.shape == (2, 3, 5)
    assert x.sum() == 4 and y.tolist() == [1, 0]
    glove = tmp_path / "glove.txt"
    glove.write_text("film 0.5 0.5\ngood 1 0\n")
    data = load_text_dataset(TextOptions(path=path, embeddings_file=str(glove), seq_len=3), seed=0)
    x, _ = data.batch(np.array([0]))
    assert data.input_size == 2
    np.testing.assert_array_equal(x[0], [[0, 0], [1, 0], [0.5, 0.5]])


def test_jsonl_through_the_entry_point(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps({"review": t, "y": y}) + "\n"
                            for t, y in [("fine", 1), ("poor", 0), ("meh", 0)]))
    data = load_text_dataset(TextOptions(path=str(path), text_column="review", label_column="y"), seed=0)
    assert data.class_names == ("0", "1") and data.labels.tolist() == [1, 0, 0]


# ---- batches, splits, baselines --------------------------------------------------------------

def test_batch_shapes_and_embed_is_lazy():
    data = load_text_dataset(TextOptions(seq_len=40, embedding_dim=8), seed=0)
    x, y = data.batch(np.array([3, 1, 4]))
    assert x.shape == (3, 40, 8) and x.dtype == np.float64 and y.tolist() == data.labels[[3, 1, 4]].tolist()
    assert not x[~data.mask[[3, 1, 4]]].any()  # zero input at padded steps
    np.testing.assert_array_equal(data.embed(data.ids[[3, 1, 4]]), x)


def test_split_is_stratified_disjoint_and_deterministic():
    data = load_text_dataset(TextOptions(seq_len=10), seed=0)
    train, val = data.split(0.2, seed=5)
    assert len(val) == round(0.2 * len(data)) and len(train) + len(val) == len(data)
    assert not np.intersect1d(train, val).size
    assert np.bincount(data.labels[val]).tolist() == [len(val) // 2] * 2
    again, val_again = data.split(0.2, seed=5)
    np.testing.assert_array_equal(val, val_again)
    assert not np.array_equal(val, data.split(0.2, seed=6)[1])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_fraction_must_be_inside_zero_one(fraction):
    data = load_text_dataset(TextOptions(seq_len=5), seed=0)
    with pytest.raises(InputError, match="validation fraction"):
        data.split(fraction, seed=0)


def test_split_too_small(tmp_path):
    path = write_csv(tmp_path / "r.csv", [("a", "pos"), ("b", "neg")])
    with pytest.raises(InputError, match="too few"):
        load_text_dataset(TextOptions(path=path), seed=0).split(0.2, seed=0)


def test_majority_baseline(tmp_path):
    path = write_csv(tmp_path / "r.csv", [("a", "pos"), ("b", "pos"), ("c", "pos"), ("d", "neg")])
    data = load_text_dataset(TextOptions(path=path), seed=0)
    assert data.majority_baseline(np.arange(4)) == 0.75
    # the majority of the training part (pos) scored on another part (one neg)
    assert data.majority_baseline(np.array([3]), fit_indices=np.arange(3)) == 0.0
