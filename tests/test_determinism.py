"""Bitwise reproducibility: results depend on values and sizes only.

Not on where NumPy happened to put the arrays (their alignment), and not on the call: the same
inputs give the same bits every time. Training runs that resume from a checkpoint rely on it.
"""

from __future__ import annotations

import json

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


# -- a training run, the same bits on every CPU with FMA ----------------------------------------------

def _numpy_as_an_avx2_cpu():
    """NPY_DISABLE_CPU_FEATURES that make NumPy take the SIMD paths of a CPU without AVX-512 (its
    exp, log, tanh differ there), or None when this NumPy and CPU have no such paths."""
    try:  # NumPy 2; NumPy 1 has these in numpy.core
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    wider = [name for name in __cpu_dispatch__ if ("AVX512" in name or name == "X86_V4") and __cpu_features__[name]]
    return " ".join(wider) or None


def test_a_fit_gives_the_same_bits_on_every_cpu_with_fma():
    """fit_probe.py trains a classifier (LSTM with dropout, LastStep, Linear, Tanh, Linear; cross-entropy,
    Adam, clipped gradients) and a forecaster (GRU, Linear, Sigmoid, Linear; MSE, SGD with momentum) in
    float32 and float64, in processes that differ in what makes other CPUs differ: the core's kernel
    level (every FMA level this CPU runs), OpenBLAS's kernel (OPENBLAS_CORETYPE: NumPy's matrix
    products), and NumPy's SIMD paths (NPY_DISABLE_CPU_FEATURES: its exp, log and tanh). The final
    weights and loss histories are the same bits in all of them: Linear's products, the activations and
    the losses' exp and log are the core's, and the rest is NumPy's correctly rounded +, −, ×, ÷, √ and
    sums in a fixed order. (The build before this gave other bits with OPENBLAS_CORETYPE=Sandybridge, and
    in float64 with NumPy's AVX-512 paths off.)"""
    from test_levels import FMA_LEVELS, RUNNABLE, run_python

    variants = {f"LSTM_EXT_KERNELS={level}": {"LSTM_EXT_KERNELS": level} for level in FMA_LEVELS if level in RUNNABLE}
    if not variants:
        pytest.skip("this CPU has no kernel level with FMA")
    for coretype in ("Haswell", "Sandybridge", "SkylakeX"):
        variants[f"OPENBLAS_CORETYPE={coretype}"] = {"OPENBLAS_CORETYPE": coretype}
    disabled = _numpy_as_an_avx2_cpu()
    if disabled:
        variants[f"NPY_DISABLE_CPU_FEATURES={disabled}"] = {"NPY_DISABLE_CPU_FEATURES": disabled}
    runs = {}
    for name, env in variants.items():
        out = run_python(["fit_probe.py"], env=env)
        assert out.returncode == 0, f"{name}: {out.stdout}{out.stderr}"
        runs[name] = json.loads(out.stdout.splitlines()[-1])["runs"]
    first = next(iter(runs))
    differ = {name: [run for run in r if r[run] != runs[first][run]] for name, r in runs.items()}
    assert not any(differ.values()), f"against {first}: " + "; ".join(f"{n}: {d}" for n, d in differ.items() if d)
