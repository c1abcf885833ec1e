// lstm_ext core: what the kernels and their callers share, at every kernel level.
//
// Pure C++17; no Python headers, no Eigen: this header is compiled for the baseline (the
// bindings, the dispatch) and for every kernel level alike (kernels.hpp).
//
// Dimension legend (the same letters in every file of the core):
//   T  time steps              B  batch size
//   I  input features          H  hidden units
//   P  projected hidden size (LSTM with projection; otherwise the output size is H)
//   G  gate rows (4H for the LSTM, 3H for the GRU, H for the vanilla RNN)
//
// Conventions: buffers are row-major (C order) and time-major: a sequence is (T, B, I), so the
// rows of step t start at t*B. Nothing here owns a caller's memory.
//
// Every cell runs one layer in one direction over a batch of sequences, with two options
// (SequenceOptions): `reverse` walks the time steps from T-1 down to 0, and `lengths` gives each
// sequence's valid length. A sequence b is active at time t when t < lengths[b]; at inactive
// steps its state is carried unchanged, its output row is zero and its gradients pass through.
// This is PyTorch's packed-sequence meaning: the final state is the state after the last valid
// step, and the reverse direction starts at each sequence's own last valid step.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lstm_ext {

using Index = std::ptrdiff_t;  // (Eigen::Index)

// Direction and valid lengths of a sequence batch.
struct SequenceOptions {
  bool reverse = false;                    // walk t = T-1, ..., 0
  const std::int64_t* lengths = nullptr;   // (B) valid lengths in [1, T]; nullptr = all T

  // The time step processed at position s (0 <= s < T) of the forward walk.
  Index time_at(Index s, Index T) const { return reverse ? T - 1 - s : s; }
  // Whether sequence b is inside its valid length at time t.
  bool active(Index b, Index t) const { return lengths == nullptr || t < lengths[b]; }
  // The same options for the sequences b0, b0 + 1, ... of the batch, numbered from 0.
  SequenceOptions rows_from(Index b0) const { return {reverse, lengths == nullptr ? nullptr : lengths + b0}; }
};

// The sizes of one layer's call, in one direction, for a cell whose state is h alone and whose
// gates are `Gates` blocks of H rows: the GRU (3 gates) and the vanilla RNN (1). The LSTM, with
// its cell state and projection, has LstmDims (lstm.hpp).
template <int Gates>
struct CellDims {
  Index T;  // time steps
  Index B;  // batch size
  Index I;  // input features
  Index H;  // hidden units
  Index y_stride = 0;  // elements from one row of y (and dy) to the next: 0 = H (see ld_y)
  bool layer_norm = false;  // GRU with layer normalization: the workspace keeps its normalized values
  // Row stride of y and dy: H, or D * H when the D directions of a layer share the (T, B, D * H)
  // output (each at its own column offset).
  Index ld_y() const { return y_stride > 0 ? y_stride : H; }
  Index G() const { return Gates * H; }  // gate rows of the weights

  // Elements of what a call of one direction returns (Count = double: a size that cannot
  // overflow, for the memory check before anything is allocated):
  //   forward   y (T, B, H), h_n (B, H)
  //   backward  dx (T, B, I), dh0 (B, H), dw_ih (G, I), dw_hh (G, H), db_ih, db_hh (G)
  template <typename Count = Index>
  Count output_elements() const {
    return Count(T) * B * H + Count(B) * H;
  }
  template <typename Count = Index>
  Count gradient_elements() const {
    return Count(T) * B * I + Count(B) * H + Count(G()) * (I + H + 2);
  }
  // Bytes of the recurrent weights W_hh, which every step reads.
  template <typename Scalar>
  double recurrent_weight_bytes() const {
    return double(G()) * H * sizeof(Scalar);
  }
};

// Elements of `columns` columns over `rows` rows packed in panels of `lanes` columns (panel.hpp):
// the packed blocks of the workspaces. `lanes` is the kernel level's SIMD width in values
// (Kernels::lanes), so a workspace's size and layout belong to the level that made it.
template <typename Count = Index>
Count packed_elements(Index columns, Index rows, Index lanes) {
  return Count((columns + lanes - 1) / lanes) * lanes * Count(rows);
}

// A weight matrix quantized to int8 by rows, symmetric, for inference in int8 (int8.hpp):
// W (N, K) ≈ q · diag(scale), q in [−127, 127], N = blocks · rows (a block: one gate's rows).
// q is packed once (lstm_ext.quantized.pack_int8, in NumPy) in the layout the kernels read at every
// level: each block in panels of kInt8PanelRows rows, a panel in groups of kInt8Group inputs,
//   panels (blocks, ⌈rows/16⌉, ⌈K/4⌉, 16, 4): panels[b, p, g, j, i] = q[b · rows + 16p + j, 4g + i]
// with zeros past the ends (rows and inputs), so that a vector of 16 int32 sums reads 64
// contiguous bytes per group. sum[j] = Σ_k q[j, k] (for the kernels that add 128 to the
// activations to make them unsigned, VNNI's vpdpbusd).
constexpr Index kInt8PanelRows = 16, kInt8Group = 4;
struct Int8Matrix {
  const std::int8_t* panels = nullptr;  // (blocks, ⌈rows/16⌉, ⌈K/4⌉, 16, 4)
  const float* scale = nullptr;         // (blocks · rows)
  const std::int32_t* sum = nullptr;    // (blocks · rows)
  Index rows = 0;                       // per block
  Index K = 0;
  Index groups() const { return (K + kInt8Group - 1) / kInt8Group; }
  Index padded_K() const { return groups() * kInt8Group; }
  Index panels_per_block() const { return (rows + kInt8PanelRows - 1) / kInt8PanelRows; }
  // The first byte of panel p of block b.
  const std::int8_t* panel(Index b, Index p) const {
    return panels + ((b * panels_per_block() + p) * groups()) * (kInt8PanelRows * kInt8Group);
  }
};

// The int8 products' limits: the inner size K for which every sum is exact in an int32 (with the
// activations made unsigned, Σ_k (q_a + 128) q_w reaches K · 255 · 127), and the largest value
// of a row that still counts as zero (2^−100: below it 127 / max could overflow).
constexpr Index kInt8MaxInner = 66311;  // ⌊(2^31 − 1) / (255 · 127)⌋
constexpr float kInt8TinyRow = 7.88860905e-31f;  // 2^−100

}  // namespace lstm_ext
