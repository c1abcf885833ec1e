"""The dense layers' arithmetic in the core (lstm_ext.functional.linear_forward, linear_backward,
exp, log, tanh, sigmoid): against float64 NumPy, at the edges of their ranges, the same bits at any
thread count, and refusals of bad arguments. (That a whole fit gives the same bits across kernel
levels, BLAS kernels and NumPy's SIMD paths: test_determinism.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from conftest import assert_parity
from lstm_ext import functional as F

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 21), (3, 5, 300, 37), (2, 64, 17, 130)],
                         ids=["1x1x1", "7x13x21", "leading axes", "wide"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
def test_linear_matches_numpy_in_float64(shape, dtype, bias):
    *lead, I, O = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((*lead, I)).astype(dtype)
    w = (rng.standard_normal((O, I)) / np.sqrt(I)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype) if bias else None
    dy = rng.standard_normal((*lead, O)).astype(dtype)
    y = F.linear_forward(x, w, b)
    dx, dw, db = F.linear_backward(dy, x, w, bias=bias)
    assert y.dtype == dx.dtype == dw.dtype == dtype and (db is None) == (not bias)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    rows, drows = x64.reshape(-1, I), dy64.reshape(-1, O)
    expected = {"y": x64 @ w64.T + (0 if b is None else b.astype(np.float64)), "dx": dy64 @ w64,
                "dw": drows.T @ rows}
    actual = {"y": y, "dx": dx, "dw": dw}
    if bias:
        expected["db"], actual["db"] = drows.sum(axis=0), db
    assert_parity("dense: linear", dtype, actual, expected)


def test_linear_gives_the_same_bits_on_any_number_of_threads():
    rng = np.random.default_rng(0)
    x, w, dy = rng.standard_normal((300, 70)), rng.standard_normal((90, 70)), rng.standard_normal((300, 90))
    results = []
    for threads in (1, 2, 3):
        lstm_ext.set_num_threads(threads)
        results.append((F.linear_forward(x, w, w[:, 0]), *F.linear_backward(dy, x, w)))
    lstm_ext.set_num_threads(lstm_ext.get_num_threads())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.tobytes() == b.tobytes()


def test_linear_of_no_rows():
    w = np.ones((3, 4), np.float32)
    assert F.linear_forward(np.zeros((0, 4), np.float32), w).shape == (0, 3)
    dx, dw, db = F.linear_backward(np.zeros((2, 0, 3)), np.zeros((2, 0, 4)), w)
    assert dx.shape == (2, 0, 4) and not dw.any() and not db.any() and dw.dtype == np.float32


def test_linear_refuses_bad_arguments():
    w = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"w: expected shape \(O, I\), got \(4,\)"):
        F.linear_forward(np.ones((2, 4)), np.ones(4))
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., I\) with I = 4 \(from w\), got \(2, 5\)"):
        F.linear_forward(np.ones((2, 5)), w)
    with pytest.raises(ValueError, match=r"b: expected shape \(O,\) = \(3,\), got \(4,\)"):
        F.linear_forward(np.ones((2, 4)), w, np.ones(4))
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3\) \(x's leading axes and O from w\), got \(2, 4\)"):
        F.linear_backward(np.ones((2, 4)), np.ones((2, 4)), w)
    with pytest.raises(TypeError, match="x"):
        F.linear_forward(np.ones((2, 4), complex), w)
    with pytest.raises(TypeError, match="x"):
        F.exp(np.array(["a"]))


FUNCTIONS = {"exp": (F.exp, np.exp), "tanh": (F.tanh, np.tanh), "sigmoid": (F.sigmoid, lambda v: 1 / (1 + np.exp(-v))),
             "log": (F.log, np.log)}
# Elementwise relative error (float32: a few ulps, the gates' accuracy; float64: likewise).
ULPS = {np.dtype(np.float32): 8 * 2.0 ** -24, np.dtype(np.float64): 8 * 2.0 ** -53}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_elementwise_functions_are_accurate_element_by_element(name, dtype):
    ours, exact = FUNCTIONS[name]
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(4097) * 20).astype(dtype)
    if name == "log":
        x = np.abs(x) * np.exp(rng.uniform(-60, 60, x.size)).astype(dtype) + np.finfo(dtype).tiny
    if name == "exp":
        x = np.clip(x, np.log(np.finfo(dtype).tiny), np.log(np.finfo(dtype).max) - 1)
    y = ours(x.reshape(17, 241))
    assert y.dtype == dtype and y.shape == (17, 241)
    want = exact(x.astype(np.float64)).reshape(17, 241)
    worst = float(np.max(np.abs(y - want) / np.abs(want)))
    assert worst <= ULPS[np.dtype(dtype)], f"{name} {np.dtype(dtype).name}: worst relative error {worst:.2e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_elementwise_functions_at_the_edges(dtype):
    tiny, big = np.finfo(dtype).tiny, np.finfo(dtype).max
    edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e4, -1e4, tiny / 2**10, big], dtype)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(F.exp(edges)[[0, 2, 3, 5, 6]], np.array([1, np.inf, 0, np.inf, 0], dtype))
        assert np.isnan(F.exp(edges)[4])
        logs = F.log(edges)
        assert logs[0] == logs[1] == -np.inf and logs[2] == np.inf and np.isnan(logs[4]) and np.isnan(logs[6])
        assert abs(logs[7] - np.log(float(edges[7]))) <= 4 * np.finfo(dtype).eps * abs(logs[7])  # a subnormal x
        np.testing.assert_array_equal(F.sigmoid(edges)[[0, 2, 3, 5, 6]], np.array([0.5, 1, 0, 1, 0], dtype))
        np.testing.assert_array_equal(F.tanh(edges)[[0, 2, 3, 5, 6]], np.array([0, 1, -1, 1, -1], dtype))
    assert F.exp(np.array([np.log(np.finfo(np.float32).tiny) - 1], np.float32))[0] == 0  # below the normal range: 0
    assert F.exp([1, 2]).dtype == np.float64 and F.tanh(np.ones(3, np.float16)).dtype == np.float64
