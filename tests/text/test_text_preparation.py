"""Tokenising, the vocabulary, padding/truncation, and the embeddings."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradscope.errors import InputError
from gradscope.text import (
    PAD_ID,
    UNK_ID,
    OneHotEmbedding,
    Vocabulary,
    build_vocabulary,
    encode,
    glove_embedding,
    random_embedding,
    tokenize,
)

VOCAB = Vocabulary(("<pad>", "<unk>", "a", "b", "c", "d", "e"))


# ---- tokens ----------------------------------------------------------------------------------

def test_tokenize_lowercases_strips_html_and_keeps_inner_apostrophes():
    text = "It's NOT bad<br /><br />at all... 10/10 'quoted' don\u2019t café_au_lait"
    assert tokenize(text) == ["it's", "not", "bad", "at", "all", "10", "10", "quoted", "don't",
                              "café", "au", "lait"]


def test_tokenize_treats_replacement_characters_as_separators():
    assert tokenize("caf\ufffd cr\ufffdme") == ["caf", "cr", "me"]


# ---- vocabulary ------------------------------------------------------------------------------

COUNTS = Counter({"the": 5, "film": 3, "bad": 3, "good": 3, "odd": 1, "rare": 1})


def test_vocabulary_reserves_pad_and_unk_then_orders_by_count_then_alphabet():
    vocab = build_vocabulary(COUNTS, max_vocab=100, min_count=1)
    assert vocab.tokens == ("<pad>", "<unk>", "the", "bad", "film", "good", "odd", "rare")
    assert vocab.index["the"] == 2 and vocab.ids(["film", "unseen"]) == [4, UNK_ID]


def test_max_vocab_counts_the_reserved_ids():
    assert build_vocabulary(COUNTS, max_vocab=4, min_count=1).tokens == ("<pad>", "<unk>", "the", "bad")
    assert build_vocabulary(COUNTS, max_vocab=2, min_count=1).tokens == ("<pad>", "<unk>")


def test_min_count_drops_rare_tokens():
    assert build_vocabulary(COUNTS, max_vocab=100, min_count=3).tokens[2:] == ("the", "bad", "film", "good")


@given(st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(1, 5)),
       st.integers(2, 10), st.integers(1, 4))
def test_vocabulary_is_the_most_frequent_eligible_tokens(counts, max_vocab, min_count):
    vocab = build_vocabulary(counts, max_vocab, min_count)
    words = vocab.tokens[2:]
    eligible = [t for t, n in counts.items() if n >= min_count]
    assert len(vocab) == min(max_vocab, 2 + len(eligible))
    assert [counts[w] for w in words] == sorted((counts[w] for w in words), reverse=True)
    if words:  # nothing left out is more frequent than the least frequent word kept
        assert all(counts[t] <= counts[words[-1]] for t in eligible if t not in words)


# ---- padding and truncation ------------------------------------------------------------------

def test_pre_padding_puts_zeros_first():
    assert encode(["a", "b"], VOCAB, 5, "pre").tolist() == [0, 0, 0, 2, 3]


def test_post_padding_puts_zeros_last():
    assert encode(["a", "b"], VOCAB, 5, "post").tolist() == [2, 3, 0, 0, 0]


def test_pre_truncation_keeps_the_end_and_post_keeps_the_start():
    tokens = ["a", "b", "c", "d", "e"]
    assert encode(tokens, VOCAB, 3, "pre").tolist() == [4, 5, 6]
    assert encode(tokens, VOCAB, 3, "post").tolist() == [2, 3, 4]


def test_out_of_vocabulary_tokens_get_the_unk_id_and_count_as_words():
    row = encode(["a", "zebra"], VOCAB, 3, "pre")
    assert row.tolist() == [PAD_ID, 2, UNK_ID] and row.dtype == np.int32


def test_encode_writes_into_a_given_row():
    out = np.full(4, 9, dtype=np.int32)
    encode(["a"], VOCAB, 4, "post", out=out)
    assert out.tolist() == [2, 0, 0, 0]


def test_encode_rejects_an_unknown_padding():
    with pytest.raises(InputError, match="--padding"):
        encode(["a"], VOCAB, 3, "middle")


@given(st.lists(st.sampled_from(VOCAB.tokens[2:]), max_size=12), st.integers(1, 8),
       st.sampled_from(["pre", "post"]))
def test_encoding_keeps_a_contiguous_run_of_the_text(tokens, seq_len, padding):
    row = encode(tokens, VOCAB, seq_len, padding)
    words = row[row != PAD_ID].tolist()
    assert len(words) == min(len(tokens), seq_len)
    expected = tokens[len(tokens) - len(words):] if padding == "pre" else tokens[: len(words)]
    assert words == VOCAB.ids(expected)
    pads = np.flatnonzero(row == PAD_ID)
    assert (pads < len(pads)).all() if padding == "pre" else (pads >= seq_len - len(pads)).all()


# ---- embeddings ------------------------------------------------------------------------------

IDS = np.array([[0, 0, 2, 1], [3, 4, 0, 0]])


def test_random_embedding_is_seeded_scaled_and_zero_at_pads():
    emb = random_embedding(vocab_size=2000, dim=50, seed=3)
    x = emb(IDS)
    assert x.shape == (2, 4, 50) and x.dtype == np.float64 and emb.dim == 50
    assert not x[0, :2].any() and not x[1, 2:].any()
    np.testing.assert_array_equal(emb.table, random_embedding(2000, 50, seed=3).table)
    assert not np.array_equal(emb.table, random_embedding(2000, 50, seed=4).table)
    assert emb.table[1:].var() == pytest.approx(1 / 50, rel=0.05)  # N(0, 1/D)


def test_onehot_embedding():
    x = OneHotEmbedding(vocab_size=5)(IDS)
    assert x.shape == (2, 4, 5) and x.dtype == np.float64
    np.testing.assert_array_equal(x.sum(axis=-1), IDS != PAD_ID)
    np.testing.assert_array_equal(x.argmax(axis=-1)[IDS != PAD_ID], IDS[IDS != PAD_ID])


def write_glove(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_glove_vectors_are_used_and_missing_words_get_seeded_vectors(tmp_path):
    path = write_glove(tmp_path / "g.txt", ["zz 9 9 9", "a 1 2 3", "b -1 0.5 2e-1", "a 7 7 7"])
    emb = glove_embedding(path, VOCAB, seed=0)
    assert emb.dim == 3
    np.testing.assert_array_equal(emb.table[2], [1, 2, 3])  # the first vector of a word wins
    np.testing.assert_array_equal(emb.table[3], [-1, 0.5, 0.2])
    assert not emb.table[PAD_ID].any() and emb.table[4].any()
    np.testing.assert_array_equal(emb.table, glove_embedding(path, VOCAB, seed=0).table)
    assert "2 of 5 words" in emb.description


def test_glove_word2vec_header_and_words_with_spaces(tmp_path):
    path = write_glove(tmp_path / "g.txt", ["3 2", ". . . 0.1 0.2", "c 1 1", "d 2 2"])
    emb = glove_embedding(path, VOCAB, seed=0)
    assert emb.dim == 2 and emb.table[4].tolist() == [1, 1]


@pytest.mark.parametrize("lines, line, problem", [
    (["a 1 2 3", "b 1 2"], 2, "2 values, but .*line 1 has 3"),
    (["a 1 2 3", "b 1 2 3 4"], 2, "4 values, but .*line 1 has 3"),
    (["a 1 2 3", "b 1 x 3"], 2, "'x' is not a number"),
    (["a 1 2 3", "b 1 nan 3"], 2, "NaN or infinite"),
    (["", "a"], 2, "a word without a vector"),
])
def test_bad_glove_lines(tmp_path, lines, line, problem):
    path = write_glove(tmp_path / "g.txt", lines)
    with pytest.raises(InputError, match=re.escape(f"{path}, line {line}:") + ".*" + problem):
        glove_embedding(path, VOCAB, seed=0)


def test_glove_file_without_vocabulary_words_or_vectors(tmp_path):
    path = write_glove(tmp_path / "g.txt", ["zz 1 2"])
    with pytest.raises(InputError, match=re.escape(str(path)) + ".*none of the 5"):
        glove_embedding(path, VOCAB, seed=0)
    path = write_glove(tmp_path / "e.txt", ["", ""])
    with pytest.raises(InputError, match=re.escape(str(path)) + ".*(empty|no vectors)"):
        glove_embedding(path, VOCAB, seed=0)
    with pytest.raises(InputError, match="no such file.*--embeddings"):
        glove_embedding(tmp_path / "missing.txt", VOCAB, seed=0)
