"""Readers: every format yields the right texts and labels; every bad file is an InputError that
names the file (and the line)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradscope.errors import InputError
from gradscope.text import TextOptions, load_text_dataset, open_examples


def examples(path, **columns) -> list[tuple[str, str]]:
    return [(e.text, e.label) for e in open_examples(path, **columns)]


def raises_naming(path: Path, line: int | None = None, match: str = ""):
    """pytest.raises for an InputError whose message names ``path`` (and ``line``)."""
    pattern = re.escape(str(path)) + (f", line {line}:" if line is not None else "")
    return pytest.raises(InputError, match=pattern + ".*" + match)


# ---- formats ---------------------------------------------------------------------------------

def test_csv_with_quotes_commas_and_newlines(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('text,label\n"Great, really great",pos\n"Two\nlines",neg\nplain,pos\n')
    assert examples(path) == [("Great, really great", "pos"), ("Two\nlines", "neg"), ("plain", "pos")]
    assert open_examples(path).kind == "CSV"


def test_tsv_by_extension(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("label\ttext\npos\tgood, fine\nneg\tbad\n")
    assert examples(path) == [("good, fine", "pos"), ("bad", "neg")]
    assert open_examples(path).kind == "TSV"


def test_delimiter_sniffed_from_the_header(tmp_path):
    path = tmp_path / "reviews.txt"
    path.write_text("text;label\nnot bad, not bad at all;pos\ndull;neg\n")
    assert examples(path) == [("not bad, not bad at all", "pos"), ("dull", "neg")]


def test_other_column_names(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,review,sentiment\n1,fine,1\n2,poor,0\n")
    assert examples(path, text_column="review", label_column="sentiment") == [("fine", "1"), ("poor", "0")]


def test_column_names_match_case_insensitively(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("Text,Label\nfine,pos\n")
    assert examples(path) == [("fine", "pos")]


def test_jsonl_with_string_and_integer_labels(tmp_path):
    path = tmp_path / "r.jsonl"
    records = [{"text": "good", "label": 1}, {"text": "bad", "label": "0"}, {"text": "ok", "label": 2.0}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    assert examples(path) == [("good", "1"), ("bad", "0"), ("ok", "2")]
    assert open_examples(path).kind == "JSON Lines"


def test_jsonl_sniffed_without_extension(tmp_path):
    path = tmp_path / "reviews.data"
    path.write_text('{"body": "fine", "stars": "pos"}\n')
    assert examples(path, text_column="body", label_column="stars") == [("fine", "pos")]


def make_acl_imdb(root: Path) -> Path:
    for split in ("train", "test"):
        for label, texts in (("pos", ["great film", "loved it"]), ("neg", ["awful<br />film"])):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i, text in enumerate(texts):
                (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(text)
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    (root / "train" / "notes.txt").write_text("not a review")
    return root


def test_acl_imdb_layout_uses_train_and_skips_unsup(tmp_path):
    root = make_acl_imdb(tmp_path / "aclImdb")
    source = open_examples(root)
    assert source.kind == "aclImdb directory" and source.path == root / "train"
    assert examples(root) == [("awful<br />film", "neg"), ("great film", "pos"), ("loved it", "pos")]
    data = load_text_dataset(TextOptions(path=str(root), seq_len=4), seed=0)
    assert data.class_names == ("neg", "pos")
    assert data.labels.tolist() == [0, 1, 1]
    assert "<br" not in " ".join(data.vocab) and "br" not in data.vocab


def test_class_folders(tmp_path):
    for label, text in (("sports", "goal"), ("politics", "vote"), ("weather", "rain")):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.TXT").write_text(text)
    (tmp_path / "empty").mkdir()  # no .txt files: not a class
    assert open_examples(tmp_path).kind == "directory of class folders"
    data = load_text_dataset(TextOptions(path=str(tmp_path)), seed=0)
    assert data.class_names == ("politics", "sports", "weather")
    assert data.num_classes == 3


# ---- encodings -------------------------------------------------------------------------------

def test_utf8_bom_is_dropped(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes("\ufefftext,label\nfine,pos\n".encode())
    assert examples(path) == [("fine", "pos")]


def test_invalid_utf8_bytes_are_replaced(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"text,label\ncaf\xe9 cr\xe8me,pos\nok,neg\n")
    assert examples(path) == [("caf\ufffd cr\ufffdme", "pos"), ("ok", "neg")]


def test_long_field_above_csv_default_limit(tmp_path):
    path = tmp_path / "r.csv"
    long_text = "word " * 60_000  # 300,000 characters, above csv's default 131,072
    path.write_text(f'text,label\n"{long_text}",pos\nshort,neg\n')
    assert examples(path)[0] == (long_text, "pos")


# ---- bad input -------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    path = tmp_path / "nope.csv"
    with raises_naming(path, match="no such file"):
        open_examples(path)


@pytest.mark.parametrize("content", [b"", b"   \n\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "r.csv"
    path.write_bytes(content)
    with raises_naming(path, match="empty"):
        open_examples(path)


def test_header_only(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\n")
    with raises_naming(path, match="no labelled texts"):
        load_text_dataset(TextOptions(path=str(path)), seed=0)


def test_missing_column_lists_the_columns(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("review,sentiment\nfine,pos\n")
    with raises_naming(path, match="no column 'text'.*'review', 'sentiment'.*--text-column"):
        open_examples(path)
    with raises_naming(path, match="no column 'label'.*--label-column"):
        open_examples(path, text_column="review")


def test_single_class(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\na,pos\nb,pos\n")
    with raises_naming(path, match="two classes"):
        load_text_dataset(TextOptions(path=str(path)), seed=0)


@pytest.mark.parametrize("row", ["no label here", "empty label,", 'spaces,"  "'])
def test_row_without_label(tmp_path, row):
    path = tmp_path / "r.csv"
    path.write_text(f"text,label\nfine,pos\n{row}\n")
    with raises_naming(path, line=3, match="no label"):
        examples(path)


def test_row_without_text(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("label,text\npos,fine\nneg\n")
    with raises_naming(path, line=3, match="no text"):
        examples(path)


def test_blank_and_whitespace_lines_are_skipped(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\n\nfine,pos\n   \nbad,neg\n")
    assert examples(path) == [("fine", "pos"), ("bad", "neg")]


def test_line_number_is_the_record_start_after_multiline_fields(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('text,label\n"one\ntwo\nthree",pos\n\nbroken\n')
    with raises_naming(path, line=6, match="no label"):
        examples(path)


def test_unclosed_quote_is_hinted(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('text,label\n"never closed,pos\nnext,neg\n')
    with raises_naming(path, line=2, match="unclosed quote"):
        examples(path)


def test_row_with_extra_fields(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\ngood, really good,pos\n")
    with raises_naming(path, line=2, match="3 fields but the header has 2"):
        examples(path)


def test_malformed_jsonl_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "fine", "label": "pos"}\n\n{"text": "oops", "label": }\n')
    with raises_naming(path, line=3, match="not valid JSON"):
        examples(path)


@pytest.mark.parametrize("record, problem", [
    ('["text", "pos"]', "expected a JSON object"),
    ('{"body": "fine", "label": "pos"}', "no field 'text'.*'body'"),
    ('{"text": 3, "label": "pos"}', "must be a string"),
    ('{"text": "fine"}', "no label"),
    ('{"text": "fine", "label": null}', "no label"),
    ('{"text": "fine", "label": true}', "string or an integer"),
    ('{"text": "fine", "label": 0.5}', "string or an integer"),
])
def test_bad_jsonl_records(tmp_path, record, problem):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "fine", "label": "pos"}\n' + record + "\n")
    with raises_naming(path, line=2, match=problem):
        examples(path)


def test_directory_without_text_files(tmp_path):
    (tmp_path / "pos").mkdir()
    (tmp_path / "pos" / "a.md").write_text("not a .txt")
    with raises_naming(tmp_path, match="no class subfolders of .txt files"):
        open_examples(tmp_path)


def test_directory_with_one_class(tmp_path):
    (tmp_path / "pos").mkdir()
    (tmp_path / "pos" / "a.txt").write_text("fine")
    with raises_naming(tmp_path, match="two classes"):
        load_text_dataset(TextOptions(path=str(tmp_path)), seed=0)


@pytest.mark.parametrize("junk", [
    b"text,label\nfine,pos\n\x00\x00\x00",  # NUL bytes (e.g. UTF-16 or a binary format)
    bytes(range(128, 256)) * 20,  # no NUL, but not UTF-8
], ids=["nul", "undecodable"])
def test_binary_file(tmp_path, junk):
    path = tmp_path / "r.csv"
    path.write_bytes(junk)
    with raises_naming(path, match="does not look like a text file"):
        open_examples(path)


def test_binary_text_file_in_a_class_folder(tmp_path):
    for label in ("pos", "neg"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.txt").write_text("fine")
    bad = tmp_path / "neg" / "b.txt"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with raises_naming(bad, match="does not look like a text file"):
        examples(tmp_path)


def test_too_many_labels_means_a_wrong_column(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("label,text\n" + "".join(f"review number {i},x\n" for i in range(1001)))
    with raises_naming(path, line=1002, match="--label-column"):
        load_text_dataset(TextOptions(path=str(path)), seed=0)


# ---- standard input --------------------------------------------------------------------------

REVIEWS = "text,label\ngreat movie,pos\nawful film,neg\nloved it,pos\nboring plot,neg\nnice one,pos\nbad one,neg\n"


def gradscope_with_stdin(argv: list[str], stdin: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("GRADSCOPE_STDIN_COPY", None)
    return subprocess.run([sys.executable, "-m", "gradscope", *argv], input=stdin, capture_output=True, text=True,
                          env=env, timeout=300)


def test_texts_piped_to_standard_input_read_as_the_file(tmp_path):
    """`--text -` reads the texts from a pipe (a FIFO, which a path to it would be refused as), the
    same texts as the file: one report, but for where they came from."""
    path = tmp_path / "reviews.csv"
    path.write_text(REVIEWS)
    argv = ["analyze", "--task", "text", "--json"]
    piped = gradscope_with_stdin([*argv, "--text", "-"], REVIEWS)
    assert piped.returncode == 0, piped.stderr
    from_file = gradscope_with_stdin([*argv, "--text", str(path)], "")
    piped_doc, file_doc = json.loads(piped.stdout), json.loads(from_file.stdout)
    assert piped_doc["data"].startswith("standard input (CSV): 6 texts, 2 classes")
    assert piped_doc["data"].replace("standard input", str(path)) == file_doc["data"]
    assert piped_doc["loss"] == file_doc["loss"] and piped_doc["config"]["text"] == "-"


def test_nothing_on_standard_input_is_one_line(tmp_path):
    done = gradscope_with_stdin(["analyze", "--task", "text", "--text", "-"], "")
    assert done.returncode == 2 and done.stderr.strip() == "gradscope: error: --text -: standard input is empty"
