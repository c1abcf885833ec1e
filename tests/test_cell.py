"""Streaming: one lstm_cell call per step gives what the sequence forward gives."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_parity

import lstm_ext
from lstm_ext import reference
from lstm_ext.testing import cast_case, random_case


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("size", [(12, 3, 5, 7), (1, 1, 1, 1), (30, 1, 16, 33), (4, 2, 3, 300)])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
def test_step_by_step_equals_sequence(size, bias, dtype):
    case = cast_case(random_case(*size, seed=2, bias=bias), dtype)
    w = (case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"])
    sequence = lstm_ext.lstm_forward(case["x"], *w, case["h0"], case["c0"])

    h, c, steps = case["h0"], case["c0"], []
    for x_t in case["x"]:
        h, c = lstm_ext.lstm_cell(x_t, h, c, *w)
        steps.append(h)
    assert_parity("streaming: cell vs sequence", dtype,
                  {"y": np.stack(steps), "h_n": h, "c_n": c},
                  {"y": sequence.y, "h_n": sequence.h_n, "c_n": sequence.c_n})


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
def test_cell_matches_reference_and_none_state_is_zeros(dtype):
    case = cast_case(random_case(1, 4, 6, 5, seed=9), dtype)
    x_t = case["x"][0]
    w = (case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"])
    h, c = lstm_ext.lstm_cell(x_t, case["h0"], case["c0"], *w)
    as64 = cast_case(case, np.float64)
    h_ref, c_ref, _ = reference.lstm_cell(as64["x"][0], as64["h0"], as64["c0"], as64["w_ih"], as64["w_hh"],
                                          as64["b_ih"], as64["b_hh"])
    assert_parity("streaming: cell vs reference", dtype, {"h": h, "c": c}, {"h": h_ref, "c": c_ref})

    zeros = np.zeros_like(case["h0"])
    np.testing.assert_array_equal(lstm_ext.lstm_cell(x_t, None, None, *w)[0], lstm_ext.lstm_cell(x_t, zeros, zeros, *w)[0])
    assert h.dtype == np.dtype(dtype) and c.dtype == np.dtype(dtype)
