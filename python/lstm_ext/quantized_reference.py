"""Reduced-precision inference in plain NumPy, written straight from the scheme: the int8 and
bfloat16 oracle (issue 28).

Like ``lstm_ext.reference``, this module shares no code with the compiled path (it never imports
``lstm_ext._core``), loops over time steps in Python and says every rounding out loud. The
compiled ``quantize_dynamic`` path is tested against it; tests/test_reference_quantized.py proves
it right. Inference only: there is no backward.

Dimension legend: T steps, B batch rows, I input size, H hidden size, P projection size, H_out
(P with a projection, else H), G gate blocks (LSTM 4, GRU 3, RNN 1). A product a · Wᵀ multiplies
an activation matrix a (R, K) by a weight W (N, K): R rows (T*B for the input projection, B for the
recurrent and projection products), K the inner size, N = G*H (or P for W_hr) output columns.
u = 2^-24 is float32's unit roundoff.

**int8.** All arithmetic is float32 unless said.

1. Weights, symmetric int8, one scale per output row j (of W_ih, W_hh and W_hr), quantized once::

       max_j   = max_k |W_jk|                                  (float64, from the float weights)
       s_w[j]  = float32(max_j / 127)                          (a row of zeros: s_w[j] = 0, q = 0)
       q_w[jk] = clip(rint(W_jk / s_w[j]), −127, 127)          (float64 division; rint: half to even)
       Ŵ_jk    = q_w[jk] · s_w[j]                              (the dequantized weight, float32)

2. Activations, symmetric int8, one scale per row r (a (t, b) row of x for the input projection,
   a batch row of h_{t-1} or of m_t for the recurrent and projection products), chosen at every
   call (dynamic), in float32::

       m_r     = max_k |a_rk|                                  (a row of zeros: s_a[r] = 0, q = 0)
       inv_r   = 127 / m_r
       q_a[rk] = clip(rint(a_rk · inv_r), −127, 127)
       s_a[r]  = m_r / 127

3. The product: an exact int32 sum, then one scale per output element, the scale product first::

       acc[r, j] = Σ_k q_a[rk] · q_w[jk]                       (exact; |acc| ≤ K · 127² < 2^31)
       out[r, j] = float32(acc[r, j]) · (s_a[r] · s_w[j])

4. The cells: PyTorch's equations (``lstm_ext.reference``), every W x and W h replaced by the
   product above, the gate functions in float32 (σ(z) = 1 / (1 + e^(−z))), and the
   pre-activations added in one fixed order: the input part once for all T·B rows, then the
   recurrent product at each step::

       LSTM, RNN:  gx = (qmm(x, W_ih) + b_ih) + b_hh
                   a_t = gx_t + qmm(h_{t-1}, W_hh)
       GRU:        gx = qmm(x, W_ih) + b_ih,   gh_t = qmm(h_{t-1}, W_hh) + b_hh
                   a_rz = gx_rz,t + gh_rz,t,   n = tanh(gx_n,t + r ⊙ gh_n,t)   (the compiled GRU's order)

   The LSTM's variants: a projection h_t = qmm(m_t, W_hr) (m_t = o ⊙ tanh(c_t) quantized per row
   like h); peepholes (float32, not quantized) a_i += p_i ⊙ c_{t-1}, a_f += p_f ⊙ c_{t-1} and, on
   the new cell, a_o += p_o ⊙ c_t, as ``lstm_ext.reference`` does them. Layer norm, dropout and
   zoneout are not part of the scheme (refused).

Every scale is per row, so a row's result depends on that row alone: the same bits whatever else
is in the batch and however the steps are split between calls.

**bfloat16.** The float32 cell with every weight matrix (W_ih, W_hh, W_hr) rounded to the nearest
bfloat16 (``to_bfloat16``: 8 significant bits, round half to even); biases and peepholes stay
float32; arithmetic float32. ``|to_bfloat16(w) − w| ≤ 2^-8 |w|`` for normal values.

**Error of one product** (``product_error_bound``, derived there), for one row a and output j::

    against the dequantized weights:  |qmm(a, W)_j − a · Ŵ_jᵀ| ≤ (s_a / 2) Σ_k |Ŵ_jk|  + float32 rounding
    against the original weights:     add (s_w[j] / 2) Σ_k |a_k|
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np

from . import reference

__all__ = [
    "FLOAT32_UNIT", "BFLOAT16_UNIT", "INT8_MAX", "SCHEMES", "Product",
    "quantize_weight_rows", "dequantize_rows", "quantize_activation_rows", "quantized_matmul",
    "product_error_bound", "to_bfloat16", "bfloat16_product_error_bound",
    "int8_product", "bfloat16_product", "float_product", "sigmoid",
    "input_preactivations", "lstm_step", "gru_step", "rnn_step", "lstm_layer", "gru_layer", "rnn_layer",
    "lstm_layer_forward", "gru_layer_forward", "rnn_layer_forward", "QuantizedCell", "stack_forward",
]

FLOAT32_UNIT = 2.0**-24   # u: float32's unit roundoff, |fl(x) − x| ≤ u |x| for a normal result
FLOAT64_UNIT = 2.0**-53
BFLOAT16_UNIT = 2.0**-8   # bfloat16's: 8 significant bits (7 stored), |bf16(x) − x| ≤ 2^-8 |x|
# A row of activations whose largest magnitude is below this is a row of zeros (2^-100).
TINY_ROW = np.float32(2.0 ** -100)
INT8_MAX = 127            # the quantized range is symmetric, [−127, 127]: −128 never appears
_FLOAT32_TINY = 2.0**-149  # float32's smallest subnormal: an underflowing rounding errs by at most half of it

# A product with one weight matrix W (N, K): a (R, K) -> a · Wᵀ (R, N), plain, int8 or bfloat16.
Product = Callable[[np.ndarray], np.ndarray]


def _gamma(n: int | np.ndarray, unit: float = FLOAT32_UNIT) -> float | np.ndarray:
    """γ_n = n u / (1 − n u): the relative error of n chained roundings (Higham, Lemma 3.1)."""
    return n * unit / (1.0 - n * unit)


# =============================================================================================
# 1. Weights: int8 per output row

def quantize_weight_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """w (N, K) float -> (q_w int8 (N, K), s_w float32 (N,)), symmetric, one scale per row::

        s_w[j] = float32(max_k |W_jk| / 127)        (in float64, then rounded to float32)
        q_w[jk] = clip(rint(W_jk / s_w[j]), −127, 127)   (float64 division, half to even)

    A row whose scale is 0 (a row of zeros) has q 0. Raises ValueError for a non-finite weight.
    """
    w64 = np.asarray(w, dtype=np.float64)
    if w64.ndim != 2:
        raise ValueError(f"w: expected a matrix (N, K), got shape {w64.shape}")
    if not np.all(np.isfinite(w64)):
        raise ValueError("w: a weight is not finite (inf or NaN): it cannot be quantized")
    max_abs = np.max(np.abs(w64), axis=1, initial=0.0)               # (N,) float64
    scale = (max_abs / INT8_MAX).astype(np.float32)                   # (N,) float32
    q = np.zeros(w64.shape, dtype=np.int8)
    rows = scale > 0
    ratio = w64[rows] / scale[rows, None].astype(np.float64)          # W / s_w in float64
    q[rows] = np.clip(np.rint(ratio), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def dequantize_rows(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(q int8 (N, K), scale (N,)) -> Ŵ = q · scale per row, float32 (N, K), rounded once."""
    w_hat: np.ndarray = np.asarray(q).astype(np.float32) * np.asarray(scale, dtype=np.float32)[:, None]
    return w_hat


# =============================================================================================
# 2. Activations: int8 per row, chosen at each call

def quantize_activation_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a (R, K), rounded to float32 first -> (q_a int8 (R, K), s_a float32 (R,)); float32 arithmetic::

        m = max_k |a_k|,   inv = 127 / m,   q_k = clip(rint(a_k · inv), −127, 127),   s_a = m / 127

    A row whose maximum is below TINY_ROW = 2^-100 (a row of zeros, or one so small that 127 / m
    could overflow) has q 0 and scale 0. A row holding a NaN or an infinity has q 0 and scale NaN,
    so that its products are NaN, as the float products would not be numbers either.
    """
    a32 = np.asarray(a, dtype=np.float32)
    if a32.ndim != 2:
        raise ValueError(f"a: expected a matrix (R, K), got shape {a32.shape}")
    finite = np.all(np.isfinite(a32), axis=1)                           # (R,)
    m = np.max(np.abs(np.where(np.isfinite(a32), a32, 0)), axis=1, initial=np.float32(0.0))  # (R,) float32
    rows = finite & (m >= TINY_ROW)
    q = np.zeros(a32.shape, dtype=np.int8)
    inv = np.float32(INT8_MAX) / m[rows]                                # float32 division
    product = a32[rows] * inv[:, None]                                  # float32 multiply
    q[rows] = np.clip(np.rint(product), -INT8_MAX, INT8_MAX).astype(np.int8)
    scale = np.where(rows, m / np.float32(INT8_MAX), np.float32(0.0)).astype(np.float32)  # float32 division
    scale[~finite] = np.nan
    return q, scale


# =============================================================================================
# 3. The product

def _int32_products(q_a: np.ndarray, q_w: np.ndarray) -> np.ndarray:
    """acc[r, j] = Σ_k q_a[rk] q_w[jk], exactly: summed in int64 and checked to fit int32."""
    acc: np.ndarray = q_a.astype(np.int64) @ q_w.astype(np.int64).T
    limit = np.iinfo(np.int32).max
    assert np.max(np.abs(acc), initial=0) <= limit, "an int8 sum does not fit int32"
    return acc


def quantized_matmul(a: np.ndarray, q_w: np.ndarray, scale_w: np.ndarray) -> np.ndarray:
    """qmm(a, W): a (R, K) float32, q_w int8 (N, K), scale_w float32 (N,) -> float32 (R, N)::

        (q_a, s_a) = quantize_activation_rows(a)
        acc[r, j]  = Σ_k q_a[rk] · q_w[jk]                    (exact, int32)
        out[r, j]  = float32(acc[r, j]) · (s_a[r] · s_w[j])   (the scale product rounded first)

    The int32 sums are computed in int64 and asserted to fit int32.
    """
    q_a, scale_a = quantize_activation_rows(a)
    acc = _int32_products(q_a, np.asarray(q_w))
    scales = scale_a[:, None] * np.asarray(scale_w, dtype=np.float32)[None, :]   # (R, N) float32
    out: np.ndarray = acc.astype(np.int32).astype(np.float32) * scales
    return out


def product_error_bound(a: np.ndarray, w: Optional[np.ndarray], q_w: np.ndarray, scale_w: np.ndarray
                        ) -> np.ndarray:
    """The bound on ``|qmm(a, W) − a · Vᵀ|`` per element (R, N), float64, where V is w (the
    original weights) or, with w None, the dequantized weights Ŵ = dequantize_rows(q_w, scale_w);
    a · Vᵀ either exact or summed in float32 in any order. a (R, K) float32, q_w int8 (N, K),
    scale_w (N,) float32.

    Derivation (u = 2^-24, γ_n = n u / (1 − n u); â_k = q_a,k s_a and Ŵ*_jk = q_w,jk s_w,j the
    exact real values the int8 product sums)::

        activation rounding   with y = a_k · 127 / m, float32 computes y (1 + δ1)(1 + δ2), so
                              |q_k − y| ≤ 1/2 + 127 (2u + u²); with s_a = (m / 127)(1 + δ3):
                              |â_k − a_k| ≤ s_a (1/2 + 384 u) =: ε_a
        main term             |Σ_k (â_k − a_k) Ŵ*_jk| ≤ ε_a Σ_k |Ŵ*_jk|          (≈ (s_a / 2) Σ_k |Ŵ_jk|)
        epilogue              out = fl(fl(acc) · fl(s_a s_w)), three roundings:
                              |out − acc s_a s_w| ≤ γ_3 |acc| s_a s_w + 2^-149 (|acc| + 1)
                              (the last term should the scale product underflow)
        against Ŵ (float32)   |Ŵ − Ŵ*| ≤ u |Ŵ*|, and a float32 sum of K products errs by
                              γ_K Σ_k |a_k| |Ŵ_jk|: together (u + γ_K)(1 + u) Σ_k |a_k| |Ŵ*_jk|
        against W             the weight rounding |W_jk − Ŵ*_jk| ≤ s_w,j / 2 + 2^-53 |W_jk| (the
                              float64 division), summed: Σ_k |a_k| (s_w,j / 2 + 2^-53 |W_jk|);
                              and the float32 sum: γ_K Σ_k |a_k| |W_jk|

    The bound itself is evaluated in float64 (relative error ~K·2^-53, far inside the 384 u slack).
    """
    a32 = np.asarray(a, dtype=np.float32)
    q_a, scale_a = quantize_activation_rows(a32)
    acc: np.ndarray = _int32_products(q_a, np.asarray(q_w)).astype(np.float64)  # (R, N)
    s_a: np.ndarray = scale_a.astype(np.float64)[:, None]                       # (R, 1)
    s_w: np.ndarray = np.asarray(scale_w, dtype=np.float64)[None, :]            # (1, N)
    abs_a = np.abs(a32.astype(np.float64))                                      # (R, K)
    w_star = np.abs(np.asarray(q_w).astype(np.float64)) * s_w.T                 # |Ŵ*| (N, K)
    K = a32.shape[1]
    u = FLOAT32_UNIT

    epsilon_a = s_a * (0.5 + 384 * u)                                           # per-element activation error
    activation = epsilon_a * w_star.sum(axis=1)[None, :]                        # (R, N)
    epilogue = _gamma(3) * np.abs(acc) * s_a * s_w + _FLOAT32_TINY * (np.abs(acc) + 1.0)
    if w is None:
        reference_side = (u + _gamma(K)) * (1.0 + u) * (abs_a @ w_star.T)
        weight = np.zeros_like(reference_side)
    else:
        abs_w = np.abs(np.asarray(w, dtype=np.float64))
        weight = abs_a.sum(axis=1)[:, None] * s_w / 2 + FLOAT64_UNIT * (abs_a @ abs_w.T)
        reference_side = _gamma(K) * (abs_a @ abs_w.T)
    bound: np.ndarray = activation + epilogue + reference_side + weight
    return bound


# =============================================================================================
# 4. bfloat16

def to_bfloat16(w: np.ndarray) -> np.ndarray:
    """w rounded (as float32) to the nearest bfloat16, ties to even, returned as float32 values
    (their low 16 bits zero). NaN stays NaN (quiet), ±inf stays ±inf, a value past bfloat16's
    largest rounds to ±inf, as IEEE rounding does::

        bits = bits(float32(w));   bits += 0x7FFF + ((bits >> 16) & 1);   bits &= 0xFFFF0000
    """
    w32 = np.ascontiguousarray(w, dtype=np.float32)
    bits = w32.view(np.uint32).astype(np.uint64)
    lowest_kept = (bits >> np.uint64(16)) & np.uint64(1)
    rounded = (bits + np.uint64(0x7FFF) + lowest_kept) & np.uint64(0xFFFF0000)
    nan_bits = (bits & np.uint64(0xFFFF0000)) | np.uint64(0x00400000)   # keep sign and payload, set the quiet bit
    out_bits = np.where(np.isnan(w32), nan_bits, rounded).astype(np.uint32)
    out: np.ndarray = out_bits.view(np.float32).reshape(w32.shape)
    return out


def bfloat16_product_error_bound(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The bound on ``|a · to_bfloat16(W)ᵀ − a · Wᵀ|`` per element (R, N), float64, a (R, K),
    W (N, K), both products summed in float32 in any order (or the second exact)::

        Σ_k |a_k| (2^-8 |W_jk| + 2^-134)      the weight rounding (2^-134: half a bf16 subnormal step)
        + γ_K Σ_k |a_k| |bf16(W_jk)|           the bf16 product's float32 sum
        + γ_K Σ_k |a_k| |W_jk|                 the float32 product's sum
    """
    abs_a = np.abs(np.asarray(a, dtype=np.float32).astype(np.float64))
    abs_w = np.abs(np.asarray(w, dtype=np.float32).astype(np.float64))
    abs_w16 = np.abs(to_bfloat16(w).astype(np.float64))
    K = abs_a.shape[1]
    weight = abs_a @ (BFLOAT16_UNIT * abs_w + 2.0**-134).T
    sums = _gamma(K) * (abs_a @ abs_w16.T + abs_a @ abs_w.T)
    bound: np.ndarray = weight + sums
    return bound


# =============================================================================================
# 5. The cells, with the product as a parameter

def int8_product(w: np.ndarray) -> Product:
    """The int8 product with W (N, K): W quantized once (quantize_weight_rows), a at each call."""
    q_w, scale_w = quantize_weight_rows(w)
    return lambda a: quantized_matmul(a, q_w, scale_w)


def bfloat16_product(w: np.ndarray) -> Product:
    """The bfloat16-weight product with W (N, K): a (R, K) float32 · to_bfloat16(W)ᵀ in float32."""
    w16 = to_bfloat16(w)

    def product(a: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.asarray(a, dtype=np.float32) @ w16.T
        return out
    return product


def float_product(w: np.ndarray) -> Product:
    """The plain product a · Wᵀ in the arrays' own dtype: the float cell, to prove this module's
    equations equal ``lstm_ext.reference``'s."""
    w_array = np.asarray(w)

    def product(a: np.ndarray) -> np.ndarray:
        out: np.ndarray = a @ w_array.T
        return out
    return product


# scheme name -> (how a weight becomes a product, the dtype of the arithmetic: None for the input's)
SCHEMES: dict[str, tuple[Callable[[np.ndarray], Product], Optional[type]]] = {
    "int8": (int8_product, np.float32),
    "bfloat16": (bfloat16_product, np.float32),
    "float": (float_product, None),
}


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e^(−z)) in z's dtype; e^(−z) may overflow to inf, giving σ = 0."""
    with np.errstate(over="ignore"):
        out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


def _activation(nonlinearity: str) -> Callable[[np.ndarray], np.ndarray]:
    if nonlinearity == "tanh":
        return np.tanh
    if nonlinearity == "relu":
        return lambda a: np.maximum(a, 0.0)
    raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")


def input_preactivations(x: np.ndarray, input_product: Product, b_ih: np.ndarray, b_hh: np.ndarray,
                         gru: bool = False) -> np.ndarray:
    """The input part of the pre-activations, once for all steps: x (T, B, I) -> gx (T, B, G*H)::

        gx = (qmm(x, W_ih) + b_ih) + b_hh      (the GRU: qmm(x, W_ih) + b_ih; b_hh goes with the
                                                recurrent product, gru_step)

    over the T·B rows at once, in this order.
    """
    T, B, I = x.shape
    gx = input_product(x.reshape(T * B, I)) + b_ih
    if not gru:
        gx = gx + b_hh
    per_step: np.ndarray = gx.reshape(T, B, -1)
    return per_step


def lstm_step(gx_t: np.ndarray, h: np.ndarray, c: np.ndarray, recurrent: Product,
              projection: Optional[Product] = None, w_ch: Optional[np.ndarray] = None,
              zoneout: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM step: gx_t (B, 4H) the input part, h (B, H_out), c (B, H) -> (h_t, c_t)::

        a = gx_t + qmm(h_{t-1}, W_hh)                (blocks a_i, a_f, a_g, a_o)
        i = σ(a_i + p_i ⊙ c_{t-1}),   f = σ(a_f + p_f ⊙ c_{t-1}),   g = tanh(a_g)
        c_t = f ⊙ c_{t-1} + i ⊙ g
        o = σ(a_o + p_o ⊙ c_t),   m_t = o ⊙ tanh(c_t),   h_t = m_t or qmm(m_t, W_hr)

    recurrent and projection: the products with W_hh and W_hr; w_ch (3, H) the peepholes or None;
    zoneout (z_c, z_h): its expectation in inference, c_t ← z_c c_{t-1} + (1 − z_c) c_t and
    h_t ← z_h h_{t-1} + (1 − z_h) h_t after the cell (o and m read the cell's own c_t).
    """
    a = gx_t + recurrent(h)
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
    if w_ch is not None:
        p_i, p_f, p_o = w_ch
        a_i = a_i + p_i * c   # i sees c_{t-1}
        a_f = a_f + p_f * c   # f sees c_{t-1}
    i = sigmoid(a_i)
    f = sigmoid(a_f)
    g = np.tanh(a_g)
    c_new = f * c + i * g
    if w_ch is not None:
        a_o = a_o + p_o * c_new   # o sees the new cell c_t (ONNX's peephole, as lstm_ext.reference)
    o = sigmoid(a_o)
    m = o * np.tanh(c_new)
    h_new = m if projection is None else projection(m)
    z_c, z_h = (np.float32(z) if c.dtype == np.float32 else z for z in zoneout)
    if z_c:
        c_new = z_c * c + (1 - z_c) * c_new
    if z_h:
        h_new = z_h * h + (1 - z_h) * h_new
    return h_new, c_new


def gru_step(gx_t: np.ndarray, h: np.ndarray, recurrent: Product, b_hh: np.ndarray) -> np.ndarray:
    """One GRU step: gx_t (B, 3H) the input part (input_preactivations with gru=True), h (B, H) -> h_t::

        gh = qmm(h_{t-1}, W_hh) + b_hh               (blocks gh_r, gh_z, gh_n)
        r = σ(gx_r + gh_r),   z = σ(gx_z + gh_z),   n = tanh(gx_n + r ⊙ gh_n)
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    (the compiled GRU's order: b_hh with the recurrent product). recurrent: the product with W_hh.
    """
    gx_r, gx_z, gx_n = np.split(gx_t, 3, axis=1)
    gh_r, gh_z, gh_n = np.split(recurrent(h) + b_hh, 3, axis=1)
    r = sigmoid(gx_r + gh_r)
    z = sigmoid(gx_z + gh_z)
    n = np.tanh(gx_n + r * gh_n)
    h_new: np.ndarray = (1.0 - z) * n + z * h
    return h_new


def rnn_step(gx_t: np.ndarray, h: np.ndarray, recurrent: Product, activation: Callable[[np.ndarray], np.ndarray]
             ) -> np.ndarray:
    """One RNN step: gx_t (B, H), h (B, H) -> h_t = act(gx_t + qmm(h_{t-1}, W_hh)), act tanh or relu."""
    return activation(gx_t + recurrent(h))


def _scheme(scheme: str, x: np.ndarray) -> tuple[Callable[[np.ndarray], Product], np.dtype[Any]]:
    """The scheme's product maker and the dtype of its arithmetic (float32, or x's for "float")."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: expected one of {sorted(SCHEMES)}, got {scheme!r}")
    make_product, dtype = SCHEMES[scheme]
    return make_product, np.dtype(dtype) if dtype is not None else np.asarray(x).dtype


def _vector(v: Optional[np.ndarray], size: int, dtype: Any) -> np.ndarray:
    """A bias, or zeros for none, in the arithmetic's dtype."""
    out: np.ndarray = np.zeros(size, dtype=dtype) if v is None else np.asarray(v, dtype=dtype)
    return out


def _state(s: Optional[np.ndarray], shape: tuple[int, int], dtype: Any) -> np.ndarray:
    """An initial state, or zeros for none, in the arithmetic's dtype."""
    out: np.ndarray = np.zeros(shape, dtype=dtype) if s is None else np.asarray(s, dtype=dtype)
    return out


def lstm_layer(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Optional[np.ndarray] = None,
               b_hh: Optional[np.ndarray] = None, h0: Optional[np.ndarray] = None, c0: Optional[np.ndarray] = None,
               w_hr: Optional[np.ndarray] = None, w_ch: Optional[np.ndarray] = None, *, scheme: str = "int8",
               zoneout: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One LSTM direction over every step: x (T, B, I) -> (y (T, B, H_out), h_n (B, H_out), c_n (B, H)).

    Weights as in ``lstm_ext.reference.lstm_forward`` (w_ih (4H, I), w_hh (4H, H_out), biases (4H,),
    w_hr (P, H), w_ch (3, H)), None for absent; h0, c0 None for zeros. scheme: "int8",
    "bfloat16" (both in float32) or "float" (the plain products in x's dtype).
    """
    make_product, dtype = _scheme(scheme, x)
    x = np.asarray(x, dtype=dtype)
    T, B, _ = x.shape
    G, H_out = w_hh.shape
    H = G // 4
    gx = input_preactivations(x, make_product(w_ih), _vector(b_ih, G, dtype), _vector(b_hh, G, dtype))
    recurrent = make_product(w_hh)
    projection = None if w_hr is None else make_product(w_hr)
    peepholes = None if w_ch is None else np.asarray(w_ch, dtype=dtype)
    h, c = _state(h0, (B, H_out), dtype), _state(c0, (B, H), dtype)
    y = np.zeros((T, B, H_out), dtype=dtype)
    for t in range(T):
        h, c = lstm_step(gx[t], h, c, recurrent, projection, peepholes, zoneout)
        y[t] = h
    return y, h, c


def gru_layer(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Optional[np.ndarray] = None,
              b_hh: Optional[np.ndarray] = None, h0: Optional[np.ndarray] = None, *, scheme: str = "int8",
              ) -> tuple[np.ndarray, np.ndarray]:
    """One GRU direction: x (T, B, I), w_ih (3H, I), w_hh (3H, H), biases (3H,) -> (y (T, B, H), h_n (B, H))."""
    make_product, dtype = _scheme(scheme, x)
    x = np.asarray(x, dtype=dtype)
    T, B, _ = x.shape
    G, H = w_hh.shape
    bias_hh = _vector(b_hh, G, dtype)
    gx = input_preactivations(x, make_product(w_ih), _vector(b_ih, G, dtype), bias_hh, gru=True)
    recurrent = make_product(w_hh)
    h = _state(h0, (B, H), dtype)
    y = np.zeros((T, B, H), dtype=dtype)
    for t in range(T):
        h = gru_step(gx[t], h, recurrent, bias_hh)
        y[t] = h
    return y, h


def rnn_layer(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: Optional[np.ndarray] = None,
              b_hh: Optional[np.ndarray] = None, h0: Optional[np.ndarray] = None, nonlinearity: str = "tanh", *,
              scheme: str = "int8") -> tuple[np.ndarray, np.ndarray]:
    """One RNN direction: x (T, B, I), w_ih (H, I), w_hh (H, H), biases (H,) -> (y (T, B, H), h_n (B, H))."""
    make_product, dtype = _scheme(scheme, x)
    x = np.asarray(x, dtype=dtype)
    T, B, _ = x.shape
    H = w_hh.shape[0]
    activation = _activation(nonlinearity)
    gx = input_preactivations(x, make_product(w_ih), _vector(b_ih, H, dtype), _vector(b_hh, H, dtype))
    recurrent = make_product(w_hh)
    h = _state(h0, (B, H), dtype)
    y = np.zeros((T, B, H), dtype=dtype)
    for t in range(T):
        h = rnn_step(gx[t], h, recurrent, activation)
        y[t] = h
    return y, h


# =============================================================================================
# 6. PyTorch's network: lstm_ext.reference.stack_forward with these cells

def _check_weights(weights: dict[str, np.ndarray]) -> None:
    if any(key.startswith("ln_") for key in weights):
        raise ValueError("layer_norm: a layer with layer normalization has no int8 or bfloat16 reference")


def _states(state0: Optional[list[Optional[np.ndarray]]], parts: int) -> list[Optional[np.ndarray]]:
    return [None] * parts if state0 is None else list(state0)


# One direction of one layer of each kind by PyTorch's base names, as lstm_ext.cells' descriptions
# name them (CellKind.quantized_reference_forward): weights {weight_ih, weight_hh[, bias_ih,
# bias_hh, weight_hr, weight_ch]}, state0 None or [h0 (B, H_out)[, c0 (B, H)]] (None entries:
# zeros), options the kind's -> (y (T, B, H_out), [h_n[, c_n]]). Layer norm is refused.

def lstm_layer_forward(x: np.ndarray, weights: dict[str, np.ndarray],
                       state0: Optional[list[Optional[np.ndarray]]] = None, options: Optional[dict[str, Any]] = None,
                       scheme: str = "int8") -> tuple[np.ndarray, list[np.ndarray]]:
    """The LSTM (options: zoneout's expectation (z_c, z_h), in inference)."""
    _check_weights(weights)
    h0, c0 = _states(state0, 2)
    w = weights
    zoneout = tuple((options or {}).get("zoneout", (0.0, 0.0)))
    y, h_n, c_n = lstm_layer(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"), h0, c0,
                             w.get("weight_hr"), w.get("weight_ch"), scheme=scheme,
                             zoneout=(float(zoneout[0]), float(zoneout[1])))
    return y, [h_n, c_n]


def gru_layer_forward(x: np.ndarray, weights: dict[str, np.ndarray],
                      state0: Optional[list[Optional[np.ndarray]]] = None, options: Optional[dict[str, Any]] = None,
                      scheme: str = "int8") -> tuple[np.ndarray, list[np.ndarray]]:
    """The GRU (no options)."""
    _check_weights(weights)
    w = weights
    y, h_n = gru_layer(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"), _states(state0, 1)[0],
                       scheme=scheme)
    return y, [h_n]


def rnn_layer_forward(x: np.ndarray, weights: dict[str, np.ndarray],
                      state0: Optional[list[Optional[np.ndarray]]] = None, options: Optional[dict[str, Any]] = None,
                      scheme: str = "int8") -> tuple[np.ndarray, list[np.ndarray]]:
    """The vanilla RNN (options: nonlinearity, 'tanh' or 'relu')."""
    _check_weights(weights)
    w = weights
    nonlinearity = str((options or {}).get("nonlinearity", "tanh"))
    y, h_n = rnn_layer(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"), _states(state0, 1)[0],
                       nonlinearity, scheme=scheme)
    return y, [h_n]


class QuantizedCell(Protocol):
    """What stack_forward reads of a cell kind (an lstm_ext.cells.CellKind): the parts of its state
    and its one-direction quantized forward (one of the three functions above)."""

    @property
    def state(self) -> tuple[str, ...]: ...
    @property
    def quantized_reference_forward(self) -> Callable[..., tuple[np.ndarray, list[np.ndarray]]]: ...


@dataclass(frozen=True)
class _SchemeCell:
    """What reference.stack_forward reads of a cell kind: the parts of its state and its
    one-direction forward (x, weights, state0, options, masks) -> (y, state_n, cache)."""

    state: tuple[str, ...]
    reference_forward: Callable[..., tuple[np.ndarray, list[np.ndarray], dict[str, object]]]


def stack_forward(cell: QuantizedCell, x: np.ndarray, params: dict[str, np.ndarray], num_layers: int = 1,
                  bidirectional: bool = False, lengths: Optional[np.ndarray | list[int]] = None,
                  state0: Optional[list[Optional[np.ndarray]]] = None, options: Optional[dict[str, Any]] = None,
                  scheme: str = "int8") -> tuple[np.ndarray, list[np.ndarray]]:
    """PyTorch's multi-layer, bidirectional, variable-length network in int8 or bfloat16 (inference).

    The same walk as ``lstm_ext.reference.stack_forward`` (it runs it): cell the kind's description
    (``lstm_ext.cells.LSTM``, ``GRU``, ``RNN``); x (T, B, I) (batch_first is the caller's); params
    PyTorch's state dict as NumPy arrays (weight_hr_l{k}: projection, weight_ch_l{k}: peepholes);
    lengths (B,) or None; state0 None or [h0 (L*D, B, H_out)[, c0 (L*D, B, H)]]; options the
    kind's. Each sequence runs on its own over its first lengths[b] steps, the reverse direction
    from its last valid step; outputs past a length are zero, the final state is the state at the
    last valid step. Returns (y (T, B, D*H_out), [h_n (L*D, B, H_out)[, c_n]]).
    """
    _, dtype = _scheme(scheme, x)
    x = np.asarray(x, dtype=dtype)
    layer_forward = cell.quantized_reference_forward

    def forward(x_b: np.ndarray, w: dict[str, np.ndarray], state0_b: list[Optional[np.ndarray]],
                options_b: dict[str, Any], masks: Optional[dict[str, object]] = None
                ) -> tuple[np.ndarray, list[np.ndarray], dict[str, object]]:
        if masks:
            raise ValueError(f"masks: dropout and zoneout have no int8 or bfloat16 reference, got {sorted(masks)}")
        y, state_n = layer_forward(x_b, w, state0_b, options_b, scheme)
        return y, state_n, {}

    scheme_cell = _SchemeCell(state=tuple(cell.state), reference_forward=forward)
    y, state_n, _ = reference.stack_forward(scheme_cell, x, params, num_layers, bidirectional, lengths, state0,
                                            options=options)
    return y, state_n
