"""--plot FILE: valid PNG and SVG pictures from analyze, spectrum and sweep, and the missing extra."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradscope.cli import main

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = ["--hidden-size", "6", "--batch-size", "4"]
COMMANDS = {
    "analyze": ["analyze", *SMALL, "--seq-len", "20"],
    "analyze-lstm": ["analyze", *SMALL, "--seq-len", "20", "--cell", "lstm"],
    "analyze-overflow": ["analyze", "--activation", "linear", "--spectral-radius", "3", "--seq-len", "1500"],
    "spectrum": ["spectrum", *SMALL, "--seq-len", "20", "--cell", "lstm"],
    "sweep": ["sweep", *SMALL, "--x", "spectral_radius=0.5,1,2", "--y", "seq_len=5,20", "--jobs", "1",
              "--cells", "rnn,gru", "--activations", "tanh,linear"],
}


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000


def assert_svg(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(list(root.iter())) > 50  # axes, lines, text: a drawn picture, not an empty frame


def draw(capsys, name: str, path: Path) -> None:
    code = main([*COMMANDS[name], "--plot", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith(f"gradscope {COMMANDS[name][0]}")  # the usual output, beside the picture


@pytest.mark.parametrize("name", COMMANDS)
def test_png(capsys, tmp_path, name):
    draw(capsys, name, tmp_path / "picture.png")
    assert_png(tmp_path / "picture.png")


@pytest.mark.parametrize("name", ["analyze", "spectrum", "sweep"])
def test_svg(capsys, tmp_path, name):
    draw(capsys, name, tmp_path / "picture.svg")
    assert_svg(tmp_path / "picture.svg")


def test_the_same_run_draws_the_same_bytes(capsys, tmp_path):
    for suffix in ("png", "svg"):
        first, second = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
        draw(capsys, "analyze", first)
        draw(capsys, "analyze", second)
        assert first.read_bytes() == second.read_bytes()


def test_loss_curves(tmp_path):
    from gradscope.render.plots import loss_curves_figure, save

    curves = {"none": ([0, 10, 20], [0.7, 0.5, 0.3]), "clip": ([0, 10, 20], [0.7, 0.4, float("nan")])}
    save(loss_curves_figure(curves, "adding, T = 50", baseline=0.167), tmp_path / "losses.png")
    save(loss_curves_figure(curves, "adding, T = 50"), tmp_path / "losses.svg")
    assert_png(tmp_path / "losses.png")
    assert_svg(tmp_path / "losses.svg")


@pytest.mark.parametrize("name", ["analyze", "spectrum", "sweep"])
def test_other_extensions_are_refused_before_any_work(capsys, tmp_path, name):
    code = main([*COMMANDS[name], "--plot", str(tmp_path / "picture.pdf")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip() == f"gradscope: error: --plot {tmp_path / 'picture.pdf'}: the file must end in .png or .svg"


def test_an_unwritable_file_is_refused_before_any_work(capsys, tmp_path):
    code = main([*COMMANDS["analyze"], "--plot", str(tmp_path / "no" / "such" / "dir.png")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "does not exist" in err


@pytest.mark.parametrize("name", ["analyze", "spectrum", "sweep"])
def test_without_matplotlib_a_clear_message_and_exit_2(capsys, tmp_path, monkeypatch, name):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails, as uninstalled
    code = main([*COMMANDS[name], "--plot", str(tmp_path / "picture.png")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip() == ("gradscope: error: --plot needs matplotlib, which is not installed: "
                           "pip install 'gradscope-bptt[plot]'")
    assert not (tmp_path / "picture.png").exists()
