"""What the self-check and the tests share: the parity tolerances, the error measure, a random
LSTM case run through the compiled core and through the NumPy reference, the float32 limits of
ill-conditioned cases (float32_limits: an error model evaluated on the float64 reference), and
finite differences.

For example::

    from lstm_ext.testing import TOLERANCE, relative_error, random_case, run_compiled, run_reference
    case = random_case(T=5, B=3, I=4, H=8)
    errors = compare(run_compiled(case), run_reference(case))   # worst relative error per tensor
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import functional, reference

__all__ = ["TOLERANCE", "TENSORS", "relative_error", "random_case", "cast_case", "run_reference", "run_compiled",
           "compare", "FLOAT32_UNIT", "ROUNDING_FACTOR", "SENSITIVITY_DRAWS", "perturb", "sensitivity",
           "float32_limits", "FD_STEP", "FD_TOLERANCE", "central_difference", "sample_indices", "fd_errors"]

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
    """The case with every array rounded to `dtype` (None stays None; a subclass of ndarray stays one)."""
    return {k: None if v is None else np.asanyarray(v, dtype=dtype) for k, v in case.items()}


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


# -- float32 limits from the float64 reference -------------------------------------------------------

#: u: float32's unit roundoff, 2^-24 ≈ 6.0e-8 (float32_limits states the model).
FLOAT32_UNIT = 2.0 ** -24
#: C of float32_limits: about twice the worst error / sensitivity ratio measured (9.3).
ROUNDING_FACTOR = 20.0
#: How many seeded perturbations sensitivity runs (their worst counts).
SENSITIVITY_DRAWS = 3

# Named float arrays in, named float arrays out (absent ones None).
Arrays = Mapping[str, Optional[np.ndarray]]


def perturb(inputs: Arrays, unit: float, rng: np.random.Generator) -> dict[str, Optional[np.ndarray]]:
    """float64 copies of `inputs`, each element times (1 + unit · ε), ε uniform in [−1, 1] drawn
    from `rng` (in the order of the inputs); None stays None."""
    return {name: None if value is None else
            np.asarray(value, dtype=np.float64) * (1.0 + unit * rng.uniform(-1.0, 1.0, np.shape(value)))
            for name, value in inputs.items()}


class _RoundedArray(np.ndarray):
    """A float64 array whose every NumPy operation (a ufunc: +, −, ×, ÷, @, exp, tanh, sqrt, and
    sums and means, which are ufunc reductions) rounds its result while _rounding is open: the
    result times (1 + unit · ε), ε uniform in [−1, 1] (Monte Carlo arithmetic)."""

    unit = 0.0
    rng = np.random.default_rng(0)
    _pool = np.zeros(0)  # 1 + unit · ε drawn ahead from rng, taken in order (a call of rng per result is slow)
    _next = 0

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *args: Any, **kwargs: Any) -> Any:
        args = tuple([a.view(np.ndarray) if isinstance(a, _RoundedArray) else a for a in args])
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, _RoundedArray) else o for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if method == "at" or _RoundedArray.unit == 0.0:
            return result
        if out is not None:  # the results are the out arrays: rounded in place
            for o in kwargs["out"]:
                if isinstance(o, np.ndarray) and o.dtype.kind == "f":
                    o *= _factors(o.shape)
            return out[0] if len(out) == 1 else out
        if isinstance(result, tuple):
            return tuple(_rounded(r) for r in result)
        return _rounded(result)


def _factors(shape: tuple[int, ...]) -> np.ndarray:
    """(1 + unit · ε) of the given shape, the next of _RoundedArray's pool."""
    size = math.prod(shape)
    cls = _RoundedArray
    start = cls._next
    if start + size > cls._pool.size:
        cls._pool, start = 1.0 + cls.unit * cls.rng.uniform(-1.0, 1.0, max(size, 1 << 14)), 0
    cls._next = start + size
    factors: np.ndarray = cls._pool[start:start + size].reshape(shape)
    return factors


def _rounded(value: Any) -> Any:
    """A ufunc's result rounded (floats only: not comparisons or integers)."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return (value * _factors(value.shape)).view(_RoundedArray)
    if isinstance(value, np.floating):
        return value * _factors(())[()]
    return value


@contextlib.contextmanager
def _rounding(unit: float, rng: np.random.Generator) -> Iterator[None]:
    """While open, the operations on _RoundedArray round their results by a relative `unit`, ε
    drawn from `rng` (class-wide state: not thread-safe)."""
    cls = _RoundedArray
    saved = cls.unit, cls.rng, cls._pool, cls._next
    cls.unit, cls.rng, cls._pool, cls._next = unit, rng, np.zeros(0), 0
    try:
        yield
    finally:
        cls.unit, cls.rng, cls._pool, cls._next = saved


def sensitivity(evaluate: Callable[[dict[str, Optional[np.ndarray]]], Arrays], inputs: Arrays,
                expected: Optional[Arrays] = None, unit: float = FLOAT32_UNIT, draws: int = SENSITIVITY_DRAWS,
                seed: int = 0, operations: bool = True) -> dict[str, float]:
    """{output: how far it moves when every input, and every operation's result, moves by a
    relative `unit`}: the largest relative_error(moved, expected) of `draws` seeded perturbations
    (float32_limits states the model).

    evaluate: runs the float64 reference on a dict of named arrays (float64 copies of `inputs`,
    perturbed) and returns a dict of named outputs; expected: evaluate's answer on the unperturbed
    inputs (computed when not given). operations: also round the result of every NumPy operation
    on the inputs and on what comes of them (they are passed as an ndarray subclass that does so;
    an evaluate that converts them with np.asarray loses that) while evaluate runs. Outputs that
    are None on either side are left out. Not thread-safe (the rounding's state is class-wide).
    """
    base = evaluate(perturb(inputs, 0.0, np.random.default_rng(0))) if expected is None else expected
    rng = np.random.default_rng(seed)
    worst: dict[str, float] = {name: 0.0 for name, value in base.items() if value is not None}
    for _ in range(draws):
        moved_inputs = perturb(inputs, unit, rng)
        if operations:
            with _rounding(unit, rng):
                moved = evaluate({name: None if value is None else value.view(_RoundedArray)
                                  for name, value in moved_inputs.items()})
        else:
            moved = evaluate(moved_inputs)
        for name in worst:
            value = moved.get(name)
            worst[name] = max(worst[name], float("inf") if value is None else relative_error(value, base[name]))
    return worst


def float32_limits(evaluate: Callable[[dict[str, Optional[np.ndarray]]], Arrays], inputs: Arrays,
                   expected: Optional[Arrays] = None, seed: int = 0) -> dict[str, float]:
    """{output: its float32 parity limit}, from the float64 reference alone::

        limit = max(TOLERANCE[float32], C · sensitivity(evaluate, inputs, expected))

    `inputs`: the float32 case's values by name (every float input: x, every parameter, layer
    norm's gains and biases and the peepholes included, the initial state, the output gradients
    dy, dh_n, dc_n; masks and lengths are fixed inside evaluate); evaluate: runs the float64
    reference on such a dict and returns its outputs by name; expected: its answer on `inputs`.

    The model. A float32 computation made of stages that are each accurate to a few units of
    float32's rounding u = 2^-24 (FLOAT32_UNIT) (dot products, sums, the core's σ and tanh,
    good to 3.2u and 4.5u relative) lands, for each tensor, about as far from the exact answer as
    the exact computation does when its inputs and every intermediate result are moved by a
    relative u. sensitivity measures that distance in float64 (Monte Carlo arithmetic, Parker
    1997; in the spirit of Kenney and Laub's small-sample condition estimation, 1994): it runs the
    float64 reference with every input element times (1 + u ε) and every NumPy operation's result
    (each +, −, ×, ÷, @, exp, tanh, sum, mean) times (1 + u ε), ε uniform in [−1, 1] from a
    seeded generator, SENSITIVITY_DRAWS times, and takes per tensor the worst relative_error
    against `expected`. Rounding the intermediates is what sees the cancellations that the
    inputs alone do not: 1 − σ(a) of a saturated gate (σ(a) rounds to 1 in float32 for a > 17),
    1 − tanh², and layer normalization's backward, whose result is orthogonal to the normalized
    row and so cancels to ~0 when the row is a multiple of one weight column (I = 1, or a
    projection of size 1). With the inputs alone, the ratio error / sensitivity reached 40 on
    tests/test_parity.py's saturated gates and 3,500 on such layer norms.

    C = ROUNDING_FACTOR = 20 covers what the perturbation does not model (a rounding per
    partial sum of a length-K product rather than one per result, which grows like √K; the
    activations' few u rather than one; three random draws rather than the worst case): it is
    about twice the worst ratio (compiled float32 error) / sensitivity measured by
    tests/error_model_sweep.py over 1,200 random cases (19,434 tensors: the LSTM plain and with
    peepholes, layer normalization with gains and biases away from 1 and 0, projection,
    zoneout, recurrent dropout and all of them; the GRU with and without layer normalization;
    RNN tanh and relu; 1-2 layers, bidirectional, batch_first, dropout, lengths; T ≤ 60, H ≤ 300;
    test_parity's hypothesis sweep and saturated gates) at every kernel level: median 0.64 to
    0.68, 99th percentile 2.1 to 2.2, 99.9th 4.0 to 4.2, worst 8.6 (avx2, avx512) and 9.3
    (baseline), on H = 300 (K = 300); at most 5.8 elsewhere. The 1e-5 floor is the project's
    standard; the model raises a limit above it only where the float64 reference itself says
    the tensor is that sensitive: on 0.5 to 5% of the plain cells' tensors (PyTorch's
    initialisation), on 40 to 80% of those with layer normalization or saturated gates.

    Machine independence: everything here is float64 NumPy with seeded draws, so a limit can
    differ between machines (BLAS kernels, CPUs) only through float64 rounding in the
    reference, which moves a sensitivity of order u·κ by about 2^-53·κ, i.e. at most ~2^-29 ≈
    2e-9 of itself (measured: up to 3e-10 between OpenBLAS's Haswell and SkylakeX kernels): no
    limit moves measurably. In float64 the same model (u = 2^-53) gives C · sensitivity below
    1e-12 for 98.7% of the sweep's tensors (99th percentile 1.5e-12), far below
    TOLERANCE[float64] = 1e-10, which stays the float64 limit (it exceeds it only where float64
    cannot do better either: gates saturated beyond ``|a|`` ≈ 37, where σ(a) rounds to 1 in float64
    too, and layer normalization over a single unit, H = 1, whose output is constant and whose
    gradients through it are rounding noise).
    """
    floor = TOLERANCE[np.dtype(np.float32)]
    return {name: max(floor, ROUNDING_FACTOR * moved)
            for name, moved in sensitivity(evaluate, inputs, expected, FLOAT32_UNIT, seed=seed).items()}


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
