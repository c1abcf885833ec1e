"""The main job: every demo meets its threshold in quick mode; the command line writes the plots
and summary.json."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from lstm_ext.tools import demos

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    lines = []
    context = demos.Context(out_dir=str(out), quick=True, log=lines.append, plots=HAS_MATPLOTLIB)
    return out, demos.run_demos(list(demos.DEMOS), context), lines


@pytest.mark.parametrize("name", demos.DEMOS)
def test_every_demo_meets_its_threshold_in_quick_mode(quick_run, name):
    out, summary, _ = quick_run
    result = summary["demos"][name]
    assert result["passed"], f"{name}: {result['threshold']}: {result['metrics']}"
    if HAS_MATPLOTLIB:
        assert (out / result["plot"]).stat().st_size > 10_000
    else:
        assert result["plot"] is None


def test_the_demos_report_what_they_promise(quick_run):
    out, summary, lines = quick_run
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["passed"] and summary["quick"]
    company = summary["demos"]["two-company"]["metrics"]
    assert abs(company["prediction_A"]) < 0.05 and abs(company["prediction_B"] - 1) < 0.05
    forecast = summary["demos"]["forecasting"]
    assert forecast["metrics"]["lstm_mape_percent"] < forecast["metrics"]["seasonal_naive_mape_percent"]
    assert len(forecast["forecast"]) == 24
    memory = summary["demos"]["long-memory"]["metrics"]
    assert memory["lengths"] == [10, 50, 100] and min(memory["lstm_accuracy"][1:]) >= 0.9
    assert memory["gradient_decay_rnn"] < 1e-6 < memory["gradient_decay_lstm_c"]
    text = summary["demos"]["text"]
    assert text["metrics"]["test_loss"] < text["metrics"]["unigram_baseline"]
    assert 1 <= text["metrics"]["best_epoch"] <= text["metrics"]["epochs"]
    assert len(text["samples"]) == 3 and all(len(s) > 80 for s in text["samples"])
    assert any("company A: day 5 predicted" in line for line in lines)


def test_command_line(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 80)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "lstm_ext", "demo", "--quick", "--only", "two-company", "--only",
                             "text", "--text", str(text), "--out", str(out)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["demos"]) == ["two-company", "text"]
    assert summary["demos"]["text"]["text"] == str(text)
    assert "2 of 2 demos met their thresholds" in result.stdout
    if HAS_MATPLOTLIB:
        assert (out / "two_company.png").exists() and (out / "text.png").exists()
    else:
        assert "matplotlib is not installed" in result.stdout


def test_command_line_errors(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "lstm_ext", "demo", "--text", str(tmp_path / "nope.txt")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    unknown = subprocess.run([sys.executable, "-m", "lstm_ext", "demo", "--only", "chess"], capture_output=True,
                             text=True, timeout=120)
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    short = tmp_path / "short.txt"
    short.write_text("too short")
    context = demos.Context(out_dir=str(tmp_path / "o"), quick=True, text_path=str(short), log=lambda _: None,
                            plots=False)
    with pytest.raises(ValueError, match="the text demo needs at least"):
        demos.run_demos(["text"], context)


def test_without_matplotlib_the_demos_run_and_say_so(tmp_path):
    blocker = tmp_path / "blocked" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib blocked for this test')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "lstm_ext", "demo", "--quick", "--only", "two-company", "--out",
                             str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matplotlib is not installed: no plots" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plots"] is False and summary["demos"]["two-company"]["plot"] is None
    assert not list(out.glob("*.png"))
