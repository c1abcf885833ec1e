"""The main job: every demo meets its threshold in quick mode; the command line writes the plots
and summary.json."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import tracemalloc

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


KINDS = ("LSTM", "GRU", "RNN")


def test_every_demo_compares_lstm_gru_and_rnn_of_the_same_size(quick_run):
    _, summary, _ = quick_run
    for name, result in summary["demos"].items():
        metrics = result["metrics"]
        assert set(KINDS) <= set(metrics), f"{name}: {sorted(metrics)}"
        assert all(word in result["threshold"] for word in KINDS), f"{name}: {result['threshold']}"
        assert isinstance(metrics["hidden"], int), name


def test_the_demos_report_what_they_promise(quick_run):
    out, summary, lines = quick_run
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["passed"] and summary["quick"]
    demo = {name: result["metrics"] for name, result in summary["demos"].items()}

    # two-company: all three carry day 1 through three identical days.
    for kind in KINDS:
        company = demo["two-company"][kind]
        assert abs(company["prediction_A"]) < 0.05 and abs(company["prediction_B"] - 1) < 0.05, kind
        assert company["max_abs_error"] == max(abs(company["prediction_A"]), abs(company["prediction_B"] - 1))
    assert [line.split()[0] for line in lines if "day 5 predicted" in line] == list(KINDS)

    # forecasting: each kind's forecast (a mean of models) beats seasonal naive on both measures.
    naive = demo["forecasting"]["seasonal naive"]
    for kind in KINDS:
        forecast = demo["forecasting"][kind]
        assert forecast["rmse"] < naive["rmse"] and forecast["mape_percent"] < naive["mape_percent"], kind
        assert len(forecast["epochs"]) == demo["forecasting"]["models"] == 3
        assert len(summary["demos"]["forecasting"]["forecast"][kind]) == 24

    # long-memory: the gated layers solve the long lengths, the RNN does not, and its gradient fades.
    memory = demo["long-memory"]
    assert memory["lengths"] == [10, 50, 100]
    for kind in ("LSTM", "GRU"):
        assert min(memory[kind]["accuracy"][1:]) >= 0.9, kind
    assert max(memory["RNN"]["accuracy"][1:]) < 0.9
    assert memory["RNN"]["gradient_kept_at_step_0"] < 1e-6 < memory["LSTM"]["cell_gradient_kept_at_step_0"]
    assert memory["RNN"]["gradient_kept_at_step_0"] < min(memory[k]["gradient_kept_at_step_0"] for k in ("LSTM", "GRU"))
    assert set(summary["demos"]["long-memory"]["gradient_flow"]) == set(KINDS)
    flow_lines = [line for line in lines if "gradient flow" in line or "LSTM's cell" in line]
    assert any("as a fraction of its value at step 99" in line for line in flow_lines)
    assert any("of its value at step 98" in line for line in flow_lines)

    # text: every language model beats the unigram baseline on the test part, and writes a line.
    text = summary["demos"]["text"]
    for kind in KINDS:
        model = text["metrics"][kind]
        assert model["test_loss"] < text["metrics"]["unigram_baseline"], kind
        assert 1 <= model["best_epoch"] <= model["epochs"], kind
        assert text["samples"][kind].startswith(text["prompt"]) and len(text["samples"][kind]) > 80, kind


# An int8 copy (lstm_ext.quantize_dynamic) of each trained model must come close to the float32 model.
# Measured on the quick runs of seeds 0-2 (2 CPUs, AVX-512): forecasting MAPE, int8 minus float32,
# -0.031 to +0.028 percentage points (float32 3.3-10.3%); text test loss -0.0008 to +0.0007 nats
# per character (float32 1.71-1.88). The bounds leave about ten times that.
INT8_MAPE_POINTS = 0.3
INT8_TEXT_NATS = 0.01


def test_the_forecasting_and_text_demos_report_int8_next_to_float32(quick_run):
    out, summary, lines = quick_run
    forecasting, text = summary["demos"]["forecasting"]["metrics"], summary["demos"]["text"]["metrics"]
    for kind in KINDS:
        # forecasting: the MAPE of the same models' int8 copies, on the same 24 months.
        float32, int8 = forecasting[kind]["mape_percent"], forecasting[kind]["mape_percent_int8"]
        assert abs(int8 - float32) < INT8_MAPE_POINTS, (kind, float32, int8)
        assert "int8_skipped" not in forecasting[kind]
        line = f"MAPE {float32:.1f}% (float32), {int8:.1f}% (int8)"
        assert any(row.split()[:1] == [kind] and line in row for row in lines), (kind, line, lines)
        # text: the test loss per character of the same model's int8 copy.
        float32, int8 = text[kind]["test_loss"], text[kind]["test_loss_int8"]
        assert abs(int8 - float32) < INT8_TEXT_NATS, (kind, float32, int8)
        assert "int8_skipped" not in text[kind]
        line = f"test {float32:.3f} (float32), {int8:.3f} (int8)"
        assert any(row.split()[:1] == [kind] and line in row for row in lines), (kind, line, lines)


def test_a_model_without_an_int8_form_gets_no_int8_figure_and_the_summary_says_why(tmp_path, monkeypatch):
    # layer_norm has no int8 form (quantize_dynamic refuses it): the demos report float32 only, say
    # why, and go on; the RNN, which has no layer_norm, still gets its int8 figure.
    from lstm_ext.tools.demos import common, forecasting, text

    def with_layer_norm(kind):
        cls = common.layer_class(kind)
        return cls if kind == "RNN" else functools.partial(cls, layer_norm=True)

    monkeypatch.setattr(forecasting, "layer_class", with_layer_norm)
    monkeypatch.setattr(text, "layer_class", with_layer_norm)
    small = tmp_path / "small.txt"
    small.write_text(("the quick brown fox jumps over the lazy dog. \n" * 70)[:3000])  # a test of seconds
    lines = []
    context = demos.Context(out_dir=str(tmp_path / "out"), quick=True, text_path=str(small), log=lines.append,
                            plots=False)
    summary = demos.run_demos(["forecasting", "text"], context)
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    why = "quantize_dynamic: layer_norm=True has no int8 form"
    for name, key in (("forecasting", "mape_percent_int8"), ("text", "test_loss_int8")):
        metrics = summary["demos"][name]["metrics"]
        for kind in ("LSTM", "GRU"):
            assert metrics[kind][key] is None and metrics[kind]["int8_skipped"].startswith(why), (name, kind)
        assert metrics["RNN"][key] is not None and "int8_skipped" not in metrics["RNN"], name
    for kind in ("LSTM", "GRU"):
        skipped = [row for row in lines if row.split()[:1] == [kind] and f"(float32), no int8 figure: {why}" in row]
        assert len(skipped) == 2, lines
    assert sum(row.split()[:1] == ["RNN"] and "(int8)" in row for row in lines) == 2, lines


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


@pytest.mark.parametrize("content, message", [
    (b"\0" * 5000, "5000 of its 5000 characters (100%) are control characters (NUL bytes, say) other than whitespace"),
    (b"\x01\x02 ab\n" * 1000, "2000 of its 6000 characters (33%) are control characters"),
    (b"a" * 5000, "has 1 distinct printable character ('a'); the text demo needs at least 2"),
    (b"ab\n" * 10, "has 30 characters; the text demo needs at least 2048"),
    (b"\xff\xfe" * 2000, "not UTF-8 text"),
])
def test_a_text_the_demo_cannot_learn_from_is_refused_before_any_work(tmp_path, content, message):
    # A file of NUL bytes was taken: the models trained, then the demo reported FAILED.
    path = tmp_path / "unusable.txt"
    path.write_bytes(content)
    done = subprocess.run([sys.executable, "-m", "lstm_ext", "demo", "--quick", "--only", "two-company", "--only",
                           "text", "--text", str(path), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and f"--text {path}: {message}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""  # nothing began


def test_the_text_demo_reads_at_most_the_characters_it_states(tmp_path, monkeypatch):
    # Read whole, a 44 MB text took the demo past 11 GiB resident.
    from lstm_ext.tools.demos import text

    assert (text.MAX_CHARACTERS, text.QUICK_MAX_CHARACTERS) == (1_000_000, 100_000)  # what the README states
    line = "the quick brown fox jumps over the lazy dog. \n"
    big = tmp_path / "big.txt"
    big.write_text(line * (10 * text.MAX_CHARACTERS // len(line)))  # 10 MB
    tracemalloc.start()
    read, cut = text.read_text(str(big), text.MAX_CHARACTERS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert cut and read == big.read_text()[:text.MAX_CHARACTERS]
    assert peak < 4 * text.MAX_CHARACTERS  # a few copies of the characters kept (ASCII: a byte each), not the file
    assert text.read_text(str(big), 10 * text.MAX_CHARACTERS) == (big.read_text(), False)

    # The demo trains on that much and says so (a small limit here, for a test of seconds).
    monkeypatch.setattr(text, "QUICK_MAX_CHARACTERS", 3000)
    lines = []
    context = demos.Context(out_dir=str(tmp_path / "out"), quick=True, text_path=str(big), log=lines.append,
                            plots=False)
    summary = demos.run_demos(["text"], context)
    result = summary["demos"]["text"]
    assert result["metrics"]["characters"] == 3000 and result["text_cut"], result
    assert any(f"{big}: its first 3000 characters (the text demo reads at most 1000000, 3000 with --quick)" in line
               for line in lines), lines


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
