"""What the self-check and the tests share: the parity tolerances, the error measure, a random
LSTM case run through the compiled core and through the NumPy reference, and finite differences.

For example::

    from lstm_ext.testing import TOLERANCE, relative_error, random_case, run_compiled, run_reference
    case = random_case(T=5, B=3, I=4, H=8)
    errors = compare(run_compiled(case), run_reference(case))   # worst relative error per tensor
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import functional, reference

__all__ = ["TOLERANCE", "TENSORS", "relative_error", "random_case", "cast_case", "run_reference", "run_compiled",
           "compare", "FD_STEP", "FD_TOLERANCE", "central_difference", "sample_indices", "fd_errors"]

# Parity tolerances: worst relative error (see relative_error) of the compiled result against the
# float64 reference computed on the same inputs.
TOLERANCE: dict[np.dtype[Any], float] = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}

# One layer's arrays by name (x, w_ih, w_hh, b_ih, b_hh, h0, c0, dy, dh_n, dc_n); the biases None without bias.
Case = dict[str, Optional[np.ndarray]]

TENSORS = ("y", "h_n", "c_n", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")


def relative_error(actual: ArrayLike, expected: ArrayLike) -> float:
    """``max |actual − expected| / max |expected|``: the worst error relative to the tensor's scale.

    Relative to the largest magnitude rather than element by element, so that entries that are
    near zero by cancellation do not dominate. An all-zero expected tensor compares absolutely.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {e.shape}")
    scale: np.float64 = np.max(np.abs(e), initial=0.0)
    worst: np.float64 = np.max(np.abs(a - e), initial=0.0)
    return float(worst / scale) if scale > 0 else float(worst)


def random_case(T: int, B: int, I: int, H: int, seed: int = 0, bias: bool = True) -> Case:
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


def cast_case(case: Case, dtype: DTypeLike) -> Case:
    """The case with every array rounded to `dtype` (None stays None)."""
    return {k: None if v is None else np.asarray(v, dtype=dtype) for k, v in case.items()}


def run_reference(case: Case) -> dict[str, Optional[np.ndarray]]:
    """Reference forward + backward in float64 on the case's values: a dict of every tensor (the
    bias gradients None without bias)."""
    c = cast_case(case, np.float64)
    x, w_ih, w_hh = c["x"], c["w_ih"], c["w_hh"]
    assert x is not None and w_ih is not None and w_hh is not None  # a case always has them
    y, h_n, c_n, cache = reference.lstm_forward(x, w_ih, w_hh, c["b_ih"], c["b_hh"], c["h0"], c["c0"])
    grads = reference.lstm_backward(c["dy"], c["dh_n"], c["dc_n"], cache)
    return {"y": y, "h_n": h_n, "c_n": c_n, **grads}


def run_compiled(case: Case) -> dict[str, Optional[np.ndarray]]:
    """Compiled forward + backward in the case's dtype: a dict of every tensor."""
    out = functional.lstm_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"],
                                  case["h0"], case["c0"], training=True)
    grads = functional.lstm_backward(case["dy"], case["dh_n"], case["dc_n"], case["x"], case["w_ih"],
                                     case["w_hh"], out.workspace, bias=case["b_ih"] is not None)
    return {"y": out.y, "h_n": out.h_n, "c_n": out.c_n, **grads._asdict()}


def compare(compiled: Mapping[str, Optional[np.ndarray]], expected: Mapping[str, Optional[np.ndarray]]
            ) -> dict[str, float]:
    """Worst relative error per tensor, for the tensors both sides have."""
    return {name: relative_error(compiled[name], expected[name])
            for name in TENSORS if compiled.get(name) is not None and expected.get(name) is not None}


# -- finite differences ------------------------------------------------------------------------------

# Central differences in float64: truncation error O(step²), rounding error O(1e-16 / step); the
# analytic gradients must agree to FD_TOLERANCE relative to their tensor's scale.
FD_STEP = 1e-6
FD_TOLERANCE = 1e-7


def central_difference(f: Callable[[], float], array: np.ndarray, index: tuple[int, ...],
                       step: float = FD_STEP) -> float:
    """(f(a + step) − f(a − step)) / (2 step) for the element `index` of `array`, which f reads
    (changed in place and restored)."""
    saved = array[index]
    array[index] = saved + step
    up = f()
    array[index] = saved - step
    down = f()
    array[index] = saved
    return (up - down) / (2 * step)


def sample_indices(analytic: np.ndarray, rng: np.random.Generator, count: int) -> list[tuple[int, ...]]:
    """`count` indices of a tensor: that of its largest gradient in magnitude (so that
    relative_error's scale is the tensor's) and random others."""
    flat = [int(np.argmax(np.abs(analytic)))]
    others = rng.permutation(analytic.size)
    flat += [int(k) for k in others if k != flat[0]][:count - 1]
    return [tuple(int(i) for i in np.unravel_index(k, analytic.shape)) for k in flat]


def fd_errors(f: Callable[[], float], tensors: Mapping[str, np.ndarray], analytic: Mapping[str, np.ndarray],
              seed: int, count: int) -> dict[str, float]:
    """{name: worst relative error of analytic[name] against central differences of f}, over
    `count` sampled elements (sample_indices) of each tensor in `tensors`, which f reads."""
    rng = np.random.default_rng(seed)
    errors = {}
    for name, value in tensors.items():
        indices = sample_indices(analytic[name], rng, count)
        numeric = [central_difference(f, value, index) for index in indices]
        errors[name] = relative_error([analytic[name][index] for index in indices], numeric)
    return errors
