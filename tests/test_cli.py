"""python -m lstm_ext: the self-check, the top-level usage, and the commands' own errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from lstm_ext import functional, testing
from lstm_ext.__main__ import main


def run_module(*args):
    return subprocess.run([sys.executable, "-m", "lstm_ext", *args], capture_output=True, text=True, timeout=300)


def test_default_self_check_passes_and_reports_every_tensor():
    result = run_module()
    assert result.returncode == 0, result.stdout + result.stderr
    for name in testing.TENSORS:
        assert f"\n  {name} " in result.stdout
    assert "time per step" in result.stdout and "compiled float32:" in result.stdout
    assert result.stdout.rstrip().endswith("self-check passed")


def test_options_are_used():
    result = run_module("check", "--T", "3", "--B", "2", "--I", "1", "--H", "5", "--seed", "4", "--repeats", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "T=3 B=2 I=1 H=5 seed=4" in result.stdout


def test_bad_options_exit_2_with_a_message():
    result = run_module("--H", "0")
    assert result.returncode == 2 and "--H must be >= 1" in result.stderr


def test_a_parity_failure_exits_nonzero(monkeypatch, capsys):
    original = functional.lstm_forward

    def off_by_a_little(*args, **kwargs):
        out = original(*args, **kwargs)
        return out._replace(y=out.y * (1 + 1e-6))

    monkeypatch.setattr(functional, "lstm_forward", off_by_a_little)
    assert main(["--T", "4", "--B", "2", "--I", "3", "--H", "4", "--repeats", "1"]) == 1
    output = capsys.readouterr().out
    assert "FAIL float64 y:" in output and "self-check FAILED" in output
    assert "FAIL float32" not in output  # 1e-6 is within float32's tolerance


def test_self_check_tolerances_are_the_standard():
    assert testing.TOLERANCE == {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


# -- the command line's own errors: one line, exit code 2, before any work ---------------------------

def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "lstm_ext", *args], capture_output=True, text=True, timeout=timeout)


def test_top_level_help_lists_the_commands():
    done = run_cli("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m lstm_ext [COMMAND] [OPTIONS]")
    for command in ("check", "demo", "bench"):
        assert f"\n  {command} " in done.stdout
    assert "``" not in done.stdout and ":func:" not in done.stdout  # no reST markup


@pytest.mark.parametrize("args, message", [
    (["--quick"], "--quick is not an option of check (the default command); the options go after their command"),
    (["nope"], "unknown command 'nope'; expected one of check, demo, bench"),
])
def test_misplaced_options_and_unknown_commands_exit_2(args, message):
    done = run_cli(*args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="uses /proc as a place that takes no files")
@pytest.mark.parametrize("command, out, message", [
    ("demo", "/proc/nope", "--out cannot make the folder /proc/nope"),
    ("demo", "/proc", "--out cannot write files in /proc"),
    ("bench", "/proc/nope/B.md", "--out the folder /proc/nope does not exist"),
])
def test_an_unwritable_output_place_fails_before_any_work(command, out, message):
    started = time.perf_counter()
    done = run_cli(command, "--quick", "--out", out)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert time.perf_counter() - started < 30  # nothing was trained or timed


def test_an_output_path_of_the_wrong_kind_or_an_empty_text_fails_at_once(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    done = run_cli("demo", "--quick", "--out", str(a_file))
    assert done.returncode == 2 and f"--out {a_file} exists and is not a folder" in done.stderr
    done = run_cli("bench", "--quick", "--out", str(tmp_path))
    assert done.returncode == 2 and f"--out {tmp_path} is a folder, not a file" in done.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    done = run_cli("demo", "--only", "text", "--text", str(empty))
    assert done.returncode == 2 and f"--text {empty}: the file is empty" in done.stderr


# -- every number on the command line: checked before any work (issue 27, items 1 and 6) -------------

@pytest.mark.parametrize("args, message", [
    # Went straight to the core and to torch, which crashed (SIGSEGV, nothing printed).
    (["bench", "--threads", "100000"],
     "--threads must be >= 1 and <= 4096 (the range of lstm_ext.set_num_threads), got 100000"),
    (["bench", "--threads", "4097"], "--threads must be >= 1 and <= 4096"),
    # A ValueError and an OverflowError after the grid had started.
    (["bench", "--grid", "--gap-ms", "nan"], "--gap-ms must be a number of milliseconds >= 0 and <= 1000, got nan"),
    (["bench", "--grid", "--gap-ms", "inf"], "--gap-ms must be a number of milliseconds >= 0 and <= 1000, got inf"),
    (["bench", "--grid", "--gap-ms", "1e300"], "--gap-ms must be a number of milliseconds >= 0 and <= 1000"),
    (["bench", "--repeats", "1001"], "--repeats must be >= 1 and <= 1000, got 1001"),
    # Tracebacks from NumPy's seeding, the demo's after "[1/1] two-company" had begun.
    (["check", "--seed", "-1"], "--seed must be >= 0 and <= 4294967295, got -1"),
    (["check", "--seed", str(2**32)], "--seed must be >= 0 and <= 4294967295, got 4294967296"),
    (["--seed", "-1"], "--seed must be >= 0"),  # check, the default command
    (["demo", "--quick", "--only", "two-company", "--seed", "-1"], "--seed must be >= 0 and <= 4294967295, got -1"),
    (["check", "--repeats", "1001"], "--repeats must be >= 1 and <= 1000, got 1001"),
    (["check", "--T", "0"], "--T must be >= 1, got 0"),
    # A MemoryError from NumPy after the check had started.
    (["check", "--T", "1000000", "--B", "100000"],
     "--T 1000000 --B 100000 --I 32 --H 64: the self-check would hold about"),
])
def test_every_number_is_checked_before_any_work(args, message):
    started = time.perf_counter()
    done = run_cli(*args)
    assert done.returncode == 2 and message in done.stderr, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.splitlines()[-1].startswith("python -m lstm_ext")
    assert done.stdout == ""  # nothing began
    assert time.perf_counter() - started < 30
