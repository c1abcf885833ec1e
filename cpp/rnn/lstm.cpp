// lstm_ext core: LSTM forward and backward for one layer and one direction.
//
// Dimensions: T time steps, B batch, I input features, H hidden units, G = 4H gate rows,
// P projection size (0 = none), H_out = P or H: the size of h and of the outputs.
//
// The kernel pattern (see lstm.hpp for the equations):
//   forward   1. gates (T*B, G) = X (T*B, I) · W_ihᵀ + b_ih + b_hh         one GEMM, all steps
//             2. per step t (in the walk's order): gates_t += h_{t-1} · W_hhᵀ (packed W_hh),
//                one fused pass over the gate block (activations, cell update, m_t), and with a
//                projection h_t = m_t · W_hrᵀ (packed W_hr). Sequences past their length carry
//                their state and output zeros.
//   backward  1. reverse walk: dh_t = dy_t + dh from the next step; with a projection
//                dm_t = dh_t · W_hr, else dm_t = dh_t; the fused pass from the kept activations
//                gives dG_t (gradient of the pre-activations) and dc_{t-1}; then
//                dh_{t-1} = dG_t · W_hh (packed). Inactive rows pass dh and dc through.
//             2. after the walk, one GEMM each: dX = dG · W_ih, dW_ih = dGᵀ · X,
//                dW_hh = dGᵀ · H_prev, dW_hr = dHᵀ · M, and db = column sums of dG
// Nothing is allocated inside a time loop.
#include "rnn/lstm.hpp"

#include <optional>

namespace lstm_ext {
namespace {

// ---------------------------------------------------------------------------------------------
// Fused pointwise forward of one step, for the active rows of B rows of pre-activations
// a = [a_i a_f a_g a_o]:
//   i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//   c' = f ⊙ c + i ⊙ g
//   m  = o ⊙ tanh(c')
//   gates  (B, 4H)  in: pre-activations; out: activated gates i, f, g, o (when keep_gates)
//   c_new  (B, H)   out        m (B, H) out
//   c_prev (B, H)   in (may alias c_new: each packet is read before it is written)
// Inactive rows (past their sequence's length at time t) are not touched.
template <typename Scalar>
void lstm_pointwise_forward(Scalar* gates, Scalar* c_new, Scalar* m, const Scalar* c_prev, bool keep_gates,
                            const SequenceOptions& seq, Index t, Index B, Index H) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    Scalar* a = gates + b * 4 * H;
    for (Index j = 0; j < H; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, H - j);
      const P i = packet_sigmoid<Scalar>(load_packet(a + j, n));
      const P f = packet_sigmoid<Scalar>(load_packet(a + H + j, n));
      const P g = packet_tanh<Scalar>(load_packet(a + 2 * H + j, n));
      const P o = packet_sigmoid<Scalar>(load_packet(a + 3 * H + j, n));
      const P c = pmadd(f, load_packet(c_prev + b * H + j, n), pmul(i, g));
      store_packet(c_new + b * H + j, c, n);
      store_packet(m + b * H + j, pmul(o, packet_tanh<Scalar>(c)), n);
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
// Fused pointwise backward of one step, for the active rows, from the kept activations:
//   dc   = dc_next + dm ⊙ o ⊙ (1 − tanh²(c_t))
//   da_o = dm ⊙ tanh(c_t) ⊙ o ⊙ (1 − o)         da_i = dc ⊙ g ⊙ i ⊙ (1 − i)
//   da_f = dc ⊙ c_{t-1} ⊙ f ⊙ (1 − f)           da_g = dc ⊙ i ⊙ (1 − g²)
//   dc_{t-1} = dc ⊙ f
//   dgates  (B, 4H)  out: da = [da_i da_f da_g da_o] (inactive rows not written)
//   dc_next (B, H)   in: dc_t from step t+1; out: dc_{t-1} (inactive rows pass through)
//   dm      (B, H)   gradient of m_t = o ⊙ tanh(c_t)
//   gates   (B, 4H)  activated i, f, g, o       c_t, c_prev (B, H)
template <typename Scalar>
void lstm_pointwise_backward(Scalar* dgates, Scalar* dc_next, const Scalar* dm, const Scalar* gates,
                             const Scalar* c_t, const Scalar* c_prev, const SequenceOptions& seq, Index t,
                             Index B, Index H) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    const Scalar* a = gates + b * 4 * H;
    Scalar* da = dgates + b * 4 * H;
    for (Index j = 0; j < H; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, H - j);
      const Index k = b * H + j;  // this packet's offset in the (B, H) buffers
      const P i = load_packet(a + j, n), f = load_packet(a + H + j, n);
      const P g = load_packet(a + 2 * H + j, n), o = load_packet(a + 3 * H + j, n);
      const P dm_k = load_packet(dm + k, n);
      const P tanh_c = packet_tanh<Scalar>(load_packet(c_t + k, n));
      const P dc = padd(load_packet(dc_next + k, n), pmul(pmul(dm_k, o), psub(one, pmul(tanh_c, tanh_c))));
      store_packet(da + j, pmul(pmul(dc, g), pmul(i, psub(one, i))), n);
      store_packet(da + H + j, pmul(pmul(dc, load_packet(c_prev + k, n)), pmul(f, psub(one, f))), n);
      store_packet(da + 2 * H + j, pmul(pmul(dc, i), psub(one, pmul(g, g))), n);
      store_packet(da + 3 * H + j, pmul(pmul(dm_k, tanh_c), pmul(o, psub(one, o))), n);
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
                  const Scalar* w_hr, const LstmDims& d, const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G(), H_out = d.H_out(), TB = d.T * d.B;
  const bool training = ws != nullptr;
  const bool projected = d.P > 0;

  // The workspace when training (see lstm.hpp); inference keeps nothing.
  Scalar* ws_gates = ws;                                          // (T, B, G)
  Scalar* ws_c = training ? ws_gates + TB * G : nullptr;          // (T, B, H)
  Scalar* ws_c_prev = training ? ws_c + TB * H : nullptr;         // (T, B, H)
  Scalar* ws_h_prev = training ? ws_c_prev + TB * H : nullptr;    // (T, B, H_out)
  Scalar* ws_m = training ? ws_h_prev + TB * H_out : nullptr;     // (T, B, H), projection only

  Buffer<Scalar> scratch_gates(training ? 0 : TB * G);            // inference: (T, B, G)
  Buffer<Scalar> h_state(B * H_out);                              // (B, H_out) h carried between steps
  Buffer<Scalar> c_state(B * H);                                  // (B, H) c carried between steps
  Buffer<Scalar> scratch_m = Buffer<Scalar>::Zero(projected && !training ? B * H : 0);  // (B, H) m_t
  copy_or_zero(h_state.data(), h0, B * H_out);
  copy_or_zero(c_state.data(), c0, B * H);
  Scalar* gates = training ? ws_gates : scratch_gates.data();     // (T, B, G)

  // 1. Input projection of all steps at once, and both biases.
  MatrixMap<Scalar> gates_all(gates, TB, G);
  gates_all.noalias() = ConstMatrixMap<Scalar>(x, TB, I) * ConstMatrixMap<Scalar>(w_ih, G, I).transpose();
  if (b_ih != nullptr) gates_all.rowwise() += ConstRowVectorMap<Scalar>(b_ih, G);
  if (b_hh != nullptr) gates_all.rowwise() += ConstRowVectorMap<Scalar>(b_hh, G);

  // 2. The recurrence: W_hh (and W_hr) packed once for all steps.
  PackedMatmul<Scalar, Eigen::RowMajor> recurrent(w_hh, G, H_out, B);
  std::optional<PackedMatmul<Scalar, Eigen::RowMajor>> projection;
  if (projected) projection.emplace(w_hr, d.P, H, B);
  for (Index s = 0; s < T; ++s) {
    const Index t = seq.time_at(s, T);
    Scalar* gates_t = gates + t * B * G;  // (B, G)
    Scalar* y_t = y + t * B * H_out;      // (B, H_out)
    recurrent.accumulate(gates_t, h_state.data(), B);  // gates_t += h_{t-1} · W_hhᵀ
    if (training) {
      std::copy_n(h_state.data(), B * H_out, ws_h_prev + t * B * H_out);
      std::copy_n(c_state.data(), B * H, ws_c_prev + t * B * H);
    }
    // c_t goes to the workspace (training) or over c_{t-1} in place; m_t is h_t unless projected.
    Scalar* c_t = training ? ws_c + t * B * H : c_state.data();
    Scalar* m_t = !projected ? y_t : (training ? ws_m + t * B * H : scratch_m.data());
    lstm_pointwise_forward(gates_t, c_t, m_t, c_state.data(), training, seq, t, B, H);
    if (projected) {
      std::fill_n(y_t, B * H_out, Scalar(0));
      projection->accumulate(y_t, m_t, B);  // h_t = m_t · W_hrᵀ
    }

    // Sequences past their length: zero output, state carried (also in the workspace).
    zero_inactive_rows(y_t, seq, t, B, H_out);
    if (training) {
      carry_inactive_rows(c_t, c_state.data(), seq, t, B, H);
      if (projected) zero_inactive_rows(m_t, seq, t, B, H);
      copy_active_rows(c_state.data(), c_t, seq, t, B, H);
    }
    copy_active_rows(h_state.data(), y_t, seq, t, B, H_out);
  }

  std::copy_n(h_state.data(), B * H_out, h_n);
  std::copy_n(c_state.data(), B * H, c_n);
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void lstm_backward(Scalar* dx, Scalar* dh0, Scalar* dc0, Scalar* dw_ih, Scalar* dw_hh, Scalar* dw_hr, Scalar* db,
                   const Scalar* dy, const Scalar* dh_n, const Scalar* dc_n,
                   const Scalar* x, const Scalar* ws, const Scalar* w_ih, const Scalar* w_hh, const Scalar* w_hr,
                   const LstmDims& d, const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G(), P = d.P, H_out = d.H_out(), TB = d.T * d.B;
  const bool projected = P > 0;

  // The forward's workspace.
  const Scalar* ws_gates = ws;                        // (T, B, G) activated gates
  const Scalar* ws_c = ws_gates + TB * G;             // (T, B, H) c_t
  const Scalar* ws_c_prev = ws_c + TB * H;            // (T, B, H) c_{t-1}
  const Scalar* ws_h_prev = ws_c_prev + TB * H;       // (T, B, H_out) h_{t-1}
  const Scalar* ws_m = ws_h_prev + TB * H_out;        // (T, B, H) m_t, projection only

  Buffer<Scalar> scratch_dgates(TB * G);              // (T, B, G) gradient of every step's pre-activations
  Buffer<Scalar> scratch_dh_all(projected ? TB * P : 0);  // (T, B, P) dh_t of every step, for dW_hr
  Buffer<Scalar> scratch_dm(projected ? B * H : 0);   // (B, H) dm_t
  Buffer<Scalar> scratch_dh_prev(B * H_out);          // (B, H_out) dG_t · W_hh
  Buffer<Scalar> dh_state(B * H_out);                 // (B, H_out) dh arriving from the next step
  Buffer<Scalar> dc_state(B * H);                     // (B, H) dc arriving from the next step
  copy_or_zero(dh_state.data(), dh_n, B * H_out);
  copy_or_zero(dc_state.data(), dc_n, B * H);

  // 1. Reverse walk. M = W_hhᵀ (H_out, G) is W_hh read column-major: dh_{t-1} = dG_t · W_hh;
  //    likewise dm_t = dh_t · W_hr.
  PackedMatmul<Scalar, Eigen::ColMajor> recurrent_t(w_hh, H_out, G, B);
  std::optional<PackedMatmul<Scalar, Eigen::ColMajor>> projection_t;
  if (projected) projection_t.emplace(w_hr, H, P, B);
  for (Index s = T - 1; s >= 0; --s) {
    const Index t = seq.time_at(s, T);
    if (dy != nullptr) add_active_rows(dh_state.data(), dy + t * B * H_out, seq, t, B, H_out);  // dh_t
    const Scalar* dm_t = dh_state.data();
    if (projected) {
      Scalar* dh_t = scratch_dh_all.data() + t * B * P;
      std::copy_n(dh_state.data(), B * P, dh_t);
      zero_inactive_rows(dh_t, seq, t, B, P);
      scratch_dm.setZero();
      projection_t->accumulate(scratch_dm.data(), dh_state.data(), B);
      dm_t = scratch_dm.data();
    }
    Scalar* dgates_t = scratch_dgates.data() + t * B * G;
    lstm_pointwise_backward(dgates_t, dc_state.data(), dm_t, ws_gates + t * B * G, ws_c + t * B * H,
                            ws_c_prev + t * B * H, seq, t, B, H);
    zero_inactive_rows(dgates_t, seq, t, B, G);
    scratch_dh_prev.setZero();
    recurrent_t.accumulate(scratch_dh_prev.data(), dgates_t, B);
    copy_active_rows(dh_state.data(), scratch_dh_prev.data(), seq, t, B, H_out);
  }
  std::copy_n(dh_state.data(), B * H_out, dh0);
  std::copy_n(dc_state.data(), B * H, dc0);

  // 2. Gradients of the inputs and weights, one GEMM each over all steps.
  const ConstMatrixMap<Scalar> dgates(scratch_dgates.data(), TB, G);
  MatrixMap<Scalar>(dx, TB, I).noalias() = dgates * ConstMatrixMap<Scalar>(w_ih, G, I);
  MatrixMap<Scalar>(dw_ih, G, I).noalias() = dgates.transpose() * ConstMatrixMap<Scalar>(x, TB, I);
  MatrixMap<Scalar>(dw_hh, G, H_out).noalias() = dgates.transpose() * ConstMatrixMap<Scalar>(ws_h_prev, TB, H_out);
  if (projected) {
    MatrixMap<Scalar>(dw_hr, P, H).noalias() =
        ConstMatrixMap<Scalar>(scratch_dh_all.data(), TB, P).transpose() * ConstMatrixMap<Scalar>(ws_m, TB, H);
  }
  if (db != nullptr) column_sums(db, scratch_dgates.data(), TB, G);
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
  lstm_pointwise_forward(scratch_gates.data(), c_new, h_new, c_prev, false, SequenceOptions{}, 0, B, H);
}

// ---------------------------------------------------------------------------------------------
#define LSTM_EXT_INSTANTIATE(Scalar)                                                                     \
  template void lstm_forward<Scalar>(Scalar*, Scalar*, Scalar*, Scalar*, const Scalar*, const Scalar*,   \
                                     const Scalar*, const Scalar*, const Scalar*, const Scalar*,         \
                                     const Scalar*, const Scalar*, const LstmDims&,                      \
                                     const SequenceOptions&);                                            \
  template void lstm_backward<Scalar>(Scalar*, Scalar*, Scalar*, Scalar*, Scalar*, Scalar*, Scalar*,     \
                                      const Scalar*, const Scalar*, const Scalar*, const Scalar*,        \
                                      const Scalar*, const Scalar*, const Scalar*, const Scalar*,        \
                                      const LstmDims&, const SequenceOptions&);                          \
  template void lstm_cell<Scalar>(Scalar*, Scalar*, const Scalar*, const Scalar*, const Scalar*,         \
                                  const Scalar*, const Scalar*, const Scalar*, const Scalar*, Index,     \
                                  Index, Index);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
