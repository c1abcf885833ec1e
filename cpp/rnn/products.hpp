// lstm_ext core: the large products every cell does outside its time loop, shared out to a team.
//
// Pure C++17 + Eigen; no Python headers. Kernel code, compiled once per kernel level (common.hpp).
//
// Dimensions: T time steps, B batch, TB = T * B rows, I input features, G gate rows (4H, 3H or
// H), H_out the size of h.
//
//   forward:   gates (TB, G) = X (TB, I) · W_ihᵀ + b_ih [+ b_hh]     input projection of all steps
//   backward:  dX (TB, I) = dG_x · W_ih
//              dW_ih (G, I) = dG_xᵀ · X          dW_hh (G, H_out) = dG_hᵀ · H_prev
//              db_ih = column sums of dG_x       db_hh = column sums of dG_h
// dG_x is the gradient of the input part of the pre-activations and dG_h of the recurrent part:
// the same array for the LSTM and the RNN, two for the GRU (its reset gate acts in between).
//
// Everything runs on the panel kernel (panel.hpp), shared out as tasks: the input projection and
// dX by blocks of output columns, each task packing the weights it needs into its member's
// scratch; the weight gradients by strips of rows (WeightGradient). Every element is one chain of
// multiply-adds whichever member computes it, so the results do not depend on the team size.
#pragma once

#include "rnn/common.hpp"
#include "rnn/panel.hpp"

#include <initializer_list>
#include <type_traits>
#include <vector>

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {

// What one member of a team keeps for a time loop: its slice of the recurrent weights packed for
// panel_product, the product's result for one step, and the same for the LSTM's projection; and
// room for the weights of one task of a large product. Allocated before the team starts.
template <typename Scalar>
struct MemberScratch {
  Buffer<Scalar> packed;        // its rows (forward) or columns (backward) of W_hh, packed
  Buffer<Scalar> product;       // (B, panels * kPacket) the recurrent product of one step
  Buffer<Scalar> packed_proj;   // projection: its rows or columns of W_hr, packed
  Buffer<Scalar> product_proj;  // projection: (B, panels * kPacket)
  Buffer<Scalar> packed_task;   // the weights of one task of a large product (ColumnTasks)
  Buffer<Scalar> strip;         // backward: a strip of a gradient, transposed (WeightGradient)
};

// Scratch for each of `members` members, each owning a part of `count` rows split by `granule`:
// per panel of its part, `packed_per_panel` elements of packed weights and `product_per_panel`
// of product; `task` elements for large products and `strip` for weight gradients.
template <typename Scalar>
std::vector<MemberScratch<Scalar>> member_scratch(int members, Index count, Index granule, Index packed_per_panel,
                                                  Index product_per_panel, Index task, Index strip = 0) {
  std::vector<MemberScratch<Scalar>> scratch(members);
  for (int k = 0; k < members; ++k) {
    const Index panels = panel_count<Scalar>(split_part(count, granule, members, k).size());
    scratch[k].packed.resize(panels * packed_per_panel);
    scratch[k].product.resize(panels * product_per_panel);
    scratch[k].packed_task.resize(task);
    scratch[k].strip.resize(strip);
  }
  return scratch;
}

// out (B, n) = in (B, K) · M (n, K)ᵀ for a row-major M used once, unpacked (one step of lstm_cell:
// packing M would cost as much as the product): each element is the dot product of a row of `in`
// and a row of M. It runs over a virtual width of V = 32 bytes (8 floats, 4 doubles) whatever the
// level: term k goes to lane k mod V, each lane is one chain of fused multiply-adds over its terms
// (the last V terms zero-padded), and the V lane sums are added in halving order (lane i += lane
// i + V/2, then + V/4, ... down to lane 0). AVX2 keeps an element's lanes in one packet, AVX-512 in
// its half packets (of 8 floats: the step of lstm_cell is bound by reading the weights, not by
// the width of the multiply-adds), SSE and NEON in two packets: the same operations on the same
// values, so every level with FMA gives the same bits, and so does any choice of which rows a
// member computes or which elements go together in a tile. Tiles of NJ rows of M by NB batch rows
// keep enough chains in flight to hide the multiply-adds' latency.
//   out (B, ld_out) written    in (B, ld_in)    m (n, K), row stride K
namespace dot_detail {
// The packet of the dot products: the level's, or its half where that is wider than V.
template <typename Scalar>
using DotPacket = std::conditional_t<(kPacket<Scalar> * sizeof(Scalar) > 32),
                                     typename Eigen::internal::packet_traits<Scalar>::half, Packet<Scalar>>;
template <typename Scalar>
constexpr Index kDotLanes = Eigen::internal::unpacket_traits<DotPacket<Scalar>>::size;
template <typename Scalar>
constexpr Index kLanes = 32 / static_cast<Index>(sizeof(Scalar));  // V
template <typename Scalar>
constexpr int kPackets = static_cast<int>(kLanes<Scalar> / kDotLanes<Scalar>);  // packets of one element's lanes
static_assert(kLanes<float> % kDotLanes<float> == 0 && kLanes<double> % kDotLanes<double> == 0,
              "a dot product's packet holds at most 32 bytes");

// Tile shapes: about 8 packets of sums at B = 1 (8 rows of M with one packet each), 12 at B > 1
// with 16 vector registers (4 rows by 3 batch rows), 16 with AVX-512's 32 (4 by 4); as many fewer
// rows of M as an element takes packets.
constexpr int kDotRows = panel_detail::kVectorRegisters >= 32 ? 4 : 3;  // batch rows of a tile (B > 1)
template <typename Scalar>
constexpr int kRowsOfM = std::max(1, 4 / kPackets<Scalar>);  // rows of M of a tile (B > 1)
template <typename Scalar>
constexpr int kRowsOfMAlone = std::max(1, 8 / kPackets<Scalar>);  // rows of M of a tile (B = 1)

// n <= the packet's size values from p; the lanes past n are zero.
template <typename P>
inline P load_lanes(const typename Eigen::internal::unpacket_traits<P>::type* p, Index n) {
  using Scalar = typename Eigen::internal::unpacket_traits<P>::type;
  constexpr Index L = Eigen::internal::unpacket_traits<P>::size;
  if (n == L) return Eigen::internal::ploadu<P>(p);
  alignas(64) Scalar lanes[L] = {};
  std::copy_n(p, n, lanes);
  return Eigen::internal::pload<P>(lanes);
}

// The sum of a packet's lanes in halving order (lane i += lane i + n/2, ..., down to lane 0): a
// packet of 8 values folds its upper half onto its lower half (Eigen's predux_half_dowto4: an add
// of the two halves); Eigen's predux of a packet of 4 floats adds (l0 + l2) + (l1 + l3) on SSE
// and NEON alike, and of 2 doubles l0 + l1; without SIMD (one value) there is nothing to add.
template <typename P>
inline typename Eigen::internal::unpacket_traits<P>::type sum_packet_lanes(const P& p) {
  constexpr int n = Eigen::internal::unpacket_traits<P>::size;
  static_assert(n == 1 || n == 2 || n == 4 || n == 8, "packets of 1, 2, 4 or 8 values");
  if constexpr (n == 8) {
    return sum_packet_lanes(Eigen::internal::predux_half_dowto4(p));
  } else {
    return Eigen::internal::predux(p);
  }
}

// Not inlined: alone in its function the compiler keeps the NJ * NB * S sums in registers (as the
// panel kernel's tile, panel.hpp).
template <typename Scalar, int NJ, int NB>
EIGEN_DONT_INLINE void dot_tile(Scalar* out, Index ld_out, const Scalar* in, Index ld_in, const Scalar* rows, Index K) {
  using P = DotPacket<Scalar>;
  using namespace Eigen::internal;
  constexpr Index L = kDotLanes<Scalar>, V = kLanes<Scalar>;
  constexpr int S = kPackets<Scalar>;
  P acc[NJ][NB][S];  // packet s of an element: its lanes [s L, (s + 1) L)
  for (int j = 0; j < NJ; ++j) {
    for (int b = 0; b < NB; ++b) {
      for (int s = 0; s < S; ++s) acc[j][b][s] = pset1<P>(Scalar(0));
    }
  }
  Index k = 0;
  for (; k + V <= K; k += V) {
    for (int s = 0; s < S; ++s) {
      P x[NB];
      for (int b = 0; b < NB; ++b) x[b] = ploadu<P>(in + b * ld_in + k + s * L);
      for (int j = 0; j < NJ; ++j) {
        const P w = ploadu<P>(rows + j * K + k + s * L);
        for (int b = 0; b < NB; ++b) acc[j][b][s] = pmadd(w, x[b], acc[j][b][s]);
      }
    }
  }
  if (k < K) {  // the last V terms, zero-padded: every lane takes its multiply-add
    for (int s = 0; s < S; ++s) {
      const Index first = k + s * L, n = std::max<Index>(0, std::min(L, K - first));
      P x[NB];
      for (int b = 0; b < NB; ++b) x[b] = load_lanes<P>(in + b * ld_in + first, n);
      for (int j = 0; j < NJ; ++j) {
        const P w = load_lanes<P>(rows + j * K + first, n);
        for (int b = 0; b < NB; ++b) acc[j][b][s] = pmadd(w, x[b], acc[j][b][s]);
      }
    }
  }
  // Each element's V lanes in halving order: first whole packets (lane i += lane i + V/2 is
  // packet s += packet s + S/2 while the half is at least a packet), then within the packet left.
  for (int width = S; width > 1; width /= 2) {
    for (int j = 0; j < NJ; ++j) {
      for (int b = 0; b < NB; ++b) {
        for (int s = 0; s < width / 2; ++s) acc[j][b][s] = padd(acc[j][b][s], acc[j][b][s + width / 2]);
      }
    }
  }
  for (int j = 0; j < NJ; ++j) {
    for (int b = 0; b < NB; ++b) out[b * ld_out + j] = sum_packet_lanes(acc[j][b][0]);
  }
}

// Tiles of NJ rows of M by nb = 1 .. NB batch rows.
template <typename Scalar, int NJ, int NB>
void dot_tile_rows(int nb, Scalar* out, Index ld_out, const Scalar* in, Index ld_in, const Scalar* rows, Index K) {
  if constexpr (NB > 1) {
    if (nb < NB) return dot_tile_rows<Scalar, NJ, NB - 1>(nb, out, ld_out, in, ld_in, rows, K);
  }
  dot_tile<Scalar, NJ, NB>(out, ld_out, in, ld_in, rows, K);
}

}  // namespace dot_detail

template <typename Scalar>
void dot_rows(Scalar* out, Index ld_out, const Scalar* in, Index ld_in, const Scalar* m, Index n, Index K, Index B) {
  using namespace dot_detail;
  constexpr Index kRowBlock = 16;  // rows of M that every batch tile passes while they are in L1
  for (Index j0 = 0; j0 < n; j0 += kRowBlock) {
    const Index j1 = std::min(n, j0 + kRowBlock);
    Index j = j0;
    if (B == 1) {
      constexpr int NJ = kRowsOfMAlone<Scalar>;
      for (; j + NJ <= j1; j += NJ) dot_tile<Scalar, NJ, 1>(out + j, ld_out, in, ld_in, m + j * K, K);
    } else {
      constexpr int NJ = kRowsOfM<Scalar>;
      for (Index b = 0; b < B; b += kDotRows) {
        const int nb = static_cast<int>(std::min<Index>(kDotRows, B - b));
        for (j = j0; j + NJ <= j1; j += NJ) {
          dot_tile_rows<Scalar, NJ, kDotRows>(nb, out + b * ld_out + j, ld_out, in + b * ld_in, ld_in, m + j * K, K);
        }
      }
    }
    for (; j < j1; ++j) {  // the block's last rows one by one
      for (Index b = 0; b < B; ++b) dot_tile<Scalar, 1, 1>(out + b * ld_out + j, ld_out, in + b * ld_in, ld_in, m + j * K, K);
    }
  }
}

// gates (TB, G) = X (TB, I) · W_ihᵀ + b_ih + b_hh (each bias may be nullptr), by column tasks.
// Each task goes down the rows in blocks of kRowBlock, adding the biases to a block while it is
// still in cache (a pass over the whole output afterwards would read and write it from memory
// twice more: measured 8 % of an inference at T = 50, B = 128, H = 256).
//   scratch: one member's buffer of tasks.scratch_size(I) elements
template <typename Scalar>
void input_projection(Team& team, const ColumnTasks<Scalar>& tasks, Scalar* scratch, Scalar* gates, const Scalar* x,
                      const Scalar* w_ih, const Scalar* b_ih, const Scalar* b_hh, Index TB, Index I, Index G) {
  constexpr Index kRowBlock = 8 * panel_detail::kMaxTileRows;  // whole tiles
  team.tasks(tasks.count(), [&](Index i) {
    const Index c0 = tasks.first_column(i), cols = tasks.columns(i);
    pack_rows(scratch, w_ih + c0 * I, I, cols, I);  // rows [c0, c0 + cols) of W_ih
    for (Index r0 = 0; r0 < TB; r0 += kRowBlock) {
      const Index rows = std::min(kRowBlock, TB - r0);
      panel_product(gates + r0 * G + c0, G, cols, rows_of(x + r0 * I, I), scratch, tasks.panels(i), I, rows);
      auto block = MatrixMap<Scalar>(gates + r0 * G, rows, G).middleCols(c0, cols);
      if (b_ih != nullptr) block.rowwise() += ConstRowVectorMap<Scalar>(b_ih + c0, cols);
      if (b_hh != nullptr) block.rowwise() += ConstRowVectorMap<Scalar>(b_hh + c0, cols);
    }
  });
}

// Packs the columns of A (TB, N) for a weight gradient (WeightGradient), in tasks of panel blocks:
// a training forward packs its input X this way into the workspace.
template <typename Scalar>
void pack_columns_in_tasks(Team& team, Scalar* packed, const Scalar* a, Index TB, Index N) {
  constexpr Index L = kPacket<Scalar>, kPanelsPerTask = 12;
  const Index panels = panel_count<Scalar>(N);
  team.tasks((panels + kPanelsPerTask - 1) / kPanelsPerTask, [&](Index i) {
    const Index c0 = i * kPanelsPerTask * L, cols = std::min(kPanelsPerTask * L, N - c0);
    pack_columns(packed + c0 * TB, a, Columns{N, c0, cols}, TB);  // panel c0 / L starts at c0 * TB
  });
}

// The gradient of a weight that multiplied the rows of A: dW (R, N) = Dᵀ (R, TB) · A (TB, N),
// D (TB, R) the gradients of its outputs, A given packed by columns (the forward stores it so).
// On the panel kernel, by strips of kStripRows rows of dW: each strip of Dᵀ is transposed into
// its member's scratch and multiplied by the packed A. One strip of D serves every weight that D
// multiplies.
template <typename Scalar>
struct WeightGradient {
  static constexpr Index kStripRows = 96;
  Scalar* dw;               // (R, N) out, written
  const Scalar* packed_a;   // packed_size(N, TB): A's columns packed
  Index N;

  // Scratch of one member for the strips of D: (kStripRows, TB).
  static Index strip_size(Index TB) { return kStripRows * TB; }
};

// dW = Dᵀ · A for each gradient (all of the same D (TB, R)), by strips of rows of dW.
//   strip: this member's scratch of WeightGradient::strip_size(TB)
template <typename Scalar>
void weight_gradients(Team& team, const Scalar* d, Index R, std::initializer_list<WeightGradient<Scalar>> gradients,
                      Index TB, Scalar* strip) {
  constexpr Index rows = WeightGradient<Scalar>::kStripRows;
  team.tasks((R + rows - 1) / rows, [&](Index i) {
    const Index r0 = i * rows, nr = std::min(rows, R - r0);
    transpose(strip, TB, d + r0, R, TB, nr);  // strip (nr, TB) = D[:, r0:r0 + nr]ᵀ
    for (const WeightGradient<Scalar>& g : gradients) {
      panel_product(g.dw + r0 * g.N, g.N, g.N, rows_of<Scalar>(strip, TB), g.packed_a, panel_count<Scalar>(g.N), TB,
                    nr);
    }
  });
}

// The gradients of the inputs and weights from those of the pre-activations, over all steps.
//   dx (TB, I), dw_ih (G, I), dw_hh (G, H_out) out; db_ih, db_hh (G) out or nullptr (skipped)
//   dg_x, dg_h (TB, G)   gradients of the input and the recurrent parts of the pre-activations
//   packed_x             packed_size(I, TB): the forward's input X, packed by columns
//   packed_h_prev        packed_size(H_out, TB): the hidden state entering each step, likewise
//   task_scratch         one member's buffer of dx_tasks.scratch_size(G) elements
//   strip_scratch        one member's buffer of WeightGradient::strip_size(TB)
template <typename Scalar>
void input_and_weight_gradients(Team& team, const ColumnTasks<Scalar>& dx_tasks, Scalar* task_scratch,
                                Scalar* strip_scratch, Scalar* dx, Scalar* dw_ih, Scalar* dw_hh, Scalar* db_ih,
                                Scalar* db_hh, const Scalar* dg_x, const Scalar* dg_h, const Scalar* packed_x,
                                const Scalar* packed_h_prev, const Scalar* w_ih, Index TB, Index I, Index G,
                                Index H_out) {
  // dX = dG_x · W_ih: M = W_ihᵀ, whose rows are the columns of W_ih.
  team.tasks(dx_tasks.count(), [&](Index i) {
    const Index c0 = dx_tasks.first_column(i), cols = dx_tasks.columns(i);
    pack_columns(task_scratch, w_ih, Columns{I, c0, cols}, G);
    panel_product(dx + c0, I, cols, rows_of(dg_x, G), task_scratch, dx_tasks.panels(i), G, TB);
  });
  // db_ih, db_hh = column sums of dG_x, dG_h.
  const OutputBlocks db_blocks{1, G};
  team.tasks(db_blocks.count(), [&](Index i) {
    const OutputBlocks::Block blk = db_blocks[i];
    if (db_ih != nullptr) column_sums(db_ih, dg_x, TB, Columns{G, blk.c0, blk.nc});
    if (db_hh != nullptr) column_sums(db_hh, dg_h, TB, Columns{G, blk.c0, blk.nc});
  });
  // dW_ih = dG_xᵀ · X and dW_hh = dG_hᵀ · H_prev (one strip of dG for both when it is the same).
  const WeightGradient<Scalar> grad_ih{dw_ih, packed_x, I}, grad_hh{dw_hh, packed_h_prev, H_out};
  if (dg_x == dg_h) {
    weight_gradients(team, dg_x, G, {grad_ih, grad_hh}, TB, strip_scratch);
  } else {
    weight_gradients(team, dg_x, G, {grad_ih}, TB, strip_scratch);
    weight_gradients(team, dg_h, G, {grad_hh}, TB, strip_scratch);
  }
}

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
