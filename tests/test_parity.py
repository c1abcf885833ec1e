"""The compiled core equals the NumPy reference: outputs, final states and every gradient.

float64 to 1e-10 and float32 to 1e-5, worst relative error per tensor (max |a − b| / max |b|),
against the float64 reference evaluated on the same (rounded) inputs. The float32 bound holds
unchanged up to T = 500: the measured worst there is about 1e-6, because each step's rounding
error is damped by the forget gate rather than accumulated.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_parity
from lstm_ext.testing import cast_case, float32_limits, random_case, run_compiled, run_reference

DTYPES = [np.float64, np.float32]


def check_case(case64, dtype, group, conditioned=False):
    """Compiled vs the float64 reference on the case rounded to dtype.

    conditioned: for float32, a tensor whose own conditioning defeats 1e-5 may miss it by what the
    error model of lstm_ext.testing.float32_limits allows (from the float64 reference alone): 1 − σ(a)
    cancels for saturated gates, and with H = 1 and B = 1 a gradient that has vanished through 30
    steps (to ~1e-22 of dc_n) or a final state that is a cancelling sum carries float32's rounding
    amplified."""
    case = cast_case(case64, dtype)
    expected = run_reference(case)
    limits = float32_limits(run_reference, case, expected) if conditioned and np.dtype(dtype) == np.float32 else None
    return assert_parity(group, dtype, run_compiled(case), expected, limits)


EDGE_SIZES = {
    "T=B=I=H=1": (1, 1, 1, 1),
    "T=1": (1, 3, 5, 4),
    "B=1": (6, 1, 3, 2),
    "I=1": (6, 4, 1, 3),
    "H=1": (4, 3, 2, 1),
    "odd sizes": (7, 5, 13, 17),
    "H=300": (3, 2, 8, 300),
    "H=300 I=300": (4, 3, 300, 300),
    "long T=500": (500, 2, 4, 8),
    "long T=500 H=64": (500, 3, 16, 64),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("size", EDGE_SIZES.values(), ids=EDGE_SIZES.keys())
def test_edge_sizes(size, dtype):
    check_case(random_case(*size, seed=sum(size)), dtype, "parity: edge sizes")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("initial_state", ["given", "zero (None)"])
@pytest.mark.parametrize("output_grads", ["dy, dh_n, dc_n", "dy None", "dstate None", "dh_n only", "dc_n only"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
def test_optional_arguments(initial_state, output_grads, bias, dtype):
    case = random_case(9, 3, 5, 6, seed=7, bias=bias)
    if initial_state != "given":
        case["h0"] = case["c0"] = None
    drop = {"dy None": ("dy",), "dstate None": ("dh_n", "dc_n"), "dh_n only": ("dy", "dc_n"),
            "dc_n only": ("dy", "dh_n")}.get(output_grads, ())
    for name in drop:
        case[name] = None
    errors = check_case(case, dtype, "parity: optional arguments")
    assert ("db_ih" in errors) == bias


def test_zero_initial_state_equals_explicit_zeros():
    case = random_case(5, 2, 3, 4, seed=3)
    case["h0"] = np.zeros_like(case["h0"])
    case["c0"] = np.zeros_like(case["c0"])
    explicit = run_compiled(case)
    case["h0"] = case["c0"] = None
    implicit = run_compiled(case)
    for name in explicit:
        np.testing.assert_array_equal(explicit[name], implicit[name], err_msg=name)


def test_saturated_gates_stay_finite_and_match():
    # Pre-activations far outside the activations' linear range (|a| up to ~100).
    case = random_case(6, 2, 4, 5, seed=11)
    case["x"] *= 30.0
    case["w_ih"] *= 10.0
    errors64 = check_case(case, np.float64, "parity: saturated gates")
    assert all(np.isfinite(e) for e in errors64.values())

    # In float32, 1 − σ(a) cancels once |a| > ~16 (absolute error ~6e-8, i.e. relative error
    # ~6e-8·e^|a|), in any implementation, so a fixed bound means nothing here (dh0 is off by 1e-4).
    # The bar instead: the error model's limit, which sees that cancellation in the float64
    # reference run with each operation rounded (lstm_ext.testing.float32_limits).
    check_case(case, np.float32, "parity: saturated gates", conditioned=True)


# derandomize: CI runs the same 60 cases every time (a failure there is reproducible, not luck).
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    T=st.integers(1, 40), B=st.integers(1, 6), I=st.integers(1, 24), H=st.integers(1, 40),
    dtype=st.sampled_from(DTYPES), bias=st.booleans(), initial_state=st.booleans(),
    dy=st.booleans(), dh_n=st.booleans(), dc_n=st.booleans(), seed=st.integers(0, 2**31 - 1),
)
def test_random_sweep(T, B, I, H, dtype, bias, initial_state, dy, dh_n, dc_n, seed):
    case = random_case(T, B, I, H, seed=seed, bias=bias)
    if not initial_state:
        case["h0"] = case["c0"] = None
    for name, present in (("dy", dy), ("dh_n", dh_n), ("dc_n", dc_n)):
        if not present:
            case[name] = None
    check_case(case, dtype, "parity: hypothesis sweep", conditioned=True)
