"""Activations are accurate relative to their own size, not only to the gate's range.

A nearly closed forget gate (LSTM) or update gate (GRU) is small, and the gradient that reaches
early steps is a product of such gates over many steps: an activation accurate to a few ulps of
0.5 but not of σ itself (Eigen 3.4's float logistic, worst relative error 8.2e-4 near
x = −8.9) is off by parts per thousand there. Both checks compare element by element (not
relative to the tensor's largest value) with the float64 reference on the same rounded inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from lstm_ext import reference

DTYPES = [np.float64, np.float32]
# Element-wise relative tolerance: a few ulps per step of float32 over at most 10 steps.
ELEMENTWISE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
# One activation: the core's tanh is Cephes' formula for double (2.3 ulp measured) and Eigen's for
# float (4.5 ulp measured).
ONE_ACTIVATION = {np.dtype(np.float64): 1e-15, np.dtype(np.float32): 1e-6}


def elementwise_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected) / np.abs(expected)))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_tanh_is_accurate_everywhere(dtype):
    # One step of a one-unit tanh RNN with W_ih = 1 and no bias: y = tanh(x), over the range where
    # tanh is not yet ±1, with both sides of the formula's switch at |x| = 0.625 and tiny values.
    x = np.concatenate([np.linspace(-20.0, 20.0, 4001), np.linspace(0.6, 0.65, 501), [1e-30, -1e-8, 0.625]])
    x = x[x != 0].astype(dtype).reshape(1, -1, 1)                               # (T=1, B, I=1)
    y = lstm_ext.rnn_forward(x, np.ones((1, 1), dtype), np.zeros((1, 1), dtype)).y
    error = elementwise_error(y, np.tanh(x.astype(np.float64)))
    assert error <= ONE_ACTIVATION[np.dtype(dtype)], f"tanh: worst element-wise relative error {error:.2e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_lstm_output_with_small_input_gate(dtype):
    # One step from c0 = 0: y = o · tanh(i · g) with i = σ(x) over x in [−20, 5], g = tanh(1),
    # o = σ(10). y is about 0.76 σ(x): its relative error is the input gate's.
    x = np.linspace(-20.0, 5.0, 251).astype(dtype).reshape(1, -1, 1)          # (T=1, B, I=1)
    w_ih = np.array([[1.0], [0.0], [0.0], [0.0]], dtype)                       # i, f, g, o
    w_hh = np.zeros((4, 1), dtype)
    b_ih = np.array([0.0, 0.0, 1.0, 10.0], dtype)
    b_hh = np.zeros(4, dtype)
    got = lstm_ext.lstm_forward(x, w_ih, w_hh, b_ih, b_hh).y
    want = reference.lstm_forward(*(np.asarray(a, np.float64) for a in (x, w_ih, w_hh, b_ih, b_hh)))[0]
    error = elementwise_error(got, want)
    assert error <= ELEMENTWISE[np.dtype(dtype)], f"y: worst element-wise relative error {error:.2e}"


def gradient_through_one_gate(cell, x):
    """With W_hh = 0 and only the final state's gradient given (dc_n for the LSTM, dh_n for the GRU),
    that gradient reaches the initial state multiplied by one gate per step: the forget gate f_t
    (LSTM, gate rows i, f, g, o) or the update gate z_t (GRU, rows r, z, n), whose pre-activation
    is x_t. Returns the compiled dc0 or dh0 (B, 1)."""
    dtype = x.dtype
    ones = np.ones((x.shape[1], 1), dtype)
    if cell == "lstm":
        w_ih, w_hh = np.array([[0.0], [1.0], [0.0], [0.0]], dtype), np.zeros((4, 1), dtype)
        out = lstm_ext.lstm_forward(x, w_ih, w_hh, training=True)
        return lstm_ext.lstm_backward(None, None, ones, x, w_ih, w_hh, out.workspace, bias=False).dc0
    w_ih, w_hh = np.array([[0.0], [1.0], [0.5]], dtype), np.zeros((3, 1), dtype)
    out = lstm_ext.gru_forward(x, w_ih, w_hh, training=True)
    return lstm_ext.gru_backward(None, ones, x, w_ih, w_hh, out.workspace, bias=False).dh0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradient_through_nearly_closed_gates(cell, dtype):
    # 8 steps of gates σ(a_t) with a_t in [−9, −3]: the gradient is Π_t σ(a_t), about 1e-15.
    x = np.random.default_rng(0).uniform(-9.0, -3.0, (8, 64, 1)).astype(dtype)  # (T, B, I=1)
    want = np.prod(reference.sigmoid(x.astype(np.float64)[:, :, 0]), axis=0)[:, None]
    error = elementwise_error(gradient_through_one_gate(cell, x), want)
    assert error <= ELEMENTWISE[np.dtype(dtype)], f"{cell}: worst element-wise relative error {error:.2e}"


def sigmoid_of(x):
    """σ(x) as the core computes it: dh0 of one GRU step with W_hh = 0 and dh_n = 1 is the update
    gate z = σ(x) (gradient_through_one_gate), element by element."""
    return gradient_through_one_gate("gru", x.reshape(1, -1, 1))[:, 0].astype(np.float64)


def test_sigmoid_float32_is_accurate_wherever_it_is_a_normal_float():
    # Measured before: Eigen's AVX-512 float exp let σ drift to 3.2e-7 near x = −87 and flushed it
    # to 0 below −87.4, where σ(x) is still a normal float; the other levels did not.
    def worst(lo, hi):
        x = np.linspace(lo, hi, 200_001).astype(np.float32)
        want = reference.sigmoid(x.astype(np.float64))
        return elementwise_error(sigmoid_of(x), want), x, want

    normal, _, _ = worst(-87.33, 30.0)           # σ(x) >= 1.18e-38, the smallest normal float
    assert normal <= 2e-7, f"σ: worst relative error {normal:.2e} where σ(x) is a normal float"
    subnormal, _, _ = worst(-88.72, -87.34)      # the subnormal floats: fewer digits
    assert subnormal <= 5e-7, f"σ: worst relative error {subnormal:.2e} among the subnormals"
    x = np.linspace(-1000.0, -88.73, 10_001).astype(np.float32)
    got = sigmoid_of(x)
    assert np.all((got >= 0) & (got < 3e-39))    # e^(−x) overflows: σ is 0 (or the last subnormals)


def test_sigmoid_float64_is_accurate_down_to_the_smallest_normal():
    x = np.linspace(-708.0, 40.0, 200_001)
    error = elementwise_error(sigmoid_of(x), reference.sigmoid(x))
    assert error <= 1e-15, f"σ: worst relative error {error:.2e}"
