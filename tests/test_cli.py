"""python -m lstm_ext: the self-check main job."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

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
