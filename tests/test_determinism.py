"""Bitwise reproducibility: results depend on values and sizes only.

Not on where NumPy happened to put the arrays (their alignment), and not on the call: the same
inputs give the same bits every time. Training runs that resume from a checkpoint rely on it.
"""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from lstm_ext.testing import cast_case, random_case, run_compiled

SHAPES = {
    "T*B=1": (1, 1, 7, 19),
    "I=1": (5, 3, 1, 6),
    "H=1": (4, 2, 3, 1),
    "ragged H": (6, 3, 5, 21),
    "B=1 H=33": (9, 1, 4, 33),
    "wide": (3, 4, 40, 64),
}


def at_offset(array, offset):
    """A C-contiguous copy of `array` starting `offset` elements into a fresh buffer."""
    if array is None:
        return None
    buffer = np.empty(array.size + offset + 1, dtype=array.dtype)
    view = buffer[offset:offset + array.size].reshape(array.shape)
    view[...] = array
    assert view.flags.c_contiguous
    return view


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_results_do_not_depend_on_alignment_or_call(shape, dtype):
    case = cast_case(random_case(*shape, seed=5), dtype)
    first = run_compiled(case)
    ballast = []
    for offset in range(1, 9):
        ballast.append(np.empty(offset * 3 + 1, dtype=np.uint8))  # shift where outputs land
        shifted = {name: at_offset(value, offset) for name, value in case.items()}
        again = run_compiled(shifted)
        for name, value in first.items():
            if value is None:
                assert again[name] is None
            else:
                np.testing.assert_array_equal(again[name], value, err_msg=f"{name} at offset {offset}")


FAMILY = {
    "lstm proj": ("lstm", 4, {"w_hr": (3, 21)}),
    "gru": ("gru", 3, {}),
    "rnn relu": ("rnn", 1, {"nonlinearity": "relu"}),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cell", FAMILY, ids=FAMILY.keys())
def test_every_cell_with_lengths_and_reverse_is_bitwise_reproducible(cell, dtype):
    op, gates, extra = FAMILY[cell]
    T, B, I, H = 6, 3, 5, 21
    rng = np.random.default_rng(8)
    H_out = extra["w_hr"][0] if "w_hr" in extra else H
    arrays = {"x": rng.standard_normal((T, B, I)), "w_ih": rng.standard_normal((gates * H, I)) * 0.3,
              "w_hh": rng.standard_normal((gates * H, H_out)) * 0.3, "b_ih": rng.standard_normal(gates * H),
              "dy": rng.standard_normal((T, B, H_out))}
    if "w_hr" in extra:
        arrays["w_hr"] = rng.standard_normal(extra["w_hr"]) * 0.3
    options = {"lengths": np.array([6, 2, 4]), "reverse": True}
    if "nonlinearity" in extra:
        options["nonlinearity"] = extra["nonlinearity"]
    forward, backward = getattr(lstm_ext, op + "_forward"), getattr(lstm_ext, op + "_backward")

    def run(a):
        weights = {"w_hr": a["w_hr"]} if "w_hr" in a else {}
        out = forward(a["x"], a["w_ih"], a["w_hh"], a["b_ih"], training=True, **weights, **options)
        if op == "lstm":
            grads = backward(a["dy"], None, None, a["x"], a["w_ih"], a["w_hh"], out.workspace, **weights, **options)
        else:
            grads = backward(a["dy"], None, a["x"], a["w_ih"], a["w_hh"], out.workspace, **options)
        return {"y": out.y, "h_n": out.h_n, **{k: v for k, v in grads._asdict().items() if v is not None}}

    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    first = run(arrays)
    for offset in range(1, 9):
        again = run({name: at_offset(value, offset) for name, value in arrays.items()})
        for name, value in first.items():
            np.testing.assert_array_equal(again[name], value, err_msg=f"{cell} {name} at offset {offset}")
