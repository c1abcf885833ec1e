"""What the self-check and the tests share: the parity tolerances, the error measure, and a
random LSTM case run through the compiled core and through the NumPy reference.

For example::

    from lstm_ext.testing import TOLERANCE, relative_error, random_case, run_compiled, run_reference
    case = random_case(T=5, B=3, I=4, H=8)
    errors = compare(run_compiled(case), run_reference(case))   # worst relative error per tensor
"""

from __future__ import annotations

import numpy as np

from . import functional, reference

__all__ = ["TOLERANCE", "TENSORS", "relative_error", "random_case", "cast_case", "run_reference", "run_compiled",
           "compare"]

# Parity tolerances: worst relative error (see relative_error) of the compiled result against the
# float64 reference computed on the same inputs.
TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}

TENSORS = ("y", "h_n", "c_n", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")


def relative_error(actual, expected) -> float:
    """``max |actual − expected| / max |expected|``: the worst error relative to the tensor's scale.

    Relative to the largest magnitude rather than element by element, so that entries that are
    near zero by cancellation do not dominate. An all-zero expected tensor compares absolutely.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    scale = np.max(np.abs(expected), initial=0.0)
    worst = np.max(np.abs(actual - expected), initial=0.0)
    return float(worst / scale) if scale > 0 else float(worst)


def random_case(T, B, I, H, seed=0, bias=True):
    """Random float64 inputs, weights (PyTorch's init scale) and output gradients for one layer."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(H)
    return {
        "x": rng.standard_normal((T, B, I)),
        "w_ih": rng.uniform(-bound, bound, (4 * H, I)),
        "w_hh": rng.uniform(-bound, bound, (4 * H, H)),
        "b_ih": rng.uniform(-bound, bound, 4 * H) if bias else None,
        "b_hh": rng.uniform(-bound, bound, 4 * H) if bias else None,
        "h0": rng.standard_normal((B, H)),
        "c0": rng.standard_normal((B, H)),
        "dy": rng.standard_normal((T, B, H)),
        "dh_n": rng.standard_normal((B, H)),
        "dc_n": rng.standard_normal((B, H)),
    }


def cast_case(case, dtype):
    """The case with every array rounded to `dtype` (None stays None)."""
    return {k: None if v is None else np.asarray(v, dtype=dtype) for k, v in case.items()}


def run_reference(case):
    """Reference forward + backward in float64 on the case's values: a dict of every tensor."""
    c = cast_case(case, np.float64)
    y, h_n, c_n, cache = reference.lstm_forward(c["x"], c["w_ih"], c["w_hh"], c["b_ih"], c["b_hh"], c["h0"], c["c0"])
    grads = reference.lstm_backward(c["dy"], c["dh_n"], c["dc_n"], cache)
    return {"y": y, "h_n": h_n, "c_n": c_n, **grads}


def run_compiled(case):
    """Compiled forward + backward in the case's dtype: a dict of every tensor."""
    out = functional.lstm_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"],
                                  case["h0"], case["c0"], training=True)
    grads = functional.lstm_backward(case["dy"], case["dh_n"], case["dc_n"], case["x"], case["w_ih"],
                                     case["w_hh"], out.workspace, bias=case["b_ih"] is not None)
    return {"y": out.y, "h_n": out.h_n, "c_n": out.c_n, **grads._asdict()}


def compare(compiled, expected):
    """Worst relative error per tensor, for the tensors both sides have."""
    return {name: relative_error(compiled[name], expected[name])
            for name in TENSORS if compiled.get(name) is not None and expected.get(name) is not None}
