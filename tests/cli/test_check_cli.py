"""`gradscope check`: thresholds, exit codes, pyproject settings, CI output, and the Python API."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

import gradscope
from gradscope.commands.check import Criteria, parse_fail_on, show, show_against
from gradscope.cli import main
from gradscope.errors import InputError
from gradscope.render.ci import escape_data, escape_property

SMALL = ["--seq-len", "30", "--hidden-size", "8"]
# A linear RNN with spectral radius 3 over 2000 steps: every gradient norm overflows float64.
OVERFLOW = ["--activation", "linear", "--spectral-radius", "3", "--seq-len", "2000"]
# Finite but growing back in time: n_1 / n_T is about 1e3.
GROWING = ["--activation", "linear", "--spectral-radius", "1.4", "--seq-len", "25", "--hidden-size", "8"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run in an empty directory (no pyproject.toml with settings) and outside GitHub Actions."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def check_json(capsys, *argv):
    code, out, err = run(capsys, "check", *argv, "--json")
    return code, json.loads(out), err


def by_name(doc):
    return {c["name"]: c for c in doc["checks"]}


# --- thresholds and exit codes ------------------------------------------------------------------


def test_passing_check_prints_the_report_and_exits_0(capsys):
    code, out, err = run(capsys, "check", *SMALL)
    assert code == 0 and err == ""
    assert "PASSED" in out and "from flags; the rest defaults" in out
    for name in ("vanishing", "exploding", "nonfinite"):
        assert name in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_min_ratio_failure_prints_the_report_then_exits_1_with_the_value_and_threshold(capsys):
    code, out, err = run(capsys, "check", "--min-ratio", "1e-4")
    assert code == 1
    assert "FAILED" in out and "min_ratio" in out  # the report comes first, on stdout
    assert err.splitlines() == [
        "gradscope: error: check failed: min_ratio: "
        "ratio ||dL/da_1||/||dL/da_T|| = 2.46e-13 is below --min-ratio 0.0001"
    ]
    _, doc, _ = check_json(capsys, "--min-ratio", "1e-4")
    assert doc["flow"]["ratio_first_last"] == pytest.approx(2.46e-13, rel=1e-2)
    assert by_name(doc)["min_ratio"]["measured"] == doc["flow"]["ratio_first_last"]


def test_failed_check_still_prints_its_json(capsys):
    code, doc, err = check_json(capsys, "--min-ratio", "1e-4")
    assert code == 1 and doc["passed"] is False and doc["failures"] == 1
    assert by_name(doc)["min_ratio"] == {
        "name": "min_ratio", "status": "fail", "enforced": True,
        "measured": doc["flow"]["ratio_first_last"], "threshold": 1e-4,
        "message": "ratio ||dL/da_1||/||dL/da_T|| = 2.46e-13 is below --min-ratio 0.0001",
    }
    assert len(err.splitlines()) == 1


def test_max_ratio_fails_a_gradient_that_grows_back_in_time(capsys):
    code, doc, _ = check_json(capsys, *GROWING, "--max-ratio", "10")
    ratio = doc["flow"]["ratio_first_last"]
    assert ratio > 10 and code == 1
    assert by_name(doc)["max_ratio"]["status"] == "fail"
    assert "is above --max-ratio 10" in by_name(doc)["max_ratio"]["message"]
    code, doc, _ = check_json(capsys, *GROWING, "--max-ratio", repr(ratio * 2))
    assert code == 0 and by_name(doc)["max_ratio"]["status"] == "pass"


def test_verdicts_warn_unless_named_in_fail_on(capsys):
    code, doc, _ = check_json(capsys, *SMALL)
    assert code == 0 and doc["warnings"] == 1
    assert by_name(doc)["vanishing"] | {"message": None} == {
        "name": "vanishing", "status": "warn", "enforced": False, "measured": doc["flow"]["ratio_first_last"],
        "threshold": 0.01, "message": None,
    }
    code, doc, err = check_json(capsys, *SMALL, "--fail-on", "vanishing")
    assert code == 1 and by_name(doc)["vanishing"]["status"] == "fail"
    assert "is below 0.01: the gradient vanishes" in err


def test_default_fails_on_overflow_only(capsys):
    code, doc, err = check_json(capsys, *OVERFLOW)
    assert code == 1 and doc["criteria"]["fail_on"] == ["nonfinite"]
    assert [c["status"] for c in doc["checks"]] == ["pass", "warn", "fail"]
    assert "2000 of 2000 gradient norms are not finite" in err
    assert by_name(doc)["nonfinite"]["measured"] >= 2000
    code, doc, _ = check_json(capsys, *OVERFLOW, "--fail-on", "none")
    assert code == 0 and doc["passed"] and doc["warnings"] == 2


def test_a_ratio_that_cannot_be_measured_fails_the_ratio_thresholds(capsys):
    code, doc, err = check_json(capsys, *OVERFLOW, "--fail-on", "none", "--min-ratio", "1e-6")
    assert code == 1
    assert by_name(doc)["min_ratio"]["measured"] is None
    assert "cannot be met" in err and "overflowed" in err


def test_gated_cells_name_the_hidden_state_h(capsys):
    _, doc, _ = check_json(capsys, "--cell", "lstm", *SMALL, "--min-ratio", "1e-30")
    assert by_name(doc)["min_ratio"]["message"].startswith("ratio ||dL/dh_1||/||dL/dh_T|| = ")


# --- the plain functions ------------------------------------------------------------------------


def test_fail_on_names_are_validated_and_put_in_order():
    assert parse_fail_on("nonfinite, vanishing") == ("vanishing", "nonfinite")
    assert parse_fail_on(["exploding"]) == ("exploding",)
    assert parse_fail_on("none") == ()
    with pytest.raises(InputError, match="unknown condition 'bogus'"):
        parse_fail_on("vanishing,bogus")
    with pytest.raises(InputError, match="cannot be combined"):
        parse_fail_on("none,vanishing")


@pytest.mark.parametrize("kwargs, match", [
    ({"min_ratio": 0}, "--min-ratio must be a positive"),
    ({"max_ratio": float("inf")}, "--max-ratio must be a positive"),
    ({"min_ratio": 1.0, "max_ratio": 0.5}, "no ratio can pass"),
])
def test_criteria_reject_impossible_thresholds(kwargs, match):
    with pytest.raises(InputError, match=match):
        Criteria(**kwargs)


def test_messages_show_the_threshold_as_written_and_enough_digits_to_be_true():
    assert show(1e-6) == "1e-06" and show(100.0) == "100" and show(0.25) == "0.25"
    assert show_against(2.4598e-13, 1e-6) == "2.46e-13"
    assert show_against(0.00099996, 0.001) == "0.00099996"  # not "0.001 is below 0.001"
    assert show_against(0.0010004, 0.001) == "0.0010004"


# --- settings files -----------------------------------------------------------------------------


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_pyproject_settings_are_found_upwards_and_named(capsys, tmp_path, monkeypatch):
    write(tmp_path / "pyproject.toml",
          '[project]\nname = "x"\n\n[tool.gradscope]\nseq-len = 20\nhidden_size = 6\n'
          'min-ratio = 1e-30\nfail-on = ["exploding", "nonfinite"]\n')
    write(tmp_path / "a" / "pyproject.toml", '[project]\nname = "inner, without settings"\n')
    (tmp_path / "a" / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a" / "b")
    code, doc, _ = check_json(capsys)
    assert code == 0
    assert doc["settings_file"] == "../../pyproject.toml"
    assert doc["config"]["seq_len"] == 20 and doc["config"]["hidden_size"] == 6
    assert doc["criteria"] == {"min_ratio": 1e-30, "max_ratio": None, "fail_on": ["exploding", "nonfinite"],
                               "every_layer": False}
    assert doc["settings_sources"] == dict.fromkeys(["fail_on", "hidden_size", "min_ratio", "seq_len"], "file")
    _, out, _ = run(capsys, "check")
    line = "settings: fail_on, hidden_size, min_ratio, seq_len from ../../pyproject.toml; the rest defaults"
    assert line in " ".join(out.split())  # the line may wrap at 80 columns
    _, out, _ = run(capsys, "check", "--seed", "3")
    assert "from ../../pyproject.toml; --seed from flags; the rest defaults" in " ".join(out.split())


def test_flags_on_the_command_line_override_the_file(capsys, tmp_path):
    write(tmp_path / "pyproject.toml",
          "[tool.gradscope]\nseq-len = 20\nseed = 3\nmin-ratio = 0.5\nfail-on = 'vanishing'\n")
    _, doc, _ = check_json(capsys, "--seq-len", "12", "--seed", "0", "--min-ratio", "1e-30",
                           "--fail-on", "none")
    assert doc["config"]["seq_len"] == 12
    assert doc["config"]["seed"] == 0  # given explicitly, though it is the default
    assert doc["criteria"] == {"min_ratio": 1e-30, "max_ratio": None, "fail_on": [], "every_layer": False}
    _, doc, _ = check_json(capsys)
    assert doc["config"]["seed"] == 3 and doc["criteria"]["fail_on"] == ["vanishing"]


def test_config_file_with_top_level_keys_and_paths_relative_to_it(capsys, tmp_path):
    weights = tmp_path / "models" / "rnn.npz"
    weights.parent.mkdir()
    assert main(["analyze", "--hidden-size", "5", "--save-weights", str(weights)]) == 0
    capsys.readouterr()
    config = write(tmp_path / "ci" / "gradscope.toml", 'weights = "../models/rnn.npz"\nseq-len = 15\n')
    code, doc, _ = check_json(capsys, "--config", str(config))
    assert code == 0
    assert doc["settings_file"] == str(config)
    assert doc["config"]["hidden_size"] == 5 and doc["config"]["weights"] == str(weights)


def test_config_flag_reads_a_pyproject_table_and_skips_discovery(capsys, tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.gradscope]\nseq-len = 20\n")
    other = write(tmp_path / "other" / "pyproject.toml", "[tool.gradscope]\nseq-len = 9\n")
    _, doc, _ = check_json(capsys, "--config", str(other))
    assert doc["config"]["seq_len"] == 9 and doc["settings_file"] == str(other)


# --- CI output ----------------------------------------------------------------------------------


def test_github_format_writes_annotations_after_the_report(capsys):
    code, out, _ = run(capsys, "check", *SMALL, "--min-ratio", "1e-3", "--format", "github")
    assert code == 1
    lines = out.splitlines()
    assert lines[-2].startswith("::error title=gradscope check min_ratio::ratio ||dL/da_1||")
    assert lines[-2].endswith("is below --min-ratio 0.001")
    assert lines[-1].startswith("::warning title=gradscope check vanishing::")
    assert "FAILED" in out


def test_github_format_with_json_keeps_stdout_one_document(capsys):
    code, out, err = run(capsys, "check", *SMALL, "--min-ratio", "1e-3", "--format", "github", "--json")
    assert code == 1 and json.loads(out)["passed"] is False
    assert err.splitlines()[0].startswith("::error title=gradscope check min_ratio::")
    assert err.splitlines()[-1].startswith("gradscope: error: check failed")


def test_workflow_command_escaping():
    assert escape_data("100% sure\r\nnext") == "100%25 sure%0D%0Anext"
    assert escape_property("gradscope: a, b") == "gradscope%3A a%2C b"


def test_step_summary_is_appended_as_a_markdown_table(capsys, tmp_path, monkeypatch):
    summary = write(tmp_path / "summary.md", "earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert run(capsys, "check", *SMALL, "--min-ratio", "1e-3")[0] == 1
    assert run(capsys, "check", *SMALL)[0] == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n")
    assert text.count("| check | result | enforced | measured | threshold | message |") == 2
    assert "### gradscope check: FAILED (1 of 4)" in text and "### gradscope check: passed" in text
    assert "| min_ratio | **FAIL** | yes | 1.40e-08 | 0.001 | ratio \\|\\|dL/da_1\\|\\|" in text


@pytest.mark.parametrize("min_ratio, code", [("1e-30", 0), ("1e-3", 1)])
def test_a_step_summary_that_cannot_be_written_leaves_the_gate_as_it_is(capsys, tmp_path, monkeypatch,
                                                                         min_ratio, code):
    """GITHUB_STEP_SUMMARY is the environment's, not asked for: an unwritable one is a warning."""
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "no" / "such" / "summary.md"))
    got = run(capsys, "check", *SMALL, "--min-ratio", min_ratio)
    assert got[0] == code and "warning: cannot append to GITHUB_STEP_SUMMARY" in got[2]


def test_junit_report_has_one_testcase_per_check(capsys, tmp_path):
    report = tmp_path / "gradscope.xml"
    code, doc, _ = check_json(capsys, *SMALL, "--min-ratio", "1e-3", "--junit", str(report))
    assert code == 1
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite.get("tests") == str(len(doc["checks"])) and suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == [c["name"] for c in doc["checks"]]
    failure = cases["min_ratio"].find("failure")
    assert failure.get("message") == by_name(doc)["min_ratio"]["message"]
    assert all(cases[name].find("failure") is None for name in ("vanishing", "exploding", "nonfinite"))
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["seq_len"] == "30" and properties["cell"] == "rnn"


def test_same_run_same_junit_bytes(capsys, tmp_path):
    first, second = tmp_path / "a.xml", tmp_path / "b.xml"
    for path in (first, second):
        run(capsys, "check", *SMALL, "--junit", str(path))
    assert first.read_bytes() == second.read_bytes()


# --- the Python API -----------------------------------------------------------------------------


def test_python_api_returns_what_the_cli_prints(capsys):
    report = gradscope.check(seq_len=30, hidden_size=8, min_ratio=1e-3)
    assert isinstance(report, gradscope.CheckResult) and report.passed is False  # no exception
    assert isinstance(report.analysis, gradscope.AnalyzeResult)
    _, out, _ = run(capsys, "check", *SMALL, "--min-ratio", "1e-3", "--json")
    assert gradscope.dumps(report) + "\n" == out
    assert gradscope.payload(report) == json.loads(out)


def test_python_api_accepts_a_run_config():
    config = gradscope.RunConfig(seq_len=30, hidden_size=8)
    report = gradscope.check(config, fail_on=["vanishing"])
    assert report.config["seq_len"] == 30 and not report.passed
    assert report.criteria == Criteria(fail_on=("vanishing",))


def test_junit_properties_only_for_what_the_run_has(capsys, tmp_path):
    import xml.etree.ElementTree as ET

    report = tmp_path / "r.xml"
    code, _, _ = run(capsys, "check", *SMALL, "--junit", str(report))
    names = {p.get("name") for p in ET.parse(report).getroot().iter("property")}
    assert code == 0 and {"cell", "seq_len", "task"} <= names
    assert not names & {"text", "text_column", "label_column", "padding", "max_vocab", "embeddings"}


def test_the_view_shows_a_ratio_beyond_float64_from_its_logarithm(capsys):
    """At T = 5000 the ratio is ~1e-671: shown as such (not 0), its sparkline without overflow marks."""
    code = main(["check", "--seq-len", "5000"])
    out = capsys.readouterr().out
    assert code in (0, 1)
    line = next(text for text in out.splitlines() if "||dL/da_1|| / ||dL/da_T|| =" in text)
    assert "e-6" in line and "= 0 " not in line
    spark = out.splitlines()[out.splitlines().index(line) + 1]
    assert "!" not in spark


def bidirectional(path) -> str:
    """A bidirectional RNN state dict whose forward direction keeps its gradient (orthogonal W_hh)
    and whose reverse one loses it (0.2 times the same): the headline passes what the reverse fails."""
    import numpy as np

    rng = np.random.default_rng(0)
    h, d = 8, 2
    q, _ = np.linalg.qr(rng.standard_normal((h, h)))
    sd = {"fc.weight": rng.standard_normal((1, 2 * h)) * 0.3, "fc.bias": np.zeros(1)}
    for suffix, scale in (("", 1.0), ("_reverse", 0.2)):
        sd.update({f"rnn.weight_ih_l0{suffix}": rng.standard_normal((h, d)) * 0.5,
                   f"rnn.weight_hh_l0{suffix}": q * scale,
                   f"rnn.bias_ih_l0{suffix}": np.zeros(h), f"rnn.bias_hh_l0{suffix}": np.zeros(h)})
    np.savez(path, **sd)
    return str(path)


def test_every_layer_makes_the_checks_on_each_direction_and_names_the_worst(capsys, tmp_path):
    weights = ["--weights", bidirectional(tmp_path / "bi.npz"), "--seq-len", "20", "--min-ratio", "1e-3"]
    code, doc, _ = check_json(capsys, *weights)
    assert code == 0 and doc["passed"] and doc["criteria"]["every_layer"] is False
    code, doc, err = check_json(capsys, *weights, "--every-layer")
    assert code == 1 and not doc["passed"] and doc["criteria"]["every_layer"] is True
    reverse = next(r for r in gradscope.analyze(weights=str(tmp_path / "bi.npz"), seq_len=20).layers
                   if r.direction == "reverse")
    failed = next(c for c in doc["checks"] if c["name"] == "min_ratio")
    assert failed["status"] == "fail" and failed["measured"] == pytest.approx(reverse.flow.ratio_first_last, rel=1e-12)
    assert failed["message"].startswith("layer 0 reverse: ratio ||dL/da_1||/||dL/da_T|| = ")
    assert "check failed: min_ratio: layer 0 reverse: " in err
    (tmp_path / "pyproject.toml").write_text("[tool.gradscope]\nevery-layer = true\n")
    code, doc, _ = check_json(capsys, *weights)
    assert code == 1 and doc["settings_sources"]["every_layer"] == "file"
    result = gradscope.check(weights=str(tmp_path / "bi.npz"), seq_len=20, min_ratio=1e-3, every_layer=True)
    assert not result.passed and result.criteria.every_layer


def test_the_sparkline_of_a_padded_batch_is_exact_where_float64_underflows(capsys, tmp_path):
    """The end-aligned profile is drawn from the log domain: a gradient that falls far below 1e-308
    is still a bar, not the '!' of a norm that is not finite."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rnn.npz", **{"rnn.weight_ih_l0": rng.standard_normal((6, 2)),
                                      "rnn.weight_hh_l0": rng.standard_normal((6, 6)) * 0.05,
                                      "rnn.bias_ih_l0": np.zeros(6), "rnn.bias_hh_l0": np.zeros(6),
                                      "fc.weight": rng.standard_normal((1, 6)), "fc.bias": np.zeros(1)})
    np.save(tmp_path / "x.npy", rng.standard_normal((4, 600, 2)))
    np.save(tmp_path / "lengths.npy", np.array([600, 500, 400, 300]))
    np.save(tmp_path / "y.npy", rng.standard_normal(4))
    code, out, _ = run(capsys, "check", "--weights", str(tmp_path / "rnn.npz"), "--inputs", str(tmp_path / "x.npy"),
                       "--lengths", str(tmp_path / "lengths.npy"), "--targets", str(tmp_path / "y.npy"), "--loss", "mse")
    assert code == 0 and "= 1.44e-584" in out  # the ratio itself beyond float64
    assert "ratio ||dL/da_1||/||dL/da_T|| = 10^-583.8" in " ".join(out.split())  # not "= 0"
    bars = next(line for line in out.splitlines() if line.startswith("  ") and line.strip()[:1] in "▁▂▃▄▅▆▇█!")
    assert "!" not in bars and len(bars.strip()) == 60
