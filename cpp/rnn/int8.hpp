// lstm_ext core: products with int8 weights and int8 activations, for inference in int8
// (lstm_ext.quantize_dynamic). Kernel code, compiled once per kernel level (kernels.hpp).
//
// The scheme (python/lstm_ext/quantized_reference.py is its textbook version, and the oracle):
//   weights     W (N, K) ≈ q_w · diag(s_w): per row j, s_w[j] = max_k |W_jk| / 127 and
//               q_w[j, k] = rint(W_jk / s_w[j]) in [−127, 127] (quantized and packed once, in
//               Python: Int8Matrix, types.hpp)
//   activations a (R, K), quantized per row r at every call (a row of x for the input
//               projection, a row of h_{t−1} at every step): m = max_k |a_rk|,
//               q_a[r, k] = clamp(rint(a_rk · (127 / m)), ±127), s_a[r] = m / 127, all in float32
//               (a row with m < 2^−100 is a row of zeros: q_a = 0, s_a = 0; a row holding a NaN or an
//               infinity has q_a = 0 and s_a = NaN, so that its products are NaN, not numbers)
//   product     out[r, j] = float(acc[r, j]) · (s_a[r] · s_w[j]),  acc[r, j] = Σ_k q_a[r, k] q_w[j, k]
// acc is an exact int32 at every step of every kernel (K ≤ kInt8MaxInner): integer sums are the
// same in any order, so the vector width and the instructions (VNNI's vpdpbusd, pmaddubsw with
// the sign trick, a plain loop) cannot change a bit; the epilogue is the same float32 operations,
// in the same order, everywhere (the level files are compiled with -ffp-contract=off).
//
// The instructions: int8_kernels.inc is written once with Ops as its parameter and compiled here
// in namespace int8_base with this level's instructions, and at the avx2 and avx512 levels a
// second time in namespace int8_vnni with VNNI enabled for those functions alone (AVX-VNNI,
// AVX-512 VNNI): the kernel tables' "avx2_vnni" and "avx512_vnni" levels (level.cpp), which the
// import chooses only on a CPU that has the instructions.
#pragma once

#include "rnn/common.hpp"
#include "rnn/parallel.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

// The second copy with VNNI, for the levels CMake marks (avx2, avx512: LSTM_EXT_VNNI_PARTNER);
// GCC 11 and Clang 12 know AVX-VNNI (AVX-512 VNNI is older). A native build on a CPU with VNNI
// uses it in its one copy.
#if defined(LSTM_EXT_VNNI_PARTNER) && defined(__AVX512BW__)
#define LSTM_EXT_INT8_VNNI_TARGET "avx512vnni"
#define LSTM_EXT_INT8_VNNI_FEATURE CpuFeature::avx512vnni
#elif defined(LSTM_EXT_VNNI_PARTNER) && defined(__AVX2__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define LSTM_EXT_INT8_VNNI_TARGET "avxvnni"
#define LSTM_EXT_INT8_VNNI_FEATURE CpuFeature::avxvnni
#endif
#if (defined(__AVX512BW__) && defined(__AVX512VNNI__)) || (defined(__AVX2__) && defined(__AVXVNNI__))
#define LSTM_EXT_INT8_NATIVE_VNNI 1
#else
#define LSTM_EXT_INT8_NATIVE_VNNI 0
#endif

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {

// Quantizes the K values of row `a` into q (padded_K: zeros past K) and returns its scale s_a
// (see above).
inline float quantize_row(std::int8_t* q, const float* a, Index K, Index padded_K) {
  float m = 0;
  bool nan = false;  // a NaN or an infinity in the row
  for (Index k = 0; k < K; ++k) {
    const float magnitude = std::fabs(a[k]);
    nan |= !std::isfinite(magnitude);
    m = magnitude > m ? magnitude : m;
  }
  std::fill(q + K, q + padded_K, std::int8_t(0));
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

// The four bytes at a, as one 32-bit word (to broadcast a group of four activations).
inline std::uint32_t four_bytes(const std::int8_t* a) {
  std::uint32_t word;
  std::memcpy(&word, a, sizeof word);
  return word;
}

// The rows of x the input projection's tasks take at once.
constexpr Index kInt8InputRowsPerTask = 32;

namespace int8_base {
#define LSTM_EXT_INT8_VNNI LSTM_EXT_INT8_NATIVE_VNNI
#include "rnn/int8_kernels.inc"
#undef LSTM_EXT_INT8_VNNI
}  // namespace int8_base

#if defined(LSTM_EXT_INT8_VNNI_TARGET)
// (the pragmas take literal strings: no macro is expanded in them)
#if defined(__clang__) && defined(__AVX512BW__)
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#elif defined(__clang__)
#pragma clang attribute push(__attribute__((target("avxvnni"))), apply_to = function)
#elif defined(__AVX512BW__)
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#else
#pragma GCC push_options
#pragma GCC target("avxvnni")
#endif
namespace int8_vnni {
#define LSTM_EXT_INT8_VNNI 1
#include "rnn/int8_kernels.inc"
#undef LSTM_EXT_INT8_VNNI
}  // namespace int8_vnni
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

// ---------------------------------------------------------------------------------------------
// What the cells' int8 forwards share (lstm.cpp, gru.cpp, rnn.cpp), for either Kernel.

// The int8 forward of a cell whose state is h alone (GRU, RNN), over the same walk as the float
// forwards: the team shares the units and meets after each step's h_t, or for a large batch shares
// the sequences (split_by_rows). pointwise(gx_t, rec, h_prev, h_next, seq_rows, t, nb, u0, nu)
// computes its units of h_t for the active rows from gx_t (nb, G), rec (nb, G) (gate q of unit
// u0 + j at column q · H + u0 + j) and h_{t-1}.
//   y (T, B, ld_y) out   h_n (B, H) out   x (T, B, I)   h0 (B, H) or nullptr
//   w_ih (G, I), w_hh (G, H) with G = gates · H; gx = qmm(x, W_ih) (+ add1) (+ add2)
template <typename Kernel, typename Pointwise>
void int8_forward_h_only(float* y, float* h_n, const float* x, const float* h0, const Int8Matrix& w_ih,
                         const Int8Matrix& w_hh, const float* add1, const float* add2, Index gates, Index T, Index B,
                         Index H, Index ld_y, const SequenceOptions& seq, Pointwise&& pointwise) {
  const Index G = gates * H, TB = T * B, I = w_ih.K, I_padded = w_ih.padded_K(), H_padded = w_hh.padded_K();
  constexpr Index granule = kInt8PanelRows;  // a member's units start a panel
  TeamLease lease(members_for(2.0 * B * G * H, H, granule), 2.0 * T * B * G * (I + H));
  const int members = lease.size();
  const bool by_rows = split_by_rows(B, members);

  Buffer<float> gx(TB * G);                         // (T, B, G) the input part of every step
  Buffer<std::int8_t> q_x(TB * I_padded);           // (T, B, padded I) x quantized by rows
  Buffer<float> s_x(TB);                            // (T, B) their scales
  Buffer<float> h_steps(2 * B * H);                 // (2, B, H) h_{t-1} and h_t, by parity of the step
  Buffer<std::int8_t> q_h(members * B * H_padded);  // per member (B, padded H): h_{t-1} quantized
  Buffer<float> s_h(members * B);                   // per member (B): their scales
  Buffer<float> rec(B * G);                         // (B, G) a step's recurrent products

  lease.run([&](Team& team) {
    Kernel::input_projection(team, gx.data(), q_x.data(), s_x.data(), x, TB, w_ih, gates, add1, add2);
    const Team::Range rows = by_rows ? team.part(B) : Team::Range{0, B};
    const Team::Range units = by_rows ? Team::Range{0, H} : team.part(H, granule);
    const Index b0 = rows.begin, nb = rows.size(), u0 = units.begin, nu = units.size();
    const SequenceOptions seq_rows = seq.rows_from(b0);
    const Columns unit_cols{H, u0, nu}, y_cols{ld_y, u0, nu};
    std::int8_t* q_mine = q_h.data() + team.rank() * B * H_padded;
    float* s_mine = s_h.data() + team.rank() * B;
    float* rec_rows = rec.data() + b0 * G;
    copy_or_zero(h_steps.data() + b0 * H, h0 ? h0 + b0 * H : nullptr, unit_cols, nb);
    team.barrier();  // every row of gx, the initial state

    for (Index s = 0; s < T; ++s) {
      const Index t = seq.time_at(s, T);
      const float* h_prev = h_steps.data() + (s % 2) * B * H + b0 * H;  // (nb, H) h_{t-1}
      float* h_next = h_steps.data() + ((s + 1) % 2) * B * H + b0 * H;  // (nb, H) h_t
      if (nu > 0) Kernel::recurrent_products(rec_rows, q_mine, s_mine, h_prev, nb, w_hh, gates, u0, nu);
      pointwise(gx.data() + (t * B + b0) * G, rec_rows, h_prev, h_next, seq_rows, t, nb, u0, nu);
      write_output(y + (t * B + b0) * ld_y, y_cols, h_next, unit_cols, seq_rows, t, nb);
      carry_past_length(h_next, h_prev, unit_cols, seq_rows, t, nb);
      if (!by_rows) team.barrier();  // h_t complete
    }
    copy_columns(h_n + b0 * H, h_steps.data() + (T % 2) * B * H + b0 * H, unit_cols, nb);
  });
}

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
