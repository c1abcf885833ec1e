// lstm_ext core: what the layers around the recurrent ones compute, in the core so that a training
// run gives the same bits on every CPU with FMA (NumPy's matrix products go to a BLAS whose
// kernel depends on the CPU, and its exp, log and tanh take SIMD paths per CPU).
//
// Dimensions: N rows (every position of a batch, flattened), I input features, O outputs.
//
//   linear forward:   y (N, O) = x (N, I) · Wᵀ + b                   (W (O, I), b (O))
//   linear backward:  dx (N, I) = dy · W,   dW (O, I) = dyᵀ · x,   db (O) = Σ_rows dy
//   elementwise:      y = e^x, ln x, tanh x or σ(x) = 1 / (1 + e^(−x))
//
// Each element of a product is one chain of fused multiply-adds over the summed index in order,
// each sum of rows is taken row by row, and the functions are the gates' (common.hpp), so the
// results are the same bits at every kernel level with FMA and for any number of threads.
// Argument order: outputs first, then inputs, then weights, then sizes.
#pragma once

#include "rnn/types.hpp"

namespace lstm_ext {

enum class Elementwise { Exp, Log, Tanh, Sigmoid };

// Elements a linear call allocates for itself at most (the packed weights and inputs of a team of
// up to `members` threads), on top of its outputs.
template <typename Count = Index>
Count linear_scratch_size(Index N, Index I, Index O, int members, Index lanes) {
  const Count padding = Count(members) * lanes * 6;
  return (Count(O) + padding) * I + (Count(I) + padding) * O + (Count(I) + lanes) * N + Count(96) * members * N;
}

// The dense kernels of one kernel level: dense.cpp defines them once per level (kernels.hpp).
template <typename Scalar>
struct DenseKernels {
  //   y (N, O) out (written)    x (N, I)    w (O, I)    b (O) or nullptr
  void (*linear_forward)(Scalar* y, const Scalar* x, const Scalar* w, const Scalar* b, Index N, Index I, Index O);
  //   dx (N, I), dw (O, I), db (O) out (written; db nullptr: not computed)    dy (N, O)    x (N, I)    w (O, I)
  void (*linear_backward)(Scalar* dx, Scalar* dw, Scalar* db, const Scalar* dy, const Scalar* x, const Scalar* w,
                          Index N, Index I, Index O);
  //   y (n) out    x (n): y[k] = f(x[k])
  void (*elementwise)(Scalar* y, const Scalar* x, Index n, Elementwise f);
  // bfloat16 weights (float32 only; nullptr in the float64 table), packed once for the recurrent
  // products (panel.hpp's pack_rows_bf16), block by block: the `blocks` blocks of `rows` rows of
  // m (blocks · rows, K), each in panel_count(rows) panels of K · lanes values, one after the other.
  //   packed (blocks · panel_count(rows) · K · lanes) out    m (blocks · rows, K) bf16 bits
  void (*pack_bf16)(std::uint16_t* packed, const std::uint16_t* m, Index blocks, Index rows, Index K);
};

}  // namespace lstm_ext
