"""The name that installs this project: `gradscope` on PyPI is another project, so the distribution is
gradscope-bptt, and every install line and hint (code, docs) names it."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from gradscope.extras import DISTRIBUTION, install_hint

ROOT = Path(__file__).resolve().parents[2]


def _texts() -> dict[Path, str]:
    files = [*(ROOT / "gradscope").rglob("*.py"), ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    return {f: f.read_text(encoding="utf-8") for f in files if f.exists()}


def test_pyproject_names_the_distribution():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION == "gradscope-bptt"
    assert project["scripts"] == {"gradscope": "gradscope.cli:run"}  # the command keeps its name
    assert set(project["optional-dependencies"]) >= {"plot", "dask", "torch", "dev"}


def test_installed_distribution_is_this_one():
    assert importlib.metadata.distribution(DISTRIBUTION).version == importlib.metadata.version(DISTRIBUTION)


def test_no_install_line_names_the_other_project():
    bad = re.compile(r"gradscope\\?\[|pip install gradscope(?![-\w])")
    found = [f"{path.relative_to(ROOT)}: {m.group(0)}" for path, text in _texts().items() for m in bad.finditer(text)]
    assert found == []


def test_hint_names_extra():
    assert install_hint("plot") == "pip install 'gradscope-bptt[plot]'"
