"""The int8 and bfloat16 oracle (lstm_ext.quantized_reference) proven: the quantizers do what the
scheme says (half a step, ±127, zero rows, ties to even, no −128, rows independent); on the grid
the int8 cells are the float reference; one product stays within its stated bound, which is not
loose; rows and chunks of steps do not change a bit; its cells are lstm_ext.reference's equations;
end to end it is at least as accurate as PyTorch's dynamic int8 LSTM; and the bfloat16 cell is the
float32 cell with rounded weights, within the bound that rounding gives."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import needs
from family import KINDS
from lstm_ext import cells, reference
from lstm_ext import quantized_reference as qr
from lstm_ext.testing import relative_error

U = qr.FLOAT32_UNIT  # 2^-24
F32 = np.float32


def gamma(n):
    return n * U / (1 - n * U)


def uniform32(rng, bound, shape):
    return rng.uniform(-bound, bound, shape).astype(F32)


def make_params(kind, extra, I, H, rng, num_layers=1, bidirectional=False, peephole=False, bound=None):
    """PyTorch's state dict (float32 values) of a network: weights U(−1/√H, 1/√H) like torch's init."""
    D = 2 if bidirectional else 1
    P = extra.get("proj_size", 0)
    H_out = P or H
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind] * H
    bound = 1 / np.sqrt(H) if bound is None else bound
    params = {}
    for k in range(num_layers):
        for suffix in [f"_l{k}", f"_l{k}_reverse"][:D]:
            params["weight_ih" + suffix] = uniform32(rng, bound, (G, I if k == 0 else D * H_out))
            params["weight_hh" + suffix] = uniform32(rng, bound, (G, H_out))
            params["bias_ih" + suffix] = uniform32(rng, bound, G)
            params["bias_hh" + suffix] = uniform32(rng, bound, G)
            if P:
                params["weight_hr" + suffix] = uniform32(rng, bound, (P, H))
            if peephole:
                params["weight_ch" + suffix] = uniform32(rng, 0.5, (3, H))
    return params


def options_of(kind, extra):
    return {o.name: extra.get(o.name, o.default) for o in cells.by_name(kind).options}


# -- 1. weights ------------------------------------------------------------------------------------

def test_weight_rows_round_trip_within_half_a_step():
    rng = np.random.default_rng(1)
    # rows of very different magnitudes, so that one scale per row matters
    w = (rng.standard_normal((64, 40)) * 10.0 ** rng.uniform(-6, 3, (64, 1))).astype(F32)
    q, scale = qr.quantize_weight_rows(w)
    assert q.dtype == np.int8 and scale.dtype == F32 and scale.shape == (64,)
    np.testing.assert_array_equal(scale, (np.abs(w.astype(np.float64)).max(axis=1) / 127).astype(F32))
    # |W − q s| ≤ s/2 exactly, up to the float64 division's rounding 2^-53 |W| (q s is exact in float64)
    exact_error = np.abs(w - q.astype(np.float64) * scale[:, None].astype(np.float64))
    assert np.all(exact_error <= scale[:, None] / 2 + 2.0**-53 * np.abs(w))
    # Ŵ = q s in float32 adds one rounding of Ŵ
    w_hat = qr.dequantize_rows(q, scale)
    assert w_hat.dtype == F32
    assert np.all(np.abs(w - w_hat.astype(np.float64)) <= scale[:, None] / 2 + 2.0**-53 * np.abs(w) + U * np.abs(w_hat))
    worst = (exact_error / scale[:, None]).max()
    assert worst > 0.49, f"the round trip's worst error is {worst:.3f} steps: a test of nothing"


def test_row_maxima_map_to_127_and_zero_rows_to_zero():
    w = np.array([[0.5, -2.0, 1.0, 0.0],      # the maximum is negative
                  [3.0, -1.0, 3.0, 0.25],     # it appears twice
                  [0.0, 0.0, 0.0, 0.0],       # a row of zeros
                  [0.0, 1e-30, 0.0, -1e-31]], dtype=F32)
    q, scale = qr.quantize_weight_rows(w)
    assert q[0, 1] == -127 and q[1, 0] == 127 and q[1, 2] == 127 and q[3, 1] == 127
    assert scale[2] == 0 and np.all(q[2] == 0)
    np.testing.assert_array_equal(q[0], [32, -127, 64, 0])  # 0.5 / (2/127) = 31.75, 1 / (2/127) = 63.5 (even: 64)
    a = np.array([[-4.0, 1.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0], [2.0, 4.0, 1.0, -1.0]], dtype=F32)
    qa, sa = qr.quantize_activation_rows(a)
    assert qa[0, 0] == -127 and qa[2, 1] == 127 and sa[1] == 0 and np.all(qa[1] == 0)
    assert qr.quantized_matmul(a, q, scale)[1].tolist() == [0.0] * 4  # a zero row of activations
    assert np.all(qr.quantized_matmul(a, q, scale)[:, 2] == 0)       # a zero row of weights


def test_minus_128_never_appears():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4000, 9)).astype(F32)
    w[np.arange(4000), rng.integers(0, 9, 4000)] = -np.abs(w).max(axis=1) * 1.0  # every row's maximum negative
    q, scale = qr.quantize_weight_rows(w)
    assert q.min() == -127 and q.max() <= 127
    # where float32 rounded the scale down, max / s exceeds 127: the clip's case, exercised
    assert np.any(np.abs(w.astype(np.float64)).max(axis=1) / scale.astype(np.float64) > 127)
    a = -np.abs(rng.standard_normal((4000, 9))).astype(F32) * 10.0 ** rng.uniform(-30, 30, (4000, 1)).astype(F32)
    qa, _ = qr.quantize_activation_rows(a)
    assert qa.min() == -127


def test_ties_round_to_even():
    # weights: the row's maximum 127/8 makes the scale exactly 1/8, so k + 1/2 steps are exact ties
    steps = np.array([127, 0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 126.5, -126.5])
    q, scale = qr.quantize_weight_rows((steps / 8).astype(F32)[None, :])
    assert scale[0] == F32(1 / 8)
    np.testing.assert_array_equal(q[0], [127, 0, 2, 2, 4, 0, -2, -2, 126, -126])
    # activations: m = 127 · 4, inv = 1/4 and a · inv exact, so the same ties
    qa, sa = qr.quantize_activation_rows((steps * 4).astype(F32)[None, :])
    assert sa[0] == 4
    np.testing.assert_array_equal(qa[0], [127, 0, 2, 2, 4, 0, -2, -2, 126, -126])


# -- 2. activations --------------------------------------------------------------------------------

def test_activation_rows_do_not_depend_on_other_rows():
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((12, 30)) * 10.0 ** rng.uniform(-3, 3, (12, 1))).astype(F32)
    q, scale = qr.quantize_activation_rows(a)
    assert q.dtype == np.int8 and scale.dtype == F32
    for r in range(12):
        q_r, scale_r = qr.quantize_activation_rows(a[r:r + 1])
        np.testing.assert_array_equal(q_r[0], q[r])
        assert scale_r[0] == scale[r]
    # a row scaled by a power of two: the same q, its scale scaled exactly, the other rows unchanged
    for power in (-20, -1, 3, 40):
        b = a.copy()
        b[5] *= F32(2.0**power)
        qb, scale_b = qr.quantize_activation_rows(b)
        np.testing.assert_array_equal(qb, q)
        assert scale_b[5] == scale[5] * F32(2.0**power)
        np.testing.assert_array_equal(np.delete(scale_b, 5), np.delete(scale, 5))


def test_activation_quantization_is_the_float32_recipe():
    a = np.array([[1.0, -2.0, 0.5, 0.7]], dtype=F32)
    q, scale = qr.quantize_activation_rows(a)
    inv = F32(127) / F32(2.0)                         # 63.5
    np.testing.assert_array_equal(q[0], [64, -127, 32, 44])  # rint(63.5) = 64 (even), rint(31.75), rint(44.45)
    assert scale[0] == F32(2.0) / F32(127) and inv == F32(63.5)
    # A row holding a NaN or an infinity: q 0, scale NaN (its products are NaN); a row below 2^-100
    # (where 127 / m could overflow): a row of zeros.
    q, scale = qr.quantize_activation_rows(np.array([[1.0, np.nan], [np.inf, 1.0], [1e-38, 0.0], [2.0 ** -99, 0]],
                                                    dtype=F32))
    assert np.isnan(scale[:2]).all() and not q[:3].any() and scale[2] == 0
    assert q[3, 0] == 127 and scale[3] == F32(2.0 ** -99) / F32(127)


def test_quantized_matmul_is_the_float32_recipe():
    """Bit for bit the recipe: exact int32 sums, float32(acc) · (s_a · s_w), the scale product first;
    with K = 3000 and most products positive, sums past 2^24 round when converted."""
    rng = np.random.default_rng(4)
    a = rng.uniform(-1, 1, (9, 3000)) * 10.0 ** rng.uniform(-3, 3, (9, 1))
    a[:, :2500] = np.abs(a[:, :2500]) / 2 + 0.5 * np.abs(a).max(axis=1, keepdims=True)
    w = rng.uniform(-0.05, 0.05, (11, 3000))
    w[:, :2500] = np.abs(w[:, :2500]) / 5 + 0.04  # many aligned products: large sums
    a, w = a.astype(F32), w.astype(F32)
    q_w, s_w = qr.quantize_weight_rows(w)
    q_a, s_a = qr.quantize_activation_rows(a)
    acc = q_a.astype(np.int64) @ q_w.astype(np.int64).T
    assert np.abs(acc).max() > 2**24
    want = np.empty(acc.shape, dtype=F32)
    for r in range(9):
        for j in range(11):
            want[r, j] = F32(acc[r, j]) * (s_a[r] * s_w[j])
    np.testing.assert_array_equal(qr.quantized_matmul(a, q_w, s_w), want)


def test_preactivations_are_added_in_the_stated_order():
    """((qmm(x, W_ih) + b_ih) + b_hh) + qmm(h, W_hh) in float32, the input part rounded before the
    recurrent product is added: with products 1 and −1 and both biases 2^-24, the input part
    rounds to 1 (1 + 2^-24 is a tie, to even) and the sum is 0, where (1 − 1) + 2^-23 would be 2^-23."""
    def plus_one(a):  # a product that gives 1
        return np.ones((a.shape[0], 1), dtype=F32)

    def minus_one(a):
        return -plus_one(a)

    def zeros(a):
        return np.zeros((a.shape[0], 3), dtype=F32)

    bias = np.array([2.0**-24], dtype=F32)
    gx = qr.input_preactivations(np.zeros((1, 1, 1), dtype=F32), plus_one, bias, bias)
    assert gx.dtype == F32 and gx[0, 0, 0] == 1
    h = np.zeros((1, 1), dtype=F32)
    assert qr.rnn_step(gx[0], h, minus_one, lambda a: np.maximum(a, 0))[0, 0] == 0
    # the GRU: b_hh stays out of the input part (it goes with the recurrent product, as in the
    # compiled GRU: r = σ(gx_r + (qmm_h_r + b_hr)), n = tanh(gx_n + r ⊙ (qmm_h_n + b_hn)))
    gx = qr.input_preactivations(np.zeros((1, 1, 1), dtype=F32), zeros, np.array([1, 2, 3], dtype=F32),
                                 np.array([10, 20, 30], dtype=F32), gru=True)
    np.testing.assert_array_equal(gx[0, 0], [1, 2, 3])


# -- 3. on the grid: the int8 cells are the float reference -----------------------------------------

def on_grid(rng, shape, exponents):
    """Values q · 2^e, q in [−127, 127] with one ±127 per row, e one per row: exactly on their int8 grid
    (the row's scale is 2^e, every product and int32 sum below 2^24 is exact in float32)."""
    q = rng.integers(-127, 128, shape)
    q[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] = rng.choice([-127, 127], shape[0])
    return (q * 2.0 ** rng.choice(exponents, (shape[0], 1))).astype(F32)


ON_GRID_KINDS = {**{name: KINDS[name] for name in ("LSTM", "GRU", "RNN tanh", "RNN relu")},
                 "LSTM peephole": ("LSTM", {})}


@pytest.mark.parametrize("name", ON_GRID_KINDS)
def test_on_grid_one_step_equals_the_float_reference(name):
    """One step (T = 1: h_1 is off the grid) with x, h0 and the weights on their grids, so every
    product is exact: the int8 result is the float reference's with the dequantized weights (here
    the weights themselves) up to float32 rounding. Error model, u = 2^-24: the pre-activation is
    rounded 3 times, ≤ γ_3 S (S the sum of its terms' magnitudes); σ and tanh in float32 add at
    most 8 u each (NumPy's float32 exp and tanh are within 4 ulps; σ's 1 + e and 1 / · round
    once each); through σ' ≤ 1/4, tanh' ≤ 1 and c_1 = f c0 + i g (3 roundings), h_1 = o tanh(c_1):
    |Δc_1| ≤ (1 + |c0|)(γ_3 S + 8 u) + γ_3 (|f c0| + |i g|), |Δh_1| ≤ |Δc_1| + γ_3 S + 24 u."""
    kind, extra = ON_GRID_KINDS[name]
    rng = np.random.default_rng(len(name))
    B, I, H = 5, 7, 6
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind] * H
    # scales chosen so that the pre-activations are O(1): the gates in their sensitive range
    w = {"weight_ih": on_grid(rng, (G, I), [-10, -9, -8]), "weight_hh": on_grid(rng, (G, H), [-10, -9]),
         "bias_ih": uniform32(rng, 0.5, G), "bias_hh": uniform32(rng, 0.5, G)}
    if name == "LSTM peephole":
        w["weight_ch"] = uniform32(rng, 0.5, (3, H))
    x = on_grid(rng, (B, I), [-8, -7, -6]).reshape(1, B, I)
    state0 = [on_grid(rng, (B, H), [-8, -7])] + ([uniform32(rng, 2.0, (B, H))] if kind == "LSTM" else [])
    options = options_of(kind, extra)
    # on the grid: the weights are their own dequantization, and each int8 product is exact
    for weight, a in (("weight_ih", x[0]), ("weight_hh", state0[0])):
        q, scale = qr.quantize_weight_rows(w[weight])
        np.testing.assert_array_equal(qr.dequantize_rows(q, scale), w[weight])
        exact = a.astype(np.float64) @ w[weight].T.astype(np.float64)
        np.testing.assert_array_equal(qr.quantized_matmul(a, q, scale), exact)

    y, state_n = cells.by_name(kind).quantized_reference_forward(x, w, state0, options, scheme="int8")
    assert y.dtype == F32
    f64 = {k: v.astype(np.float64) for k, v in w.items()}
    want_y, want_state, _ = cells.by_name(kind).reference_forward(x.astype(np.float64), f64,
                                                                  [s.astype(np.float64) for s in state0], options)
    # the error model's S: the magnitudes of the pre-activation's terms, per element
    S = (np.abs(x[0].astype(np.float64)) @ np.abs(f64["weight_ih"]).T + np.abs(f64["bias_ih"]) + np.abs(f64["bias_hh"])
         + np.abs(state0[0].astype(np.float64)) @ np.abs(f64["weight_hh"]).T).max()
    c0 = np.abs(state0[1]).max() if kind == "LSTM" else 0.0
    c_bound = (1 + c0) * (gamma(3) * S + 8 * U) + gamma(3) * (c0 + 1)
    h_bound = c_bound + gamma(3) * S + 24 * U
    error_h = np.abs(y[0] - want_y[0]).max()
    assert error_h <= h_bound, f"{name}: |Δh| {error_h:.2e} > {h_bound:.2e}"
    np.testing.assert_array_equal(y[-1], state_n[0])
    if kind == "LSTM":
        error_c = np.abs(state_n[1] - want_state[1]).max()
        assert error_c <= c_bound, f"{name}: |Δc| {error_c:.2e} > {c_bound:.2e}"


# -- 4. the cells are lstm_ext.reference's equations ------------------------------------------------

FLOAT_KINDS = {**KINDS, "LSTM peephole proj": ("LSTM", {"proj_size": 3})}


@pytest.mark.parametrize("name", FLOAT_KINDS)
def test_cells_with_plain_products_are_the_reference_network(name):
    """The module's cells, steps and network with the plain product in float64 equal
    lstm_ext.reference's (2 layers, bidirectional, lengths, initial states, projection, peepholes):
    the same equations; only the order of the pre-activation's additions differs (~1e-16)."""
    kind, extra = FLOAT_KINDS[name]
    rng = np.random.default_rng(7 + len(name))
    T, B, I, H, L = 5, 3, 4, 5, 2
    params = {k: v.astype(np.float64) for k, v in
              make_params(kind, extra, I, H, rng, L, True, peephole="peephole" in name, bound=0.8).items()}
    H_out = extra.get("proj_size", 0) or H
    x = rng.standard_normal((T, B, I))
    lengths = np.array([5, 2, 4])
    state0 = [rng.standard_normal((2 * L, B, H_out))] + ([rng.standard_normal((2 * L, B, H))] if kind == "LSTM" else [])
    options = options_of(kind, extra)
    y, state_n = qr.stack_forward(cells.by_name(kind), x, params, L, True, lengths, state0, options, scheme="float")
    want_y, want_state, _ = reference.stack_forward(cells.by_name(kind), x, params, L, True, lengths, state0,
                                                    options=options)
    errors = {"y": relative_error(y, want_y), **{f"state[{i}]": relative_error(a, b)
                                                 for i, (a, b) in enumerate(zip(state_n, want_state))}}
    assert max(errors.values()) < 1e-13, errors


def test_network_lengths_and_reverse_direction_follow_packed_sequences():
    """int8, 1 layer bidirectional LSTM with lengths: each sequence equals its own forward run cut to
    its length (the reverse direction: the cut sequence reversed), bit for bit; zeros past the length."""
    rng = np.random.default_rng(11)
    T, B, I, H = 6, 3, 4, 5
    params = make_params("LSTM", {}, I, H, rng, 1, True, peephole=True)
    x = rng.standard_normal((T, B, I)).astype(F32)
    lengths = [6, 2, 4]
    y, (h_n, c_n) = qr.stack_forward(cells.LSTM, x, params, 1, True, lengths)
    for b, length in enumerate(lengths):
        for direction, suffix in enumerate(["_l0", "_l0_reverse"]):
            w = {k[:-len(suffix)]: v for k, v in params.items() if k.endswith(suffix)}
            x_b = x[:length, b:b + 1]
            want_y, (want_h, want_c) = cells.LSTM.quantized_reference_forward(x_b[::-1] if direction else x_b, w)
            got = y[:length, b, direction * H:(direction + 1) * H]
            np.testing.assert_array_equal(got, (want_y[::-1] if direction else want_y)[:, 0])
            np.testing.assert_array_equal(h_n[direction, b], want_h[0])
            np.testing.assert_array_equal(c_n[direction, b], want_c[0])
        assert np.all(y[length:, b] == 0)


# -- 5. one product's bound --------------------------------------------------------------------------

def check_bound(a, w, what):
    """The bound holds against the original and the dequantized weights, with the comparison
    product summed in float64 and in float32; returns the worst actual / bound (float64 sums)."""
    q, scale = qr.quantize_weight_rows(w)
    out = qr.quantized_matmul(a, q, scale).astype(np.float64)
    a64 = a.astype(np.float64)
    ratios = []
    for against, v in (("original", w), ("dequantized", None)):
        bound = qr.product_error_bound(a, v, q, scale)
        v32 = w if v is not None else qr.dequantize_rows(q, scale)
        for summed, exact in (("float64", a64 @ v32.astype(np.float64).T), ("float32", (a @ v32.T).astype(np.float64))):
            error = np.abs(out - exact)
            assert np.all(error <= bound), (f"{what}, against the {against} weights, {summed} sums: worst "
                                            f"error / bound {np.max(error / np.maximum(bound, 1e-300)):.3f}")
            if summed == "float64":
                ratios.append(np.max(error / np.maximum(bound, 1e-300)))
    return ratios


def test_product_bound_holds_and_is_not_loose_on_random_data():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((32, 48)).astype(F32)
    w = uniform32(rng, 1 / np.sqrt(48), (64, 48))
    ratio_original, ratio_dequantized = check_bound(a, w, "random")
    # the actual error reaches a good part of the worst case the bound describes
    assert ratio_original >= 0.1 and ratio_dequantized >= 0.1, (ratio_original, ratio_dequantized)


def test_product_bound_is_attained_by_ties_aligned_with_the_weights():
    """Every activation a tie (n + 1/2 steps, except the row's maximum) and every weight's sign that
    of its activation's rounding: the error against the dequantized weights is exactly
    (s_a / 2) Σ_k |Ŵ_jk|, the bound's main term. (Power-of-two scales: the epilogue is exact.)"""
    rng = np.random.default_rng(12)
    K = 40
    steps = rng.integers(-126, 126, (3, K)) + 0.5
    steps[:, 0] = 127                                             # the row's maximum: scale 2^-4 exactly
    a = (steps / 16).astype(F32)
    q_a, scale_a = qr.quantize_activation_rows(a)
    assert np.all(scale_a == F32(1 / 16))
    rounding = np.sign(q_a[0] - steps[0])                         # ±1 where a tie rounded up or down, 0 at k = 0
    w_steps = rng.integers(1, 128, (1, K))
    w_steps[0, 1] = 127                                           # the weight row's maximum: scale 2^-6 exactly
    w = (w_steps * rounding / 64).astype(F32)                     # and 0 at k = 0, where a has no error
    q, scale = qr.quantize_weight_rows(w)
    error = np.abs(qr.quantized_matmul(a[:1], q, scale)[0, 0] - a[0].astype(np.float64) @ w[0].astype(np.float64))
    main_term = scale_a[0] / 2 * np.abs(w[0].astype(np.float64)).sum()
    bound = qr.product_error_bound(a[:1], None, q, scale)[0, 0]
    # the rest of the bound, its float32 terms, adds 0.04 % here
    assert error == main_term and error <= bound <= main_term * (1 + 1e-3), (error, main_term, bound)


def test_product_bound_holds_on_adversarial_inputs():
    rng = np.random.default_rng(6)
    K = 2048  # every value ±127: |acc| up to K · 127² ≈ 3.3e7 > 2^24, so float32(acc) rounds
    signs_a = rng.choice([-1.0, 1.0], (4, K))
    signs_w = rng.choice([-1.0, 1.0], (6, K))
    signs_w[0] = signs_a[0]  # row 0 of W aligned with row 0 of a: acc = K · 127², the largest there is
    a = (signs_a * 3.0).astype(F32)
    w = (signs_w * 0.02).astype(F32)
    check_bound(a, w, "every value ±127")
    q, scale = qr.quantize_weight_rows(w)
    assert np.all(np.abs(q) == 127)
    out = qr.quantized_matmul(a, q, scale)
    assert out[0, 0] == F32(K * 127 * 127) * (F32(3.0 / 127) * scale[0])  # no saturation: the full sum
    # one huge weight per row: the others fall to 0 or ±1 steps
    w = uniform32(rng, 0.1, (16, 64))
    w[np.arange(16), rng.integers(0, 64, 16)] = rng.choice([-1e3, 1e3], 16)
    a = rng.standard_normal((8, 64)).astype(F32)
    a[:, 3] = 1e4  # and one huge activation per row
    check_bound(a, w, "one huge weight per row")
    # rows of zeros in a and in W; a row with a huge dynamic range
    a[2] = 0
    a[5] = np.geomspace(1e-30, 1e10, 64).astype(F32)
    w[4] = 0
    check_bound(a, w, "rows of zeros")
    q, scale = qr.quantize_weight_rows(w)
    out = qr.quantized_matmul(a, q, scale)
    assert np.all(out[2] == 0) and np.all(out[:, 4] == 0)


# -- 6. rows and chunks of steps change nothing ---------------------------------------------------

INVARIANCE_KINDS = {"LSTM peephole proj": ("LSTM", {"proj_size": 3}), "GRU": KINDS["GRU"],
                    "RNN relu": KINDS["RNN relu"]}


def invariance_case(name, seed):
    kind, extra = INVARIANCE_KINDS[name]
    rng = np.random.default_rng(seed)
    T, B, I, H = 7, 4, 5, 6
    w = {k[:-3]: v for k, v in make_params(kind, extra, I, H, rng, peephole=kind == "LSTM", bound=0.7).items()}
    H_out = extra.get("proj_size", 0) or H
    x = rng.standard_normal((T, B, I)).astype(F32)
    state0 = [rng.standard_normal((B, H_out)).astype(F32)] + ([rng.standard_normal((B, H)).astype(F32)]
                                                             if kind == "LSTM" else [])
    return kind, w, x, state0, options_of(kind, extra)


@pytest.mark.parametrize("name", INVARIANCE_KINDS)
def test_batch_rows_run_separately_equal_run_together(name):
    kind, w, x, state0, options = invariance_case(name, 21)
    y, state_n = cells.by_name(kind).quantized_reference_forward(x, w, state0, options)
    for b in range(x.shape[1]):
        y_b, state_b = cells.by_name(kind).quantized_reference_forward(x[:, b:b + 1], w, [s[b:b + 1] for s in state0], options)
        np.testing.assert_array_equal(y_b[:, 0], y[:, b])
        for part, part_b in zip(state_n, state_b):
            np.testing.assert_array_equal(part_b[0], part[b])


@pytest.mark.parametrize("name", INVARIANCE_KINDS)
def test_steps_in_two_calls_with_the_state_carried_equal_one_call(name):
    kind, w, x, state0, options = invariance_case(name, 22)
    y, state_n = cells.by_name(kind).quantized_reference_forward(x, w, state0, options)
    for split in (1, 3, 6):
        y_first, state_mid = cells.by_name(kind).quantized_reference_forward(x[:split], w, state0, options)
        y_second, state_end = cells.by_name(kind).quantized_reference_forward(x[split:], w, state_mid, options)
        np.testing.assert_array_equal(np.concatenate([y_first, y_second]), y)
        for part, part_end in zip(state_n, state_end):
            np.testing.assert_array_equal(part_end, part)


# -- 7. against PyTorch's dynamic int8 LSTM --------------------------------------------------------

@pytest.mark.parametrize("B, H", [(1, 64), (8, 64), (1, 256), (8, 256)])
def test_int8_error_is_not_larger_than_torch_dynamic_quantization(B, H):
    """T = 50, input size H, torch's initial weights, x ~ N(0, 1): max and mean |y − y_float32| of this
    scheme against those of torch.ao.quantization.quantize_dynamic (per-tensor weights, 7-bit
    activations with one scale per call)."""
    torch = needs("torch")
    nn = torch.nn
    torch.manual_seed(1000 * B + H)
    lstm = nn.LSTM(H, H)
    x = torch.randn(50, B, H)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's quantized tensors are deprecated, they warn
        quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(lstm), {nn.LSTM}, dtype=torch.qint8)
        y_float = lstm(x)[0].numpy().astype(np.float64)
        y_torch = quantized(x)[0].numpy().astype(np.float64)
    w = {name[:-3]: value.detach().numpy() for name, value in lstm.state_dict().items()}
    y_ours, _ = cells.LSTM.quantized_reference_forward(x.numpy(), w)
    ours, theirs = np.abs(y_ours - y_float), np.abs(y_torch - y_float)
    message = (f"T=50 B={B} H={H}: int8 reference max {ours.max():.2e} mean {ours.mean():.2e}; "
               f"torch quantize_dynamic max {theirs.max():.2e} mean {theirs.mean():.2e}")
    assert ours.max() <= theirs.max() and ours.mean() <= theirs.mean(), message


# -- 8. bfloat16 -----------------------------------------------------------------------------------

def bits(values):
    return np.asarray(values, dtype=F32).view(np.uint32)


def test_to_bfloat16_rounds_half_to_even():
    one_ulp = 2.0**-7  # bfloat16's step in [1, 2)
    cases = {  # float32 value: its bfloat16
        1 + one_ulp / 2: 1.0,                              # a tie, to the even 1
        1 + 3 * one_ulp / 2: 1 + 2 * one_ulp,              # a tie, to the even 1 + 2 steps
        1 + one_ulp / 2 + 2.0**-23: 1 + one_ulp,           # just past the tie: up
        1 + one_ulp / 2 - 2.0**-23: 1.0,                   # just before it: down
        -(1 + one_ulp / 2): -1.0, -(1 + 3 * one_ulp / 2): -(1 + 2 * one_ulp),
        2.0**-130 * (1 + 2.0**-8): 2.0**-130,              # a subnormal, the same rule
        0.0: 0.0, 3.0: 3.0,
        float(np.finfo(F32).max): np.inf,                  # past bfloat16's largest (and half a step): inf
        float.fromhex("0x1.fep127"): float.fromhex("0x1.fep127"),  # bfloat16's largest stays
        np.inf: np.inf, -np.inf: -np.inf,
    }
    values = np.array(list(cases), dtype=F32)
    np.testing.assert_array_equal(qr.to_bfloat16(values), np.array(list(cases.values()), dtype=F32))
    assert np.all(bits(qr.to_bfloat16(values)) & 0xFFFF == 0)
    assert bits(qr.to_bfloat16(np.array([-0.0], dtype=F32)))[0] == 0x80000000  # −0 keeps its sign
    # NaN stays NaN, even a NaN whose payload is all in the 16 dropped bits (truncation would give inf)
    nans = np.array([0x7FC00000, 0x7F800001, 0xFF800001], dtype=np.uint32).view(F32)
    assert np.all(np.isnan(qr.to_bfloat16(nans)))
    assert qr.to_bfloat16(np.ones((2, 3), dtype=F32)).shape == (2, 3)


def test_bfloat16_relative_rounding_is_2_to_the_minus_8():
    """bfloat16 keeps 8 significant bits: |bf16(w) − w| ≤ 2^-8 |w|, and 2^-9 is not a bound."""
    rng = np.random.default_rng(8)
    w = (rng.standard_normal(200_000) * 10.0 ** rng.uniform(-20, 20, 200_000)).astype(F32)
    relative = np.abs(qr.to_bfloat16(w).astype(np.float64) - w) / np.abs(w.astype(np.float64))
    assert relative.max() <= qr.BFLOAT16_UNIT
    assert relative.max() > 2.0**-9 * 1.9  # the worst case (mantissa just past 1 + 2^-8) is near 2^-8


def test_bfloat16_scheme_is_the_float32_cell_with_rounded_weights():
    """bfloat16: every weight matrix (W_ih, W_hh, W_hr) rounded, biases and peepholes not, float32."""
    rng = np.random.default_rng(9)
    params = make_params("LSTM", {"proj_size": 3}, 5, 6, rng, 2, True, peephole=True)
    x = rng.standard_normal((6, 2, 5)).astype(F32)
    rounded = {k: qr.to_bfloat16(v) if k.startswith(("weight_ih", "weight_hh", "weight_hr")) else v
               for k, v in params.items()}
    y, state_n = qr.stack_forward(cells.LSTM, x, params, 2, True, [6, 3], scheme="bfloat16")
    want_y, want_state = qr.stack_forward(cells.LSTM, x, rounded, 2, True, [6, 3], scheme="float")
    assert y.dtype == F32 and want_y.dtype == F32
    np.testing.assert_array_equal(y, want_y)
    for a, b in zip(state_n, want_state):
        np.testing.assert_array_equal(a, b)


def test_bfloat16_lstm_steps_stay_within_the_weight_rounding_bound():
    """T = 50 steps of a bfloat16 LSTM (B = 4, H = 64, torch's init): at every step, from the same
    state, the bfloat16 step's h and c differ from the float32 step's by no more than the bound
    from the weights' relative rounding 2^-8 (bfloat16_product_error_bound for both products),
    carried through the cell: σ' ≤ 1/4, tanh' ≤ 1, c = f c0 + i g, h = o tanh(c), with float32's
    rounding on both sides (the pre-activation's 3 additions γ_3 S, 8 u per σ or tanh). Across
    the run the error compounds; the end-to-end error is printed in the failure message."""
    rng = np.random.default_rng(10)
    T, B, H = 50, 4, 64
    w = {k[:-3]: v for k, v in make_params("LSTM", {}, H, H, rng).items()}
    x = rng.standard_normal((T, B, H)).astype(F32)
    w_ih, w_hh, b_ih, b_hh = w["weight_ih"], w["weight_hh"], w["bias_ih"], w["bias_hh"]
    sides = {name: (qr.input_preactivations(x, product(w_ih), b_ih, b_hh), product(w_hh))
             for name, product in (("float32", qr.float_product), ("bfloat16", qr.bfloat16_product))}
    h = np.zeros((B, H), dtype=F32)
    c = np.zeros((B, H), dtype=F32)
    ratios = []
    for t in range(T):
        gates, states = {}, {}
        for name, (gx, recurrent) in sides.items():
            a = gx[t] + recurrent(h)
            a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
            gates[name] = (qr.sigmoid(a_i), qr.sigmoid(a_f), np.tanh(a_g), qr.sigmoid(a_o))
            states[name] = qr.lstm_step(gx[t], h, c, recurrent)
        # the pre-activations' bound: both products' weight rounding, and the additions on both sides
        S = (np.abs(x[t]).astype(np.float64) @ np.abs(w_ih.T) + np.abs(b_ih) + np.abs(b_hh)
             + np.abs(h).astype(np.float64) @ np.abs(w_hh.T))
        da = (qr.bfloat16_product_error_bound(x[t], w_ih) + qr.bfloat16_product_error_bound(h, w_hh)
              + 2 * gamma(3) * S * (1 + 2.0**-7))
        da_i, da_f, da_g, da_o = np.split(da, 4, axis=1)
        function = 2 * 8 * U  # a σ or tanh evaluated on each side
        d_i, d_f, d_o, d_g = da_i / 4 + function, da_f / 4 + function, da_o / 4 + function, da_g + function
        i32, f32, g32, o32 = gates["float32"]
        i16 = gates["bfloat16"][0]
        o16 = gates["bfloat16"][3]
        (h32, c32), (h16, c16) = states["float32"], states["bfloat16"]
        # c = f c0 + i g:  f c0 − f' c0 = c0 (f − f'),  i g − i' g' = g (i − i') + i' (g − g')
        d_c = (np.abs(c) * d_f + np.abs(g32) * d_i + np.abs(i16) * d_g
               + 2 * gamma(3) * (np.abs(f32 * c) + np.abs(i32 * g32)) * (1 + 2.0**-7))
        # h = o tanh(c):  o t − o' t' = t (o − o') + o' (t − t'),  |t − t'| ≤ |c − c'| + 2 · 8 u
        d_h = np.abs(np.tanh(c32)) * d_o + np.abs(o16) * (d_c + function) + 2 * U * (1 + np.abs(h32))
        assert np.all(np.abs(c16 - c32) <= d_c), f"step {t}: c"
        assert np.all(np.abs(h16 - h32) <= d_h), f"step {t}: h"
        ratios.append(max(np.max(np.abs(h16 - h32) / d_h), np.max(np.abs(c16 - c32) / d_c)))
        h, c = h16, c16  # on along the bfloat16 run
    y16, _, _ = qr.lstm_layer(x, w_ih, w_hh, b_ih, b_hh, scheme="bfloat16")
    y32, _, _ = qr.lstm_layer(x, w_ih, w_hh, b_ih, b_hh, scheme="float")
    end_to_end = np.abs(y16.astype(np.float64) - y32)
    assert max(ratios) >= 0.05, (f"worst step error / bound {max(ratios):.3f}; end to end max "
                                 f"{end_to_end.max():.2e} mean {end_to_end.mean():.2e}")
