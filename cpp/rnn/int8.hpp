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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

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

// ---------------------------------------------------------------------------------------------
// The dot products. Int8Lanes holds the int8 values of a chunk of kChunk inputs widened to int16,
// and madd(a, w) adds the products of neighbouring pairs into int32 lanes (pmaddwd): exact, since
// a pair's sum is at most 2 · 127 · 128 < 2^31 and the lanes then add exact int32s. The chunk is
// what one instruction widens at this level (SSE2 8 values, SSE4.1 8, AVX2 16, AVX-512 BW 32);
// on other architectures a plain loop, which the compiler vectorises.
#if defined(__AVX512BW__)
constexpr Index kInt8Chunk = 32;
using Int32Lanes = __m512i;
inline __m512i widen_int8(const std::int8_t* p) {
  return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512i madd_int16(__m512i a, __m512i b) { return _mm512_madd_epi16(a, b); }
inline __m512i add_int32(__m512i a, __m512i b) { return _mm512_add_epi32(a, b); }
inline __m512i zero_int32() { return _mm512_setzero_si512(); }
inline std::int32_t sum_int32(__m512i v) { return _mm512_reduce_add_epi32(v); }
#elif defined(__AVX2__)
constexpr Index kInt8Chunk = 16;
using Int32Lanes = __m256i;
inline __m256i widen_int8(const std::int8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256i madd_int16(__m256i a, __m256i b) { return _mm256_madd_epi16(a, b); }
inline __m256i add_int32(__m256i a, __m256i b) { return _mm256_add_epi32(a, b); }
inline __m256i zero_int32() { return _mm256_setzero_si256(); }
inline std::int32_t sum_int32(__m256i v) {
  const __m128i half = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  const __m128i pairs = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0x4e));
  return _mm_cvtsi128_si32(_mm_add_epi32(pairs, _mm_shuffle_epi32(pairs, 0xb1)));
}
#elif defined(__SSE2__)
constexpr Index kInt8Chunk = 8;
using Int32Lanes = __m128i;
inline __m128i widen_int8(const std::int8_t* p) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
#if defined(__SSE4_1__)
  return _mm_cvtepi8_epi16(bytes);
#else
  return _mm_srai_epi16(_mm_unpacklo_epi8(bytes, bytes), 8);  // each byte twice, then its sign kept
#endif
}
inline __m128i madd_int16(__m128i a, __m128i b) { return _mm_madd_epi16(a, b); }
inline __m128i add_int32(__m128i a, __m128i b) { return _mm_add_epi32(a, b); }
inline __m128i zero_int32() { return _mm_setzero_si128(); }
inline std::int32_t sum_int32(__m128i v) {
  const __m128i pairs = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4e));
  return _mm_cvtsi128_si32(_mm_add_epi32(pairs, _mm_shuffle_epi32(pairs, 0xb1)));
}
#else
constexpr Index kInt8Chunk = 0;  // no SIMD of our own: the plain loops below
#endif

// acc[p][q] = Σ_k a_p[k] w_q[k] over K int8 pairs, exact in int32, for na ≤ kInt8ActRows rows
// a_p = a + p · K of the activations and nw ≤ kInt8Rows rows w_q = w + q · K of the weights at
// once: each chunk of each row widened once, na · nw sums kept in registers (8 on AVX-512, whose
// 32 registers hold them with room; 4 elsewhere).
constexpr Index kInt8Rows = 4;
#if defined(__AVX512BW__)
constexpr Index kInt8ActRows = 2;
#else
constexpr Index kInt8ActRows = 1;
#endif
#if defined(__SSE2__)
// The SIMD part of dot_int8_block for NA activation rows and kInt8Rows weight rows: the sums over
// the whole chunks of K; returns where they end.
template <Index NA>
Index dot_int8_chunks(std::int32_t (*acc)[kInt8Rows], const std::int8_t* a, const std::int8_t* w, Index K) {
  Int32Lanes sums[NA][kInt8Rows];
  for (Index p = 0; p < NA; ++p) {
    for (Index q = 0; q < kInt8Rows; ++q) sums[p][q] = zero_int32();
  }
  Index k = 0;
  for (; k + kInt8Chunk <= K; k += kInt8Chunk) {
    decltype(widen_int8(a)) a_k[NA];
    for (Index p = 0; p < NA; ++p) a_k[p] = widen_int8(a + p * K + k);
    for (Index q = 0; q < kInt8Rows; ++q) {
      const auto w_k = widen_int8(w + q * K + k);
      for (Index p = 0; p < NA; ++p) sums[p][q] = add_int32(sums[p][q], madd_int16(a_k[p], w_k));
    }
  }
  for (Index p = 0; p < NA; ++p) {
    for (Index q = 0; q < kInt8Rows; ++q) acc[p][q] = sum_int32(sums[p][q]);
  }
  return k;
}
#endif

inline void dot_int8_block(std::int32_t (*acc)[kInt8Rows], const std::int8_t* a, Index na, const std::int8_t* w,
                           Index nw, Index K) {
  Index k = 0;
  for (Index p = 0; p < na; ++p) {
    for (Index q = 0; q < nw; ++q) acc[p][q] = 0;
  }
#if defined(__SSE2__)
  if (nw == kInt8Rows) k = na == kInt8ActRows ? dot_int8_chunks<kInt8ActRows>(acc, a, w, K) : dot_int8_chunks<1>(acc, a, w, K);
#endif
  for (Index p = 0; p < na; ++p) {  // what the chunks left (all of it for fewer weight rows)
    for (Index q = 0; q < nw; ++q) {
      std::int32_t sum = acc[p][q];
      for (Index j = k; j < K; ++j) sum += std::int32_t(a[p * K + j]) * std::int32_t(w[q * K + j]);
      acc[p][q] = sum;
    }
  }
}

// out[r, j] = float(acc[r, j]) · (s_a[r] · s_w[j]) (+ add1[j]) (+ add2[j]), each addition a float32
// rounding of its own, in this order; add1, add2 may be nullptr. Weight rows go kInt8Rows at a
// time, each block over every activation row, kInt8ActRows at a time (the block stays in the L1
// cache). Blocks of fewer rows at the ends: the same sums, exact.
//   out (R, ld_out)   q_a (R, K), s_a (R)   w (N, K) quantized by rows
inline void int8_product(float* out, Index ld_out, const std::int8_t* q_a, const float* s_a, Index R,
                         const Int8Matrix& w, Index N, Index K, const float* add1 = nullptr,
                         const float* add2 = nullptr) {
  std::int32_t acc[kInt8ActRows][kInt8Rows];
  for (Index j0 = 0; j0 < N; j0 += kInt8Rows) {
    const Index nw = std::min(kInt8Rows, N - j0);
    for (Index r0 = 0; r0 < R; r0 += kInt8ActRows) {
      const Index na = std::min(kInt8ActRows, R - r0);
      dot_int8_block(acc, q_a + r0 * K, na, w.q + j0 * K, nw, K);
      for (Index p = 0; p < na; ++p) {
        const Index r = r0 + p;
        float* out_r = out + r * ld_out + j0;
        for (Index q = 0; q < nw; ++q) {
          const Index j = j0 + q;
          float value = static_cast<float>(acc[p][q]) * (s_a[r] * w.scale[j]);
          if (add1 != nullptr) value = value + add1[j];
          if (add2 != nullptr) value = value + add2[j];
          out_r[q] = value;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// What the cells' int8 forwards share (lstm.cpp, gru.cpp, rnn.cpp).

constexpr Index kInt8InputRowsPerTask = 16;

// The input part of every step: x's T·B rows quantized (q_x (TB, I), s_x (TB)) and
// gx (TB, G) = float(acc) · (s_x · s_ih) (+ add1) (+ add2), as tasks of rows shared by the team
// (which must meet before reading gx).
inline void int8_input_projection(Team& team, float* gx, std::int8_t* q_x, float* s_x, const float* x, Index TB,
                                  Index I, const Int8Matrix& w_ih, Index G, const float* add1, const float* add2) {
  team.tasks((TB + kInt8InputRowsPerTask - 1) / kInt8InputRowsPerTask, [&](Index task) {
    const Index r0 = task * kInt8InputRowsPerTask, rows = std::min(kInt8InputRowsPerTask, TB - r0);
    for (Index r = r0; r < r0 + rows; ++r) s_x[r] = quantize_row(q_x + r * I, x + r * I, I);
    int8_product(gx + r0 * G, G, q_x + r0 * I, s_x + r0, rows, w_ih, G, I, add1, add2);
  });
}

// A step's recurrent products for a member's units [u0, u0 + nu) of each of the `gates` blocks:
// its nb rows of h (nb, K) quantized whole into q_h (nb, K), s_h (nb) (each member quantizes the
// rows itself: the same bits in each), and rec[b, q · H + u0 + j] = float(acc) · (s_h · s_hh) for
// gate row q · H + u0 + j of W_hh (gates · H, K).
//   rec (nb, gates · H) out (the member's columns)
inline void int8_recurrent_products(float* rec, std::int8_t* q_h, float* s_h, const float* h, Index nb, Index K,
                                    const Int8Matrix& w_hh, Index gates, Index H, Index u0, Index nu) {
  for (Index b = 0; b < nb; ++b) s_h[b] = quantize_row(q_h + b * K, h + b * K, K);
  for (Index q = 0; q < gates; ++q) {
    const Int8Matrix block{w_hh.q + (q * H + u0) * K, w_hh.scale + q * H + u0};
    int8_product(rec + q * H + u0, gates * H, q_h, s_h, nb, block, nu, K);
  }
}

// The int8 forward of a cell whose state is h alone (GRU, RNN), over the same walk as the float
// forwards: the team shares the units and meets after each step's h_t, or for a large batch shares
// the sequences (split_by_rows). pointwise(gx_t, rec, h_prev, h_next, seq_rows, t, nb, u0, nu)
// computes its units of h_t for the active rows from gx_t (nb, G), rec (nb, G) (gate q of unit
// u0 + j at column q · H + u0 + j) and h_{t-1}.
//   y (T, B, ld_y) out   h_n (B, H) out   x (T, B, I)   h0 (B, H) or nullptr
//   w_ih (G, I), w_hh (G, H) with G = gates · H; gx = qmm(x, W_ih) (+ add1) (+ add2)
template <typename Pointwise>
void int8_forward_h_only(float* y, float* h_n, const float* x, const float* h0, const Int8Matrix& w_ih,
                         const Int8Matrix& w_hh, const float* add1, const float* add2, Index gates, Index T, Index B,
                         Index I, Index H, Index ld_y, const SequenceOptions& seq, Pointwise&& pointwise) {
  const Index G = gates * H, TB = T * B;
  constexpr Index granule = kUnitGranule<float>;
  TeamLease lease(members_for(2.0 * B * G * H, H, granule), 2.0 * T * B * G * (I + H));
  const int members = lease.size();
  const bool by_rows = split_by_rows(B, members);

  Buffer<float> gx(TB * G);                  // (T, B, G) the input part of every step
  Buffer<std::int8_t> q_x(TB * I);           // (T, B, I) x quantized by rows
  Buffer<float> s_x(TB);                     // (T, B) their scales
  Buffer<float> h_steps(2 * B * H);          // (2, B, H) h_{t-1} and h_t, by parity of the step
  Buffer<std::int8_t> q_h(members * B * H);  // per member (B, H): h_{t-1} quantized
  Buffer<float> s_h(members * B);            // per member (B): their scales
  Buffer<float> rec(B * G);                  // (B, G) a step's recurrent products

  lease.run([&](Team& team) {
    int8_input_projection(team, gx.data(), q_x.data(), s_x.data(), x, TB, I, w_ih, G, add1, add2);
    const Team::Range rows = by_rows ? team.part(B) : Team::Range{0, B};
    const Team::Range units = by_rows ? Team::Range{0, H} : team.part(H, granule);
    const Index b0 = rows.begin, nb = rows.size(), u0 = units.begin, nu = units.size();
    const SequenceOptions seq_rows = seq.rows_from(b0);
    const Columns unit_cols{H, u0, nu}, y_cols{ld_y, u0, nu};
    std::int8_t* q_mine = q_h.data() + team.rank() * B * H;
    float* s_mine = s_h.data() + team.rank() * B;
    float* rec_rows = rec.data() + b0 * G;
    copy_or_zero(h_steps.data() + b0 * H, h0 ? h0 + b0 * H : nullptr, unit_cols, nb);
    team.barrier();  // every row of gx, the initial state

    for (Index s = 0; s < T; ++s) {
      const Index t = seq.time_at(s, T);
      const float* h_prev = h_steps.data() + (s % 2) * B * H + b0 * H;  // (nb, H) h_{t-1}
      float* h_next = h_steps.data() + ((s + 1) % 2) * B * H + b0 * H;  // (nb, H) h_t
      int8_recurrent_products(rec_rows, q_mine, s_mine, h_prev, nb, H, w_hh, gates, H, u0, nu);
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
