"""How the package was built, and the layout rules that keep the core clean."""

from __future__ import annotations

import ast
import os
import pathlib

import pytest

import lstm_ext

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_build_info():
    info = lstm_ext.build_info()
    assert info["eigen_version"].startswith("3.4.")
    assert info["simd"]  # Eigen vectorises at every level (SSE2 at least on x86-64)
    expected = os.environ.get("LSTM_EXT_EXPECT_BUILD")  # set by .ci/run for each configuration
    if expected == "native":
        assert info["native"] and list(info["kernel_levels"]) == ["native"] and info["kernel_level"] == "native"
    elif expected == "portable":
        assert not info["native"] and list(info["kernel_levels"]) == ["baseline", "avx2", "avx512"]


@pytest.mark.skipif(not (ROOT / "cpp" / "rnn").is_dir(), reason="needs the source tree")
def test_core_has_no_python():
    for path in (ROOT / "cpp" / "rnn").iterdir():
        text = path.read_text()
        assert "pybind11" not in text and "Python.h" not in text, path


@pytest.mark.skipif(not (ROOT / "python" / "lstm_ext" / "reference.py").is_file(), reason="needs the source tree")
def test_reference_does_not_use_the_compiled_core():
    tree = ast.parse((ROOT / "python" / "lstm_ext" / "reference.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "numpy"}, imported
