"""The oracle proven: finite differences of the NumPy reference, in float64, for every gradient."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_ext import reference
from lstm_ext.testing import random_case, relative_error

# Central differences have truncation error O(eps²) and rounding error O(1e-16 / eps).
FD_EPS = 1e-6
FD_TOLERANCE = 1e-7

INPUTS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")
GRAD_OF = {"x": "dx", "h0": "dh0", "c0": "dc0", "w_ih": "dw_ih", "w_hh": "dw_hh", "b_ih": "db_ih", "b_hh": "db_hh"}


def loss(case):
    """L = Σ dy ⊙ y + Σ dh_n ⊙ h_n + Σ dc_n ⊙ c_n, whose gradients w.r.t. y, h_n, c_n are dy, dh_n, dc_n."""
    y, h_n, c_n, _ = reference.lstm_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"],
                                            case["h0"], case["c0"])
    total = 0.0
    for value, weight in ((y, case["dy"]), (h_n, case["dh_n"]), (c_n, case["dc_n"])):
        if weight is not None:
            total += float(np.sum(value * weight))
    return total


def numerical_gradient(case, name):
    value = case[name]
    grad = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        saved = value[index]
        value[index] = saved + FD_EPS
        up = loss(case)
        value[index] = saved - FD_EPS
        down = loss(case)
        value[index] = saved
        grad[index] = (up - down) / (2 * FD_EPS)
    return grad


@pytest.mark.parametrize(
    "T, B, I, H, bias, given",
    [
        (4, 2, 3, 3, True, ("dy", "dh_n", "dc_n")),
        (1, 1, 1, 1, True, ("dy", "dh_n", "dc_n")),
        (5, 3, 2, 2, False, ("dy", "dh_n", "dc_n")),
        (3, 2, 3, 4, True, ("dh_n",)),  # only the final hidden state matters
        (3, 2, 3, 2, True, ("dy",)),    # only the outputs matter
        (3, 1, 2, 3, True, ("dc_n",)),  # only the final cell state matters
    ],
)
def test_reference_gradients_match_finite_differences(T, B, I, H, bias, given):
    case = random_case(T, B, I, H, seed=T * 100 + H, bias=bias)
    for name in ("dy", "dh_n", "dc_n"):
        if name not in given:
            case[name] = None
    # Larger weights than the default init, so that the gates leave their linear regime.
    case["w_hh"] *= 3.0
    case["w_ih"] *= 3.0

    y, h_n, c_n, cache = reference.lstm_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"],
                                                case["h0"], case["c0"])
    analytic = reference.lstm_backward(case["dy"], case["dh_n"], case["dc_n"], cache)

    errors = {}
    for name in INPUTS:
        if case[name] is None:
            assert analytic[GRAD_OF[name]] is None
            continue
        errors[name] = relative_error(analytic[GRAD_OF[name]], numerical_gradient(case, name))
    worst = max(errors, key=errors.get)
    assert errors[worst] < FD_TOLERANCE, f"worst {worst}: {errors[worst]:.2e}; all {errors}"


def test_zero_initial_state_is_the_default():
    case = random_case(4, 2, 3, 5, seed=1)
    zeros = np.zeros_like(case["h0"])
    given = reference.lstm_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"], zeros, zeros)
    default = reference.lstm_forward(case["x"], case["w_ih"], case["w_hh"], case["b_ih"], case["b_hh"])
    for a, b in zip(given[:3], default[:3]):
        np.testing.assert_array_equal(a, b)


def test_sigmoid_is_the_logistic_function_without_overflow():
    z = np.array([-800.0, -30.0, -1.0, 0.0, 1.0, 30.0, 800.0])
    with np.errstate(over="ignore"):
        naive = 1.0 / (1.0 + np.exp(-z))
    np.testing.assert_allclose(reference.sigmoid(z), naive, rtol=1e-15, atol=0)


def test_relative_error_measures_worst_deviation_against_scale():
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_error([1.0, 2.5], [1.0, 2.0]) == pytest.approx(0.25)
    assert relative_error([0.0, 1e-3], [0.0, 0.0]) == pytest.approx(1e-3)
    assert not relative_error([np.nan], [1.0]) <= 1.0  # NaN never passes a tolerance
    with pytest.raises(ValueError):
        relative_error(np.zeros(2), np.zeros(3))
