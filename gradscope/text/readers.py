"""Streaming readers for labelled texts: CSV/TSV with a header, JSON Lines, and folders of .txt files.

``open_examples(path)`` picks the reader and returns a ``TextSource``; ``-`` reads standard input
(a copy of it: io/files.py's ``stdin_copy``). Iterating it opens the file
anew and yields one ``Example(text, label, where)`` at a time, so the dataset can make two passes
(count the tokens, then encode) while holding one record in memory, whatever the file's size.

Every way a file can be wrong is an InputError that names the file, and the line where there is
one. Bytes that are not UTF-8 are replaced (U+FFFD), not fatal: a stray Latin-1 accent in one review
should not stop a run. A file whose first chunk holds NUL bytes or is mostly undecodable is
rejected as "not a text file" before any parsing.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TextIO

from ..errors import InputError
from ..io.files import STDIN, os_problem, regular_file, stdin_copy
from .labels import normalise_label

SNIFF_BYTES = 8192
JUNK_LIMIT = 0.25
"""Largest fraction of undecodable or control characters in the first chunk of a text file."""

FIELD_SIZE_LIMIT = 64 * 1024 * 1024
"""Characters allowed in one CSV field. csv's default (131,072) is below the longest real reviews
and books; a field larger than this is an error, which also bounds what an unclosed quote can
swallow."""

_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_JSON_LINES = {".jsonl", ".ndjson"}
_ALLOWED_CONTROLS = set("\t\n\r\f\v")
_ACL_IMDB_CLASSES = ("neg", "pos")


class Example(NamedTuple):
    """One labelled text. ``where`` names its origin for messages: "reviews.csv, line 12"."""

    text: str
    label: str
    where: str


@dataclass(frozen=True)
class TextSource:
    """A re-iterable stream of Examples read from ``path``; ``kind`` names the format; ``name`` how
    reports call it (the path, or "standard input")."""

    path: Path
    kind: str
    _iterate: Callable[[], Iterator[Example]]
    name: str | None = None

    def __iter__(self) -> Iterator[Example]:
        return self._iterate()

    @property
    def description(self) -> str:
        return f"{self.name or self.path} ({self.kind})"


def open_examples(
    path: str | os.PathLike, text_column: str = "text", label_column: str = "label"
) -> TextSource:
    """The reader for ``path``, chosen by what it is.

    A directory is read as aclImdb (``pos/`` and ``neg/``, under ``train/`` if there is one) or as
    class-named subfolders of .txt files. A file ending in .csv or .tsv is delimited, one ending in
    .jsonl or .ndjson is JSON Lines; any other file is JSON Lines if it starts with "{", else
    delimited text whose delimiter is sniffed from the header line. The header is checked here, so
    a missing column is reported before any pass over the data. ``-`` is standard input, in any of
    the file formats.
    """
    if os.fspath(path) == STDIN:
        source = open_examples(stdin_copy("--text"), text_column, label_column)
        return TextSource(source.path, source.kind, source._iterate, "standard input")
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise InputError(f"{p}: no such file or directory") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read ({os_problem(exc) if isinstance(exc, OSError) else exc})") from None
    if stat.S_ISDIR(mode):
        return _directory_source(p)
    head = check_text_file(p)
    suffix = p.suffix.lower()
    if suffix in _JSON_LINES or (suffix not in _DELIMITERS and head.lstrip().startswith("{")):
        return TextSource(p, "JSON Lines", lambda: _iter_json_lines(p, text_column, label_column))
    delimiter = _DELIMITERS.get(suffix) or _sniff_delimiter(head)
    kind = "TSV" if delimiter == "\t" else "CSV"
    _delimited_columns(p, delimiter, text_column, label_column)
    return TextSource(p, kind, lambda: _iter_delimited(p, delimiter, text_column, label_column))


def check_text_file(path: Path) -> str:
    """The decoded first chunk of ``path``; InputError if it is not a regular file (a FIFO would block
    open()), is empty or does not look like text."""
    regular_file(path, "text", " (texts are read from files or folders)")
    try:
        with open(path, "rb") as fh:
            chunk = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not chunk.strip():
        raise InputError(f"{path}: file is empty")
    reject_binary(chunk, path)
    return chunk.decode("utf-8-sig", errors="replace")


def reject_binary(chunk: bytes, path: Path) -> None:
    """InputError unless ``chunk`` (the start of a file) looks like UTF-8 or nearly so."""
    if b"\x00" in chunk:
        raise InputError(f"{path}: does not look like a text file (it contains NUL bytes; "
                         "UTF-16 is not supported, save it as UTF-8)")
    # an incremental decoder leaves a character cut at the chunk's end undecoded instead of
    # counting it as junk
    text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(chunk, final=False)
    junk = sum(1 for ch in text if ch == "\ufffd" or (ch < " " and ch not in _ALLOWED_CONTROLS))
    if text and junk > JUNK_LIMIT * len(text):
        raise InputError(f"{path}: does not look like a text file "
                         f"({junk} of its first {len(text)} characters are not UTF-8 text)")


def open_text(path: Path) -> TextIO:
    """``path`` as a text stream: UTF-8, undecodable bytes replaced, line ends left to the caller."""
    # utf-8-sig drops a byte-order mark that Excel and Notepad write; newline="" is what csv needs
    try:
        return open(path, encoding="utf-8-sig", errors="replace", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _sniff_delimiter(head: str) -> str:
    """The delimiter of a header line: whichever of tab, comma, semicolon, bar it holds most."""
    header = head.splitlines()[0] if head.strip() else ""
    counts = {d: header.count(d) for d in ("\t", ",", ";", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _column_index(header: list[str], name: str, flag: str, path: Path) -> int:
    """Position of column ``name``: an exact match, else a unique case-insensitive one."""
    names = [h.strip() for h in header]
    if name in names:
        return names.index(name)
    folded = [i for i, h in enumerate(names) if h.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    shown = ", ".join(repr(h) for h in names)
    raise InputError(f"{path}: no column {name!r} in the header (columns: {shown}); "
                     f"name the column with {flag}")


def _delimited_columns(path: Path, delimiter: str, text_column: str, label_column: str
                       ) -> tuple[int, int, int]:
    """(text index, label index, header length) from the header line of a delimited file."""
    # the limit is process-wide; only ever raised, so other csv users are not cut short
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
    with open_text(path) as stream:
        try:
            header = next(csv.reader(stream, delimiter=delimiter))
        except StopIteration:
            raise InputError(f"{path}: file is empty") from None
        except csv.Error as exc:
            raise InputError(f"{path}, line 1: not a valid header ({exc})") from None
    return (_column_index(header, text_column, "--text-column", path),
            _column_index(header, label_column, "--label-column", path),
            len(header))


def _iter_delimited(path: Path, delimiter: str, text_column: str, label_column: str
                    ) -> Iterator[Example]:
    text_at, label_at, width = _delimited_columns(path, delimiter, text_column, label_column)
    with open_text(path) as stream:
        # strict: a quote left open is an error (at the end of the file, or where text follows a
        # closing quote), never a field that silently swallows the records after it
        reader = csv.reader(stream, delimiter=delimiter, strict=True)
        next(reader)
        # line_num counts physical lines read so far; a quoted field may span several, and the
        # record's first line is the useful one in a message
        last_line = reader.line_num
        try:
            for row in reader:
                where = f"{path}, line {last_line + 1}"
                last_line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):  # a blank line
                    continue
                if len(row) > width:
                    raise InputError(f"{where}: {len(row)} fields but the header has {width}; "
                                     "quote texts that contain the delimiter")
                if len(row) <= label_at:
                    hint = " (an unclosed quote?)" if "\n" in row[-1] else ""
                    raise InputError(f"{where}: no label{hint}")
                if len(row) <= text_at:
                    raise InputError(f"{where}: no text (no field for column {text_column!r})")
                yield Example(row[text_at], normalise_label(row[label_at], where), where)
        except csv.Error as exc:
            raise InputError(_csv_problem(path, str(exc), last_line + 1, reader.line_num)) from None


def _csv_problem(path: Path, message: str, start: int, reached: int) -> str:
    """The one-line message for a csv.Error in the record that starts on line ``start``."""
    if message == "unexpected end of data":
        return (f"{path}, line {start}: unclosed quote: the quote opened on this line is never closed; the rest of the file "
                "would be read as one text (close the quote, or write a quote inside a text as \"\")")
    if "expected after" in message:
        spans = f"runs to line {reached}, where" if reached > start else "ends, and"
        return (f"{path}, line {start}: unclosed quote: a quoted text opened on this line {spans} more text follows its "
                "closing quote; texts are not merged (close the quote where the text ends, or write a "
                "quote inside a text as \"\")")
    return f"{path}, line {reached}: not valid CSV ({message})"


def _iter_json_lines(path: Path, text_field: str, label_field: str) -> Iterator[Example]:
    with open_text(path) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
            if not isinstance(record, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
            if text_field not in record:
                fields = ", ".join(repr(k) for k in record)
                raise InputError(f"{where}: no field {text_field!r} (fields: {fields}); "
                                 "name the field with --text-column")
            text = record[text_field]
            if not isinstance(text, str):
                raise InputError(f"{where}: field {text_field!r} must be a string "
                                 f"(got {type(text).__name__})")
            yield Example(text, normalise_label(record.get(label_field), where), where)


def _directory_source(root: Path) -> TextSource:
    """aclImdb (pos/ and neg/, preferring train/) or any class-named subfolders of .txt files."""
    base = root / "train" if (root / "train").is_dir() else root
    try:
        folders = {d.name: d for d in sorted(base.iterdir())
                   if d.is_dir() and not d.name.startswith(".") and _has_text_files(d)}
    except OSError as exc:
        raise InputError(f"{base}: cannot read ({exc.strerror or exc})") from None
    if not folders:
        raise InputError(f"{base}: directory has no class subfolders of .txt files "
                         "(expected e.g. pos/ and neg/)")
    if all(name in folders for name in _ACL_IMDB_CLASSES):
        # aclImdb's train/ also holds unsup/, 50,000 unlabelled reviews: not a class
        folders = {name: folders[name] for name in _ACL_IMDB_CLASSES}
        kind = "aclImdb directory"
    else:
        kind = "directory of class folders"
    return TextSource(base, kind, lambda: _iter_directory(folders))


def _has_text_files(folder: Path) -> bool:
    return any(_is_text_file(f) for f in folder.iterdir())


def _is_text_file(path: Path) -> bool:
    return path.suffix.lower() == ".txt" and path.is_file()


def _iter_directory(folders: dict[str, Path]) -> Iterator[Example]:
    for name, folder in folders.items():
        label = normalise_label(name, str(folder))
        for path in sorted(f for f in folder.iterdir() if _is_text_file(f)):
            try:
                data = path.read_bytes()  # one review: small, and read once per pass
            except OSError as exc:
                raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
            reject_binary(data[:SNIFF_BYTES], path)
            yield Example(data.decode("utf-8-sig", errors="replace"), label, str(path))
