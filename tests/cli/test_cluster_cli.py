"""Runs on a Dask cluster (``--scheduler``): compare, train --seeds, reproduce and sweep against a real
``distributed.LocalCluster`` on loopback give the bytes a local run gives; a bad or unreachable
address fails fast with one line; a scheduler lost mid-run keeps the runs that finished (``partial``);
a worker lost mid-run is run again once, said on stderr, and never dropped in silence."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time

import jsonschema
import pytest

from gradscope.cli import main
from gradscope.config import RunConfig
from gradscope.errors import Incomplete
from gradscope.schemas import load_schema
from gradscope.serialize import payload

distributed = pytest.importorskip("distributed")

TINY = ["--seq-len", "8", "--hidden-size", "4", "--batch-size", "4", "--eval-size", "8", "--steps", "3"]
RECIPE = ["--steps", "2", "--seq-len", "24", "--hidden-size", "3", "--batch-size", "3", "--eval-size", "6"]
# argv of each command that runs many trainings (or grid points), small; what --scheduler is added to
MANY = {
    "compare": ["compare", *TINY, "--mitigations", "lstm,clip-norm", "--seeds", "2"],
    "train": ["train", *TINY, "--seeds", "3", "--mitigation", "identity-relu+clip-norm"],
    "reproduce": ["reproduce", "irnn", *RECIPE, "--seeds", "2"],
    "sweep": ["sweep", "--hidden-size", "4", "--batch-size", "2", "--x", "spectral_radius=0.5,1,2",
              "--y", "seq_len=5,9"],
}
LOCAL = {"compare": ["--jobs", "1"], "train": [], "reproduce": ["--jobs", "1"], "sweep": ["--jobs", "1"]}
BOUND = 8.0  # seconds: a generous bound on failing fast (the budget is 5), not a benchmark


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as running:
        yield running


@pytest.mark.parametrize("command", list(MANY))
def test_the_cluster_gives_the_bytes_of_a_local_run_and_says_each_run_done(capsys, cluster, command):
    code, local, _ = run(capsys, *MANY[command], *LOCAL[command], "--json")
    assert code == 0
    code, remote, err = run(capsys, *MANY[command], "--json", "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    assert remote == local  # seeded per run, not per worker
    lines = err.splitlines()  # stderr is a pipe here: one plain line as each run comes back
    assert lines and all(line.startswith("gradscope: ") for line in lines)
    assert re.fullmatch(r"gradscope: [\w ]+: (\d+)/\1( \(.+\))?", lines[-1]), lines[-1]  # the last: n/n
    if command in ("compare", "reproduce"):
        assert all(", seed " in line for line in lines)  # which run, by name and seed


def test_reproduce_full_on_the_cluster_runs_the_papers_scale(capsys, cluster):
    """The record of a paper-scale run, at a reduced --steps: the full settings, on the cluster,
    with the bytes of the same run here."""
    argv = ["reproduce", "irnn", "--full", "--steps", "2", "--eval-size", "4", "--json"]
    code, remote, err = run(capsys, *argv, "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    doc = json.loads(remote)
    assert doc["scale"] == "full" and doc["partial"] is None
    assert (doc["config"]["seq_len"], doc["config"]["hidden_size"], doc["config"]["batch_size"]) == (150, 100, 16)
    assert run(capsys, *argv, "--jobs", "1")[1] == remote


# forget-bias --full (T = 750, H = 128, three LSTM arms) takes 13 s even at two steps: left out here
@pytest.mark.parametrize("name", ["adding", "clipping", "copy", "temporal-order"])
def test_every_recipe_runs_full_on_the_cluster(capsys, cluster, name):
    from gradscope.commands.reproduce import EXPERIMENTS

    code, out, err = run(capsys, "reproduce", name, "--full", "--steps", "2", "--eval-size", "4", "--json",
                         "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["scale"] == "full" and doc["training"]["steps"] == 2
    assert all(doc["config"][k] == v for k, v in EXPERIMENTS[name].full.items())
    assert [a["label"] for a in doc["arms"]] == [a.label for a in EXPERIMENTS[name].arms]
    assert doc["reproduced"] == all(a["met"] for a in doc["arms"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", list(MANY))
@pytest.mark.parametrize("address, message", [
    ("not an address", "not an address; give tcp://HOST:PORT"),
    ("http://127.0.0.1:8786", "unknown scheme 'http'"),
    ("tcp://127.0.0.1:{free}", "cannot reach the Dask scheduler (Connection refused)"),
])
def test_a_bad_or_unreachable_scheduler_is_one_line_and_exit_2_at_once(capsys, command, address, message):
    address = address.format(free=_free_port())
    started = time.perf_counter()
    code, out, err = run(capsys, *MANY[command], "--scheduler", address)
    assert time.perf_counter() - started < BOUND
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"--scheduler {address}: " in err and message in err, err


def test_a_scheduler_that_does_not_answer_is_one_line_after_the_connect_budget(capsys):
    """A port that accepts the connection and never says a word (Dask's own client would wait for
    its handshake forever)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        started = time.perf_counter()
        code, out, err = run(capsys, *MANY["compare"], "--scheduler", address)
        assert time.perf_counter() - started < BOUND
    assert code == 2 and out == ""
    assert err == f"gradscope: error: --scheduler {address}: cannot reach the Dask scheduler (no answer within 2.5 s)\n"


def test_a_server_that_is_not_dask_leaves_no_traceback_at_exit():
    """Something answers, in another protocol: Dask's client starts and fails; the half-made client
    is closed at once (not by Client.__del__ at exit, after 20 s and a traceback)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 8)
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gradscope", "compare", *TINY, "--scheduler", address],
                          capture_output=True, text=True, timeout=60)
    server.close()
    assert time.perf_counter() - started < BOUND
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"gradscope: error: --scheduler {address}: cannot reach the Dask scheduler " \
                          "(what answers there is not a Dask scheduler)\n"


def _closing_after_first(cluster):
    """A progress callback that closes the cluster (its scheduler and worker) once a run is back."""
    def progress(*args):
        if cluster.status.name == "running":
            cluster.close()
    return progress


@pytest.mark.parametrize("command", list(MANY))
def test_a_scheduler_lost_mid_run_keeps_the_finished_runs_as_a_partial_result(command):
    from gradscope.commands.compare import compare
    from gradscope.commands.reproduce import reproduce
    from gradscope.commands.sweep import sweep
    from gradscope.commands.train import train

    small = dict(seq_len=8, hidden_size=4, batch_size=4, eval_size=8, steps=20)
    lost = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                    dashboard_address=None)
    address, progress = lost.scheduler_address, _closing_after_first(lost)
    calls = {
        "compare": lambda: compare(mitigations=["lstm", "clip-norm"], seeds=2, progress=progress,
                                   scheduler=address, **small),
        "train": lambda: train(seeds=3, progress=progress, scheduler=address, **small),
        "reproduce": lambda: reproduce("irnn", seeds=2, progress=progress, scheduler=address, steps=20,
                                       seq_len=24, hidden_size=3, batch_size=3, eval_size=6),
        "sweep": lambda: sweep(RunConfig(hidden_size=4, batch_size=2), x="spectral_radius=0.5:2:8",
                               y="seq_len=5,9,13", progress=progress, scheduler=address),
    }
    try:
        with pytest.raises(Incomplete) as caught:
            calls[command]()
    finally:
        lost.close()
    assert str(caught.value) == f"--scheduler {address}: lost the connection to the Dask scheduler"
    doc = payload(caught.value.result)
    assert list(jsonschema.Draft202012Validator(load_schema(command)).iter_errors(doc)) == []
    partial = doc["partial"]
    assert partial["error"] == str(caught.value)
    assert 1 <= partial["finished"] < partial["total"] == partial["finished"] + len(partial["missing"])
    if command == "compare":
        assert doc["best"] is None and len(doc["runs"]) >= 1
        kept = sum(len(r["seeds"]["seeds"]) for r in doc["runs"])
        assert kept == partial["finished"] and {"mitigation", "seed"} == set(partial["missing"][0])
    elif command == "reproduce":
        assert doc["reproduced"] is False and doc["verdict"].startswith("not judged")
    elif command == "train":
        assert len(doc["seeds"]["seeds"]) == partial["finished"]
    else:
        values = [v for m in doc["maps"] for row in m["values"] for v in row]
        assert values.count(None) >= len(partial["missing"])


def test_the_cli_prints_the_partial_json_and_exits_2_when_the_scheduler_is_lost():
    """The whole command, as a user runs it: a line on stderr as each run comes back; the scheduler
    goes away after the first; the JSON of the runs that finished on stdout, one error line, exit 2."""
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                       dashboard_address=None)
    address = cluster.scheduler_address
    argv = [sys.executable, "-m", "gradscope", "compare", "--seq-len", "8", "--hidden-size", "4", "--batch-size", "4",
            "--eval-size", "8", "--steps", "400", "--mitigations", "lstm,gru", "--json", "--scheduler", address]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        cluster.close()
        out, rest = proc.communicate(timeout=60)
    finally:
        cluster.close()
        if proc.poll() is None:
            proc.kill()
    assert first.startswith("gradscope: runs: 1/3 (")
    assert proc.returncode == 2
    assert rest.splitlines()[-1] == f"gradscope: error: --scheduler {address}: lost the connection to the Dask scheduler"
    doc = json.loads(out)
    assert doc["partial"]["error"] in rest and doc["partial"]["total"] == 3
    assert list(jsonschema.Draft202012Validator(load_schema("compare")).iter_errors(doc)) == []


def _dies_first(marker: str, times: int, value: int) -> int:
    """value * 10; but the run of value 1 ends its worker's process the first ``times`` times."""
    if value == 1 and len(os.listdir(marker)) < times:
        open(os.path.join(marker, str(len(os.listdir(marker)))), "w").close()
        os._exit(1)
    return value * 10


def test_a_lost_worker_is_run_again_once_and_said_never_dropped(tmp_path, caplog):
    import cloudpickle

    from gradscope.cluster import Lost
    from gradscope.parallel import run_each

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file
    once, twice = tmp_path / "once", tmp_path / "twice"
    once.mkdir(), twice.mkdir()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        with caplog.at_level(logging.WARNING, logger="gradscope.cluster"):
            results = run_each(_dies_first, [(str(once), 1, v) for v in range(3)], scheduler=c.scheduler_address,
                               label=lambda i: f"run {i}")
        assert results == {0: 0, 1: 10, 2: 20}
        assert any(r.getMessage().endswith("was lost while it ran run 1; running it again (once)")
                   for r in caplog.records)
        with pytest.raises(Lost) as caught:
            run_each(_dies_first, [(str(twice), 5, v) for v in range(3)], scheduler=c.scheduler_address,
                     label=lambda i: f"run {i}")
    assert "was lost with two workers" in str(caught.value) and "not run a third time" in str(caught.value)
    assert caught.value.finished.get(0) == 0  # what came back is kept


def test_worker_losses_are_warning_lines_of_the_cli(capsys):
    """A logged warning of the core reaches stderr as the CLI's warning line, once; -q silences it."""
    from gradscope.cli.options import verbosity

    with verbosity(False, False, "compare"):
        logging.getLogger("gradscope.cluster").warning("worker %s was lost", "tcp://w:1")
    with verbosity(True, False, "compare"):
        logging.getLogger("gradscope.cluster").warning("not shown")
    assert capsys.readouterr().err == "gradscope: warning: worker tcp://w:1 was lost\n"


def test_without_a_scheduler_no_command_imports_dask():
    code = ("import sys, gradscope\n"
            "gradscope.compare(seq_len=6, hidden_size=3, batch_size=2, eval_size=4, steps=2, mitigations=['gru'])\n"
            "gradscope.train(seq_len=6, hidden_size=3, batch_size=2, eval_size=4, steps=2, seeds=2)\n"
            "gradscope.reproduce('clipping', steps=2, seq_len=6, hidden_size=3, batch_size=2, eval_size=4)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
