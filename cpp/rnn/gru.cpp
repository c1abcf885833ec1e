// lstm_ext core: GRU forward and backward for one layer and one direction.
//
// Dimensions: T time steps, B batch, I input features, H hidden units, G = 3H gate rows.
//
// The kernel pattern (see gru.hpp for the equations):
//   forward   1. gx (T*B, G) = X (T*B, I) · W_ihᵀ + b_ih                  one GEMM, all steps
//             2. per step t (in the walk's order): gh = h_{t-1} · W_hhᵀ + b_hh (packed W_hh),
//                then one fused pass: r, z, n and h_t. The recurrent part of n, gh_n, is kept
//                for backward because the reset gate multiplies it.
//   backward  1. reverse walk: dh_t = dy_t + dh from the next step; the fused pass gives the
//                gradients of the input pre-activations dGx_t = [da_r, da_z, da_n] and of the
//                recurrent ones dGh_t = [da_r, da_z, da_n ⊙ r], and the direct part dh_t ⊙ z;
//                then dh_{t-1} = dh_t ⊙ z + dGh_t · W_hh (packed)
//             2. after the walk, one GEMM each: dX = dGx · W_ih, dW_ih = dGxᵀ · X,
//                dW_hh = dGhᵀ · H_prev; db_ih, db_hh = column sums of dGx, dGh
// Nothing is allocated inside a time loop.
#include "rnn/gru.hpp"

namespace lstm_ext {
namespace {

// ---------------------------------------------------------------------------------------------
// Fused pointwise forward of one step, for the active rows:
//   r = σ(gx_r + gh_r)   z = σ(gx_z + gh_z)   n = tanh(gx_n + r ⊙ gh_n)
//   h' = (1 − z) ⊙ n + z ⊙ h
//   gx     (B, 3H)  in: input pre-activations; out: activated r, z, n (when keep)
//   gh     (B, 3H)  in: recurrent pre-activations h · W_hhᵀ + b_hh
//   hn     (B, H)   out: gh_n (when keep), nullptr otherwise
//   h_new  (B, H)   out          h_prev (B, H) in
template <typename Scalar>
void gru_pointwise_forward(Scalar* gx, Scalar* hn, Scalar* h_new, const Scalar* gh, const Scalar* h_prev,
                           const SequenceOptions& seq, Index t, Index B, Index H) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    Scalar* a = gx + b * 3 * H;
    const Scalar* ah = gh + b * 3 * H;
    for (Index j = 0; j < H; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, H - j);
      const Index k = b * H + j;  // this packet's offset in the (B, H) buffers
      const P r = packet_sigmoid<Scalar>(padd(load_packet(a + j, n), load_packet(ah + j, n)));
      const P z = packet_sigmoid<Scalar>(padd(load_packet(a + H + j, n), load_packet(ah + H + j, n)));
      const P gh_n = load_packet(ah + 2 * H + j, n);
      const P n_t = packet_tanh<Scalar>(pmadd(r, gh_n, load_packet(a + 2 * H + j, n)));
      const P h = load_packet(h_prev + k, n);
      store_packet(h_new + k, padd(pmul(psub(one, z), n_t), pmul(z, h)), n);
      if (hn != nullptr) {
        store_packet(a + j, r, n);
        store_packet(a + H + j, z, n);
        store_packet(a + 2 * H + j, n_t, n);
        store_packet(hn + k, gh_n, n);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Fused pointwise backward of one step, for the active rows, from the kept activations:
//   da_n = dh ⊙ (1 − z) ⊙ (1 − n²)
//   da_z = dh ⊙ (h_{t-1} − n) ⊙ z ⊙ (1 − z)
//   da_r = da_n ⊙ gh_n ⊙ r ⊙ (1 − r)
//   dgx = [da_r, da_z, da_n]     dgh = [da_r, da_z, da_n ⊙ r]     dh_direct = dh ⊙ z
//   dgx, dgh  (B, 3H)  out (inactive rows not written)
//   dh        (B, H)   in: dh_t; out: dh ⊙ z, the part of dh_{t-1} that skips W_hh
//   gates     (B, 3H)  activated r, z, n      hn (B, H) gh_n      h_prev (B, H)
template <typename Scalar>
void gru_pointwise_backward(Scalar* dgx, Scalar* dgh, Scalar* dh, const Scalar* gates, const Scalar* hn,
                            const Scalar* h_prev, const SequenceOptions& seq, Index t, Index B, Index H) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    const Scalar* a = gates + b * 3 * H;
    Scalar* dax = dgx + b * 3 * H;
    Scalar* dah = dgh + b * 3 * H;
    for (Index j = 0; j < H; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, H - j);
      const Index k = b * H + j;
      const P r = load_packet(a + j, n), z = load_packet(a + H + j, n), n_t = load_packet(a + 2 * H + j, n);
      const P dh_k = load_packet(dh + k, n);
      const P da_n = pmul(pmul(dh_k, psub(one, z)), psub(one, pmul(n_t, n_t)));
      const P da_z = pmul(pmul(dh_k, psub(load_packet(h_prev + k, n), n_t)), pmul(z, psub(one, z)));
      const P da_r = pmul(pmul(da_n, load_packet(hn + k, n)), pmul(r, psub(one, r)));
      store_packet(dax + j, da_r, n);
      store_packet(dax + H + j, da_z, n);
      store_packet(dax + 2 * H + j, da_n, n);
      store_packet(dah + j, da_r, n);
      store_packet(dah + H + j, da_z, n);
      store_packet(dah + 2 * H + j, pmul(da_n, r), n);
      store_packet(dh + k, pmul(dh_k, z), n);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void gru_forward(Scalar* y, Scalar* h_n, Scalar* ws, const Scalar* x, const Scalar* h0,
                 const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                 const GruDims& d, const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G(), TB = d.T * d.B;
  const bool training = ws != nullptr;

  // The workspace when training (see gru.hpp); inference keeps nothing.
  Scalar* ws_gates = ws;                                       // (T, B, G)
  Scalar* ws_hn = training ? ws_gates + TB * G : nullptr;      // (T, B, H)
  Scalar* ws_h_prev = training ? ws_hn + TB * H : nullptr;     // (T, B, H)

  Buffer<Scalar> scratch_gx(training ? 0 : TB * G);  // inference: (T, B, G)
  Buffer<Scalar> scratch_gh(B * G);                  // (B, G) this step's recurrent pre-activations
  Buffer<Scalar> h_state(B * H);                     // (B, H) h carried between steps
  copy_or_zero(h_state.data(), h0, B * H);
  Scalar* gx = training ? ws_gates : scratch_gx.data();  // (T, B, G)

  // 1. Input projection of all steps at once (b_hh belongs to the recurrent part: reset gate).
  MatrixMap<Scalar> gx_all(gx, TB, G);
  gx_all.noalias() = ConstMatrixMap<Scalar>(x, TB, I) * ConstMatrixMap<Scalar>(w_ih, G, I).transpose();
  if (b_ih != nullptr) gx_all.rowwise() += ConstRowVectorMap<Scalar>(b_ih, G);

  // 2. The recurrence: W_hh packed once for all steps.
  PackedMatmul<Scalar, Eigen::RowMajor> recurrent(w_hh, G, H, B);
  MatrixMap<Scalar> gh(scratch_gh.data(), B, G);
  for (Index s = 0; s < T; ++s) {
    const Index t = seq.time_at(s, T);
    Scalar* y_t = y + t * B * H;  // (B, H)
    if (b_hh != nullptr) {
      gh.rowwise() = ConstRowVectorMap<Scalar>(b_hh, G);
    } else {
      gh.setZero();
    }
    recurrent.accumulate(scratch_gh.data(), h_state.data(), B);  // gh = h_{t-1} · W_hhᵀ + b_hh
    if (training) std::copy_n(h_state.data(), B * H, ws_h_prev + t * B * H);
    gru_pointwise_forward(gx + t * B * G, training ? ws_hn + t * B * H : nullptr, y_t, scratch_gh.data(),
                          h_state.data(), seq, t, B, H);
    zero_inactive_rows(y_t, seq, t, B, H);
    if (training) zero_inactive_rows(ws_hn + t * B * H, seq, t, B, H);
    copy_active_rows(h_state.data(), y_t, seq, t, B, H);
  }
  std::copy_n(h_state.data(), B * H, h_n);
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void gru_backward(Scalar* dx, Scalar* dh0, Scalar* dw_ih, Scalar* dw_hh, Scalar* db_ih, Scalar* db_hh,
                  const Scalar* dy, const Scalar* dh_n, const Scalar* x, const Scalar* ws,
                  const Scalar* w_ih, const Scalar* w_hh, const GruDims& d, const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G(), TB = d.T * d.B;

  // The forward's workspace.
  const Scalar* ws_gates = ws;                    // (T, B, G) activated r, z, n
  const Scalar* ws_hn = ws_gates + TB * G;        // (T, B, H) gh_n
  const Scalar* ws_h_prev = ws_hn + TB * H;       // (T, B, H) h_{t-1}

  Buffer<Scalar> scratch_dgx(TB * G);             // (T, B, G) gradient of the input pre-activations
  Buffer<Scalar> scratch_dgh(TB * G);             // (T, B, G) gradient of the recurrent pre-activations
  Buffer<Scalar> scratch_dh_prev(B * H);          // (B, H) dGh_t · W_hh
  Buffer<Scalar> dh_state(B * H);                 // (B, H) dh arriving from the next step
  copy_or_zero(dh_state.data(), dh_n, B * H);

  // 1. Reverse walk. M = W_hhᵀ (H, G) is W_hh read column-major: dGh_t · W_hh.
  PackedMatmul<Scalar, Eigen::ColMajor> recurrent_t(w_hh, H, G, B);
  for (Index s = T - 1; s >= 0; --s) {
    const Index t = seq.time_at(s, T);
    if (dy != nullptr) add_active_rows(dh_state.data(), dy + t * B * H, seq, t, B, H);  // dh_t
    Scalar* dgx_t = scratch_dgx.data() + t * B * G;
    Scalar* dgh_t = scratch_dgh.data() + t * B * G;
    // dh_state becomes dh_t ⊙ z_t for the active rows; inactive rows pass through unchanged.
    gru_pointwise_backward(dgx_t, dgh_t, dh_state.data(), ws_gates + t * B * G, ws_hn + t * B * H,
                           ws_h_prev + t * B * H, seq, t, B, H);
    zero_inactive_rows(dgx_t, seq, t, B, G);
    zero_inactive_rows(dgh_t, seq, t, B, G);
    scratch_dh_prev.setZero();
    recurrent_t.accumulate(scratch_dh_prev.data(), dgh_t, B);
    add_active_rows(dh_state.data(), scratch_dh_prev.data(), seq, t, B, H);
  }
  std::copy_n(dh_state.data(), B * H, dh0);

  // 2. Gradients of the inputs and weights, one GEMM each over all steps.
  const ConstMatrixMap<Scalar> dgx(scratch_dgx.data(), TB, G), dgh(scratch_dgh.data(), TB, G);
  MatrixMap<Scalar>(dx, TB, I).noalias() = dgx * ConstMatrixMap<Scalar>(w_ih, G, I);
  MatrixMap<Scalar>(dw_ih, G, I).noalias() = dgx.transpose() * ConstMatrixMap<Scalar>(x, TB, I);
  MatrixMap<Scalar>(dw_hh, G, H).noalias() = dgh.transpose() * ConstMatrixMap<Scalar>(ws_h_prev, TB, H);
  if (db_ih != nullptr) column_sums(db_ih, scratch_dgx.data(), TB, G);
  if (db_hh != nullptr) column_sums(db_hh, scratch_dgh.data(), TB, G);
}

// ---------------------------------------------------------------------------------------------
#define LSTM_EXT_INSTANTIATE(Scalar)                                                                   \
  template void gru_forward<Scalar>(Scalar*, Scalar*, Scalar*, const Scalar*, const Scalar*,          \
                                    const Scalar*, const Scalar*, const Scalar*, const Scalar*,       \
                                    const GruDims&, const SequenceOptions&);                          \
  template void gru_backward<Scalar>(Scalar*, Scalar*, Scalar*, Scalar*, Scalar*, Scalar*,            \
                                     const Scalar*, const Scalar*, const Scalar*, const Scalar*,      \
                                     const Scalar*, const Scalar*, const GruDims&, const SequenceOptions&);
LSTM_EXT_INSTANTIATE(float)
LSTM_EXT_INSTANTIATE(double)
#undef LSTM_EXT_INSTANTIATE

}  // namespace lstm_ext
