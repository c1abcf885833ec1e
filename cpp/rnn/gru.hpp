// lstm_ext core: one GRU layer in one direction, forward and backpropagation through time.
//
// Dimensions: T time steps, B batch, I input features, H hidden units, G = 3H gate rows.
// Gate order and formulation are PyTorch's: r, z, n (rows [0,H), [H,2H), [2H,3H)), with the
// reset gate applied to the recurrent product after it is taken ("linear before reset"):
//
//   r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
//   z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
//   n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
//   h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}
//
// With layer normalization (Ba, Kiros, Hinton; layer_norm.hpp) of the input and the recurrent
// parts of the pre-activations, each over all 3H, the biases added after it:
//   gx = LN_ih(W_ih x_t) + b_ih,   gh = LN_hh(W_hh h_{t-1}) + b_hh,   then r, z, n from gx and gh
//   as above (n = tanh(gx_n + r ⊙ gh_n)).
//
// SequenceOptions (types.hpp) give the direction and the valid length of each sequence.
// Argument order: outputs first, then inputs, then weights, then sizes.
#pragma once

#include "rnn/types.hpp"

namespace lstm_ext {

// T, B, I, H and the row stride of y (CellDims, types.hpp); G = 3H gate rows r, z, n.
using GruDims = CellDims<3>;

// The workspace a training forward keeps for the backward pass. Rows t * B + b are indexed by
// time step t (not by the order of the walk).
//   gates  (T, B, 3H)  activated gates r, z, n of every step
//   hn     (T, B, H)   W_hn h_{t-1} + b_hn: the recurrent part of n before the reset gate
//   h_prev packed (H columns over T*B rows, panel.hpp): h_{t-1}, the hidden state entering each
//                      step, for the gates' gradients and dW_hh
//   x      packed (I columns over T*B rows): the input, for dW_ih
//   ln_ih_hat, ln_hh_hat (T, B, 3H), ln_rstd (T, B, 2): with layer normalization only, the
//                      normalized values of LN_ih and LN_hh and their rows' r (layer_norm.hpp)
// Sizes in elements, for packets of `lanes` values (as lstm.hpp).
template <typename Count = Index>
Count gru_workspace_size(const GruDims& d, Index lanes) {
  const Count TB = Count(d.T) * d.B;
  const Index rows = d.T * d.B;
  return TB * (d.G() + d.H) + packed_elements<Count>(d.H, rows, lanes) + packed_elements<Count>(d.I, rows, lanes) +
         (d.layer_norm ? TB * (2 * d.G() + 2) : Count(0));
}

// Layer normalization's gains γ and biases β (3H each), all four or none (nullptr: none).
template <typename Scalar>
struct GruLayerNorm {
  const Scalar* ih_weight = nullptr;
  const Scalar* ih_bias = nullptr;
  const Scalar* hh_weight = nullptr;
  const Scalar* hh_bias = nullptr;
  bool on() const { return ih_weight != nullptr; }
};
// Their gradients (out, written; 3H each), nullptr without layer normalization.
template <typename Scalar>
struct GruLayerNormGrads {
  Scalar* ih_weight = nullptr;
  Scalar* ih_bias = nullptr;
  Scalar* hh_weight = nullptr;
  Scalar* hh_bias = nullptr;
};

// Scratch memory the forward and the backward allocate for themselves (before any time loop),
// at most, for a team of up to `members` threads.
template <typename Count = Index>
Count gru_forward_scratch_size(const GruDims& d, bool training, int members, Index lanes) {
  const Count padding = Count(members) * lanes;
  return Count(3) * (d.H + padding) * (Count(d.H) + d.B) + Count(2) * d.B * d.H + (d.G() + 6 * padding) * d.I +
         (training ? Count(0) : Count(d.T) * d.B * d.G()) + (d.layer_norm ? Count(d.B) * d.G() : Count(0));
}
template <typename Count = Index>
Count gru_backward_scratch_size(const GruDims& d, int members, Index lanes) {
  const Count padding = Count(members) * lanes;
  const Count gradients = Count(96) * members * d.T * d.B;  // a strip of 96 rows of dG per member
  return (d.H + padding) * (Count(d.G()) + d.B) + Count(2) * d.T * d.B * d.G() + Count(d.B) * d.H +
         (d.I + 6 * padding) * d.G() + gradients + (d.layer_norm ? Count(2) * d.T * d.B * d.G() : Count(0));
}

// Elements a call of one direction needs at most, counted as above: a forward's outputs, its
// workspace when training and its scratch; a backward's gradients and its scratch.
template <typename Count = Index>
Count gru_forward_call_size(const GruDims& d, bool training, int members, Index lanes) {
  return d.output_elements<Count>() + (training ? gru_workspace_size<Count>(d, lanes) : Count(0)) +
         gru_forward_scratch_size<Count>(d, training, members, lanes);
}
template <typename Count = Index>
Count gru_backward_call_size(const GruDims& d, int members, Index lanes) {
  return d.gradient_elements<Count>() + gru_backward_scratch_size<Count>(d, members, lanes);
}

// The GRU kernels of one kernel level: gru.cpp defines them once per level (kernels.hpp).
template <typename Scalar>
struct GruKernels {
  // Forward over a whole sequence.
  //   y     (T, B, ld_y)  out: h_t of every step in columns [0, H) of each row (zero where a sequence
  //                       is past its length)
  //   h_n   (B, H)     out: h after each sequence's last step
  //   ws    (gru_workspace_size)  out: kept for backward; nullptr = inference, nothing kept
  //   x     (T, B, I)
  //   h0    (B, H)     initial state, nullptr = zeros
  //   w_ih  (3H, I)    w_hh (3H, H)    b_ih, b_hh (3H) or nullptr
  //   ln    layer normalization (d.layer_norm must say whether it is on)
  void (*forward)(Scalar* y, Scalar* h_n, Scalar* ws, const Scalar* x, const Scalar* h0,
                  const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                  const GruLayerNorm<Scalar>& ln, const GruDims& d, const SequenceOptions& seq);

  // Backward (BPTT) over the whole sequence of a training forward, with the forward's options.
  //   dx     (T, B, I)  out
  //   dh0    (B, H)     out: gradient w.r.t. the initial hidden state
  //   dw_ih  (3H, I)    out (written, not accumulated)      dw_hh (3H, H) out
  //   db_ih, db_hh (3H) out, nullptr = skip (b_ih and b_hh differ in the n block)
  //   dy     (T, B, ld_y)  gradient w.r.t. every output step in columns [0, H), nullptr = zeros
  //                        (ignored past a length)
  //   dh_n   (B, H)     gradient w.r.t. the final hidden state, nullptr = zeros
  //   ws     (gru_workspace_size)  the forward's workspace (which keeps the input)
  //   w_ih   (3H, I)    w_hh (3H, H)
  //   ln     the forward's layer normalization      dln its gradients (out), with it only
  void (*backward)(Scalar* dx, Scalar* dh0, Scalar* dw_ih, Scalar* dw_hh, Scalar* db_ih, Scalar* db_hh,
                   const GruLayerNormGrads<Scalar>& dln, const Scalar* dy, const Scalar* dh_n, const Scalar* ws,
                   const Scalar* w_ih, const Scalar* w_hh, const GruLayerNorm<Scalar>& ln, const GruDims& d,
                   const SequenceOptions& seq);

  // Inference with int8 weights (int8.hpp), float32 only (nullptr in the float64 table):
  // forward's arguments with W_ih and W_hh quantized by rows; no layer normalization.
  void (*forward_int8)(float* y, float* h_n, const float* x, const float* h0, const Int8Matrix& w_ih,
                       const Int8Matrix& w_hh, const float* b_ih, const float* b_hh, const GruDims& d,
                       const SequenceOptions& seq);

  // Inference with bfloat16 recurrent weights (lstm_ext.quantize_dynamic(..., "bfloat16")), float32
  // only (nullptr in the float64 table): forward's arguments with W_hh as bf16 bits packed once by
  // DenseKernels::pack_bf16 in 3 gate blocks, (3, panel_count(H), H, lanes); no layer normalization.
  void (*forward_bf16)(float* y, float* h_n, const float* x, const float* h0, const float* w_ih,
                       const std::uint16_t* packed_hh_bf16, const float* b_ih, const float* b_hh, const GruDims& d,
                       const SequenceOptions& seq);
};

}  // namespace lstm_ext
