// lstm_ext core: products with int8 weights and int8 activations, for inference in int8
// (lstm_ext.quantize_dynamic). Kernel code, compiled once per kernel level (kernels.hpp).
//
// The scheme (python/lstm_ext/quantized_reference.py is its textbook version, and the oracle):
//   weights     W (N, K) ≈ q_w · diag(s_w): per row j, s_w[j] = max_k |W_jk| / 127 and
//               q_w[j, k] = rint(W_jk / s_w[j]) in [−127, 127] (quantized once, in Python: Int8Matrix)
//   activations a (R, K), quantized per row r at every call (a row of x for the input
//               projection, a row of h_{t−1} at every step): m = max_k |a_rk|,
//               q_a[r, k] = clamp(rint(a_rk · (127 / m)), ±127), s_a[r] = m / 127, all in float32
//               (a row with m < 2^−100 is a row of zeros: q_a = 0, s_a = 0; a row holding a NaN or an
//               infinity has q_a = 0 and s_a = NaN, so that its products are NaN, not numbers)
//   product     out[r, j] = float(acc[r, j]) · (s_a[r] · s_w[j]),  acc[r, j] = Σ_k q_a[r, k] q_w[j, k]
// acc is an exact int32 (|acc| ≤ K · 127 · 128 < 2^31 for K ≤ kInt8MaxInner, a weight of −128
// included): integer sums are the same in any order, so the vector width and the instructions the
// compiler picks at each level (pmaddwd, vpdpwssd, ...) cannot change a bit; the epilogue is the
// same float32 operations, in the same order, everywhere (the level files are compiled with
// -ffp-contract=off).
#pragma once

#include "rnn/common.hpp"

#include <cmath>
#include <cstdint>
#include <limits>

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {

// Quantizes the K values of row `a` into q (K) and returns its scale s_a (see above).
inline float quantize_row(std::int8_t* q, const float* a, Index K) {
  float m = 0;
  bool nan = false;  // a NaN or an infinity in the row
  for (Index k = 0; k < K; ++k) {
    const float magnitude = std::fabs(a[k]);
    nan |= !std::isfinite(magnitude);
    m = magnitude > m ? magnitude : m;
  }
  if (nan || m < kInt8TinyRow) {
    std::fill_n(q, K, std::int8_t(0));
    return nan ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
  }
  const float inverse = 127.0f / m;
  for (Index k = 0; k < K; ++k) {
    float v = std::nearbyint(a[k] * inverse);  // round half to even (the default rounding mode)
    v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
    q[k] = static_cast<std::int8_t>(v);
  }
  return m / 127.0f;
}

// acc = Σ_k a[k] b[k] over K int8 pairs, exact in int32.
inline std::int32_t dot_int8(const std::int8_t* a, const std::int8_t* b, Index K) {
  std::int32_t acc = 0;
  for (Index k = 0; k < K; ++k) acc += std::int32_t(a[k]) * std::int32_t(b[k]);
  return acc;
}

// out[r, j] = float(acc[r, j]) · (s_a[r] · s_w[j]) (+ add1[j]) (+ add2[j]), each addition a float32
// rounding of its own, in this order; add1, add2 may be nullptr.
//   out (R, ld_out)   q_a (R, K), s_a (R)   w (N, K) quantized by rows
inline void int8_product(float* out, Index ld_out, const std::int8_t* q_a, const float* s_a, Index R,
                         const Int8Matrix& w, Index N, Index K, const float* add1 = nullptr,
                         const float* add2 = nullptr) {
  for (Index r = 0; r < R; ++r) {
    const std::int8_t* a_r = q_a + r * K;
    float* out_r = out + r * ld_out;
    for (Index j = 0; j < N; ++j) {
      float value = static_cast<float>(dot_int8(a_r, w.q + j * K, K)) * (s_a[r] * w.scale[j]);
      if (add1 != nullptr) value = value + add1[j];
      if (add2 != nullptr) value = value + add2[j];
      out_r[j] = value;
    }
  }
}

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
