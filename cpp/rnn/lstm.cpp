// lstm_ext core: LSTM forward and backward for one layer and one direction.
//
// Dimensions: T time steps, B batch, I input features, H hidden units, G = 4H gate rows.
//
// The kernel pattern (see lstm.hpp for the equations):
//   forward   1. ws_gates (T*B, G) = X (T*B, I) · W_ihᵀ + b_ih + b_hh        one GEMM, all steps
//             2. per step: gates_t += h_{t-1} · W_hhᵀ (packed W_hh), then one fused pass over
//                the gate block: activations, cell update, hidden output
//   backward  1. reverse loop: fused pass from the kept activations gives dG_t (the gradient of
//                the pre-activations) and dc_{t-1}; then dh_{t-1} = dG_t · W_hh (packed)
//             2. after the loop, one GEMM each: dX = dG · W_ih, dW_ih = dGᵀ · X,
//                dW_hh = dGᵀ · H_prev, and db = column sums of dG
// Nothing is allocated inside a time loop.
#include "rnn/lstm.hpp"

namespace lstm_ext {
namespace {

// ---------------------------------------------------------------------------------------------
// Fused pointwise forward of one step, for B rows of pre-activations a = [a_i a_f a_g a_o]:
//   i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//   c' = f ⊙ c + i ⊙ g
//   h' = o ⊙ tanh(c')
//   gates  (B, 4H)  in: pre-activations; out: activated gates i, f, g, o (when keep_gates)
//   c_new  (B, H)   out        h_new (B, H) out
//   c_prev (B, H)   in (may alias c_new: each packet is read before it is written)
template <typename Scalar>
void lstm_pointwise_forward(Scalar* gates, Scalar* c_new, Scalar* h_new, const Scalar* c_prev,
                            bool keep_gates, Index B, Index H) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  for (Index b = 0; b < B; ++b) {
    Scalar* a = gates + b * 4 * H;
    for (Index j = 0; j < H; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, H - j);
      const P i = packet_sigmoid<Scalar>(load_packet(a + j, n));
      const P f = packet_sigmoid<Scalar>(load_packet(a + H + j, n));
      const P g = packet_tanh<Scalar>(load_packet(a + 2 * H + j, n));
      const P o = packet_sigmoid<Scalar>(load_packet(a + 3 * H + j, n));
      const P c = pmadd(f, load_packet(c_prev + b * H + j, n), pmul(i, g));
      store_packet(c_new + b * H + j, c, n);
      store_packet(h_new + b * H + j, pmul(o, packet_tanh<Scalar>(c)), n);
      if (keep_gates) {
        store_packet(a + j, i, n);
        store_packet(a + H + j, f, n);
        store_packet(a + 2 * H + j, g, n);
        store_packet(a + 3 * H + j, o, n);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Fused pointwise backward of one step, from the activations kept by the forward:
//   dh   = dy_t + dh_next                       (the output's gradient + what step t+1 sent back)
//   dc   = dc_next + dh ⊙ o ⊙ (1 − tanh²(c_t))
//   da_o = dh ⊙ tanh(c_t) ⊙ o ⊙ (1 − o)         da_i = dc ⊙ g ⊙ i ⊙ (1 − i)
//   da_f = dc ⊙ c_{t-1} ⊙ f ⊙ (1 − f)           da_g = dc ⊙ i ⊙ (1 − g²)
//   dc_{t-1} = dc ⊙ f
//   dgates  (B, 4H)  out: da = [da_i da_f da_g da_o]
//   dc_next (B, H)   in: dc_t from step t+1; out: dc_{t-1}
//   dh_next (B, H)   in: dh_t from step t+1     dy_t (B, H) in, nullptr = zeros
//   gates   (B, 4H)  activated i, f, g, o       c_t, c_prev (B, H)
template <typename Scalar>
void lstm_pointwise_backward(Scalar* dgates, Scalar* dc_next, const Scalar* dh_next,
                             const Scalar* dy_t, const Scalar* gates, const Scalar* c_t,
                             const Scalar* c_prev, Index B, Index H) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1));
  for (Index b = 0; b < B; ++b) {
    const Scalar* a = gates + b * 4 * H;
    Scalar* da = dgates + b * 4 * H;
    for (Index j = 0; j < H; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, H - j);
      const Index k = b * H + j;  // this packet's offset in the (B, H) buffers
      const P i = load_packet(a + j, n), f = load_packet(a + H + j, n);
      const P g = load_packet(a + 2 * H + j, n), o = load_packet(a + 3 * H + j, n);
      P dh = load_packet(dh_next + k, n);
      if (dy_t != nullptr) dh = padd(dh, load_packet(dy_t + k, n));
      const P tanh_c = packet_tanh<Scalar>(load_packet(c_t + k, n));
      const P dc = padd(load_packet(dc_next + k, n), pmul(pmul(dh, o), psub(one, pmul(tanh_c, tanh_c))));
      store_packet(da + j, pmul(pmul(dc, g), pmul(i, psub(one, i))), n);
      store_packet(da + H + j, pmul(pmul(dc, load_packet(c_prev + k, n)), pmul(f, psub(one, f))), n);
      store_packet(da + 2 * H + j, pmul(pmul(dc, i), psub(one, pmul(g, g))), n);
      store_packet(da + 3 * H + j, pmul(pmul(dh, tanh_c), pmul(o, psub(one, o))), n);
      store_packet(dc_next + k, pmul(dc, f), n);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void lstm_forward(Scalar* y, Scalar* h_n, Scalar* c_n, Scalar* ws,
                  const Scalar* x, const Scalar* h0, const Scalar* c0,
                  const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                  const LstmDims& d) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G();
  const bool training = ws != nullptr;

  // Where the per-step values live: in the workspace when training (kept for backward), in
  // scratch otherwise (inference keeps nothing, and only two cell states at a time).
  Buffer<Scalar> scratch_gates;  // inference: (T, B, G)
  Buffer<Scalar> scratch_c;      // inference: (2, B, H), rolling c_{t-1}, c_t
  Scalar* gates;                 // (T, B, G)
  Scalar* cells;                 // training: ws_c (T+1, B, H); inference: scratch_c
  Scalar* h_prev_kept = nullptr; // training: ws_h_prev (T, B, H)
  if (training) {
    gates = ws;
    cells = ws + T * B * G;
    h_prev_kept = cells + (T + 1) * B * H;
  } else {
    scratch_gates.resize(T * B * G);
    scratch_c.resize(2 * B * H);
    gates = scratch_gates.data();
    cells = scratch_c.data();
  }
  auto cell_state = [&](Index t) { return cells + (training ? t : t % 2) * B * H; };  // c_{t-1}

  MatrixMap<Scalar> c_init(cell_state(0), B, H);
  if (c0 != nullptr) {
    c_init = ConstMatrixMap<Scalar>(c0, B, H);
  } else {
    c_init.setZero();
  }

  // 1. Input projection of all steps at once, and both biases.
  MatrixMap<Scalar> gates_all(gates, T * B, G);
  gates_all.noalias() = ConstMatrixMap<Scalar>(x, T * B, I) * ConstMatrixMap<Scalar>(w_ih, G, I).transpose();
  if (b_ih != nullptr) gates_all.rowwise() += ConstRowVectorMap<Scalar>(b_ih, G);
  if (b_hh != nullptr) gates_all.rowwise() += ConstRowVectorMap<Scalar>(b_hh, G);

  // 2. The recurrence: W_hh packed once for all steps.
  PackedMatmul<Scalar, Eigen::RowMajor> recurrent(w_hh, G, H, B);
  for (Index t = 0; t < T; ++t) {
    Scalar* gates_t = gates + t * B * G;                              // (B, G)
    const Scalar* h_prev = (t == 0) ? h0 : y + (t - 1) * B * H;       // (B, H), nullptr = zeros
    if (h_prev != nullptr) recurrent.accumulate(gates_t, h_prev, B);  // gates_t += h_prev · W_hhᵀ
    if (training) {
      MatrixMap<Scalar> kept(h_prev_kept + t * B * H, B, H);
      if (h_prev != nullptr) {
        kept = ConstMatrixMap<Scalar>(h_prev, B, H);
      } else {
        kept.setZero();
      }
    }
    lstm_pointwise_forward(gates_t, cell_state(t + 1), y + t * B * H, cell_state(t), training, B, H);
  }

  MatrixMap<Scalar>(h_n, B, H) = ConstMatrixMap<Scalar>(y + (T - 1) * B * H, B, H);
  MatrixMap<Scalar>(c_n, B, H) = ConstMatrixMap<Scalar>(cell_state(T), B, H);
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void lstm_backward(Scalar* dx, Scalar* dh0, Scalar* dc0, Scalar* dw_ih, Scalar* dw_hh, Scalar* db,
                   const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n,
                   const Scalar* x, const Scalar* ws, const Scalar* w_ih, const Scalar* w_hh,
                   const LstmDims& d) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G();

  // The forward's workspace.
  const Scalar* ws_gates = ws;                           // (T, B, G) activated gates
  const Scalar* ws_c = ws + T * B * G;                   // (T+1, B, H) c_{t-1} at index t
  const Scalar* ws_h_prev = ws_c + (T + 1) * B * H;      // (T, B, H) h_{t-1} at index t

  Buffer<Scalar> scratch_dgates(T * B * G);  // (T, B, G) gradient of every step's pre-activations
  Buffer<Scalar> dh_next(B * H);             // (B, H) dh_t arriving from step t+1
  Buffer<Scalar> dc_next(B * H);             // (B, H) dc_t arriving from step t+1
  if (dh_n != nullptr) {
    dh_next = Eigen::Map<const Buffer<Scalar>>(dh_n, B * H);
  } else {
    dh_next.setZero();
  }
  if (dc_n != nullptr) {
    dc_next = Eigen::Map<const Buffer<Scalar>>(dc_n, B * H);
  } else {
    dc_next.setZero();
  }

  // 1. Reverse loop. M = W_hhᵀ (H, G) is W_hh read column-major: dh_{t-1} = dG_t · W_hh.
  PackedMatmul<Scalar, Eigen::ColMajor> recurrent_t(w_hh, H, G, B);
  for (Index t = T - 1; t >= 0; --t) {
    Scalar* dgates_t = scratch_dgates.data() + t * B * G;
    const Scalar* dy_t = (dy != nullptr) ? dy + t * B * H : nullptr;
    lstm_pointwise_backward(dgates_t, dc_next.data(), dh_next.data(), dy_t,
                            ws_gates + t * B * G, ws_c + (t + 1) * B * H, ws_c + t * B * H, B, H);
    dh_next.setZero();
    recurrent_t.accumulate(dh_next.data(), dgates_t, B);
  }
  Eigen::Map<Buffer<Scalar>>(dh0, B * H) = dh_next;
  Eigen::Map<Buffer<Scalar>>(dc0, B * H) = dc_next;

  // 2. Gradients of the inputs and weights, one GEMM each over all steps.
  const ConstMatrixMap<Scalar> dgates(scratch_dgates.data(), T * B, G);
  MatrixMap<Scalar>(dx, T * B, I).noalias() = dgates * ConstMatrixMap<Scalar>(w_ih, G, I);
  MatrixMap<Scalar>(dw_ih, G, I).noalias() = dgates.transpose() * ConstMatrixMap<Scalar>(x, T * B, I);
  MatrixMap<Scalar>(dw_hh, G, H).noalias() = dgates.transpose() * ConstMatrixMap<Scalar>(ws_h_prev, T * B, H);
  if (db != nullptr) {
    // Row by row, in a fixed order (a column-sum expression would sum in an order that depends
    // on the output's alignment).
    RowVectorMap<Scalar> db_sum(db, G);
    db_sum.setZero();
    for (Index r = 0; r < T * B; ++r) db_sum += dgates.row(r);
  }
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void lstm_cell(Scalar* h_new, Scalar* c_new,
               const Scalar* x, const Scalar* h, const Scalar* c,
               const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
               Index B, Index I, Index H) {
  const Index G = 4 * H;
  RowMatrix<Scalar> scratch_gates(B, G);  // (B, G) this step's pre-activations
  scratch_gates.noalias() = ConstMatrixMap<Scalar>(x, B, I) * ConstMatrixMap<Scalar>(w_ih, G, I).transpose();
  if (h != nullptr) {
    scratch_gates.noalias() += ConstMatrixMap<Scalar>(h, B, H) * ConstMatrixMap<Scalar>(w_hh, G, H).transpose();
  }
  if (b_ih != nullptr) scratch_gates.rowwise() += ConstRowVectorMap<Scalar>(b_ih, G);
  if (b_hh != nullptr) scratch_gates.rowwise() += ConstRowVectorMap<Scalar>(b_hh, G);

  // A missing c is zeros: start c_new at zero and update it in place.
  const Scalar* c_prev = c;
  if (c_prev == nullptr) {
    MatrixMap<Scalar>(c_new, B, H).setZero();
    c_prev = c_new;
  }
  lstm_pointwise_forward(scratch_gates.data(), c_new, h_new, c_prev, false, B, H);
}

// ---------------------------------------------------------------------------------------------
#define LSTM_EXT_INSTANTIATE(Scalar)                                                             \
  template void lstm_forward<Scalar>(Scalar*, Scalar*, Scalar*, Scalar*, const Scalar*,          \
                                     const Scalar*, const Scalar*, const Scalar*, const Scalar*, \
                                     const Scalar*, const Scalar*, const LstmDims&);             \
  template void lstm_backward<Scalar>(Scalar*, Scalar*, Scalar*, Scalar*, Scalar*, Scalar*,      \
                                      const Scalar*, const Scalar*, const Scalar*,               \
                                      const Scalar*, const Scalar*, const Scalar*,               \
                                      const Scalar*, const LstmDims&);                           \
  template void lstm_cell<Scalar>(Scalar*, Scalar*, const Scalar*, const Scalar*, const Scalar*, \
                                  const Scalar*, const Scalar*, const Scalar*, const Scalar*,    \
                                  Index, Index, Index);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
