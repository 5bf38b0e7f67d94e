"""The README is the front door and docs/ the manual: the two set-up commands come first, every page
has a table of contents, and every relative link and anchor lands on a file and heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#+ (.*)", line)):
            found.add(slug(m.group(1)))
    return found


def test_the_two_set_up_commands_come_first():
    block = re.search(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block.group(1).splitlines()[:2] == ["pip install . && gradscope analyze", "pip install -e '.[dev]' && pytest"]


def test_the_readme_links_a_page_for_every_command():
    readme = README.read_text(encoding="utf-8")
    for command in ("analyze", "train", "compare", "spectrum", "sweep", "check", "reproduce", "schema", "history"):
        assert f"](docs/{command}.md)" in readme, command


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_page_opens_with_its_contents(page):
    head = page.read_text(encoding="utf-8").splitlines()[:4]
    assert head[0].startswith("# ") and "Contents:" in head


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_every_link_and_anchor_resolves(page):
    broken = []
    for href in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", href):
            continue
        path, _, anchor = href.partition("#")
        target = (page.parent / path) if path else page
        if not target.exists() or (anchor and anchor not in anchors(target)):
            broken.append(href)
    assert broken == []
