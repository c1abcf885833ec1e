"""The float32 error model of lstm_ext.testing (float32_limits): limits that come from the float64
reference alone, so that no machine's float32 arithmetic (NumPy's BLAS kernel, the core's kernel
level) moves them; that rise above 1e-5 where a tensor is ill-conditioned and stay at it where it
is not; that the core meets; and that a wrong answer misses.

    python tests/test_error_model.py   # prints the limits of the cases below as JSON (test (a) runs it)
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lstm_ext.testing import (FLOAT32_UNIT, ROUNDING_FACTOR, TOLERANCE, cast_case, float32_limits, random_case,
                              relative_error, run_compiled, run_reference, sensitivity)

TESTS = pathlib.Path(__file__).resolve().parent
FLOOR = TOLERANCE[np.dtype(np.float32)]


def well_conditioned():
    """A plain LSTM case (PyTorch's initialisation): (compiled float32, float64 reference, limits)."""
    case = cast_case(random_case(5, 3, 4, 8, seed=1), np.float32)
    expected = run_reference(case)
    return run_compiled(case), expected, float32_limits(run_reference, case, expected)


def saturated_gates():
    """tests/test_parity.py's saturated gates: pre-activations up to ~100, where 1 − σ(a) cancels."""
    case = random_case(6, 2, 4, 5, seed=11)
    case["x"] *= 30.0
    case["w_ih"] *= 10.0
    case = cast_case(case, np.float32)
    expected = run_reference(case)
    return run_compiled(case), expected, float32_limits(run_reference, case, expected)


def layer_norm_with_peepholes_and_projection():
    """tests/test_layer_norm.py's case that a limit from NumPy's float32 once failed on AVX-512."""
    from family import float32_limits as layer_limits, ours_run, random_inputs, reference_run
    from test_layer_norm import layer_with_random_norms
    from test_variants import drawn_masks

    layer = layer_with_random_norms(np.float32, layer_norm=True, peephole=True, proj_size=3).train()
    T, B = 6, 3
    x, state, dy, dstate = random_inputs(layer, T, B, np.random.default_rng(5))
    rng_state = layer.rng_state()
    ours = ours_run(layer, x, state, dy, dstate)
    cell_masks, dropout_masks = drawn_masks(layer, rng_state, T, B)
    expected = reference_run(layer, x, state, dy, dstate, None, dropout_masks, cell_masks)
    return ours, expected, layer_limits(layer, x, state, dy, dstate, None, dropout_masks, cell_masks, expected)


CASES = {"well-conditioned": well_conditioned, "saturated gates": saturated_gates,
         "layer norm with peepholes and projection": layer_norm_with_peepholes_and_projection}


def test_the_limits_do_not_depend_on_the_blas_kernel():
    """(a) The limits are float64 computations: NumPy's BLAS kernel (OpenBLAS picks one by CPU, or
    by OPENBLAS_CORETYPE) changes them only by float64 rounding, far below anything that matters."""
    runs = {}
    for core in ("Haswell", "SkylakeX"):
        env = {**os.environ, "OPENBLAS_CORETYPE": core,
               "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run([sys.executable, str(TESTS / "test_error_model.py")], cwd=TESTS, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        runs[core] = json.loads(out.stdout.splitlines()[-1])
    a, b = runs["Haswell"], runs["SkylakeX"]
    assert a.keys() == b.keys()
    for case in a:
        assert a[case].keys() == b[case].keys()
        differ = {name: (a[case][name], b[case][name]) for name in a[case]
                  if not abs(a[case][name] - b[case][name]) <= 1e-8 * a[case][name]}
        assert not differ, f"{case}: limits that depend on the BLAS kernel: {differ}"


@pytest.mark.parametrize("name", CASES)
def test_the_core_meets_the_limits(name):
    """(b) The core's float32 error is within every limit; the model is not vacuous: a
    well-conditioned case gets exactly 1e-5 on every tensor, the ill-conditioned ones more."""
    ours, expected, limits = CASES[name]()
    assert set(limits) == {t for t, v in expected.items() if v is not None}
    errors = {t: relative_error(ours[t], expected[t]) for t in limits}
    bad = {t: f"{errors[t]:.1e} (limit {limits[t]:.1e})" for t in limits if not errors[t] <= limits[t]}
    assert not bad, f"worst relative error per tensor above its limit: {bad}"
    if name == "well-conditioned":
        assert all(limit == FLOOR for limit in limits.values()), limits
    else:
        above = {t for t, limit in limits.items() if limit > FLOOR}
        assert above, limits
    if name == "saturated gates":
        assert limits["dh0"] > FLOOR  # 1 − σ(a) cancels: dh0 is off by ~1e-4 in float32
    if name == "layer norm with peepholes and projection":
        assert limits["dweight_ch_l0"] > FLOOR and limits["dln_c_bias_l0"] > FLOOR


@pytest.mark.parametrize("name", CASES)
def test_a_wrong_answer_misses_the_limits(name):
    """(c) The float64 answer itself is within every limit; with one element moved by 1e-4 of the
    tensor's scale (well-conditioned case), or by twice the limit, it is not."""
    _, expected, limits = CASES[name]()
    for tensor, limit in limits.items():
        want = expected[tensor]
        assert relative_error(want, want) <= limit
        scale = np.max(np.abs(want))
        wrong = want.copy()
        index = np.unravel_index(np.argmax(np.abs(want)), want.shape)
        off = 1e-4 if name == "well-conditioned" else 2 * limit
        wrong[index] += off * scale
        assert not relative_error(wrong.astype(np.float32), want) <= limit, tensor


def test_the_float64_limit_is_far_above_float64_sensitivity():
    """The same model in float64's unit (2^-53): ROUNDING_FACTOR × sensitivity far below 1e-10."""
    case = cast_case(random_case(7, 3, 5, 9, seed=4), np.float64)
    moved = sensitivity(run_reference, case, unit=2.0 ** -53)
    assert max(moved.values()) * ROUNDING_FACTOR < 1e-3 * TOLERANCE[np.dtype(np.float64)], moved
    assert FLOAT32_UNIT == 2.0 ** -24


def main() -> int:
    print(json.dumps({name: case()[2] for name, case in CASES.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
