"""--report FILE.html: one self-contained page with the run's tables and pictures, for each command."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gradscope.cli import main
from gradscope.render.common import num
from gradscope.render.compare import short

SMALL = ["--hidden-size", "6", "--batch-size", "4"]
COMMANDS = {
    "analyze": ["analyze", *SMALL, "--seq-len", "20"],
    "compare": ["compare", "--seq-len", "10", "--hidden-size", "6", "--batch-size", "8", "--eval-size", "16",
                "--steps", "3", "--jobs", "1", "--mitigations", "clip-norm"],
    "spectrum": ["spectrum", *SMALL, "--seq-len", "20", "--cell", "lstm"],
    "sweep": ["sweep", *SMALL, "--x", "spectral_radius=0.5,1,2", "--y", "seq_len=5,20", "--jobs", "1"],
}
HINT = "pip install 'gradscope-bptt[plot]'"


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


class Page(HTMLParser):
    """The page's elements, the attributes that could fetch something, and the first <pre>'s text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.links: list[str] = []
        self.doctype = ""
        self.pre: list[str] = []
        self._in_pre = 0

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [value or "" for name, value in attrs if name in ("src", "href", "xlink:href", "srcset")]
        if tag == "pre":
            self._in_pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "pre":
            self._in_pre -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_pre -= 1

    def handle_data(self, data: str) -> None:
        if self._in_pre and len([t for t in self.tags if t == "pre"]) == 1:
            self.pre.append(data)


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def report(capsys, folder: Path, name: str, *extra: str) -> tuple[str, str]:
    """The page written by COMMANDS[name] with --report, and the command's stdout."""
    path = folder / f"{name}.html"
    code, out, err = run(capsys, [*COMMANDS[name], *extra, "--report", str(path)])
    assert code == 0, err
    return path.read_text(encoding="utf-8"), out


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


def assert_self_contained(page: str) -> Page:
    parsed = parse(page)
    assert parsed.doctype.lower() == "doctype html"
    assert page.count("<html") == 1 and page.count("</html>") == 1 and page.rstrip().endswith("</html>")
    assert [t for t in parsed.tags if t in ("html", "head", "body")] == ["html", "head", "body"]
    # nothing that loads a script, a stylesheet, a font or an image from elsewhere
    assert not {"script", "link", "iframe", "object", "embed"} & set(parsed.tags)
    assert all(link.startswith(("#", "data:")) for link in parsed.links), parsed.links
    assert "http://" not in page and "https://" not in page and "@import" not in page
    assert re.findall(r"url\((?!#)", page) == []
    return parsed


@pytest.mark.parametrize("name", COMMANDS)
def test_one_self_contained_page_with_the_terminal_view(capsys, tmp_path, name):
    page, out = report(capsys, tmp_path, name)
    parsed = assert_self_contained(page)
    # the tables are the terminal view, rendered from the same result: the same text, line for line
    assert "".join(parsed.pre) == out
    assert f"<title>gradscope {name}</title>" in page
    if has_matplotlib():
        pictures = 2 if name == "analyze" else 1
        assert page.count("<svg") == pictures and page.count("</svg>") == pictures
        assert HINT not in page
    else:
        assert "<svg" not in page and HINT in page


def figures(capsys, tmp_path: Path, name: str) -> tuple[str, dict]:
    """The page's text (tags stripped) and the JSON document of one run given --json and --report."""
    page, out = report(capsys, tmp_path, name, "--json")
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    return text, json.loads(out)


def test_analyze_figures_are_the_json_figures(capsys, tmp_path):
    text, doc = figures(capsys, tmp_path, "analyze")
    assert f"Verdict: {doc['regime'].upper()}" in text
    assert f"loss {num(doc['loss'], 4)}  (trivial baseline {num(doc['baseline_loss'], 4)})" in text
    assert f"{num(doc['grad_norms'][0])}    {num(doc['ratios'][0])}" in text  # step 1's row


def test_compare_figures_are_the_json_figures(capsys, tmp_path):
    text, doc = figures(capsys, tmp_path, "compare")
    assert f"* best: {doc['best']}," in text
    for r in doc["runs"]:
        row = next(line for line in text.splitlines() if line[1:].startswith(r["mitigation"] + " "))
        assert f" {short(r['final_loss'])} " in row and f" {short(r['max_grad_norm'])} " in row


def test_spectrum_figures_are_the_json_figures(capsys, tmp_path):
    text, doc = figures(capsys, tmp_path, "spectrum")
    lyapunov = doc["lyapunov"]
    assert f"Verdict: {lyapunov['regime'].upper()}  lambda_1 = {num(lyapunov['leading_exponent'])} per step" in text


def test_sweep_figures_are_the_json_figures(capsys, tmp_path):
    text, doc = figures(capsys, tmp_path, "sweep")
    edges = doc["scale"]["edges"]
    assert f"= < {num(edges[0])}   - {num(edges[0])} .. {num(edges[1])}" in text
    assert f"{doc['maps'][0]['cell']} / {doc['maps'][0]['activation']}" in text


@pytest.mark.skipif(not has_matplotlib(), reason="matplotlib is not installed")
def test_the_same_run_writes_the_same_page(capsys, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = report(capsys, tmp_path / "a", "analyze")
    second, _ = report(capsys, tmp_path / "b", "analyze")
    assert first == second


@pytest.mark.skipif(not has_matplotlib(), reason="matplotlib is not installed")
def test_the_pictures_do_not_share_element_ids(capsys, tmp_path):
    page, _ = report(capsys, tmp_path, "analyze")
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) > 20 and len(ids) == len(set(ids))
    # every reference points at an element of the page
    refs = re.findall(r'href="#([^"]+)"', page) + re.findall(r"url\(#([^)]+)\)", page)
    assert refs and set(refs) <= set(ids)


@pytest.mark.parametrize("name", COMMANDS)
def test_without_matplotlib_the_page_says_how_to_get_pictures(capsys, tmp_path, monkeypatch, name):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails, as uninstalled
    page, out = report(capsys, tmp_path, name)
    assert_self_contained(page)
    assert "<svg" not in page
    assert f"Pictures need matplotlib: <code>{html.escape(HINT)}</code>" in page


@pytest.mark.parametrize("name", COMMANDS)
def test_a_path_not_ending_in_html_is_refused_before_any_work(capsys, tmp_path, name):
    path = tmp_path / "report.htm"
    code, out, err = run(capsys, [*COMMANDS[name], "--report", str(path)])
    assert code == 2 and out == ""
    assert err.splitlines() == [f"gradscope: error: --report {path}: the file must end in .html"]
    assert not path.exists()


def test_an_unwritable_folder_is_refused_before_any_work(capsys, tmp_path):
    code, out, err = run(capsys, [*COMMANDS["analyze"], "--report", str(tmp_path / "no" / "such" / "r.html")])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "does not exist" in err


def test_the_page_is_written_whole_or_not_at_all(capsys, tmp_path, monkeypatch):
    path = tmp_path / "r.html"
    path.write_text("previous")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gradscope.io.atomic.os.replace", full_disk)
    code, out, err = run(capsys, [*COMMANDS["analyze"], "--report", str(path)])
    assert code == 2 and out == ""
    assert err.startswith(f"gradscope: error: cannot write --report {path}: ") and len(err.splitlines()) == 1
    assert path.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary file left


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
@pytest.mark.parametrize("name", COMMANDS)
def test_chromium_renders_the_page_without_errors(capsys, tmp_path, name):
    page, _ = report(capsys, tmp_path, name)
    path = tmp_path / f"{name}.html"
    done = subprocess.run(
        ["chromium", "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
         "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"<title>gradscope {name}</title>" in done.stdout
    assert ":CONSOLE(" not in done.stderr  # the page logs nothing: no errors, no scripts
    if has_matplotlib():
        assert "<svg" in done.stdout
