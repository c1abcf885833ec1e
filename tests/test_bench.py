"""The benchmark's arithmetic, report and command line; atomic writes of its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import lstm_ext
from lstm_ext import _io
from lstm_ext.tools import bench
from lstm_ext.tools.bench import Config, Result, flops, render, streamed_bytes


def test_flops_follow_the_formula():
    # One LSTM layer's forward: 2·T·B·4H·(I + H_out); a training step three times that.
    assert flops(Config("inference", 150, 1, 256)) == 2 * 150 * 1 * 1024 * (256 + 256)
    assert flops(Config("training", 25, 16, 512)) == 3 * 2 * 25 * 16 * 2048 * (512 + 512)
    assert flops(Config("training", 150, 16, 256, cell="GRU")) == 3 * 2 * 150 * 16 * 768 * 512
    # A projection: the gates see h of size P, plus the projection itself.
    assert flops(Config("inference", 10, 2, 64, proj_size=16)) == 2 * 10 * 2 * 256 * (64 + 16) + 2 * 10 * 2 * 16 * 64
    # Two bidirectional layers: the second reads both directions of the first.
    assert flops(Config("inference", 10, 2, 64, num_layers=2, bidirectional=True)) == (
        2 * (2 * 10 * 2 * 256 * (64 + 64)) + 2 * (2 * 10 * 2 * 256 * (128 + 64)))


def test_streamed_bytes_count_the_recurrent_weights_per_step():
    total, working_set = streamed_bytes(Config("inference", 150, 1, 256))
    assert working_set == 1024 * 256 * 4 and total == 150 * working_set
    total, working_set = streamed_bytes(Config("training", 100, 16, 256, dtype="float64", num_layers=2,
                                               bidirectional=True))
    assert working_set == 1024 * 256 * 8 and total == 2 * 100 * 4 * working_set  # forward + backward, 4 layer-directions
    total, working_set = streamed_bytes(Config("streaming", 200, 1, 256))
    assert working_set == 1024 * (256 + 256) * 4 and total == 200 * working_set  # W_ih and W_hh every step


def fake_results():
    fast = Config("inference", 150, 1, 256)
    slow = Config("training", 25, 16, 512)
    return [Result(fast, {"lstm_ext": 0.002, "torch": 0.004, "reference": 0.05}, 0.001, "memory (1 MiB at 100 GB/s)", {}),
            Result(slow, {"lstm_ext": 0.050, "torch": 0.045}, 0.040, "compute",
                   {"lstm_ext": 30.0, "torch": 40.0})]


def test_roofline_follows_the_peak_and_names_its_bound():
    # 5.03 GFLOP against 4 ms of streaming the weights: compute-bound at 100 GFLOP/s, memory-bound at 2 TFLOP/s.
    cfg = Config("training", 25, 16, 512)
    result = Result(cfg, {"lstm_ext": 0.06}, 0.0, "", {}, memory_seconds=0.004, memory_bound="memory (4 MiB at 1 GB/s)")
    result.set_peak(100e9)
    assert result.roofline == pytest.approx(flops(cfg) / 100e9) and result.bound == "compute"
    result.set_peak(2000e9)  # a higher peak (the measurement at the end of a run): the weights bound it
    assert result.roofline == 0.004 and result.bound == "memory (4 MiB at 1 GB/s)"


def test_report_has_the_machine_the_table_and_a_reading():
    machine = {"date": "2026-01-01", "cpu": "Test CPU", "cpus": 2, "isa": "avx2, fma", "caches": "L2 512K",
               "threads": 2, "python": "3.11", "numpy": "2.0", "torch": "2.13.0", "lstm_ext": "0.1.0",
               "build": {"kernel_level": "avx2", "kernel_levels": {"baseline": [], "avx2": ["avx2"]}, "native": False,
                         "simd": "AVX2"},
               "gemm_peak_float32": 150e9}
    report = render(machine, fake_results(), repeats=15)
    assert "Test CPU, 2 CPUs (avx2, fma" in report and "2 threads for every library" in report
    assert "with the avx2 kernel level (AVX2; compiled in: baseline, avx2)" in report
    assert "float32 150 GFLOP/s" in report and "15 rounds" in report
    assert "| inference (150, 1, 256) | 2.00 ms | 4.00 ms | 50.00 ms | **2.00×** |" in report
    assert "| training (25, 16, 512) | 50.00 ms | 45.00 ms | — | **0.90×** |" in report
    assert "| 50% | memory (1 MiB at 100 GB/s) | — |" in report and "| 80% | compute | 30 / 40 |" in report
    assert "at least as fast as torch on 1 of 2 configurations; the smallest speedup is 0.90×" in report
    assert "less than or as much as torch's on 1 of 1" in report
    assert "- Must, at least as fast as torch everywhere: missed on training (25, 16, 512) (0.90×)." in report
    assert "- Aim 2× torch at batch <= 4, inference (150, 1, 256): met, 2.00×." in report
    assert "- Aim training step memory <= torch's: met on every training configuration." in report


def test_a_missed_aim_says_by_how_much_and_what_bounds_it():
    machine = {"gemm_peak_float32": 100e9}
    big = Config("training", 25, 32, 1024)
    slow = Config("inference", 25, 4, 512)
    results = [Result(big, {"lstm_ext": 0.5, "torch": 0.55}, 0.45, "compute", {"lstm_ext": 200.0, "torch": 150.0}),
               Result(slow, {"lstm_ext": 0.004, "torch": 0.005}, 0.003, "compute", {})]
    lines = bench._aims(results, machine)
    assert ("- Aim 1.3× torch at the large training sizes, training (25, 32, 1024): missed: 1.10× (85% of the aim); "
            "bound: compute, where even lstm_ext at its roofline would be 1.22× torch.") in lines
    assert f"- Aim 75% of the GEMM peak on training (25, 32, 1024): {flops(big) / 0.5 / 100e9:.0%} of 100 GFLOP/s" \
        in "\n".join(lines)
    assert "- Aim 2× torch at batch <= 4, inference (25, 4, 512): missed: 1.25× (62% of the aim)" in "\n".join(lines)
    assert "above on training (25, 32, 1024) (200 vs 150 MiB)" in lines[-1]


def test_reading_explains_a_roofline_above_the_peak():
    cfg = Config("training", 25, 16, 512)
    under = [Result(cfg, {"lstm_ext": 0.050, "torch": 0.055}, 0.040, "compute", {})]
    over = [Result(cfg, {"lstm_ext": 0.050, "torch": 0.055}, 0.060, "compute", {})]  # 120 % of the roofline
    note = "faster than the library matrix product that defines the peak"
    assert not any(note in line for line in bench._reading(under))
    assert any(note in line for line in bench._reading(over))


def test_report_without_torch_has_no_torch_columns():
    machine = {"date": "d", "cpu": "c", "cpus": 1, "isa": "x", "caches": "?", "threads": 1, "python": "3",
               "numpy": "2", "torch": None, "lstm_ext": "0.1.0",
               "build": {"kernel_level": "baseline", "kernel_levels": {"baseline": []}, "native": False, "simd": "SSE2"},
               "gemm_peak_float32": 1e9}
    results = [Result(Config("inference", 5, 1, 8), {"lstm_ext": 0.001, "reference": 0.01}, 0.0005, "compute", {})]
    report = render(machine, results, repeats=2)
    assert "torch not installed" in report and "speedup vs torch" not in report and "torch GFLOP/s" not in report
    assert "| inference (5, 1, 8) | 1.00 ms | 10.00 ms | 0 | 50% | compute | — |" in report  # 5 MFLOP/s


def test_command_line_runs_a_configuration_and_writes_the_report(tmp_path):
    out = tmp_path / "BENCH.md"
    result = subprocess.run([sys.executable, "-m", "lstm_ext", "bench", "--quick", "--only", "streaming",
                             "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "streaming (200, 1, 256)" in result.stdout and "µs/step" in result.stdout
    text = out.read_text()
    assert text.startswith("# lstm_ext benchmarks") and "| streaming (200, 1, 256) (stream step) |" in text
    info = lstm_ext.build_info()
    runnable = [n for n, needs in info["kernel_levels"].items() if set(needs) <= set(info["cpu_features"])]
    if len(runnable) > 1:  # every level this CPU runs, each in processes of its own
        assert "## Kernel levels" in text and f"| configuration | {' | '.join(runnable)} |" in text


def test_report_has_the_kernel_levels_and_their_ratios():
    cfg = Config("training", 25, 16, 512)
    levels = [bench.LevelResult(cfg, {"baseline": 0.09, "avx2": 0.036, "avx512": 0.025},
                                {("baseline", "avx512"): 3.6, ("avx2", "avx512"): 1.44}),
              bench.LevelResult(Config("inference", 25, 1, 1024), {"baseline": 0.014, "avx2": 0.011, "avx512": 0.0112},
                                {("baseline", "avx512"): 1.25, ("avx2", "avx512"): 0.98})]
    lines = bench._levels_section(levels)
    assert "| configuration | baseline | avx2 | avx512 | avx512 vs baseline | avx512 vs avx2 |" in lines
    assert "| training (25, 16, 512) | 90.00 ms | 36.00 ms | 25.00 ms | 3.60× | 1.44× |" in lines
    assert "- avx512 against baseline: 1.25× to 3.60× (geometric mean 2.12×); at least as fast on every configuration." in lines
    assert "- avx512 against avx2: 0.98× to 1.44× (geometric mean 1.19×); slower on inference (25, 1, 1024)." in lines


def test_report_has_the_shared_machine_section_and_its_aim():
    shared = [bench.ContentionResult("alone", {"lstm_ext": 120.0, "torch": 100.0}),
              bench.ContentionResult("next to a busy process", {"lstm_ext": 60.0, "torch": 30.0}),
              bench.ContentionResult("two processes at once", {"lstm_ext": 90.0, "torch": 95.0}),
              bench.ContentionResult("one thread alone", {"lstm_ext": 64.0, "torch": 60.0}),
              bench.ContentionResult("two one-thread processes", {"lstm_ext": 100.0, "torch": 110.0})]
    lines = bench._contention_section(shared)
    assert "| scenario | lstm_ext | torch | lstm_ext vs torch |" in lines
    assert "| two processes at once | 90.0 | 95.0 | 0.95× |" in lines
    assert ("- lstm_ext next to a busy process keeps 50% of its steps/s alone; two processes at once make 75% of one "
            "process's steps/s alone, together.") in lines
    assert ("- Aim, two processes at once at least as many steps/s in total as torch's: missed (90.0 against 95.0)."
            in lines)
    assert ("- Aims, at least 85% of what one-thread processes make: two processes at once 90% of two one-thread "
            "processes (met); next to a busy process 94% of one thread alone (met).") in lines


def test_processes_sharing_the_machine_are_timed_together():
    env = {**os.environ, "LSTM_EXT_PIN_THREADS": "0"}
    alone = bench._contend("lstm_ext", 1, 0, 0.3, env)
    together = bench._contend("lstm_ext", 2, 1, 0.3, env)  # two trainers next to a busy process
    assert alone > 0 and together > 0


@pytest.mark.parametrize("args, message", [(["--only", "no such configuration"], "matches no configuration"),
                                           (["--repeats", "0"], "--repeats must be >= 1"),
                                           (["--threads", "0"], "--threads must be >= 1"),
                                           (["--solo", "--only", "no such size"], "matches no configuration of --solo"),
                                           (["--solo", "--grid"], "--solo runs alone")])
def test_command_line_refuses_bad_options(args, message):
    result = subprocess.run([sys.executable, "-m", "lstm_ext", "bench", *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and message in result.stderr


def test_an_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    _io.write_text_atomic(target, "first")
    assert target.read_text() == "first"

    def fail(_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        _io.write_text_atomic(target, "second")
    assert target.read_text() == "first"
    assert os.listdir(tmp_path) == ["report.md"]  # no temporary file left behind


def test_the_grid_summary_names_what_is_below_one_and_the_tables_mark_it():
    from lstm_ext.tools import grid

    results = [grid.GridResult(Config("inference", 50, 1, 64), {"lstm_ext": 1.0, "torch": 2.0}, 2.0, 5),
               grid.GridResult(Config("inference", 50, 128, 64), {"lstm_ext": 1.0, "torch": 0.8}, 0.8, 5),
               grid.GridResult(Config("training", 50, 1, 64), {"lstm_ext": 1.0, "torch": 1.25}, 1.25, 5),
               grid.GridResult(Config("inference", 50, 8, 64, cell="GRU", I=4), {"lstm_ext": 0.001, "torch": 0.0016},
                               1.6, 5)]
    text = grid.summary(results)
    assert text.startswith("4 configurations: 1 below 1.0× torch, minimum 0.80× (inference (50, 128, 64))")
    assert f"geometric mean {(2.0 * 0.8 * 1.25 * 1.6) ** 0.25:.2f}×" in text
    lines = grid.grid_section(results)
    assert "| B = 128 | **0.80×** |" in lines and "| B = 1 | 2.00× |" in lines
    assert "| inference vs torch, T = 50 | H = 64 |" in lines
    assert "| inference (50, 8, 64) (GRU, input 4) | 1.000 ms | 1.600 ms | 1.60× |" in lines  # a slice: its own row
    assert any("with a 10 ms pause" in line for line in lines)
    assert any("with no pause" in line for line in grid.grid_section(results, gap=0.0))


def test_the_grid_covers_the_sizes_users_meet():
    from lstm_ext.tools import grid

    configs = grid.grid_configs()
    assert {c.B for c in configs} >= {1, 256} and {c.H for c in configs} >= {32, 1024}
    assert {c.cell for c in configs} == {"LSTM", "GRU", "RNN"} and {c.dtype for c in configs} == {"float32", "float64"}
    assert {c.T for c in configs} >= {1, 1000} and any(c.input_size != c.H for c in configs)
    assert {c.kind for c in configs} == {"inference", "training"}
    quick = grid.grid_configs(quick=True)
    assert 0 < len(quick) <= 6 and {c.kind for c in quick} == {"inference", "training"}


def test_the_console_line_gives_figures_that_can_be_checked_against_each_other():
    # bench --quick once printed "lstm_ext 23.47 ms  torch 1.83 ms  speedup 0.71x" (a median of two
    # rounds' ratios next to medians whose ratio is 0.08) and rooflines of 114-156 % "(peak so far)".
    cfg = Config("inference", 25, 4, 512)
    line = bench._row_text(Result(cfg, {"lstm_ext": 0.02347, "torch": 0.00183}, 0.010, "compute", {}, rounds=2,
                                  paired_speedup=0.71))
    assert "speedup 0.71x (median of 2 rounds' ratios; ratio of the medians 0.08x)" in line
    assert "43% of roofline" in line and "above 100 %" not in line
    fast = bench._row_text(Result(cfg, {"lstm_ext": 0.010}, 0.0125, "compute", {}))
    assert "125% of roofline (above 100 %: faster than the GEMM peak measured so far" in fast
    streamed = bench._row_text(Result(cfg, {"lstm_ext": 0.010}, 0.0125, "memory (4 MiB at 100 GB/s)", {}))
    assert "(above 100 %: faster than streaming the weights at the bandwidth measured" in streamed


def test_the_variants_section_times_every_variant_against_the_plain_cell(tmp_path):
    from lstm_ext.tools import variants

    out = tmp_path / "variants.md"
    result = subprocess.run([sys.executable, "-m", "lstm_ext", "bench", "--variants", "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = out.read_text()
    for name in variants.VARIANTS:
        assert f"| (20, 8, 64) | {name} |" in report, name
    assert "Aim, a peephole LSTM's training step within 10% of the plain one's: " in report
    assert "Aim, a layer norm LSTM's training step within 35% of the plain one's: " in report
    # Every row's ratio against the plain cell is its own time over the plain one's (medians of the rounds' ratios).
    plain = next(line for line in report.splitlines() if line.startswith("| (20, 8, 64) | plain |"))
    assert "| 1.00× |" in plain


# -- bench --solo: each library alone in its process (lstm_ext.tools.solo) ----------------------------

def _installed(*modules):
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def _table(report):
    """The header cells and the rows (cells) of the report's table."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in report.splitlines()
            if line.startswith("| ")]
    return rows[0], rows[1:]


def test_solo_quick_runs_end_to_end_with_every_column(tmp_path):
    from lstm_ext.tools import solo

    out = tmp_path / "SOLO.md"
    result = subprocess.run([sys.executable, "-m", "lstm_ext", "bench", "--solo", "--quick", "--repeats", "2",
                             "--threads", "2", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = out.read_text()
    assert report.startswith("# lstm_ext benchmarks: each library alone in its process")
    assert "2 rounds" in report and "the median of 15 calls with a 10 ms pause after each" in report
    header, rows = _table(report)
    expected = ["lstm_ext f32", "lstm_ext int8", "lstm_ext bf16", "lstm_ext int8 error (max / mean)",
                "lstm_ext bf16 error (max / mean)"]
    if _installed("torch"):
        expected += ["torch f32", "torch int8", "torch int8 error (max / mean)", "lstm_ext int8 vs faster int8",
                     "lstm_ext f32 vs best f32"]
    else:
        assert "torch is not installed, its columns are left out: pip install torch" in report
        assert "torch f32" not in header
    if _installed("onnxruntime", "onnx"):
        expected += ["ORT f32", "ORT int8", "ORT int8 error (max / mean)"]
        assert "DynamicQuantizeLSTM" in report  # the int8 column is ORT's int8 LSTM, not its float one
    else:
        assert 'pip install "lstm_ext[onnx]"' in report and "ORT f32" not in header
    if not _installed("openvino"):
        assert "openvino is not installed, its columns are left out: pip install openvino" in report
    assert header[0] == "(T, B, H)" and set(expected) <= set(header), header
    assert [row[0] for row in rows] == [f"({T}, {B}, {H})" for T, B, H in solo.QUICK]
    for row in rows:  # every cell filled: a time, a ratio or an error
        assert len(row) == len(header) and "—" not in row, row
    # Round robin: round 2 starts with the library that came second in round 1.
    order = [line.split(": ")[1].split()[0] for line in result.stdout.splitlines() if line.strip().startswith("round ")]
    libraries = len(order) // 2
    assert order[0] == "lstm_ext" and (libraries == 1 or order[libraries] == order[1]), order


def test_solo_workers_import_no_other_library():
    from lstm_ext.tools import solo

    spec = '[{"kind": "inference", "T": 3, "B": 2, "H": 8}]'
    libraries = ["lstm_ext"] + [name for name, modules in (("torch", ["torch"]),
                                                           ("onnxruntime", ["onnxruntime", "onnx"])) if _installed(*modules)]
    for library in libraries:
        result = subprocess.run([sys.executable, "-m", "lstm_ext.tools.solo", "--worker", library, "--configs", spec,
                                 "--threads", "1", "--calls", "2", "--warmup", "1", "--gap-ms", "0"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        imported = set(answer["imported"])
        assert imported == set(solo._BY_NAME[library].needs), (library, imported)  # its own, no other
        assert set(answer["seconds"]["inference (3, 2, 8)"]) == set(solo._BY_NAME[library].columns)
        assert not answer["failures"]


def test_solo_refuses_a_worker_that_imported_another_library(monkeypatch):
    from lstm_ext.tools import solo

    answer = {"library": "lstm_ext", "seconds": {}, "failures": {}, "notes": [], "imported": ["torch"]}
    monkeypatch.setattr(solo.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 0, stdout=json.dumps(answer) + "\n", stderr=""))
    with pytest.raises(RuntimeError, match="the lstm_ext process imported torch: it must run alone"):
        solo._run_worker("lstm_ext", "[]", 1, 1, 1, 0.0, None)
    answer["library"], answer["imported"] = "torch", ["torch"]  # torch's own process may hold torch
    assert solo._run_worker("torch", "[]", 1, 1, 1, 0.0, None)["imported"] == ["torch"]


def test_solo_leaves_out_the_libraries_that_are_not_installed(monkeypatch):
    from lstm_ext.tools import solo

    monkeypatch.setattr(solo, "installed", lambda name: name == "lstm_ext")
    run = solo.run([Config("inference", 3, 2, 8)], rounds=1, threads=1, calls=2, warmup=1, gap=0.0, log=lambda _: None)
    assert run.columns == ["lstm_ext f32", "lstm_ext int8", "lstm_ext bf16"]
    assert any(note.startswith('onnxruntime is not installed, its columns are left out: pip install "lstm_ext[onnx]"')
               for note in run.notes)
    header, rows = _table("\n".join(solo.solo_section(run, quick=True)))
    assert header == ["(T, B, H)", "lstm_ext f32", "lstm_ext int8", "lstm_ext bf16", "lstm_ext int8 error (max / mean)",
                      "lstm_ext bf16 error (max / mean)"]  # no ratio without a library to set lstm_ext against
    assert rows[0][0] == "(3, 2, 8)" and "—" not in rows[0]


def test_solo_ratios_and_errors_on_a_fake_result_set():
    import numpy as np
    from lstm_ext.tools import solo

    reference = np.zeros((2, 1, 2), np.float32)
    y = np.array([[[0.5, -0.25]], [[0.0, 0.25]]], np.float32)
    assert solo.output_error(reference, y) == (0.5, 0.25)  # max and mean of |y - reference|
    seconds = {"lstm_ext f32": 0.002, "lstm_ext int8": 0.001, "lstm_ext bf16": 0.0015, "torch f32": 0.004,
               "torch int8": 0.003, "ORT f32": 0.0016, "ORT int8": 0.0015}
    assert solo.ratio(seconds, "lstm_ext int8", ("torch int8", "ORT int8")) == (1.5, "ORT int8")  # the faster rival
    assert solo.ratio(seconds, "lstm_ext f32", ("torch f32", "ORT f32", "OpenVINO f32")) == \
        (pytest.approx(0.8), "ORT f32")
    assert solo.ratio(seconds, "lstm_ext bf16", ("OpenVINO bf16",)) is None  # OpenVINO absent
    errors = {"lstm_ext int8": (4e-3, 5e-4), "lstm_ext bf16": (1e-3, 1e-4), "torch int8": (2e-2, 2e-3),
              "ORT int8": (1e-2, 1e-3), "torch f32": (3e-7, 1e-8), "ORT f32": (2e-7, 1e-8)}
    run = solo.SoloRun([solo.SoloResult(Config("inference", 50, 8, 256), seconds, errors)],
                       columns=list(seconds), notes=["a note"], rounds=3, threads=2)
    lines = solo.solo_section(run)
    assert ("| (T, B, H) | lstm_ext f32 | lstm_ext int8 | lstm_ext bf16 | torch f32 | torch int8 | ORT f32 | ORT int8 "
            "| lstm_ext int8 vs faster int8 | lstm_ext f32 vs best f32 | lstm_ext int8 error (max / mean) "
            "| lstm_ext bf16 error (max / mean) | torch int8 error (max / mean) | ORT int8 error (max / mean) |") in lines
    assert ("| (50, 8, 256) | 2.00 ms | 1.00 ms | 1.50 ms | 4.00 ms | 3.00 ms | 1.60 ms | 1.50 ms | 1.50× (ORT int8) "
            "| **0.80× (ORT f32)** | 4.0e-03 / 5.0e-04 | 1.0e-03 / 1.0e-04 | 2.0e-02 / 2.0e-03 "
            "| 1.0e-02 / 1.0e-03 |") in lines
    assert "- a note" in lines
    assert "- The float32 results agree with lstm_ext's (the same weights and input): max abs difference torch f32 " \
        "3.0e-07, ORT f32 2.0e-07." in lines
    assert any(line.startswith("- (50, 128, 1024) is left out of the grid: 107 GFLOP a call, more than the other "
                               "31 configurations together") for line in lines)
    assert not any("left out of the grid" in line for line in solo.solo_section(run, quick=True))


def test_solo_grid_is_the_issue_s_grid():
    from lstm_ext.tools import solo

    configs = solo.solo_configs()
    sizes = {(c.T, c.B, c.H) for c in configs}
    assert len(configs) == 31 and (50, 128, 1024) not in sizes and {c.kind for c in configs} == {"inference"}
    assert {T for T, _, _ in sizes} == {1, 50} and {B for _, B, _ in sizes} == {1, 8, 32, 128}
    assert {H for _, _, H in sizes} == {128, 256, 512, 1024} and all(c.input_size == c.H for c in configs)
    assert [(c.T, c.B, c.H) for c in solo.solo_configs(quick=True)] == list(solo.QUICK)
    assert [c.label for c in solo.solo_configs(only="(1, 8,")] == [f"inference (1, 8, {H})" for H in solo.GRID_H]
