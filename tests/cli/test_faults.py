"""Nothing lost, nothing hung: FIFOs, huge sweeps, unclosed quotes, failed writes, closed pipes, signals.

Whatever can block or run long is run in a subprocess with a timeout, so that a regression fails
the test instead of hanging the suite.
"""

from __future__ import annotations

import json

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gradscope.cli import main
from gradscope.errors import InputError
from gradscope.io.atomic import atomic_write

GRADSCOPE = [sys.executable, "-m", "gradscope"]
TIMEOUT = 60  # seconds any subprocess here may take before the test fails instead of hanging


def run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(GRADSCOPE + args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, **kw)


def assert_input_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("gradscope: error: "), result.stderr
    assert expected in result.stderr, result.stderr


# -- inputs that would block or blow up --------------------------------------------------------------


@pytest.mark.parametrize("flag, args", [
    ("--weights", []), ("--inputs", []), ("--text", ["--task", "text"]), ("--embeddings", ["--task", "text"]),
])
def test_a_fifo_is_refused_without_blocking(flag, args, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert_input_error(run(["analyze", *args, flag, str(fifo)], tmp_path), "is a named pipe (FIFO), not a regular file")


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "gradscope.toml")
    assert_input_error(run(["check", "--config", "gradscope.toml"], tmp_path), "named pipe (FIFO)")


def test_a_fifo_as_an_output_is_refused(tmp_path):
    os.mkfifo(tmp_path / "g.npz")
    assert_input_error(run(["analyze", "--save-grads", "g.npz"], tmp_path), "named pipe (FIFO), not a regular file")


@pytest.mark.parametrize("flag", ["--save-grads", "--save-weights"])
def test_an_output_name_too_long_is_an_input_error(flag, tmp_path, capsys):
    code = main(["analyze", "--seq-len", "5", flag, str(tmp_path / ("g" * 300 + ".npz"))])
    err = capsys.readouterr().err
    assert code == 2 and "File name too long" in err and len(err.splitlines()) == 1, err


def test_a_sweep_point_too_large_is_refused_before_any_point_runs(capsys):
    started = time.monotonic()
    code = main(["sweep", "--x", "hidden_size=4,1000000", "--y", "seq_len=5,6", "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--x hidden_size=1000000" in err and "lower --seq-len, --batch-size or --hidden-size" in err
    assert time.monotonic() - started < 5


def test_a_loaded_network_is_estimated_from_its_layers(tmp_path, capsys):
    """A 2-layer bidirectional state dict: the estimate counts its layers and directions."""
    rng = np.random.default_rng(0)
    h, d = 6, 3
    arrays = {}
    for k in range(2):
        for suffix in ("", "_reverse"):
            arrays[f"rnn.weight_ih_l{k}{suffix}"] = rng.normal(size=(h, d if k == 0 else 2 * h))
            arrays[f"rnn.weight_hh_l{k}{suffix}"] = rng.normal(size=(h, h))
            arrays[f"rnn.bias_ih_l{k}{suffix}"] = np.zeros(h)
            arrays[f"rnn.bias_hh_l{k}{suffix}"] = np.zeros(h)
    arrays["fc.weight"], arrays["fc.bias"] = rng.normal(size=(1, 2 * h)), np.zeros(1)
    np.savez(tmp_path / "net.npz", **arrays)
    code = main(["analyze", "--weights", str(tmp_path / "net.npz"), "--seq-len", "1000", "--max-memory", "300K"])
    err = capsys.readouterr().err
    assert code == 2 and "T=1000, B=16, H=6, 2 layers needs about" in err and "--max-memory (300 KiB)" in err, err
    assert "even checkpointed BPTT" in err
    # where the full path does not fit but the checkpointed one does, that one runs
    assert main(["analyze", "--weights", str(tmp_path / "net.npz"), "--seq-len", "1000", "--max-memory", "2M",
                 "--json"]) == 0
    assert "checkpointed BPTT" in json.loads(capsys.readouterr().out)["data"]
    assert main(["analyze", "--weights", str(tmp_path / "net.npz"), "--seq-len", "10", "--max-memory", "64M",
                 "--json"]) == 0
    capsys.readouterr()


def test_memory_error_is_an_input_error(monkeypatch, capsys):
    """A run the estimate let through but the machine could not hold: exit 2, not 'internal error'."""
    import gradscope.cli.analyze as command

    def too_much(*args, **kwargs):
        raise MemoryError("Unable to allocate 7.28 TiB")

    monkeypatch.setattr(command, "analyze", too_much)
    code = main(["analyze"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gradscope: error: out of memory (Unable to allocate 7.28 TiB)"), err


# -- texts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, line, what", [
    ('label,text\npos,"good movie\nneg,bad movie\npos,fine\n', 2, "never closed"),
    ('text,label\n"good, movie,pos\nbad movie,neg\n"fine",pos\n', 2, "more text follows its closing quote"),
])
def test_an_open_quote_is_an_error_naming_its_line(text, line, what, tmp_path, capsys):
    (tmp_path / "t.csv").write_text(text)
    code = main(["analyze", "--task", "text", "--text", str(tmp_path / "t.csv")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"t.csv, line {line}: unclosed quote" in err and what in err, err


# -- atomic outputs -------------------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("flag", ["--save-grads", "--save-weights"])
def test_a_full_disk_leaves_the_previous_file_intact(flag, tmp_path, monkeypatch, capsys):
    target = tmp_path / "out.npz"
    target.write_bytes(b"the previous, good file")
    real_savez = np.savez

    def half_then_full(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", half_then_full)
    code = main(["analyze", "--seq-len", "5", flag, str(target)])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot write {flag} {target}: No space left on device" in err, err
    assert target.read_bytes() == b"the previous, good file"
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(np, "savez", real_savez)
    assert main(["analyze", "--seq-len", "5", flag, str(target), "--json"]) == 0
    capsys.readouterr()
    with np.load(target) as data:
        assert data.files
    assert leftovers(tmp_path) == []


def test_a_failed_junit_write_leaves_the_previous_report(tmp_path, monkeypatch, capsys):
    """The data is written but cannot reach the disk (fsync fails, as on a full NFS share)."""
    target = tmp_path / "report.xml"
    target.write_text("<previous/>")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    code = main(["check", "--seq-len", "5", "--junit", str(target)])
    out, err = capsys.readouterr()
    assert code == 2 and "cannot write --junit" in err and "No space left on device" in err, err
    assert out == "", "the report is not printed when its file could not be written"
    assert target.read_text() == "<previous/>" and leftovers(tmp_path) == []


def test_an_interrupted_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "out.npz"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target, "--save-grads") as fh:
            fh.write(b"new, but not all of it")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []
    with atomic_write(target, "--save-grads") as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new" and leftovers(tmp_path) == []


def test_an_atomic_write_keeps_the_files_permissions(tmp_path):
    target = tmp_path / "out.xml"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with atomic_write(target) as fh:
        fh.write(b"new")
    assert target.stat().st_mode & 0o777 == 0o640


def test_a_file_size_limit_leaves_the_previous_file_intact(tmp_path):
    """RLIMIT_FSIZE in a real process: the write fails with EFBIG part-way (SIGXFSZ ignored)."""
    target = tmp_path / "g.npz"
    target.write_bytes(b"previous")

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    result = run(["analyze", "--seq-len", "200", "--save-grads", "g.npz"], tmp_path, preexec_fn=limited)
    assert_input_error(result, "cannot write --save-grads g.npz: File too large")
    assert target.read_bytes() == b"previous" and leftovers(tmp_path) == []


# -- closed pipes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--max-rows", "3000"], ["--json"]])
def test_a_closed_stdout_ends_quietly(args, tmp_path):
    """`gradscope analyze ... | head -c 10`: exit 0 and nothing on stderr, never 1 ('check failed')."""
    process = subprocess.Popen(GRADSCOPE + ["analyze", "--seq-len", "3000", *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(process.stdout.read(10)) == 10
    process.stdout.close()
    try:
        code = process.wait(timeout=TIMEOUT)
        err = process.stderr.read().decode()
    finally:
        process.kill()
    assert code == 0 and err == "", (code, err)


# -- signals ----------------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Every descendant's pid (psutil if installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        found, frontier = [], [pid]
        while frontier:
            parent = frontier.pop()
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    if int(fields[1]) == parent:
                        found.append(int(entry.name))
                        frontier.append(int(entry.name))
        return found
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def interrupt(args: list[str], signum: int, cwd: Path, ready) -> tuple[int, float, str, str, list[int]]:
    """Start gradscope, wait until ``ready(process)`` (bounded), send ``signum``; return (exit code,
    seconds from the signal to the exit, stdout, stderr, descendants still running)."""
    process = subprocess.Popen(GRADSCOPE + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ready(process):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the command never got going"
            time.sleep(0.05)
        kids = children(process.pid)
        sent = time.monotonic()
        process.send_signal(signum)
        out, err = process.communicate(timeout=10)
        elapsed = time.monotonic() - sent
        time.sleep(0.3)  # let the kernel reap what the pool terminated
        return process.returncode, elapsed, out.decode(), err.decode(), [k for k in kids if running(k)]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def workers_started(count: int):
    return lambda process: len(children(process.pid)) >= count + 1  # the workers, and the resource tracker


LONG_COMPARE = ["compare", "--jobs", "2", "--steps", "100000", "--json"]
LONG_SWEEP = ["sweep", "--jobs", "2", "--x", "hidden_size=8:400:30", "--y", "seq_len=100:3000:20", "--json"]


@pytest.mark.parametrize("args", [LONG_COMPARE, LONG_SWEEP], ids=["compare", "sweep"])
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_signal_ends_the_pool_within_seconds(args, signum, code, tmp_path):
    exit_code, elapsed, out, err, alive = interrupt(args, signum, tmp_path, workers_started(2))
    assert exit_code == code, err
    assert elapsed < 3, f"{elapsed:.1f} s from the signal to the exit"
    assert err == "gradscope: error: interrupted\n"
    assert out == "", "no partial output"
    assert alive == [], "no worker left running"


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_signal_ends_training_with_one_line(signum, code, tmp_path):
    first_line = lambda process: bool(process.stdout.readline())  # noqa: E731 - the loop is running
    exit_code, elapsed, _out, err, _alive = interrupt(
        ["train", "--steps", "100000", "--log-every", "1", "--ndjson"], signum, tmp_path, first_line)
    assert exit_code == code and elapsed < 3, (exit_code, elapsed, err)
    assert err == "gradscope: error: interrupted\n"


def test_a_signal_during_a_write_leaves_no_partial_file(tmp_path):
    """SIGTERM arriving inside atomic_write: the exception unwinds through it, and nothing is replaced."""
    target = tmp_path / "out.npz"
    target.write_bytes(b"old")
    from gradscope.cli.app import Interrupted

    with pytest.raises(Interrupted):
        with atomic_write(target, "--save-grads") as fh:
            fh.write(b"partial")
            raise Interrupted(signal.SIGTERM)
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_atomic_write_names_the_flag_on_a_missing_folder(tmp_path):
    with pytest.raises(InputError, match="cannot write --plot .*the folder .* does not exist"):
        with atomic_write(tmp_path / "no" / "p.png", "--plot"):
            pass


def test_a_failed_plot_write_leaves_the_previous_picture(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    target = tmp_path / "p.svg"
    target.write_text("<svg>previous</svg>")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    code = main(["analyze", "--seq-len", "5", "--plot", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write --plot" in err and "No space left on device" in err, err
    assert target.read_text() == "<svg>previous</svg>" and leftovers(tmp_path) == []
