// lstm_ext core: one vanilla (Elman) RNN layer in one direction, forward and BPTT.
//
// Dimensions: T time steps, B batch, I input features, H hidden units (G = H rows).
//
//   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   act = tanh or relu
//
// SequenceOptions (types.hpp) give the direction and the valid length of each sequence.
// Argument order: outputs first, then inputs, then weights, then sizes.
#pragma once

#include "rnn/types.hpp"

namespace lstm_ext {

enum class RnnActivation { Tanh, Relu };

// T, B, I, H and the row stride of y (CellDims, types.hpp); G = H rows.
using RnnDims = CellDims<1>;

// The workspace a training forward keeps for the backward pass. Rows t * B + b are indexed by
// time step t (not by the order of the walk).
//   h      (T, B, H)  h_t = act(a_t): the derivative of either activation is a function of it
//   h_prev packed (H columns over T*B rows, panel.hpp): h_{t-1}, the hidden state entering each
//                     step, for dW_hh
//   x      packed (I columns over T*B rows): the input, for dW_ih
// Sizes in elements, for packets of `lanes` values (as lstm.hpp).
template <typename Count = Index>
Count rnn_workspace_size(const RnnDims& d, Index lanes) {
  const Count TB = Count(d.T) * d.B;
  const Index rows = d.T * d.B;
  return TB * d.H + packed_elements<Count>(d.H, rows, lanes) + packed_elements<Count>(d.I, rows, lanes);
}

// Scratch memory the forward and the backward allocate for themselves (before any time loop),
// at most, for a team of up to `members` threads.
template <typename Count = Index>
Count rnn_forward_scratch_size(const RnnDims& d, bool training, int members, Index lanes) {
  const Count padding = Count(members) * lanes;
  return (d.H + padding) * (Count(d.H) + d.B) + Count(2) * d.B * d.H + (d.H + 6 * padding) * d.I +
         (training ? Count(0) : Count(d.T) * d.B * d.H);
}
template <typename Count = Index>
Count rnn_backward_scratch_size(const RnnDims& d, int members, Index lanes) {
  const Count padding = Count(members) * lanes;
  const Count gradients = Count(96) * members * d.T * d.B;  // a strip of 96 rows of dG per member
  return (d.H + padding) * (Count(d.H) + d.B) + Count(d.T) * d.B * d.H + Count(d.B) * d.H +
         (d.I + 6 * padding) * d.H + gradients;
}

// Elements a call of one direction needs at most, counted as above: a forward's outputs, its
// workspace when training and its scratch; a backward's gradients and its scratch.
template <typename Count = Index>
Count rnn_forward_call_size(const RnnDims& d, bool training, int members, Index lanes) {
  return d.output_elements<Count>() + (training ? rnn_workspace_size<Count>(d, lanes) : Count(0)) +
         rnn_forward_scratch_size<Count>(d, training, members, lanes);
}
template <typename Count = Index>
Count rnn_backward_call_size(const RnnDims& d, int members, Index lanes) {
  return d.gradient_elements<Count>() + rnn_backward_scratch_size<Count>(d, members, lanes);
}

// The vanilla RNN kernels of one kernel level: rnn.cpp defines them once per level (kernels.hpp).
template <typename Scalar>
struct RnnKernels {
  // Forward over a whole sequence.
  //   y     (T, B, ld_y)  out: h_t of every step in columns [0, H) of each row (zero where a sequence
  //                       is past its length)
  //   h_n   (B, H)     out: h after each sequence's last step
  //   ws    (rnn_workspace_size)  out: kept for backward; nullptr = inference, nothing kept
  //   x     (T, B, I)
  //   h0    (B, H)     initial state, nullptr = zeros
  //   w_ih  (H, I)     w_hh (H, H)     b_ih, b_hh (H) or nullptr
  void (*forward)(Scalar* y, Scalar* h_n, Scalar* ws, const Scalar* x, const Scalar* h0,
                  const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                  RnnActivation act, const RnnDims& d, const SequenceOptions& seq);

  // Backward (BPTT) over the whole sequence of a training forward, with the forward's options.
  //   dx     (T, B, I)  out
  //   dh0    (B, H)     out: gradient w.r.t. the initial hidden state
  //   dw_ih  (H, I)     out (written, not accumulated)     dw_hh (H, H) out
  //   db     (H)        out: gradient of b_ih and of b_hh (they are equal); nullptr = skip
  //   dy     (T, B, ld_y)  gradient w.r.t. every output step in columns [0, H), nullptr = zeros
  //                        (ignored past a length)
  //   dh_n   (B, H)     gradient w.r.t. the final hidden state, nullptr = zeros
  //   ws     (rnn_workspace_size)  the forward's workspace (which keeps the input)
  //   w_ih   (H, I)     w_hh (H, H)
  void (*backward)(Scalar* dx, Scalar* dh0, Scalar* dw_ih, Scalar* dw_hh, Scalar* db,
                   const Scalar* dy, const Scalar* dh_n, const Scalar* ws, const Scalar* w_ih, const Scalar* w_hh,
                   RnnActivation act, const RnnDims& d, const SequenceOptions& seq);

  // Inference with int8 weights (int8.hpp), float32 only (nullptr in the float64 table):
  // forward's arguments with W_ih and W_hh quantized by rows.
  void (*forward_int8)(float* y, float* h_n, const float* x, const float* h0, const Int8Matrix& w_ih,
                       const Int8Matrix& w_hh, const float* b_ih, const float* b_hh, RnnActivation act,
                       const RnnDims& d, const SequenceOptions& seq);

  // Inference with bfloat16 recurrent weights (lstm_ext.quantize_dynamic(..., "bfloat16")), float32
  // only (nullptr in the float64 table): forward's arguments with W_hh as bf16 bits packed once by
  // DenseKernels::pack_bf16, (panel_count(H), H, lanes).
  void (*forward_bf16)(float* y, float* h_n, const float* x, const float* h0, const float* w_ih,
                       const std::uint16_t* packed_hh_bf16, const float* b_ih, const float* b_hh, RnnActivation act,
                       const RnnDims& d, const SequenceOptions& seq);
};

}  // namespace lstm_ext
