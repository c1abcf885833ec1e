// lstm_ext core: one LSTM layer in one direction, forward and backpropagation through time.
//
// Dimensions: T time steps, B batch, I input features, H hidden units, G = 4H gate rows.
// Gate order is PyTorch's: i, f, g, o (rows [0,H), [H,2H), [2H,3H), [3H,4H) of the weights).
//
//   i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
//   f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
//   g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
//   o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
//   c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
//   h_t = o_t ⊙ tanh(c_t)
//
// Argument order: outputs first, then inputs, then weights, then sizes. Every pointer is to a
// row-major buffer of the shape in its comment; optional inputs may be nullptr (zeros / absent).
#pragma once

#include "rnn/common.hpp"

namespace lstm_ext {

struct LstmDims {
  Index T;  // time steps
  Index B;  // batch size
  Index I;  // input features
  Index H;  // hidden units
  Index G() const { return 4 * H; }
};

// The workspace a training forward keeps for the backward pass: one buffer, three blocks.
//   ws_gates  (T, B, 4H)    activated gates i, f, g, o of every step
//   ws_c      (T+1, B, H)   cell states: ws_c[0] = c0, ws_c[t+1] = c_t
//   ws_h_prev (T, B, H)     each step's incoming hidden state: ws_h_prev[t] = h_{t-1}
// Sizes are in elements; Count = double gives the size of any request without overflow, so
// that callers can refuse work that cannot fit before anything is allocated.
template <typename Count = Index>
Count lstm_workspace_size(const LstmDims& d) {
  return Count(d.T) * d.B * d.G() + Count(d.T + 1) * d.B * d.H + Count(d.T) * d.B * d.H;
}

// Scratch memory lstm_forward and lstm_backward allocate for themselves (before any time loop).
template <typename Scalar, typename Count = Index>
Count lstm_forward_scratch_size(const LstmDims& d, bool training) {
  const Count packed_w_hh = PackedMatmul<Scalar, Eigen::RowMajor>::template buffer_size<Count>(d.G(), d.H, d.B);
  return packed_w_hh + (training ? Count(0) : Count(d.T) * d.B * d.G() + Count(2) * d.B * d.H);
}
template <typename Scalar, typename Count = Index>
Count lstm_backward_scratch_size(const LstmDims& d) {
  const Count packed_w_hh = PackedMatmul<Scalar, Eigen::ColMajor>::template buffer_size<Count>(d.H, d.G(), d.B);
  return packed_w_hh + Count(d.T) * d.B * d.G() + Count(2) * d.B * d.H;
}

// Forward over a whole sequence.
//   y      (T, B, H)  out: h_t of every step
//   h_n    (B, H)     out: h_{T-1}
//   c_n    (B, H)     out: c_{T-1}
//   ws     (lstm_workspace_size)  out: kept for backward; nullptr = inference, nothing kept
//   x      (T, B, I)
//   h0, c0 (B, H)     initial state, nullptr = zeros
//   w_ih   (4H, I)    w_hh (4H, H)    b_ih, b_hh (4H) or nullptr
template <typename Scalar>
void lstm_forward(Scalar* y, Scalar* h_n, Scalar* c_n, Scalar* ws,
                  const Scalar* x, const Scalar* h0, const Scalar* c0,
                  const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                  const LstmDims& d);

// Backward (BPTT) over the whole sequence of a training forward.
//   dx      (T, B, I)  out
//   dh0     (B, H)     out: gradient w.r.t. the initial hidden state
//   dc0     (B, H)     out: gradient w.r.t. the initial cell state
//   dw_ih   (4H, I)    out (written, not accumulated)
//   dw_hh   (4H, H)    out
//   db      (4H)       out: gradient of b_ih and of b_hh (they are equal); nullptr = skip
//   dy      (T, B, H)  gradient w.r.t. every output step, nullptr = zeros
//   dh_n    (B, H)     gradient w.r.t. the final hidden state, nullptr = zeros
//   dc_n    (B, H)     gradient w.r.t. the final cell state, nullptr = zeros
//   x       (T, B, I)  the forward's input
//   ws      (lstm_workspace_size)  the forward's workspace
//   w_ih    (4H, I)    w_hh (4H, H)
template <typename Scalar>
void lstm_backward(Scalar* dx, Scalar* dh0, Scalar* dc0, Scalar* dw_ih, Scalar* dw_hh, Scalar* db,
                   const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n,
                   const Scalar* x, const Scalar* ws, const Scalar* w_ih, const Scalar* w_hh,
                   const LstmDims& d);

// One step for streaming inference: (x_t, h, c) -> (h', c').
//   h_new, c_new (B, H)  out
//   x            (B, I)
//   h, c         (B, H)  nullptr = zeros
//   w_ih (4H, I)  w_hh (4H, H)  b_ih, b_hh (4H) or nullptr
template <typename Scalar>
void lstm_cell(Scalar* h_new, Scalar* c_new,
               const Scalar* x, const Scalar* h, const Scalar* c,
               const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
               Index B, Index I, Index H);

}  // namespace lstm_ext
