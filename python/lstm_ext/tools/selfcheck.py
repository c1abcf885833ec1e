"""The self-check: the compiled core against the NumPy reference on random data.

Runs forward and backward in float64 and float32, prints the worst relative error of every
output and gradient and the time per step of both implementations, and fails (returns 1) when
any error exceeds its tolerance. ``python -m lstm_ext check`` runs it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from lstm_ext import _core
from lstm_ext.testing import TENSORS, TOLERANCE, cast_case, compare, random_case, run_compiled, run_reference


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def memory_bytes(T: int, B: int, I: int, H: int) -> int:
    """About how many bytes the self-check holds at its peak, for the command line to refuse sizes
    that cannot fit before any work: the case in float64 and float32, the outputs, caches and
    gradients of the compiled core and of the reference. Measured peaks over the interpreter's
    (0.05 GiB): 0.76 GiB at (T, B, I, H) = (400, 64, 128, 256), 1.1 GiB at (2000, 64, 64, 64),
    0.39 GiB at (20, 4, 1024, 1024); this estimate is 1.2-1.4 times those."""
    return 8 * (12 * T * B * (I + H) + 32 * H * (I + H))


def run(T: int = 64, B: int = 8, I: int = 32, H: int = 64, seed: int = 0, repeats: int = 3,
        out: Callable[[str], object] = print) -> int:
    """Run the self-check, print its report through `out`; 0 when every tensor is within tolerance."""
    case64 = random_case(T, B, I, H, seed)
    level = _core.build_info()["kernel_level"]
    out(f"lstm_ext self-check: compiled core ({level} kernels) vs NumPy reference, T={T} B={B} I={I} H={H} "
        f"seed={seed}")
    out("worst relative error per tensor (max |a - b| / max |b|), forward and backward:")
    errors: dict[np.dtype[Any], dict[str, float]] = {}
    compiled_seconds: dict[np.dtype[Any], float] = {}
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
