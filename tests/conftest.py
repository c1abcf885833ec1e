"""Shared test helpers: parity assertions that report the worst error per tensor.

Every parity assertion records its errors; at the end of the session pytest prints, for each
group of tests and dtype, the worst relative error seen per tensor.
"""

from __future__ import annotations

import os

# The tests choose their teams of threads (1 to 4, more than the CPUs on purpose): the pool's
# adaptation to a shared machine, which gives fewer threads to calls whose threads keep losing
# their CPUs (README, "Threads"), would change them behind the tests' backs on a loaded machine.
# Off for this process and its children unless the environment says otherwise; the tests of the
# adaptation turn it on in processes of their own (test_threads.py).
os.environ.setdefault("LSTM_EXT_ADAPT_TEAM", "0")
import pathlib
import re
import sys
from collections import defaultdict

import numpy as np
import pytest

from lstm_ext.testing import TOLERANCE, relative_error

# group -> dtype name -> tensor -> worst relative error seen this session
_WORST = defaultdict(lambda: defaultdict(dict))


def assert_parity(group, dtype, actual: dict, expected: dict, tolerance=None):
    """Assert every tensor in `expected` matches `actual` within the dtype's tolerance.

    Records the worst error per tensor for the session report; the failure message lists all of
    this call's errors. `tolerance` is one bound for every tensor, or a dict of bounds by tensor
    name (tensors it leaves out get the dtype's tolerance).
    """
    dtype = np.dtype(dtype)
    bounds = tolerance if isinstance(tolerance, dict) else {}
    default = TOLERANCE[dtype] if tolerance is None or isinstance(tolerance, dict) else tolerance
    errors = {}
    for name, want in expected.items():
        got = actual.get(name)  # a tensor the compiled side does not return is None
        if want is None or got is None:
            assert want is None and got is None, f"{name}: one side is None (actual {got is None}, expected {want is None})"
            continue
        errors[name] = relative_error(got, want)
    seen = _WORST[group][dtype.name]
    for name, error in errors.items():
        # One entry per kind of tensor: dweight_hh_l1_reverse is reported under dweight_hh.
        kind = re.sub(r"_l\d+(_reverse)?$", "", name)
        seen[kind] = max(seen.get(kind, 0.0), error)
    failed = {name: e for name, e in errors.items() if not e <= bounds.get(name, default)}
    assert not failed, (f"{group} {dtype.name}: relative errors above their bounds: "
                        + ", ".join(f"{n}={e:.2e} > {bounds.get(n, default):.1e}" for n, e in failed.items())
                        + " | all: " + ", ".join(f"{n}={e:.2e}" for n, e in errors.items()))
    return errors


# The optional packages some tests need, and how a user gets each: the extra of lstm_ext that installs
# it, or (torch, which lstm_ext never needs) the library itself.
_HOW_TO_GET = {
    "onnx": "install the 'onnx' extra: pip install \".[onnx]\"",
    "onnxruntime": "install the 'onnx' extra: pip install \".[onnx]\"",
    "mpi4py": "install the 'distributed' extra: pip install \".[distributed]\"",
    "sphinx": "install the 'docs' extra: pip install \".[docs]\"",
    "matplotlib": "install the 'demo' extra: pip install \".[demo]\"",
    "torch": "install PyTorch, the library the tests compare with (no extra of lstm_ext; its CPU build is enough)",
}


def needs(module: str):
    """`module` imported, or the test skipped with a reason that names the test file and what installs
    the module."""
    caller = pathlib.Path(sys._getframe(1).f_code.co_filename).name
    return pytest.importorskip(module, reason=f"{caller} needs {module}: {_HOW_TO_GET[module.split('.')[0]]}")


# Emulation: .ci/aarch64 runs the core's tests on another architecture under qemu-user, and says so
# with LSTM_EXT_EMULATED=qemu-aarch64 (the emulator's name), which the processes a test starts inherit.
EMULATED = os.environ.get("LSTM_EXT_EMULATED", "")


def not_emulated(why: str):
    """A mark: the test skips under emulation (LSTM_EXT_EMULATED), for the reason `why` (what of
    the emulator, not of lstm_ext, it cannot pass)."""
    return pytest.mark.skipif(bool(EMULATED), reason=f"under emulation ({EMULATED}): {why}")


def numeric_gradient(f, x, eps=1e-6):
    """Central finite differences of the scalar function f at x, element by element."""
    g = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        g[index] = (f(up) - f(down)) / (2 * eps)
    return g


def pytest_report_header():
    import lstm_ext

    info = lstm_ext.build_info()
    return (f"lstm_ext kernel level: {info['kernel_level']} (compiled in: {', '.join(info['kernel_levels'])}; "
            "LSTM_EXT_KERNELS=<level> runs the tests at another)")


def pytest_terminal_summary(terminalreporter):
    fuzz = sys.modules.get("test_fuzz")
    if fuzz is not None and fuzz.OUTCOMES:
        terminalreporter.section("fuzz suite")
        total = sum(fuzz.OUTCOMES.values())
        terminalreporter.write_line(f"fuzz: {total} cases, " + ", ".join(
            f"{outcome} {count}" for outcome, count in sorted(fuzz.OUTCOMES.items(), key=lambda item: -item[1])))
    if not _WORST:
        return
    terminalreporter.section("worst relative error per tensor")
    for group in sorted(_WORST):
        for dtype_name, tensors in sorted(_WORST[group].items()):
            cells = "  ".join(f"{name}={error:.1e}" for name, error in tensors.items())
            terminalreporter.write_line(f"{group:28} {dtype_name:8} {cells}")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
