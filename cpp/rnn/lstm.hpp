// lstm_ext core: one LSTM layer in one direction, forward and backpropagation through time.
//
// Dimensions: T time steps, B batch, I input features, H hidden units, G = 4H gate rows,
// P projection size (0 = no projection), H_out = P if P > 0 else H.
// Gate order is PyTorch's: i, f, g, o (rows [0,H), [H,2H), [2H,3H), [3H,4H) of the weights).
//
//   i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
//   f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
//   g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
//   o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
//   c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
//   m_t = o_t ⊙ tanh(c_t)
//   h_t = m_t                  (no projection)
//   h_t = W_hr m_t             (projection: W_hr (P, H), h_t of size P)
//
// The variants (LstmVariants, all off by default), which combine:
//   peepholes (ONNX's):      i and f add P_i ⊙ c_{t-1} and P_f ⊙ c_{t-1} to their pre-activations,
//                            o adds P_o ⊙ c̃_t, the cell's new value (P = w_ch (3, H), rows i, f, o)
//   recurrent dropout (Gal): the recurrent products read h̄_{t-1} = keep_h ⊙ h_{t-1}, one mask
//                            keep_h (B, H_out) of 0 and 1/(1−p) for every step of a sequence
//   zoneout (Krueger):       with c̃_t and h̃_t the cell's new values above (m_t = o_t ⊙ tanh(c̃_t)),
//                            c_t = z^c_t ⊙ c_{t-1} + (1 − z^c_t) ⊙ c̃_t
//                            h_t = z^h_t ⊙ h_{t-1} + (1 − z^h_t) ⊙ h̃_t
//                            z^c (T, B, H), z^h (T, B, H_out): 0/1 masks when training (1 = keep the
//                            previous value), or one value for all (the expectation, in inference)
//   layer normalization (Ba, Kiros, Hinton; layer_norm.hpp), of the input and the recurrent parts
//                            of the pre-activations (all 4H at once) and of the cell's new value:
//                            a = LN_ih(W_ih x_t) + LN_hh(W_hh h̄_{t-1}) + b_ih + b_hh,
//                            m_t = o_t ⊙ tanh(LN_c(c̃_t)) (peepholes and zoneout use c̃_t itself)
//
// SequenceOptions (types.hpp) give the direction and the valid length of each sequence.
// Argument order: outputs first, then inputs, then weights, then sizes. Every pointer is to a
// row-major buffer of the shape in its comment; optional inputs may be nullptr (zeros / absent).
#pragma once

#include "rnn/types.hpp"

namespace lstm_ext {

struct LstmDims {
  Index T;      // time steps
  Index B;      // batch size
  Index I;      // input features
  Index H;      // hidden units (cell state size)
  Index P = 0;  // projection size, 0 = no projection
  Index y_stride = 0;  // elements from one row of y (and dy) to the next: 0 = H_out (see ld_y)
  bool zoneout_c = false;  // zoneout of c: the workspace keeps the cell's new values c̃_t too
  bool layer_norm = false;  // layer normalization: the workspace keeps the normalized values
  Index G() const { return 4 * H; }
  Index H_out() const { return P > 0 ? P : H; }  // size of h and of the outputs
  // Row stride of y and dy: H_out when this direction has y to itself, D * H_out when the D
  // directions of a layer share the (T, B, D * H_out) output (each at its own column offset).
  Index ld_y() const { return y_stride > 0 ? y_stride : H_out(); }

  // Elements of what a call of one direction returns (Count = double: a size that cannot
  // overflow, for the memory check before anything is allocated):
  //   forward   y (T, B, H_out), h_n (B, H_out), c_n (B, H)
  //   backward  dx (T, B, I), dh0 (B, H_out), dc0 (B, H), dw_ih (4H, I), dw_hh (4H, H_out),
  //             db_ih, db_hh (4H), dw_hr (P, H), dw_ch (3, H), the layer normalization's gains and
  //             biases (4H, 4H, 4H, 4H, H, H)
  template <typename Count = Index>
  Count output_elements() const {
    return Count(T) * B * H_out() + Count(B) * (H_out() + H);
  }
  template <typename Count = Index>
  Count gradient_elements() const {
    return Count(T) * B * I + Count(B) * (H_out() + H) + Count(G()) * (I + H_out() + 6) + Count(P) * H + Count(5) * H;
  }
  // Bytes of the recurrent weights W_hh and W_hr, which every step reads.
  template <typename Scalar>
  double recurrent_weight_bytes() const {
    return (double(G()) * H_out() + double(P) * H) * sizeof(Scalar);
  }
};

// The variants of a call (equations above): all off by default, the plain cell. Pointers are
// to row-major buffers of one direction, like the weights.
template <typename Scalar>
struct LstmVariants {
  const Scalar* w_ch = nullptr;    // (3, H) peephole weights P_i, P_f, P_o; nullptr = no peepholes
  const Scalar* keep_h = nullptr;  // (B, H_out) recurrent dropout mask; nullptr = none
  const Scalar* zone_c = nullptr;  // (T, B, H) zoneout weights z^c; nullptr = zone_c_value everywhere
  const Scalar* zone_h = nullptr;  // (T, B, H_out) zoneout weights z^h; nullptr = zone_h_value everywhere
  Scalar zone_c_value = 0;
  Scalar zone_h_value = 0;
  // Layer normalization's gains γ and biases β, all six or none (nullptr: no layer normalization):
  const Scalar* ln_ih_weight = nullptr;  // (4H) γ_ih     ln_ih_bias (4H) β_ih
  const Scalar* ln_ih_bias = nullptr;
  const Scalar* ln_hh_weight = nullptr;  // (4H) γ_hh     ln_hh_bias (4H) β_hh
  const Scalar* ln_hh_bias = nullptr;
  const Scalar* ln_c_weight = nullptr;   // (H) γ_c       ln_c_bias (H) β_c
  const Scalar* ln_c_bias = nullptr;

  // bfloat16 recurrent weights (inference in float32 only: lstm_ext.quantize_dynamic(..., "bfloat16")),
  // read by the products in place of w_hh and w_hr (panel.hpp: the same multiply-adds as their
  // float32 values), packed once (DenseKernels::pack_bf16): W_hh's four gate blocks of H rows, each
  // in panel_count(H) panels of H_out · lanes values; W_hr in panel_count(P) panels of H · lanes.
  const std::uint16_t* packed_hh_bf16 = nullptr;
  const std::uint16_t* packed_hr_bf16 = nullptr;

  bool peephole() const { return w_ch != nullptr; }
  bool layer_norm() const { return ln_ih_weight != nullptr; }
  bool zoneout_c() const { return zone_c != nullptr || zone_c_value != 0; }
  bool zoneout_h() const { return zone_h != nullptr || zone_h_value != 0; }
};

// The gradients of layer normalization's gains and biases (out, written): each nullptr without it.
template <typename Scalar>
struct LstmLayerNormGrads {
  Scalar* ih_weight = nullptr;  // (4H)
  Scalar* ih_bias = nullptr;    // (4H)
  Scalar* hh_weight = nullptr;  // (4H)
  Scalar* hh_bias = nullptr;    // (4H)
  Scalar* c_weight = nullptr;   // (H)
  Scalar* c_bias = nullptr;     // (H)
};

// The workspace a training forward keeps for the backward pass: one buffer of eleven blocks. Rows
// t * B + b are indexed by time step t (not by the order of the walk).
//   gates  (T, B, 4H)     activated gates i, f, g, o of every step
//   c      (T, B, H)      c_t (carried past a sequence's length), so c_{t-1} is the previous
//                         step's c
//   c0     (B, H)         the initial cell state: c_{t-1} of the first step of the walk
//   h_prev packed (H_out columns over T*B rows, panel.hpp): h_{t-1}, the hidden state entering
//                         each step, for dW_hh
//   x      packed (I columns over T*B rows): the input, for dW_ih
//   m      packed (H columns over T*B rows): m_t = o_t ⊙ tanh(c_t), with a projection only, for
//                         dW_hr
//   c_cell (T, B, H)      c̃_t, the cell's new value before zoneout, with zoneout of c only
//   ln_ih_hat, ln_hh_hat (T, B, 4H), ln_c_hat (T, B, H), ln_rstd (T, B, 3): with layer
//                         normalization only, the normalized values v̂ of LN_ih, LN_hh and LN_c and
//                         their rows' r = 1 / sqrt(σ² + ε) (layer_norm.hpp)
// (h_prev holds h̄_{t-1} = keep_h ⊙ h_{t-1} with recurrent dropout: what the product read.)
// Sizes are in elements, for a kernel level whose packets hold `lanes` values (kernels.hpp);
// Count = double gives the size of any request without overflow, so that callers can refuse
// work that cannot fit before anything is allocated.
template <typename Count = Index>
Count lstm_workspace_size(const LstmDims& d, Index lanes) {
  const Count TB = Count(d.T) * d.B;
  const Index rows = d.T * d.B;
  return TB * d.G() + TB * d.H + Count(d.B) * d.H + packed_elements<Count>(d.H_out(), rows, lanes) +
         packed_elements<Count>(d.I, rows, lanes) + (d.P > 0 ? packed_elements<Count>(d.H, rows, lanes) : Count(0)) +
         (d.zoneout_c ? TB * d.H : Count(0)) + (d.layer_norm ? TB * (2 * d.G() + d.H + 3) : Count(0));
}

// Scratch memory the forward and the backward allocate for themselves (before any time loop),
// at most, for a team of up to `members` threads.
template <typename Count = Index>
Count lstm_forward_scratch_size(const LstmDims& d, bool training, int members, Index lanes) {
  const Count padding = Count(members) * lanes;  // each member rounds its rows up to panels
  const Count recurrent = Count(4) * (d.H + padding) * (d.H_out() + d.B);  // packed W_hh rows and their product
  const Count projection = d.P > 0 ? (d.P + padding) * (Count(d.H) + d.B) : Count(0);  // W_hr likewise
  const Count state = Count(d.B) * (4 * d.H_out() + 2 * d.H);  // h and h̄ (two steps each), c, m
  const Count input = (Count(d.G()) + 6 * padding) * d.I;       // packed W_ih blocks (ColumnTasks)
  const Count layer_norm = d.layer_norm ? Count(d.B) * (d.G() + d.H) : Count(0);  // a step's rows, all units
  return recurrent + projection + state + input + layer_norm + (training ? Count(0) : Count(d.T) * d.B * d.G());
}
template <typename Count = Index>
Count lstm_backward_scratch_size(const LstmDims& d, int members, Index lanes) {
  const Count padding = Count(members) * lanes;
  const Count recurrent = (d.H_out() + padding) * (Count(d.G()) + d.B);  // packed W_hh columns and their product
  const Count projection = d.P > 0 ? (d.H + padding) * (Count(d.P) + d.B) : Count(0);  // W_hr likewise
  const Count TB = Count(d.T) * d.B;
  const Count input = (Count(d.I) + 6 * padding) * d.G();  // packed W_ihᵀ blocks (ColumnTasks)
  const Count gradients = Count(96) * members * TB;        // a strip of 96 rows of dG per member
  const Count layer_norm = d.layer_norm ? 2 * TB * d.G() + Count(d.B) * d.H : Count(0);  // dA_ih, dA_hh, dĉ
  return recurrent + projection + input + gradients + layer_norm + TB * d.G() + (d.P > 0 ? TB * d.P : Count(0)) +
         Count(d.B) * (3 * d.H_out() + d.H);  // dh (two steps), its zoneout part, dc
}

// Elements a call of one direction needs at most, counted as above: a forward's outputs, its
// workspace when training and its scratch; a backward's gradients and its scratch.
template <typename Count = Index>
Count lstm_forward_call_size(const LstmDims& d, bool training, int members, Index lanes) {
  return d.output_elements<Count>() + (training ? lstm_workspace_size<Count>(d, lanes) : Count(0)) +
         lstm_forward_scratch_size<Count>(d, training, members, lanes);
}
template <typename Count = Index>
Count lstm_backward_call_size(const LstmDims& d, int members, Index lanes) {
  return d.gradient_elements<Count>() + lstm_backward_scratch_size<Count>(d, members, lanes);
}

// The LSTM kernels of one kernel level: lstm.cpp defines them once per level, and kernels.hpp
// holds the table of the level in use.
template <typename Scalar>
struct LstmKernels {
  // Forward over a whole sequence.
  //   y      (T, B, ld_y)   out: h_t of every step in columns [0, H_out) of each row (zero where a
  //                         sequence is past its length)
  //   h_n    (B, H_out)     out: h after each sequence's last step
  //   c_n    (B, H)         out: c after each sequence's last step
  //   ws     (lstm_workspace_size)  out: kept for backward; nullptr = inference, nothing kept
  //   x      (T, B, I)
  //   h0     (B, H_out)     initial state, nullptr = zeros
  //   c0     (B, H)         initial state, nullptr = zeros
  //   w_ih   (4H, I)    w_hh (4H, H_out)    b_ih, b_hh (4H) or nullptr    w_hr (P, H) or nullptr if P = 0
  //   v      the variants (d.zoneout_c must say whether v has zoneout of c)
  void (*forward)(Scalar* y, Scalar* h_n, Scalar* c_n, Scalar* ws,
                  const Scalar* x, const Scalar* h0, const Scalar* c0,
                  const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                  const Scalar* w_hr, const LstmVariants<Scalar>& v, const LstmDims& d, const SequenceOptions& seq);

  // Backward (BPTT) over the whole sequence of a training forward, with the forward's options.
  //   dx      (T, B, I)      out
  //   dh0     (B, H_out)     out: gradient w.r.t. the initial hidden state
  //   dc0     (B, H)         out: gradient w.r.t. the initial cell state
  //   dw_ih   (4H, I)        out (written, not accumulated)
  //   dw_hh   (4H, H_out)    out
  //   dw_hr   (P, H)         out, with projection only (nullptr otherwise)
  //   dw_ch   (3, H)         out, with peepholes only (nullptr otherwise)
  //   db      (4H)           out: gradient of b_ih and of b_hh (they are equal); nullptr = skip
  //   dy      (T, B, ld_y)   gradient w.r.t. every output step in columns [0, H_out), nullptr = zeros
  //                          (ignored past a length)
  //   dh_n    (B, H_out)     gradient w.r.t. the final hidden state, nullptr = zeros
  //   dc_n    (B, H)         gradient w.r.t. the final cell state, nullptr = zeros
  //   ws      (lstm_workspace_size)  the forward's workspace (which keeps the input)
  //   w_ih    (4H, I)    w_hh (4H, H_out)    w_hr (P, H) or nullptr
  //   v       the forward's variants (the same masks)
  //   dln     the layer normalization's gradients (out), with layer normalization only
  void (*backward)(Scalar* dx, Scalar* dh0, Scalar* dc0, Scalar* dw_ih, Scalar* dw_hh, Scalar* dw_hr, Scalar* dw_ch,
                   Scalar* db, const LstmLayerNormGrads<Scalar>& dln, const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n,
                   const Scalar* ws, const Scalar* w_ih, const Scalar* w_hh, const Scalar* w_hr,
                   const LstmVariants<Scalar>& v, const LstmDims& d, const SequenceOptions& seq);

  // One step for streaming inference (no projection): (x_t, h, c) -> (h', c').
  //   h_new, c_new (B, H)  out
  //   x            (B, I)
  //   h, c         (B, H)  nullptr = zeros
  //   w_ih (4H, I)  w_hh (4H, H)  b_ih, b_hh (4H) or nullptr
  void (*cell)(Scalar* h_new, Scalar* c_new,
               const Scalar* x, const Scalar* h, const Scalar* c,
               const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
               Index B, Index I, Index H);

  // The same step with the caller's scratch, for a stream that makes many (no allocation). c_new
  // may alias c (each unit's c is read before it is written); h_new must not alias h.
  //   scratch_gx, scratch_rec (B, 4H)  scratch
  void (*cell_into)(Scalar* h_new, Scalar* c_new, Scalar* scratch_gx, Scalar* scratch_rec,
                    const Scalar* x, const Scalar* h, const Scalar* c,
                    const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                    Index B, Index I, Index H);

  // Inference with int8 weights (int8.hpp), float32 only (nullptr in the float64 table): forward's
  // arguments with the weight matrices quantized by rows (w_hr's q nullptr without a projection);
  // v may hold peepholes and zoneout's expectation (values, no masks), nothing else.
  void (*forward_int8)(float* y, float* h_n, float* c_n, const float* x, const float* h0, const float* c0,
                       const Int8Matrix& w_ih, const Int8Matrix& w_hh, const float* b_ih, const float* b_hh,
                       const Int8Matrix& w_hr, const LstmVariants<float>& v, const LstmDims& d,
                       const SequenceOptions& seq);
};

}  // namespace lstm_ext
