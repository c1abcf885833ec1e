"""Bad input never crashes: a TypeError or ValueError (MemoryError for impossible sizes) that
names the argument and gives the expected and the actual shape or type."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import lstm_ext
from lstm_ext.testing import random_case

T, B, I, H = 4, 3, 5, 6


@pytest.fixture
def case():
    return random_case(T, B, I, H, seed=0)


def forward_args(case, **changes):
    args = {k: case[k] for k in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")}
    args.update(changes)
    return args


FORWARD_SHAPE_ERRORS = {
    "w_hh not 2-D": ("w_hh", np.zeros((4 * H, H, 1)), r"w_hh: expected a 2-D array \(4H, H\), got shape \(24, 6, 1\)"),
    "w_hh rows != 4H": ("w_hh", np.zeros((4 * H + 1, H)), r"w_hh: expected shape \(4H, H\).*got \(25, 6\)"),
    "w_ih rows != 4H": ("w_ih", np.zeros((4 * H - 4, I)), r"w_ih: expected shape \(4H, I\) with 4H = 24.*got \(20, 5\)"),
    "w_ih not 2-D": ("w_ih", np.zeros(4 * H), r"w_ih: expected a 2-D array \(4H, I\), got shape \(24,\)"),
    "x not 3-D": ("x", np.zeros((T, I)), r"x: expected a 3-D array \(T, B, I\), got shape \(4, 5\)"),
    "x wrong I": ("x", np.zeros((T, B, I + 1)), r"x: expected shape \(T, B, I\) with .*I = 5.*got \(4, 3, 6\)"),
    "x no steps": ("x", np.zeros((0, B, I)), r"x: expected shape \(T, B, I\) with T >= 1.*got \(0, 3, 5\)"),
    "x empty batch": ("x", np.zeros((T, 0, I)), r"x: .*B >= 1.*got \(4, 0, 5\)"),
    "b_ih wrong": ("b_ih", np.zeros(4 * H + 1), r"b_ih: expected shape \(4H,\) = \(24,\), got \(25,\)"),
    "b_hh 2-D": ("b_hh", np.zeros((1, 4 * H)), r"b_hh: expected shape \(4H,\) = \(24,\), got \(1, 24\)"),
    "h0 wrong": ("h0", np.zeros((B + 1, H)), r"h0: expected shape \(B, H\) = \(3, 6\), got \(4, 6\)"),
    "c0 3-D": ("c0", np.zeros((1, B, H)), r"c0: expected shape \(B, H\) = \(3, 6\), got \(1, 3, 6\)"),
}


@pytest.mark.parametrize("name, value, message", FORWARD_SHAPE_ERRORS.values(), ids=FORWARD_SHAPE_ERRORS.keys())
def test_forward_shape_errors(case, name, value, message):
    with pytest.raises(ValueError, match=message):
        lstm_ext.lstm_forward(**forward_args(case, **{name: value}))


KIND_ERRORS = {
    "complex": (np.zeros((T, B, I), dtype=complex), TypeError, r"x: expected real numbers.*got dtype complex128"),
    "object": (np.array([[[object()]]]), TypeError, r"x: expected real numbers.*got dtype object"),
    "string": ("not an array", TypeError, r"x: expected real numbers.*got dtype <U12 \(read from a str\)"),
    "None": (None, TypeError, r"x: expected real numbers.*dtype object \(read from a NoneType\)"),
    "ragged list": ([[[1.0, 2.0]], [[1.0]]], ValueError, r"x: cannot be read as an array of real numbers"),
    "dict": ({"a": 1}, TypeError, r"x: expected real numbers.*\(read from a dict\)"),
}


@pytest.mark.parametrize("value, error, message", KIND_ERRORS.values(), ids=KIND_ERRORS.keys())
def test_functional_refuses_non_real_input(case, value, error, message):
    with pytest.raises(error, match=message):
        lstm_ext.lstm_forward(**forward_args(case, x=value))


@pytest.mark.parametrize("name", ["w_ih", "w_hh", "b_ih", "h0"])
def test_functional_refuses_complex_anywhere(case, name):
    with pytest.raises(TypeError, match=f"{name}: expected real numbers"):
        lstm_ext.lstm_forward(**forward_args(case, **{name: np.asarray(case[name]) + 1j}))


def test_backward_errors(case):
    out = lstm_ext.lstm_forward(**forward_args(case), training=True)
    args = dict(dy=case["dy"], dh_n=case["dh_n"], dc_n=case["dc_n"], x=case["x"], w_ih=case["w_ih"],
                w_hh=case["w_hh"], workspace=out.workspace)
    lstm_ext.lstm_backward(**args)  # the valid call works

    def fails(error, message, **changes):
        with pytest.raises(error, match=message):
            lstm_ext.lstm_backward(**{**args, **changes})

    fails(ValueError, r"workspace: expected the workspace of lstm_forward\(..., training=True\), got None",
          workspace=None)
    fails(ValueError, r"workspace: expected the 1-D workspace .* \(T, B, H\) = \(4, 3, 6\).*got \(10,\)",
          workspace=np.zeros(10))
    fails(ValueError, r"workspace: .*got \(4, 3, 6\)", workspace=np.zeros((T, B, H)))
    fails(ValueError, r"dy: expected shape \(T, B, H\) = \(4, 3, 6\), got \(4, 3, 5\)", dy=np.zeros((T, B, H - 1)))
    fails(ValueError, r"dh_n: expected shape \(B, H\) = \(3, 6\), got \(1, 3, 6\)", dh_n=np.zeros((1, B, H)))
    fails(ValueError, r"dc_n: expected shape \(B, H\) = \(3, 6\), got \(3,\)", dc_n=np.zeros(B))
    fails(ValueError, r"x: expected shape \(T, B, I\).*got \(4, 3, 4\)", x=np.zeros((T, B, I - 1)))
    fails(TypeError, r"workspace: expected real numbers", workspace=out.workspace.astype(complex))
    fails(TypeError, r"dy: expected real numbers", dy="dy")


def test_cell_errors(case):
    w = dict(w_ih=case["w_ih"], w_hh=case["w_hh"], b_ih=case["b_ih"], b_hh=case["b_hh"])
    with pytest.raises(ValueError, match=r"x: expected a 2-D array \(B, I\), got shape \(4, 3, 5\)"):
        lstm_ext.lstm_cell(case["x"], None, None, **w)
    with pytest.raises(ValueError, match=r"h: expected shape \(B, H\) = \(3, 6\), got \(3, 5\)"):
        lstm_ext.lstm_cell(case["x"][0], np.zeros((B, H - 1)), None, **w)
    with pytest.raises(TypeError, match=r"c: expected real numbers"):
        lstm_ext.lstm_cell(case["x"][0], None, np.zeros((B, H), dtype=complex), **w)


def physical_memory_bytes():
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("training", [True, False])
def test_impossible_sizes_raise_memory_error_before_allocating(training):
    hidden = 1024
    # y alone needs steps * hidden * 4 bytes: make that four times this machine's memory. The
    # weights are np.zeros, whose pages are never touched, so the test itself needs little memory.
    steps = int(4 * physical_memory_bytes() / (hidden * 4)) + 1
    x = np.zeros((steps, 1, 1), dtype=np.float32)
    w_ih = np.zeros((4 * hidden, 1), dtype=np.float32)
    w_hh = np.zeros((4 * hidden, hidden), dtype=np.float32)
    with pytest.raises(MemoryError, match=r"lstm_forward: needs .* GiB, more than this machine's .* GiB"):
        lstm_ext.lstm_forward(x, w_ih, w_hh, training=training)


def test_an_input_whose_copy_cannot_fit_raises_memory_error_naming_it():
    # A broadcast view costs nothing, its C-contiguous copy 16 TiB. pybind11's conversion swallowed
    # NumPy's MemoryError and the call raised "RuntimeError: Internal error: ...".
    x = np.broadcast_to(np.float32(0), (2**20, 2**20, 4))
    with pytest.raises(MemoryError, match=r"x \(converted to a contiguous float32 copy\): needs .* GiB, more than"):
        lstm_ext.lstm_forward(x, np.zeros((16, 4), np.float32), np.zeros((16, 4), np.float32))
    H = 2**17
    w_hh = np.broadcast_to(np.float64(0), (3 * H, H))  # float64 weights, but a copy in any case
    with pytest.raises(MemoryError, match=r"w_hh \(converted to a contiguous float64 copy\): needs 384 GiB"):
        lstm_ext.gru_forward(np.zeros((2, 1, 4)), np.zeros((3 * H, 4)), w_hh)


# -- the layer ------------------------------------------------------------------------------------

CONSTRUCTOR_ERRORS = {
    "input_size 0": (dict(input_size=0), ValueError, r"input_size: expected an integer >= 1, got 0"),
    "hidden_size -3": (dict(hidden_size=-3), ValueError, r"hidden_size: expected an integer >= 1, got -3"),
    "input_size float": (dict(input_size=2.5), TypeError, r"input_size: expected an integer >= 1, got float 2.5"),
    "hidden_size str": (dict(hidden_size="8"), TypeError, r"hidden_size: expected an integer >= 1, got str '8'"),
    "hidden_size bool": (dict(hidden_size=True), TypeError, r"hidden_size: expected an integer >= 1, got bool"),
    "dtype int": (dict(dtype=np.int32), TypeError, r"dtype: expected float32 or float64, got int32"),
    "dtype float16": (dict(dtype="float16"), TypeError, r"dtype: expected float32 or float64, got float16"),
    "dtype nonsense": (dict(dtype="nonsense"), TypeError, r"dtype: expected float32 or float64, got 'nonsense'"),
}


@pytest.mark.parametrize("changes, error, message", CONSTRUCTOR_ERRORS.values(), ids=CONSTRUCTOR_ERRORS.keys())
def test_layer_constructor_errors(changes, error, message):
    with pytest.raises(error, match=message):
        lstm_ext.LSTM(**{"input_size": I, "hidden_size": H, **changes})


def test_layer_forward_errors():
    layer = lstm_ext.LSTM(I, H)
    x = np.zeros((T, B, I))
    good_state = (np.zeros((1, B, H)), np.zeros((1, B, H)))
    layer(x, good_state)

    def fails(error, message, *args):
        with pytest.raises(error, match=message):
            layer(*args)

    fails(ValueError, r"x: expected a 3-D array \(T, B, I\) with I = 5, got shape \(4, 5\)", np.zeros((T, I)))
    fails(ValueError, r"x: expected shape \(T, B, I\) with T >= 1, B >= 1 and I = 5, got \(4, 3, 7\)",
          np.zeros((T, B, 7)))
    fails(ValueError, r"x: .*T >= 1.*got \(0, 3, 5\)", np.zeros((0, B, I)))
    fails(TypeError, r"x: expected real numbers.*complex", x + 1j)
    fails(TypeError, r"x: expected real numbers.*<U", [["a", "b"]])
    fails(TypeError, r"state: expected a tuple \(h, c\) .* = \(1, 3, 6\), or None; got ndarray",
          x, np.zeros((1, B, H)))
    fails(TypeError, r"state: expected a tuple \(h, c\).*got tuple of length 3", x, good_state + good_state[:1])
    fails(ValueError, re.escape("state[0] (h): expected shape (num_layers * num_directions, B, H) = (1, 3, 6), "
                                "got (3, 6)"), x, (np.zeros((B, H)), good_state[1]))
    fails(ValueError, re.escape("state[1] (c): expected shape (num_layers * num_directions, B, H) = (1, 3, 6), "
                                "got (2, 3, 6)"), x, (good_state[0], np.zeros((2, B, H))))
    fails(TypeError, r"state\[0\] \(h\): expected real numbers", x, (None, good_state[1]))

    batch_first = lstm_ext.LSTM(I, H, batch_first=True)
    with pytest.raises(ValueError, match=r"x: expected a 3-D array \(B, T, I\)"):
        batch_first(np.zeros((T, I)))


def test_layer_backward_errors():
    layer = lstm_ext.LSTM(I, H)
    layer(np.zeros((T, B, I)))
    with pytest.raises(ValueError, match=r"dy: expected shape of y \(T, B, H\) = \(4, 3, 6\), got \(3, 4, 6\)"):
        layer.backward(np.zeros((B, T, H)))
    with pytest.raises(ValueError, match=re.escape("dstate[1] (c): expected shape (num_layers * num_directions, "
                                                   "B, H) = (1, 3, 6), got (1, 3, 5)")):
        layer.backward(None, (None, np.zeros((1, B, H - 1))))
    with pytest.raises(TypeError, match=r"dstate: expected a tuple"):
        layer.backward(None, np.zeros((1, B, H)))
    layer.backward(None, (np.zeros((1, B, H)), None))  # the workspace survived the failed calls
