"""Bitwise reproducibility: results depend on values and sizes only.

Not on where NumPy happened to put the arrays (their alignment), and not on the call: the same
inputs give the same bits every time. Training runs that resume from a checkpoint rely on it.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstm_ext.selfcheck import cast_case, random_case, run_compiled

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
