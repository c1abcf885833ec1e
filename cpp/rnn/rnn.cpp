// lstm_ext core: vanilla RNN forward and backward for one layer and one direction.
//
// Dimensions: T time steps, B batch, I input features, H hidden units.
//
// The kernel pattern (see rnn.hpp for the equations):
//   forward   1. a (T*B, H) = X (T*B, I) · W_ihᵀ + b_ih + b_hh                one GEMM, all steps
//             2. per step t (in the walk's order): a_t += h_{t-1} · W_hhᵀ (packed W_hh), then
//                h_t = act(a_t) in one pass
//   backward  1. reverse walk: dh_t = dy_t + dh from the next step; da_t = dh_t ⊙ act'(a_t)
//                (tanh' = 1 − h², relu' = [h > 0]); dh_{t-1} = da_t · W_hh (packed)
//             2. after the walk, one GEMM each: dX = dA · W_ih, dW_ih = dAᵀ · X,
//                dW_hh = dAᵀ · H_prev, and db = column sums of dA
// Nothing is allocated inside a time loop.
#include "rnn/rnn.hpp"

namespace lstm_ext {
namespace {

// h = act(a) for the active rows: a (B, H) pre-activations, h (B, H) out (may alias a).
template <typename Scalar>
void rnn_pointwise_forward(Scalar* h, const Scalar* a, RnnActivation act, const SequenceOptions& seq, Index t,
                           Index B, Index H) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P zero = pset1<P>(Scalar(0));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    for (Index j = 0; j < H; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, H - j);
      const P a_k = load_packet(a + b * H + j, n);
      store_packet(h + b * H + j, act == RnnActivation::Tanh ? packet_tanh<Scalar>(a_k) : pmax(a_k, zero), n);
    }
  }
}

// da = dh ⊙ act'(a) for the active rows, from h = act(a):
//   tanh' = 1 − h²      relu' = 1 where h > 0, else 0 (PyTorch's choice at 0)
//   da (B, H) out       dh (B, H) in       h (B, H) in
template <typename Scalar>
void rnn_pointwise_backward(Scalar* da, const Scalar* dh, const Scalar* h, RnnActivation act,
                            const SequenceOptions& seq, Index t, Index B, Index H) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1)), zero = pset1<P>(Scalar(0));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    for (Index j = 0; j < H; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, H - j);
      const Index k = b * H + j;
      const P h_k = load_packet(h + k, n);
      const P slope = act == RnnActivation::Tanh ? psub(one, pmul(h_k, h_k)) : pand(pcmp_lt(zero, h_k), one);
      store_packet(da + k, pmul(load_packet(dh + k, n), slope), n);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void rnn_forward(Scalar* y, Scalar* h_n, Scalar* ws, const Scalar* x, const Scalar* h0,
                 const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                 RnnActivation act, const RnnDims& d, const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, TB = d.T * d.B;
  const bool training = ws != nullptr;

  // The workspace when training (see rnn.hpp); inference keeps nothing.
  Scalar* ws_h = ws;                                        // (T, B, H)
  Scalar* ws_h_prev = training ? ws_h + TB * H : nullptr;   // (T, B, H)

  Buffer<Scalar> scratch_a(training ? 0 : TB * H);  // inference: (T, B, H) pre-activations
  Buffer<Scalar> h_state(B * H);                    // (B, H) h carried between steps
  copy_or_zero(h_state.data(), h0, B * H);
  Scalar* a = training ? ws_h : scratch_a.data();   // (T, B, H): a_t, then h_t in place when training

  // 1. Input projection of all steps at once, and both biases.
  MatrixMap<Scalar> a_all(a, TB, H);
  a_all.noalias() = ConstMatrixMap<Scalar>(x, TB, I) * ConstMatrixMap<Scalar>(w_ih, H, I).transpose();
  if (b_ih != nullptr) a_all.rowwise() += ConstRowVectorMap<Scalar>(b_ih, H);
  if (b_hh != nullptr) a_all.rowwise() += ConstRowVectorMap<Scalar>(b_hh, H);

  // 2. The recurrence: W_hh packed once for all steps.
  PackedMatmul<Scalar, Eigen::RowMajor> recurrent(w_hh, H, H, B);
  for (Index s = 0; s < T; ++s) {
    const Index t = seq.time_at(s, T);
    Scalar* a_t = a + t * B * H;  // (B, H)
    Scalar* y_t = y + t * B * H;  // (B, H)
    recurrent.accumulate(a_t, h_state.data(), B);  // a_t += h_{t-1} · W_hhᵀ
    if (training) std::copy_n(h_state.data(), B * H, ws_h_prev + t * B * H);
    rnn_pointwise_forward(a_t, a_t, act, seq, t, B, H);  // a_t becomes h_t (kept when training)
    std::copy_n(a_t, B * H, y_t);
    zero_inactive_rows(y_t, seq, t, B, H);
    copy_active_rows(h_state.data(), y_t, seq, t, B, H);
  }
  std::copy_n(h_state.data(), B * H, h_n);
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void rnn_backward(Scalar* dx, Scalar* dh0, Scalar* dw_ih, Scalar* dw_hh, Scalar* db,
                  const Scalar* dy, const Scalar* dh_n, const Scalar* x, const Scalar* ws,
                  const Scalar* w_ih, const Scalar* w_hh, RnnActivation act, const RnnDims& d,
                  const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, TB = d.T * d.B;

  // The forward's workspace.
  const Scalar* ws_h = ws;                  // (T, B, H) h_t
  const Scalar* ws_h_prev = ws_h + TB * H;  // (T, B, H) h_{t-1}

  Buffer<Scalar> scratch_da(TB * H);        // (T, B, H) gradient of every step's pre-activations
  Buffer<Scalar> scratch_dh_prev(B * H);    // (B, H) da_t · W_hh
  Buffer<Scalar> dh_state(B * H);           // (B, H) dh arriving from the next step
  copy_or_zero(dh_state.data(), dh_n, B * H);

  // 1. Reverse walk. M = W_hhᵀ is W_hh read column-major: dh_{t-1} = da_t · W_hh.
  PackedMatmul<Scalar, Eigen::ColMajor> recurrent_t(w_hh, H, H, B);
  for (Index s = T - 1; s >= 0; --s) {
    const Index t = seq.time_at(s, T);
    if (dy != nullptr) add_active_rows(dh_state.data(), dy + t * B * H, seq, t, B, H);  // dh_t
    Scalar* da_t = scratch_da.data() + t * B * H;
    rnn_pointwise_backward(da_t, dh_state.data(), ws_h + t * B * H, act, seq, t, B, H);
    zero_inactive_rows(da_t, seq, t, B, H);
    scratch_dh_prev.setZero();
    recurrent_t.accumulate(scratch_dh_prev.data(), da_t, B);
    copy_active_rows(dh_state.data(), scratch_dh_prev.data(), seq, t, B, H);
  }
  std::copy_n(dh_state.data(), B * H, dh0);

  // 2. Gradients of the inputs and weights, one GEMM each over all steps.
  const ConstMatrixMap<Scalar> da(scratch_da.data(), TB, H);
  MatrixMap<Scalar>(dx, TB, I).noalias() = da * ConstMatrixMap<Scalar>(w_ih, H, I);
  MatrixMap<Scalar>(dw_ih, H, I).noalias() = da.transpose() * ConstMatrixMap<Scalar>(x, TB, I);
  MatrixMap<Scalar>(dw_hh, H, H).noalias() = da.transpose() * ConstMatrixMap<Scalar>(ws_h_prev, TB, H);
  if (db != nullptr) column_sums(db, scratch_da.data(), TB, H);
}

// ---------------------------------------------------------------------------------------------
#define LSTM_EXT_INSTANTIATE(Scalar)                                                                  \
  template void rnn_forward<Scalar>(Scalar*, Scalar*, Scalar*, const Scalar*, const Scalar*,         \
                                    const Scalar*, const Scalar*, const Scalar*, const Scalar*,      \
                                    RnnActivation, const RnnDims&, const SequenceOptions&);          \
  template void rnn_backward<Scalar>(Scalar*, Scalar*, Scalar*, Scalar*, Scalar*, const Scalar*,     \
                                     const Scalar*, const Scalar*, const Scalar*, const Scalar*,     \
                                     const Scalar*, RnnActivation, const RnnDims&, const SequenceOptions&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
