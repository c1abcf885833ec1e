// lstm_ext core: the recurrent product, out (B, N) = in (B, K) · Mᵀ, for a weight matrix M that
// multiplies a new small batch at every time step.
//
// Pure C++17 + Eigen; no Python headers. Kernel code, compiled once per kernel level (common.hpp).
//
// Dimensions: B rows of `in` (the batch), K the shared dimension, N the rows of M (outputs).
//
// M is packed once per call, in panels of kPacket rows (one SIMD packet), each panel k-major:
//
//   packed[(p * K + k) * kPacket + l] = M[p * kPacket + l][k]        (rows past N are zero)
//
// so that a product reads the weights as contiguous streams. The kernel multiplies a tile of
// NP panels by NB batch rows: per k it loads NP packets of weights, broadcasts NB inputs and
// does NP * NB fused multiply-adds into registers. Every output element is one chain of
// multiply-adds over k = 0, 1, ..., K-1 starting from zero, whatever tile it falls in, so the
// result depends neither on which thread computes which panels nor on a sequence's place in the
// batch: results are bitwise the same for any number of threads.
#pragma once

#include "rnn/common.hpp"

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {

// Panels needed for `rows` rows.
template <typename Scalar>
constexpr Index panel_count(Index rows) {
  return (rows + kPacket<Scalar> - 1) / kPacket<Scalar>;
}

// Elements of a packed matrix of `rows` rows and K columns.
template <typename Scalar>
constexpr Index packed_size(Index rows, Index K) {
  return panel_count<Scalar>(rows) * K * kPacket<Scalar>;
}

// dst (cols, rows) = src (rows, cols)ᵀ: src row-major with row stride ld_src, dst with ld_dst. Whole
// kPacket x kPacket blocks go through registers (Eigen's ptranspose), the edges one by one.
template <typename Scalar>
void transpose(Scalar* dst, Index ld_dst, const Scalar* src, Index ld_src, Index rows, Index cols) {
  using P = Packet<Scalar>;
  constexpr Index L = kPacket<Scalar>;
  Index r = 0;
  for (; r + L <= rows; r += L) {
    Index c = 0;
    for (; c + L <= cols; c += L) {
      Eigen::internal::PacketBlock<P, L> block;
      for (Index i = 0; i < L; ++i) block.packet[i] = Eigen::internal::ploadu<P>(src + (r + i) * ld_src + c);
      Eigen::internal::ptranspose(block);
      for (Index i = 0; i < L; ++i) Eigen::internal::pstoreu(dst + (c + i) * ld_dst + r, block.packet[i]);
    }
    for (; c < cols; ++c) {
      for (Index i = 0; i < L; ++i) dst[c * ld_dst + r + i] = src[(r + i) * ld_src + c];
    }
  }
  for (; r < rows; ++r) {
    for (Index c = 0; c < cols; ++c) dst[c * ld_dst + r] = src[r * ld_src + c];
  }
}

// Packs M = `rows` consecutive rows of a row-major matrix m (row stride ld), K columns each:
// M[r][k] = m[r * ld + k]. Each panel is the transpose of kPacket rows.
template <typename Scalar>
void pack_rows(Scalar* packed, const Scalar* m, Index ld, Index rows, Index K) {
  constexpr Index L = kPacket<Scalar>;
  for (Index p = 0; p < panel_count<Scalar>(rows); ++p) {
    const Index lanes = std::min(L, rows - p * L);
    Scalar* panel = packed + p * K * L;  // (K, L)
    transpose(panel, L, m + p * L * ld, ld, lanes, K);
    for (Index k = 0; lanes < L && k < K; ++k) std::fill(panel + k * L + lanes, panel + (k + 1) * L, Scalar(0));
  }
}

// Packs M = the transpose of the columns `cols` of a row-major matrix m of K rows:
// M[r][k] = m[k * cols.ld + cols.col0 + r].
template <typename Scalar>
void pack_columns(Scalar* packed, const Scalar* m, Columns cols, Index K) {
  constexpr Index L = kPacket<Scalar>;
  for (Index p = 0; p < panel_count<Scalar>(cols.width); ++p) {
    const Index lanes = std::min(L, cols.width - p * L);
    Scalar* panel = packed + p * K * L;
    for (Index k = 0; k < K; ++k) {
      const Scalar* from = cols.in_row(m, k) + p * L;
      std::copy_n(from, lanes, panel + k * L);
      std::fill(panel + k * L + lanes, panel + (k + 1) * L, Scalar(0));
    }
  }
}

// bfloat16 weights (inference, lstm_ext.quantize_dynamic(..., "bfloat16")): a bf16 value is the upper
// 16 bits of a float32, so widening one is a shift, exact. pack_rows_bf16 packs bf16 rows in the
// panels' layout (as pack_rows: packed[(p * K + k) * kPacket<float> + l] = M[p * kPacket + l][k]),
// and the product kernel widens each packet of weights as it loads it: the multiply-adds are
// those of the float32 weights the bf16 values stand for, bit for bit.
inline void pack_rows_bf16(std::uint16_t* packed, const std::uint16_t* m, Index ld, Index rows, Index K) {
  constexpr Index L = kPacket<float>;
  for (Index p = 0; p < panel_count<float>(rows); ++p) {
    const Index lanes = std::min(L, rows - p * L);
    std::uint16_t* panel = packed + p * K * L;  // (K, L)
    for (Index k = 0; k < K; ++k) {
      for (Index l = 0; l < L; ++l) panel[k * L + l] = l < lanes ? m[(p * L + l) * ld + k] : std::uint16_t(0);
    }
  }
}

// dst (n) = the float32 values of the bf16 bits src (n): exact.
inline void widen_bf16(float* dst, const std::uint16_t* src, Index n) {
  for (Index i = 0; i < n; ++i) {
    const std::uint32_t bits = std::uint32_t(src[i]) << 16;
    std::memcpy(dst + i, &bits, sizeof(float));
  }
}

// A packet of weights from a panel: float's as it is, bf16's widened to float.
template <typename Scalar, typename Weight>
inline Packet<Scalar> load_weight_packet(const Weight* w) {
  if constexpr (std::is_same_v<Weight, Scalar>) {
    return Eigen::internal::ploadu<Packet<Scalar>>(w);
  } else {
    static_assert(std::is_same_v<Scalar, float> && std::is_same_v<Weight, std::uint16_t>, "bf16 weights, float sums");
#if defined(__AVX512F__) && defined(EIGEN_VECTORIZE_AVX512)
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
#elif defined(__AVX2__) && defined(EIGEN_VECTORIZE_AVX)
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
#elif defined(EIGEN_VECTORIZE_SSE2) && !defined(EIGEN_VECTORIZE_AVX)
    const __m128i half = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w));
    return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), half));  // each value in a float's upper half
#else
    alignas(64) float values[kPacket<float>];
    for (Index l = 0; l < kPacket<float>; ++l) {
      const std::uint32_t bits = std::uint32_t(w[l]) << 16;
      std::memcpy(&values[l], &bits, sizeof(float));
    }
    return Eigen::internal::ploadu<Packet<float>>(values);
#endif
  }
}

// The input of a product: element (b, k) at data[b * row_stride + k * col_stride]. A row-major
// (B, ld) matrix is {data, ld, 1}; the transpose of a row-major (K, ld) matrix is {data, 1, ld}.
template <typename Scalar>
struct ProductInput {
  const Scalar* data;
  Index row_stride, col_stride;
};

// Stores the columns `cols` of B rows of a row-major buffer as the rows [row0, row0 + B) of a
// packed matrix of `rows` rows (its panels cover the columns): the transpose of pack_columns,
// filled a step at a time. cols.col0 is a multiple of kPacket; the lanes of a partial last panel
// are set to zero.
template <typename Scalar>
void store_packed_rows(Scalar* packed, Index rows, Index row0, const Scalar* from, Columns cols, Index B) {
  constexpr Index L = kPacket<Scalar>;
  const Index col_end = cols.col0 + cols.width;
  for (Index c = cols.col0; c < col_end; c += L) {
    const Index lanes = std::min(L, col_end - c);
    Scalar* panel = packed + (c / L) * rows * L;
    for (Index b = 0; b < B; ++b) {
      Scalar* to = panel + (row0 + b) * L;
      std::copy_n(from + b * cols.ld + c, lanes, to);
      std::fill(to + lanes, to + L, Scalar(0));
    }
  }
}

// The packet of columns [c, c + kPacket) of row r of a packed matrix of `rows` rows (c a multiple
// of kPacket): contiguous in memory.
template <typename Scalar>
inline const Scalar* packed_row_packet(const Scalar* packed, Index rows, Index r, Index c) {
  return packed + ((c / kPacket<Scalar>) * rows + r) * kPacket<Scalar>;
}

namespace panel_detail {

// Register tiles: a tile of NB batch rows and NP panels keeps NP * NB accumulators, NP weight
// packets and one broadcast input in vector registers. SSE and AVX2 have 16 of them, which allows
// 12 accumulators (tiles of up to 6 rows), AVX-512 32, which allows 24 (up to 12 rows).
constexpr int kVectorRegisters = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS;
constexpr int kMaxTileRows = kVectorRegisters >= 32 ? 12 : 6;

// The tile shape for nb batch rows (1..kMaxTileRows): how many panels it takes at a time.
// Measured on one core with the weights in L1 or L2, K = 256 (tiles that the compiler cannot
// keep whole in registers fold the weight loads into the multiply-adds and load each packet once
// per row: those are bound by loads):
//   AVX2 (16 registers): 2 x 6 and 2 x 5 about 92-106 GFLOP/s, 3 x 4 and 4 x 3 about 70, 6 x 2
//     about 79, 4 x 1 about 48 (one load per multiply-add);
//   AVX-512 (32 registers, Sapphire Rapids): 2 x 12 153 GFLOP/s (2 x 6: 131), 3 x 8 148,
//     4 x 6 141, 4 x 5 122, 4 x 4 113, 6 x 3 67, 6 x 2 56, 4 x 1 39: the smaller tiles already
//     wait for the weights from L2.
// In the recurrent products at small batch the weights stream from L2 or L3, which bounds them
// before the tile shape does.
constexpr int panels_for_rows(int nb) {
  if (kVectorRegisters >= 32) return nb >= 9 ? 2 : nb >= 7 ? 3 : nb >= 4 ? 4 : nb >= 2 ? 6 : 4;
  return nb >= 5 ? 2 : nb == 4 ? 3 : nb == 3 ? 4 : nb == 2 ? 6 : 4;
}

// out (NB, NP * kPacket) = in (NB, K) · (NP panels)ᵀ over k in [k0, k1): from zero when k0 = 0,
// else continuing the sums already in `out` (the same chains of multiply-adds as one pass).
//   out: row stride ld_out, only its first `cols` columns are read and written
//   panels: NP panels, `panel_stride` apart
// One function with nothing else in it, not inlined, so that the compiler keeps the NP * NB
// sums in registers from the first multiply-add to the store (passing them between functions
// went through memory: measured 10 % of an inference at K = 64).
template <typename Scalar, int NP, int NB, typename Weight = Scalar>
EIGEN_DONT_INLINE void tile(Scalar* out, Index ld_out, Index cols, const Scalar* in, Index in_row_stride,
                            Index in_col_stride, const Weight* panels, Index panel_stride, Index k0, Index k1) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  constexpr Index L = kPacket<Scalar>;
  const bool whole = cols >= NP * L;  // every panel's columns are real (all but a ragged last tile)
  P sums[NP][NB];
  for (int p = 0; p < NP; ++p) {
    for (int b = 0; b < NB; ++b) {
      const Scalar* o = out + b * ld_out + p * L;
      sums[p][b] = k0 == 0 ? pset1<P>(Scalar(0)) : whole ? ploadu<P>(o) : load_packet(o, std::min(L, cols - p * L));
    }
  }
  const Scalar* x = in + k0 * in_col_stride;
  for (Index k = k0; k < k1; ++k, x += in_col_stride) {
    P w[NP];
    for (int p = 0; p < NP; ++p) w[p] = load_weight_packet<Scalar>(panels + p * panel_stride + k * L);
    for (int b = 0; b < NB; ++b) {
      const P x_b = pset1<P>(x[b * in_row_stride]);
      for (int p = 0; p < NP; ++p) sums[p][b] = pmadd(w[p], x_b, sums[p][b]);
    }
  }
  for (int b = 0; b < NB; ++b) {
    for (int p = 0; p < NP; ++p) {
      Scalar* o = out + b * ld_out + p * L;
      if (whole) {
        pstoreu(o, sums[p][b]);
      } else {
        store_packet(o, sums[p][b], std::min(L, cols - p * L));
      }
    }
  }
}

// Panels in a group that every batch tile passes while those weights are in cache: a multiple
// of every panels_for_rows().
constexpr Index kPanelGroup = 12;
constexpr bool tiles_fit_groups() {
  for (int nb = 1; nb <= kMaxTileRows; ++nb) {
    if (kPanelGroup % panels_for_rows(nb) != 0) return false;
  }
  return true;
}
static_assert(tiles_fit_groups(), "every tile shape divides the panel group");

// One tile of NB rows (1..kMaxTileRows) and np <= NP panels.
template <typename Scalar, typename Weight, int NB, int NP = panels_for_rows(NB)>
inline void tile_rows(int np, Scalar* out, Index ld_out, Index cols, ProductInput<Scalar> in, const Weight* panels,
                      Index panel_stride, Index k0, Index k1) {
  if constexpr (NP > 1) {
    if (np < NP) return tile_rows<Scalar, Weight, NB, NP - 1>(np, out, ld_out, cols, in, panels, panel_stride, k0, k1);
  }
  tile<Scalar, NP, NB, Weight>(out, ld_out, cols, in.data, in.row_stride, in.col_stride, panels, panel_stride, k0, k1);
}
// The tile of nb rows (1 <= nb <= kMaxTileRows): the shape chosen at compile time for each height.
template <typename Scalar, typename Weight, int NB = kMaxTileRows>
inline void tile_of(int np, int nb, Scalar* out, Index ld_out, Index cols, ProductInput<Scalar> in,
                    const Weight* panels, Index panel_stride, Index k0, Index k1) {
  if constexpr (NB > 1) {
    if (nb < NB) return tile_of<Scalar, Weight, NB - 1>(np, nb, out, ld_out, cols, in, panels, panel_stride, k0, k1);
  }
  tile_rows<Scalar, Weight, NB>(np, out, ld_out, cols, in, panels, panel_stride, k0, k1);
}

}  // namespace panel_detail

// out (B, cols) = in (B, K) · Mᵀ, M packed in `panels` panels of K columns (pack_rows /
// pack_columns; cols <= panels * kPacket rows of M are real), written, not accumulated; out has
// row stride ld_out.
//
// The batch rows go in ceil(B / kMaxTileRows) tiles of as even a height as possible, each with
// the tile shape that suits its height. K goes in blocks of kDepthBlock and
// the panels in groups of kPanelGroup: every batch tile passes over a group's block of weights
// while it is in cache. Neither the blocking nor the tiling changes a single bit of the result.
// The depth block is long: each block beyond the first reloads and stores the output tile, and
// the hardware prefetcher streams a group's weights from L2 or L3 well enough. Measured against
// blocks of 256 on the products of the benchmark's sizes (one core, median of 15 interleaved
// rounds): 3-9 % faster at K = 400-512 and 8-18 % at K = 1024-2048.
// (Weight: the packed weights' type, Scalar's, or bf16 for Scalar = float: pack_rows_bf16.)
template <typename Scalar, typename Weight = Scalar>
void panel_product(Scalar* out, Index ld_out, Index cols, ProductInput<Scalar> in, const Weight* packed,
                   Index panels, Index K, Index B) {
  using panel_detail::kPanelGroup;
  constexpr Index L = kPacket<Scalar>, kDepthBlock = 2048;
  const Index panel_stride = K * L;
  const Index row_tiles = (B + panel_detail::kMaxTileRows - 1) / panel_detail::kMaxTileRows;
  for (Index k0 = 0; k0 < K; k0 += kDepthBlock) {
    const Index k1 = std::min(K, k0 + kDepthBlock);
    for (Index group = 0; group < panels; group += kPanelGroup) {
      const Index group_end = std::min(panels, group + kPanelGroup);
      for (Index tile_index = 0; tile_index < row_tiles; ++tile_index) {
        const Index b0 = B * tile_index / row_tiles, b1 = B * (tile_index + 1) / row_tiles;
        const int nb = static_cast<int>(b1 - b0);
        const int step = panel_detail::panels_for_rows(nb);
        const ProductInput<Scalar> rows{in.data + b0 * in.row_stride, in.row_stride, in.col_stride};
        for (Index p = group; p < group_end; p += step) {
          const int np = static_cast<int>(std::min<Index>(step, group_end - p));
          panel_detail::tile_of<Scalar, Weight>(np, nb, out + b0 * ld_out + p * L, ld_out, cols - p * L, rows,
                                                packed + p * panel_stride, panel_stride, k0, k1);
        }
      }
    }
  }
}

// A row-major (B, ld) matrix as the input of a product.
template <typename Scalar>
ProductInput<Scalar> rows_of(const Scalar* m, Index ld) {
  return {m, ld, 1};
}

// The recurrent weights a layer's steps multiply by: `blocks` gate blocks of `rows` rows by K
// columns, either float rows w (blocks · rows, K) of Scalar's type, packed into panels at every call,
// or (float32 inference, lstm_ext.quantize_dynamic(..., "bfloat16")) bf16 bits packed once by
// DenseKernels::pack_bf16, block after block: (blocks, panel_count(rows), K, L).
// With bf16 weights a step's product reads the bf16 panels themselves when it is bound by reading
// the weights (one row: one multiply-add per weight loaded); with more rows it is bound by the
// multiply-adds, and widening every weight packet at every step costs more than widening them all
// once into float32 panels (pack). Measured on a 2-CPU Zen 4 (AVX-512), LSTM, 2 threads, inference,
// medians, float32 against bf16 read: B = 1, T = 50, H = 256 / 512 / 1024: 0.56 / 2.61 / 12.6 ms
// against 0.54 / 2.31 / 9.3; B = 2: 0.88 / 4.13 / 15.4 against 1.15 / 5.11 / 17.2 (reading loses;
// only at H = 2048, T = 20, whose float32 weights exceed the L3, 61 against 40); B = 8, H = 512,
// widened once: 9.9 against float32's 9.96. Either way the same values: the same bits.
template <typename Scalar>
struct RecurrentWeights {
  static constexpr Index kBf16ReadMaxRows = 1;

  const Scalar* w = nullptr;             // (blocks · rows, K), or nullptr with bf16 weights
  const std::uint16_t* bf16 = nullptr;   // (blocks, panel_count(rows), K, L) bf16 bits, or nullptr
  Index rows = 0, K = 0;
  bool read_bf16 = false;                // the products read the bf16 panels (B <= kBf16ReadMaxRows)

  RecurrentWeights(const Scalar* w_rows, const std::uint16_t* packed_bf16, Index rows_, Index K_, Index B)
      : w(w_rows), bf16(packed_bf16), rows(rows_), K(K_), read_bf16(packed_bf16 != nullptr && B <= kBf16ReadMaxRows) {}

  // Whether a step's product needs float panels packed for it (pack).
  bool needs_packing() const { return !read_bf16; }

  // dst (panel_count(nu), K, L) = rows [u0, u0 + nu) of block q as float panels (pack_rows), or
  // the bf16 panels that hold them widened (u0 a multiple of L: whole panels).
  void pack(Scalar* dst, Index q, Index u0, Index nu) const {
    if constexpr (std::is_same_v<Scalar, float>) {
      if (bf16 != nullptr) {
        constexpr Index L = kPacket<float>;
        widen_bf16(dst, bf16 + (q * panel_count<float>(rows) + u0 / L) * K * L, panel_count<float>(nu) * K * L);
        return;
      }
    }
    pack_rows(dst, w + (q * rows + u0) * K, K, nu, K);
  }
};

// out (nb, ld) = in (nb, K) · Wᵀ, W = rows [u0, u0 + nu) of each of `blocks` gate blocks of the
// recurrent weights, block after block, panel_count(nu) · L columns each: from `packed`, those rows'
// float panels (RecurrentWeights::pack), or from the bf16 panels themselves (read_bf16).
template <typename Scalar>
void recurrent_product(Scalar* out, Index ld, ProductInput<Scalar> in, const RecurrentWeights<Scalar>& weights,
                       const Scalar* packed, Index blocks, Index u0, Index nu, Index nb) {
  constexpr Index L = kPacket<Scalar>;
  const Index panels = panel_count<Scalar>(nu), K = weights.K;
  if constexpr (std::is_same_v<Scalar, float>) {
    if (weights.read_bf16) {
      const Index block_size = panel_count<float>(weights.rows) * K * L;
      for (Index q = 0; q < blocks; ++q) {
        panel_product(out + q * panels * L, ld, panels * L, in, weights.bf16 + q * block_size + (u0 / L) * K * L,
                      panels, K, nb);
      }
      return;
    }
  }
  panel_product(out, ld, ld, in, packed, blocks * panels, K, nb);
}

// A large product out (B, N) = in (B, K) · Mᵀ shared out to a team by output columns: each task
// packs the rows of M for its columns (whole panels) into its member's scratch and multiplies.
// About four tasks per member, each a multiple of 6 panels where there are enough (whole tiles
// of 2 and of 3 panels: a lone panel makes a tile of a third of the accumulators).
template <typename Scalar>
struct ColumnTasks {
  Index N;                 // columns of the output (rows of M)
  Index panels_per_task;   // panels of one task (the last may have fewer)

  ColumnTasks(Index n, int members) : N(n) {
    const Index panels = panel_count<Scalar>(n), wanted = 4 * Index(members);
    const Index per = (panels + wanted - 1) / wanted;
    panels_per_task = std::max<Index>(1, std::min(panels, std::max<Index>(6, (per + 5) / 6 * 6)));
  }
  Index count() const { return (panel_count<Scalar>(N) + panels_per_task - 1) / panels_per_task; }
  Index first_column(Index task) const { return task * panels_per_task * kPacket<Scalar>; }
  Index columns(Index task) const { return std::min(panels_per_task * kPacket<Scalar>, N - first_column(task)); }
  Index panels(Index task) const { return panel_count<Scalar>(columns(task)); }
  // Scratch one member needs for the packed rows of M of one task.
  Index scratch_size(Index K) const { return panels_per_task * K * kPacket<Scalar>; }
};

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
