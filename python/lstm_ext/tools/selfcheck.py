"""The self-check: the compiled core against the NumPy reference on random data.

Runs forward and backward in float64 and float32, prints the worst relative error of every
output and gradient and the time per step of both implementations, and fails (returns 1) when
any error exceeds its tolerance. ``python -m lstm_ext check`` runs it.
"""

from __future__ import annotations

import time

import numpy as np

from . import _core, functional, reference

# Parity tolerances: worst relative error (see relative_error) of the compiled result against the
# float64 reference computed on the same inputs.
TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}

TENSORS = ("y", "h_n", "c_n", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")


def relative_error(actual, expected) -> float:
    """max |actual − expected| / max |expected|: the worst error relative to the tensor's scale.

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


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(T=64, B=8, I=32, H=64, seed=0, repeats=3, out=print) -> int:
    """Run the self-check, print its report through `out`; 0 when every tensor is within tolerance."""
    case64 = random_case(T, B, I, H, seed)
    level = _core.build_info()["kernel_level"]
    out(f"lstm_ext self-check: compiled core ({level} kernels) vs NumPy reference, T={T} B={B} I={I} H={H} "
        f"seed={seed}")
    out("worst relative error per tensor (max |a - b| / max |b|), forward and backward:")
    errors, compiled_seconds = {}, {}
    for dtype in (np.float64, np.float32):
        case = cast_case(case64, dtype)
        errors[np.dtype(dtype)] = compare(run_compiled(case), run_reference(case))
        compiled_seconds[np.dtype(dtype)] = _median_seconds(lambda: run_compiled(case), repeats)
    reference_seconds = _median_seconds(lambda: run_reference(case64), repeats)

    dtypes = list(errors)
    out(f"  {'tensor':8}" + "".join(f"{d.name:>12}" for d in dtypes))
    for name in TENSORS:
        out(f"  {name:8}" + "".join(f"{errors[d][name]:12.2e}" for d in dtypes))
    out(f"  {'limit':8}" + "".join(f"{TOLERANCE[d]:12.0e}" for d in dtypes))

    out(f"time per step, forward + backward (median of {repeats}):")
    out(f"  NumPy reference (float64): {reference_seconds / T * 1e6:9.1f} us")
    for d in dtypes:
        out(f"  compiled {d.name}:          {compiled_seconds[d] / T * 1e6:9.1f} us"
            f"   ({reference_seconds / compiled_seconds[d]:.0f}x faster)")

    failed = [(d.name, name, e) for d in dtypes for name, e in errors[d].items() if not e <= TOLERANCE[d]]
    for dtype_name, name, e in failed:
        out(f"FAIL {dtype_name} {name}: {e:.2e} > {TOLERANCE[np.dtype(dtype_name)]:.0e}")
    out("self-check " + ("FAILED" if failed else "passed"))
    return 1 if failed else 0
