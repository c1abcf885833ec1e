// lstm_ext core: LSTM forward and backward for one layer and one direction,
// compiled once per kernel level (kernels.hpp).
//
// Dimensions: T time steps, B batch, I input features, H hidden units, G = 4H gate rows,
// P projection size (0 = none), H_out = P or H: the size of h and of the outputs.
//
// The kernel pattern (see lstm.hpp for the equations), on a team of threads (parallel.hpp):
//   forward   1. gates (T*B, G) = X (T*B, I) · W_ihᵀ + b_ih + b_hh       one GEMM, all steps,
//                in blocks shared out to the team
//             2. per step t (in the walk's order), each member for its own units u:
//                rec = h_{t-1} · W_hh[rows of u]ᵀ (its rows of W_hh, packed once per call), then
//                the fused pass over the four gates of u: activations, c_t, m_t. With a
//                projection, after a barrier, each member computes its columns of
//                h_t = m_t · W_hrᵀ. One barrier per step (two with a projection).
//                With a large batch (split_by_rows, common.hpp) each member runs its own
//                sequences with all units instead, W_hh packed once for all: no barrier.
//   backward  1. reverse walk, each member for its units: dh_t = dy_t + dh from the next step
//                (with a projection dm_t = dh_t · W_hr, else dm_t = dh_t), the fused pass
//                gives dG_t and dc_{t-1} from the kept activations; after a barrier, its
//                columns of dh_{t-1} = dG_t · W_hh (its columns of W_hh, packed once per call).
//             2. after the walk, in blocks shared out to the team: dX = dG · W_ih,
//                dW_ih = dGᵀ · X, dW_hh = dGᵀ · H_prev, dW_hr = dHᵀ · M, db = column sums of dG
//                (X, H_prev and M kept packed in the workspace by the forward).
// Sequences past their length carry their state, output zeros and pass gradients through.
// Nothing is allocated inside a time loop; every element is computed the same way whatever the
// team size (see parallel.hpp), so results do not depend on the number of threads.
#include "rnn/lstm.hpp"

#include "rnn/kernels.hpp"
#include "rnn/int8.hpp"
#include "rnn/layer_norm.hpp"
#include "rnn/products.hpp"

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {
namespace {

// The workspace's blocks (above) in a buffer of lstm_workspace_size elements; Pointer is Scalar*
// for the forward that fills it, const Scalar* for the backward that reads it.
template <typename Scalar, typename Pointer>
struct LstmWorkspace {
  Pointer gates = nullptr, c = nullptr, c0 = nullptr, h_prev = nullptr, x = nullptr, m = nullptr,
          c_cell = nullptr, ln_ih_hat = nullptr, ln_hh_hat = nullptr, ln_c_hat = nullptr, ln_rstd = nullptr;
  LstmWorkspace(Pointer ws, const LstmDims& d) {
    if (ws == nullptr) return;  // inference: nothing kept
    const Index TB = d.T * d.B;
    gates = ws;
    c = gates + TB * d.G();
    c0 = c + TB * d.H;
    h_prev = c0 + d.B * d.H;
    x = h_prev + packed_size<Scalar>(d.H_out(), TB);
    m = x + packed_size<Scalar>(d.I, TB);
    // c̃_t: its own block with zoneout of c; otherwise c̃_t = c_t
    Pointer after_m = m + (d.P > 0 ? packed_size<Scalar>(d.H, TB) : 0);
    c_cell = d.zoneout_c ? after_m : c;
    if (d.layer_norm) {
      ln_ih_hat = after_m + (d.zoneout_c ? TB * d.H : 0);
      ln_hh_hat = ln_ih_hat + TB * d.G();
      ln_c_hat = ln_hh_hat + TB * d.G();
      ln_rstd = ln_c_hat + TB * d.H;  // (T, B, 3): r of LN_ih, LN_hh, LN_c
    }
  }
};

// ---------------------------------------------------------------------------------------------
// The variants (lstm.hpp) in the time loops.

// Zoneout weights of the rows of one step: z (rows, ld) of a (T, B, ld) block, or one value for
// every element (nullptr rows).
template <typename Scalar>
struct ZoneRows {
  const Scalar* rows = nullptr;  // (B, ld) the weights of this step, or nullptr
  Index ld = 0;
  Scalar value = 0;

  Scalar at(Index b, Index col) const { return rows != nullptr ? rows[b * ld + col] : value; }
  Packet<Scalar> packet(Index b, Index col, Index n) const {
    return rows != nullptr ? load_packet(rows + b * ld + col, n) : Eigen::internal::pset1<Packet<Scalar>>(value);
  }
};

// The zoneout weights of z (T, B, ld) (or value) at time t, from row b0 of the batch on.
template <typename Scalar>
ZoneRows<Scalar> zone_rows(const Scalar* z, Scalar value, Index t, Index B, Index b0, Index ld) {
  return {z != nullptr ? z + (t * B + b0) * ld : nullptr, ld, value};
}

// Zoneout of h in the `cols` of the active rows: h_t = z ⊙ h_{t-1} + (1 − z) ⊙ h̃_t, over h̃_t in place.
template <typename Scalar>
void zoneout_rows(Scalar* h_t, const Scalar* h_prev, Columns cols, const ZoneRows<Scalar>& z,
                  const SequenceOptions& seq, Index t, Index B) {
  for_rows(Rows::Active, seq, t, B, [&](Index b) {
    Scalar* h = cols.in_row(h_t, b);
    const Scalar* h_before = cols.in_row(h_prev, b);
    for (Index j = 0; j < cols.width; ++j) {
      const Scalar zj = z.at(b, cols.col0 + j);
      h[j] = zj * h_before[j] + (Scalar(1) - zj) * h[j];
    }
  });
}

// Its gradient, in the active rows: dh̃_t = (1 − z) ⊙ dh_t over dh_t in place, and the part that
// reaches h_{t-1} directly, carry = z ⊙ dh_t (rows inactive at t: not touched).
template <typename Scalar>
void zoneout_gradient_rows(Scalar* dh_t, Scalar* carry, Columns cols, const ZoneRows<Scalar>& z,
                           const SequenceOptions& seq, Index t, Index B) {
  for_rows(Rows::Active, seq, t, B, [&](Index b) {
    Scalar* dh = cols.in_row(dh_t, b);
    Scalar* to_prev = cols.in_row(carry, b);
    for (Index j = 0; j < cols.width; ++j) {
      const Scalar zj = z.at(b, cols.col0 + j);
      to_prev[j] = zj * dh[j];
      dh[j] = (Scalar(1) - zj) * dh[j];
    }
  });
}

// The recurrent input with recurrent dropout, in the `cols` of every row: h̄ = keep ⊙ h.
template <typename Scalar>
void mask_rows(Scalar* h_bar, const Scalar* h, const Scalar* keep, Columns cols, Index B) {
  for (Index b = 0; b < B; ++b) {
    Scalar* to = cols.in_row(h_bar, b);
    const Scalar *from = cols.in_row(h, b), *k = cols.in_row(keep, b);
    for (Index j = 0; j < cols.width; ++j) to[j] = k[j] * from[j];
  }
}

// dh_{t-1} in the active rows from the product dG_t · W_hh (`from`): ⊙ keep with recurrent
// dropout (keep nullptr: none), + carry, the zoneout part (nullptr: none).
template <typename Scalar>
void recurrent_gradient_rows(Scalar* dh_prev, Columns cols, const Scalar* from, Columns from_cols,
                             const Scalar* keep, const Scalar* carry, const SequenceOptions& seq, Index t, Index B) {
  if (keep == nullptr && carry == nullptr) return copy_rows(Rows::Active, dh_prev, cols, from, from_cols, seq, t, B);
  for_rows(Rows::Active, seq, t, B, [&](Index b) {
    Scalar* to = cols.in_row(dh_prev, b);
    const Scalar* product = from_cols.in_row(from, b);
    const Scalar* keep_b = keep != nullptr ? cols.in_row(keep, b) : nullptr;
    const Scalar* carry_b = carry != nullptr ? cols.in_row(carry, b) : nullptr;
    for (Index j = 0; j < cols.width; ++j) {
      Scalar v = keep_b != nullptr ? product[j] * keep_b[j] : product[j];
      if (carry_b != nullptr) v += carry_b[j];
      to[j] = v;
    }
  });
}


// ---------------------------------------------------------------------------------------------
// Fused pointwise forward of one step, for the units [u0, u0 + nu) of the active rows:
//   a = gx + rec:  gx the input part (with both biases), rec the recurrent part h̄_{t-1} · W_hhᵀ
//   i = σ(a_i + P_i ⊙ c)   f = σ(a_f + P_f ⊙ c)   g = tanh(a_g)       (P: with peepholes)
//   c̃ = f ⊙ c + i ⊙ g
//   o = σ(a_o + P_o ⊙ c̃)   m = o ⊙ tanh(c̃)
//   c' = z ⊙ c + (1 − z) ⊙ c̃  with zoneout of c, else c' = c̃
//   gx     (B, 4H)               in; out: activated gates i, f, g, o when keep_gates
//   rec    (B, ld_rec)           gate q of unit u0 + j at column q * rec_gate_stride + j
//   c_new  (B, H)                out        m (B, H) out
//   c_prev (B, H)                in (may alias c_new: each packet is read before it is written)
//   w_ch   (3, H)                peephole weights (kPeephole)
//   z      (B, H)                zoneout weights of this step (kZoneout)
//   c_cell (B, H)                out: c̃, with zoneout when training (kZoneout), else nullptr
// With layer normalization (kLayerNorm) m is not written here: it needs the statistics of the whole
// row of c̃ (lstm_norm_cell_output). Inactive rows (past their sequence's length at time t) are
// not touched. The plain cell (no variant) is its own instantiation: nothing of the variants is
// computed.
template <typename Scalar, bool kPeephole, bool kZoneout, bool kLayerNorm = false>
void lstm_pointwise_forward(Scalar* gx, Scalar* c_new, Scalar* m, const Scalar* rec, Index ld_rec,
                            Index rec_gate_stride, const Scalar* c_prev, bool keep_gates, const Scalar* w_ch,
                            const ZoneRows<Scalar>& z, Scalar* c_cell, const SequenceOptions& seq, Index t, Index B,
                            Index H, Index u0, Index nu) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    Scalar* a = gx + b * 4 * H + u0;                 // gate q of unit u0 + j at a[q * H + j]
    const Scalar* r = rec + b * ld_rec;              // gate q of unit u0 + j at r[q * rec_gate_stride + j]
    const Index s = rec_gate_stride;
    for (Index j = 0; j < nu; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, nu - j);
      const Index k = b * H + u0 + j;  // this packet's offset in the (B, H) buffers
      const P c = load_packet(c_prev + k, n);
      P a_i = padd(load_packet(a + j, n), load_packet(r + j, n));
      P a_f = padd(load_packet(a + H + j, n), load_packet(r + s + j, n));
      P a_o = padd(load_packet(a + 3 * H + j, n), load_packet(r + 3 * s + j, n));
      if constexpr (kPeephole) {
        a_i = pmadd(load_packet(w_ch + u0 + j, n), c, a_i);
        a_f = pmadd(load_packet(w_ch + H + u0 + j, n), c, a_f);
      }
      const P i = packet_sigmoid<Scalar>(a_i);
      const P f = packet_sigmoid<Scalar>(a_f);
      const P g = packet_tanh<Scalar>(padd(load_packet(a + 2 * H + j, n), load_packet(r + 2 * s + j, n)));
      const P c_cand = pmadd(f, c, pmul(i, g));
      if constexpr (kPeephole) a_o = pmadd(load_packet(w_ch + 2 * H + u0 + j, n), c_cand, a_o);
      const P o = packet_sigmoid<Scalar>(a_o);
      if constexpr (kZoneout) {
        const P zk = z.packet(b, u0 + j, n);
        store_packet(c_new + k, pmadd(zk, c, pmul(psub(one, zk), c_cand)), n);
        if (c_cell != nullptr) store_packet(c_cell + k, c_cand, n);
      } else {
        store_packet(c_new + k, c_cand, n);
      }
      if constexpr (!kLayerNorm) store_packet(m + k, pmul(o, packet_tanh<Scalar>(c_cand)), n);
      if (keep_gates) {
        store_packet(a + j, i, n);
        store_packet(a + H + j, f, n);
        store_packet(a + 2 * H + j, g, n);
        store_packet(a + 3 * H + j, o, n);
      }
    }
  }
}

// pass(std::bool_constant<peephole>{}, std::bool_constant<zoneout>{}, std::bool_constant<layer_norm>{}):
// a pointwise pass calls its instantiation for the variants of a call through this.
template <typename Pass>
void for_variants(bool peephole, bool zoneout, bool layer_norm, Pass&& pass) {
  auto with = [&](auto with_peephole, auto with_zoneout) {
    if (layer_norm) return pass(with_peephole, with_zoneout, std::true_type{});
    return pass(with_peephole, with_zoneout, std::false_type{});
  };
  if (peephole) {
    if (zoneout) return with(std::true_type{}, std::true_type{});
    return with(std::true_type{}, std::false_type{});
  }
  if (zoneout) return with(std::false_type{}, std::true_type{});
  return with(std::false_type{}, std::false_type{});
}

// With layer normalization, the second half of a step's pointwise forward, for the units
// [u0, u0 + nu) of the active rows, once c̃ is complete (whole rows):
//   ĉ = (c̃ − μ) · r over the row's H values,   m = o ⊙ tanh(γ_c ⊙ ĉ + β_c)
//   m (B, H) out    gates (B, 4H) activated (o in block 3)    c_cand (B, H) c̃
//   c_hat (B, H) out: ĉ, and rstd (B, at a stride of rstd_stride) out: r (training; else nullptr)
template <typename Scalar>
void lstm_norm_cell_output(Scalar* m, const Scalar* gates, const Scalar* c_cand, const Scalar* gamma,
                           const Scalar* beta, Scalar* c_hat, Scalar* rstd, Index rstd_stride,
                           const SequenceOptions& seq, Index t, Index B, Index H, Index u0, Index nu) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    const RowStats stats = row_stats(c_cand + b * H, H);
    if (rstd != nullptr) rstd[b * rstd_stride] = static_cast<Scalar>(stats.rstd);
    const SplitDouble<Scalar> mean = split_double<Scalar>(stats.mean);  // μ ≈ hi + lo (layer_norm.hpp)
    const P mean_hi = pset1<P>(mean.hi), mean_lo = pset1<P>(mean.lo), r = pset1<P>(static_cast<Scalar>(stats.rstd));
    for (Index j = 0; j < nu; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, nu - j);
      const Index k = b * H + u0 + j;
      const P normalized = pmul(psub(psub(load_packet(c_cand + k, n), mean_hi), mean_lo), r);
      if (c_hat != nullptr) store_packet(c_hat + k, normalized, n);
      const P cell = pmadd(load_packet(gamma + u0 + j, n), normalized, load_packet(beta + u0 + j, n));
      store_packet(m + k, pmul(load_packet(gates + b * 4 * H + 3 * H + u0 + j, n), packet_tanh<Scalar>(cell)), n);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// tanh'(x) = 1 − tanh²(x) = 4 e^(−2|x|) / (1 + e^(−2|x|))², accurate to a few ulps where 1 − tanh²
// would lose the digits tanh(x) ≈ ±1 shares with 1 (layer normalization's outputs reach |x| of a
// few, where 1 − tanh² in float keeps only about 4 digits).
template <typename Scalar>
inline Packet<Scalar> packet_tanh_derivative(const Packet<Scalar>& x) {
  using namespace Eigen::internal;
  using P = Packet<Scalar>;
  const P e = packet_exp<Scalar>(pmul(pset1<P>(Scalar(-2)), pabs(x)));
  const P denominator = padd(pset1<P>(Scalar(1)), e);
  return pdiv(pmul(pset1<P>(Scalar(4)), e), pmul(denominator, denominator));
}

// With layer normalization of c, what the pointwise backward reads of it: ĉ (T, B, H) and r (at a
// stride of rstd_stride from the (T, B) rows of the workspace), γ_c, β_c (H), and dn (B, H), the
// gradient of LN_c's output at this step (lstm_norm_cell_backward, whole rows).
template <typename Scalar>
struct CellNormBackward {
  const Scalar* c_hat = nullptr;  // ĉ_t rows of this step (B, H)
  const Scalar* rstd = nullptr;   // r of every (t, b) row, at rstd[(t * B + b) * rstd_stride]
  Index rstd_stride = 0;
  const Scalar* gamma = nullptr;
  const Scalar* beta = nullptr;
  const Scalar* dn_rows = nullptr;
};

// With layer normalization, the first half of a step's pointwise backward, for the units
// [u0, u0 + nu) of the active rows: the gradient of LN_c's output n = γ_c ⊙ ĉ + β_c,
//   dn = dm ⊙ o ⊙ (1 − tanh² n)  (to dn_rows (B, H), which the second half reads whole rows of),
// and its parts of LN_c's gain and bias gradients, summed over the walk: dγ_c += dn ⊙ ĉ, dβ_c += dn.
template <typename Scalar>
void lstm_norm_cell_backward(Scalar* dn_rows, Scalar* dgamma, Scalar* dbeta, const Scalar* dm, Index ld_dm,
                             const Scalar* gates, const Scalar* c_hat, const Scalar* gamma, const Scalar* beta,
                             const SequenceOptions& seq, Index t, Index B, Index H, Index u0, Index nu) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    for (Index j = 0; j < nu; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, nu - j);
      const Index k = b * H + u0 + j;
      const P normalized = load_packet(c_hat + k, n);
      const P cell = pmadd(load_packet(gamma + u0 + j, n), normalized, load_packet(beta + u0 + j, n));
      const P o = load_packet(gates + b * 4 * H + 3 * H + u0 + j, n);
      const P dn = pmul(pmul(load_packet(dm + b * ld_dm + j, n), o), packet_tanh_derivative<Scalar>(cell));
      store_packet(dn_rows + k, dn, n);
      store_packet(dgamma + u0 + j, pmadd(dn, normalized, load_packet(dgamma + u0 + j, n)), n);
      store_packet(dbeta + u0 + j, padd(dn, load_packet(dbeta + u0 + j, n)), n);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Fused pointwise backward of one step, for the units [u0, u0 + nu) of the active rows, from the
// kept activations (dc_t: the gradient of c_t from step t+1; c̃ = c_t without zoneout):
//   dc̃   = (1 − z) ⊙ dc_t + dm ⊙ o ⊙ (1 − tanh²(c̃))          (z = 0 without zoneout)
//   da_o = dm ⊙ tanh(c̃) ⊙ o ⊙ (1 − o);   with peepholes dc̃ += P_o ⊙ da_o
//   da_i = dc̃ ⊙ g ⊙ i ⊙ (1 − i)          da_f = dc̃ ⊙ c_{t-1} ⊙ f ⊙ (1 − f)
//   da_g = dc̃ ⊙ i ⊙ (1 − g²)
//   dc_{t-1} = z ⊙ dc_t + dc̃ ⊙ f (+ P_i ⊙ da_i + P_f ⊙ da_f with peepholes)
// With layer normalization of c (kLayerNorm), tanh reads γ_c ⊙ ĉ + β_c and m's part of dc̃ comes
// through LN_c's backward from dn (norm, lstm_norm_cell_backward).
//   dgates  (B, 4H)      out: da = [da_i da_f da_g da_o] (inactive rows not written)
//   dc_next (B, H)       in: dc_t from step t+1; out: dc_{t-1} (inactive rows pass through)
//   dm      (B, ld_dm)   gradient of m_t for unit u0 + j at column j
//   gates   (B, 4H)      activated i, f, g, o       c_cell (c̃_t), c_prev (B, H)
//   w_ch    (3, H)       peephole weights (kPeephole)     z (B, H) zoneout weights (kZoneout)
template <typename Scalar, bool kPeephole, bool kZoneout, bool kLayerNorm = false>
void lstm_pointwise_backward(Scalar* dgates, Scalar* dc_next, const Scalar* dm, Index ld_dm, const Scalar* gates,
                             const Scalar* c_cell, const Scalar* c_prev, const Scalar* w_ch,
                             const ZoneRows<Scalar>& z, const CellNormBackward<Scalar>& norm,
                             const SequenceOptions& seq, Index t, Index B, Index H, Index u0, Index nu) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    const Scalar* a = gates + b * 4 * H + u0;
    Scalar* da = dgates + b * 4 * H + u0;
    const Scalar* dm_b = dm + b * ld_dm;
    // LN_c's backward: the means over the whole row, mean(dn ⊙ γ_c) as a pair hi + lo (layer_norm.hpp)
    SplitDouble<Scalar> mean_dg{};
    Scalar mean_dg_vhat = 0;
    if constexpr (kLayerNorm) {
      const RowGradientMeans means = row_gradient_means(norm.dn_rows + b * H, norm.gamma, norm.c_hat + b * H, H);
      mean_dg = split_double<Scalar>(means.of_dg);
      mean_dg_vhat = static_cast<Scalar>(means.of_dg_vhat);
    }
    for (Index j = 0; j < nu; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, nu - j);
      const Index k = b * H + u0 + j;  // this packet's offset in the (B, H) buffers
      const P i = load_packet(a + j, n), f = load_packet(a + H + j, n);
      const P g = load_packet(a + 2 * H + j, n), o = load_packet(a + 3 * H + j, n);
      const P dm_k = load_packet(dm_b + j, n);
      // tanh of what m_t = o_t ⊙ tanh(·) read: c̃_t, or with layer normalization γ_c ⊙ ĉ_t + β_c
      P tanh_c;
      if constexpr (kLayerNorm) {
        tanh_c = packet_tanh<Scalar>(pmadd(load_packet(norm.gamma + u0 + j, n), load_packet(norm.c_hat + k, n),
                                           load_packet(norm.beta + u0 + j, n)));
      } else {
        tanh_c = packet_tanh<Scalar>(load_packet(c_cell + k, n));
      }
      const P da_o = pmul(pmul(dm_k, tanh_c), pmul(o, psub(one, o)));
      P dc = load_packet(dc_next + k, n), zk = dc, dc_t = dc;  // dc_t from step t+1 (zk: below)
      if constexpr (kZoneout) {
        zk = z.packet(b, u0 + j, n);
        dc = pmul(psub(one, zk), dc_t);
      }
      if constexpr (kLayerNorm) {
        // through LN_c: r · (dn ⊙ γ_c − mean(dn ⊙ γ_c) − ĉ ⊙ mean(dn ⊙ γ_c ⊙ ĉ)), dn (lstm_norm_cell_backward)
        // the gradient of its output; fused multiply-adds, so that the terms cancel before rounding
        const P dn_gamma_centered = pmadd(load_packet(norm.dn_rows + k, n), load_packet(norm.gamma + u0 + j, n),
                                          pset1<P>(-mean_dg.hi));
        const P centered = psub(pmadd(pnegate(load_packet(norm.c_hat + k, n)), pset1<P>(mean_dg_vhat), dn_gamma_centered),
                                pset1<P>(mean_dg.lo));
        dc = pmadd(pset1<P>(norm.rstd[(t * B + b) * norm.rstd_stride]), centered, dc);
      } else {
        dc = padd(dc, pmul(pmul(dm_k, o), psub(one, pmul(tanh_c, tanh_c))));
      }
      if constexpr (kPeephole) {
        dc = pmadd(load_packet(w_ch + 2 * H + u0 + j, n), da_o, dc);
      }
      const P da_i = pmul(pmul(dc, g), pmul(i, psub(one, i)));
      const P da_f = pmul(pmul(dc, load_packet(c_prev + k, n)), pmul(f, psub(one, f)));
      store_packet(da + j, da_i, n);
      store_packet(da + H + j, da_f, n);
      store_packet(da + 2 * H + j, pmul(pmul(dc, i), psub(one, pmul(g, g))), n);
      store_packet(da + 3 * H + j, da_o, n);
      P dc_prev = pmul(dc, f);
      if constexpr (kPeephole) {
        dc_prev = pmadd(load_packet(w_ch + u0 + j, n), da_i, dc_prev);
        dc_prev = pmadd(load_packet(w_ch + H + u0 + j, n), da_f, dc_prev);
      }
      if constexpr (kZoneout) dc_prev = pmadd(zk, dc_t, dc_prev);
      store_packet(dc_next + k, dc_prev, n);
    }
  }
}

// The peepholes' gradient for the units `units` (after the walk, from every step's dG):
//   dP_i = Σ_t Σ_b da_i ⊙ c_{t-1}     dP_f = Σ_t Σ_b da_f ⊙ c_{t-1}     dP_o = Σ_t Σ_b da_o ⊙ c̃_t
// summed over the walk's positions and the rows in a fixed order (rows past a length have dG = 0).
//   dw_ch (3, H) out     dgates (T, B, 4H)     c_prev_at(s) (B, H) c_{t-1} of walk position s
//   c_cell (T, B, H) c̃_t
template <typename Scalar, typename CPrevAt>
void peephole_gradient(Scalar* dw_ch, const Scalar* dgates, CPrevAt&& c_prev_at, const Scalar* c_cell,
                       const SequenceOptions& seq, Index T, Index B, Index H, Index u0, Index nu) {
  for (Index q = 0; q < 3; ++q) std::fill_n(dw_ch + q * H + u0, nu, Scalar(0));
  for (Index s = 0; s < T; ++s) {
    const Index t = seq.time_at(s, T);
    const Scalar* c_prev = c_prev_at(s);
    for (Index b = 0; b < B; ++b) {
      const Scalar* da = dgates + (t * B + b) * 4 * H + u0;
      const Scalar* cp = c_prev + b * H + u0;
      const Scalar* cc = c_cell + (t * B + b) * H + u0;
      for (Index j = 0; j < nu; ++j) {
        dw_ch[u0 + j] += da[j] * cp[j];
        dw_ch[H + u0 + j] += da[H + j] * cp[j];
        dw_ch[2 * H + u0 + j] += da[3 * H + j] * cc[j];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void lstm_forward(Scalar* y, Scalar* h_n, Scalar* c_n, Scalar* ws,
                  const Scalar* x, const Scalar* h0, const Scalar* c0,
                  const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                  const Scalar* w_hr, const LstmVariants<Scalar>& v, const LstmDims& d, const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G(), P = d.P, H_out = d.H_out(), TB = d.T * d.B,
              ld_y = d.ld_y();
  constexpr Index L = kPacket<Scalar>, granule = kUnitGranule<Scalar>;
  const bool training = ws != nullptr;
  const bool projected = P > 0;
  const bool peephole = v.peephole(), zoneout_c = v.zoneout_c(), zoneout_h = v.zoneout_h(), dropout = v.keep_h;
  const bool layer_norm = v.layer_norm();
  const LstmWorkspace<Scalar, Scalar*> kept(ws, d);  // training only (see lstm.hpp)

  // Members split the units (gate rows, c, m; with a projection also the columns of h) of every
  // sequence, or, when the batch is large enough, the sequences (split_by_rows).
  TeamLease lease(members_for(2.0 * B * G * H_out + 2.0 * B * P * H, H, granule),
                  2.0 * T * B * (G * (I + H_out) + P * H));
  const int members = lease.size();
  const bool by_rows = split_by_rows(B, members);

  Buffer<Scalar> scratch_gates(training ? 0 : TB * G);   // (T, B, G) inference: the input projections
  Buffer<Scalar> h_steps(2 * B * H_out);                  // (2, B, H_out) h_{t-1} and h_t, by parity of the step
  Buffer<Scalar> h_bar_steps(dropout ? 2 * B * H_out : 0);  // (2, B, H_out) h̄ = keep_h ⊙ h, likewise
  Buffer<Scalar> c_state(B * H);                          // (B, H) c carried between steps
  Buffer<Scalar> m_step(projected ? B * H : 0);           // (B, H) m_t of this step, for the projection
  // Layer normalization reads whole rows: (B, G) a step's recurrent products, every unit; (B, H)
  // c̃_t in inference with zoneout (otherwise c̃_t is in c_t or the workspace).
  Buffer<Scalar> rec_rows(layer_norm ? B * G : 0);
  Buffer<Scalar> cell_rows(layer_norm && zoneout_c && !training ? B * H : 0);
  Scalar* gates = training ? kept.gates : scratch_gates.data();  // (T, B, G)
  const ColumnTasks<Scalar> input_tasks(G, members);             // gates = X · W_ihᵀ by columns
  // Split by units, per member: its rows of W_hh (four gate blocks of its units) and their
  // product (B, 4 * panels * L); with a projection its rows of W_hr and their product
  // (B, panels * L). Split by rows: all of W_hh (and W_hr) packed once for every member, and
  // per member the products of its rows.
  // The recurrent weights (panel.hpp): float rows packed below, or with bf16 weights
  // (v.packed_hh_bf16, float32 inference) packed already, in the layout of the row split's shared
  // buffers (lstm.hpp), widened below or read by the products themselves (a few rows).
  const RecurrentWeights<Scalar> hh(w_hh, v.packed_hh_bf16, H, H_out, B);
  const RecurrentWeights<Scalar> hr(w_hr, v.packed_hr_bf16, P, H, B);
  const bool pack = hh.needs_packing();
  const Index all_unit_panels = panel_count<Scalar>(H), all_out_panels = panel_count<Scalar>(P);
  Buffer<Scalar> shared_packed(by_rows && pack ? 4 * all_unit_panels * H_out * L : 0);        // W_hh packed
  Buffer<Scalar> shared_packed_proj(by_rows && projected && pack ? all_out_panels * H * L : 0);  // W_hr packed
  auto scratch = member_scratch<Scalar>(members, H, granule, by_rows || !pack ? 0 : 4 * H_out * L,
                                        by_rows ? 0 : 4 * B * L, input_tasks.scratch_size(I));
  for (int k = 0; k < members; ++k) {
    const Index rows = by_rows ? split_part(B, 1, members, k).size() : B;
    if (by_rows) scratch[k].product.resize(rows * 4 * all_unit_panels * L);  // (rows, 4 * panels * L)
    if (projected) {
      const Index proj_panels = by_rows ? all_out_panels : panel_count<Scalar>(split_part(P, granule, members, k).size());
      if (!by_rows && pack) scratch[k].packed_proj.resize(proj_panels * H * L);  // its rows of W_hr
      scratch[k].product_proj.resize(rows * proj_panels * L);                    // (rows, proj_panels * L)
    }
  }

  lease.run([&](Team& team) {
    MemberScratch<Scalar>& mine = scratch[team.rank()];
    // Its share: its units (and columns of h) of every sequence, or its sequences, every unit.
    const Team::Range rows = by_rows ? team.part(B) : Team::Range{0, B};
    const Team::Range units = by_rows ? Team::Range{0, H} : team.part(H, granule);
    const Team::Range outs = by_rows ? Team::Range{0, H_out} : projected ? team.part(P, granule) : units;
    const Index b0 = rows.begin, nb = rows.size();
    const Index u0 = units.begin, nu = units.size(), o0 = outs.begin, no = outs.size();
    const Index unit_panels = panel_count<Scalar>(nu), out_panels = panel_count<Scalar>(no);
    const Index rec_gate_stride = unit_panels * L, ld_rec = 4 * rec_gate_stride;
    const SequenceOptions seq_rows = seq.rows_from(b0);  // its sequences' lengths
    const Scalar* packed_hh = by_rows ? shared_packed.data() : mine.packed.data();
    const Scalar* packed_hr = by_rows ? shared_packed_proj.data() : mine.packed_proj.data();
    // Its columns: its units of c and m (and of gate block 0 of the gates), its columns of h and y,
    // and the block of the projection's product that holds them.
    const Columns unit_cols{H, u0, nu}, gate_cols{G, u0, nu}, out_cols{H_out, o0, no}, y_cols{ld_y, o0, no};
    const Columns proj_product_cols{out_panels * L, 0, no};

    // 1. Input projection of all steps and both biases; when training, X packed for dW_ih
    //    (products.hpp).
    //    With layer normalization: X · W_ihᵀ, then LN_ih of every row, the biases added after it.
    input_projection(team, input_tasks, mine.packed_task.data(), gates, x, w_ih, layer_norm ? nullptr : b_ih,
                     layer_norm ? nullptr : b_hh, TB, I, G);
    if (layer_norm) {
      team.barrier();  // every column of the projections
      layer_norm_rows_in_tasks(team, gates, TB, G, v.ln_ih_weight, v.ln_ih_bias, b_ih, b_hh, kept.ln_ih_hat,
                               kept.ln_rstd, 3);
    }
    if (training) pack_columns_in_tasks(team, kept.x, x, TB, I);
    // The recurrent weights, packed once for all steps, gate by gate: split by units, its rows of
    // W_hh and with a projection its rows of W_hr; split by rows, all of them, as tasks. Its
    // part of the initial state.
    if (pack && by_rows) {
      team.tasks(projected ? 5 : 4, [&](Index q) {
        if (q < 4) {
          hh.pack(shared_packed.data() + q * all_unit_panels * H_out * L, q, 0, H);
        } else {
          hr.pack(shared_packed_proj.data(), 0, 0, P);
        }
      });
    } else if (pack) {
      for (Index q = 0; q < 4; ++q) hh.pack(mine.packed.data() + q * unit_panels * H_out * L, q, u0, nu);
      if (projected) hr.pack(mine.packed_proj.data(), 0, o0, no);
    }
    copy_or_zero(h_steps.data() + b0 * H_out, h0 ? h0 + b0 * H_out : nullptr, out_cols, nb);
    if (dropout) {
      mask_rows(h_bar_steps.data() + b0 * H_out, h_steps.data() + b0 * H_out, v.keep_h + b0 * H_out, out_cols, nb);
    }
    copy_or_zero(c_state.data() + b0 * H, c0 ? c0 + b0 * H : nullptr, unit_cols, nb);
    if (training) copy_columns(kept.c0 + b0 * H, c_state.data() + b0 * H, unit_cols, nb);
    team.barrier();

    // 2. The recurrence, over its rows [b0, b0 + nb) of every (B, ·) buffer.
    Scalar* c_carried = c_state.data() + b0 * H;  // (nb, H) c_{t-1}, then c_t
    for (Index s = 0; s < T; ++s) {
      const Index t = seq.time_at(s, T);
      const Scalar* h_prev = h_steps.data() + (s % 2) * B * H_out + b0 * H_out;  // (nb, H_out) h_{t-1}
      Scalar* h_next = h_steps.data() + ((s + 1) % 2) * B * H_out + b0 * H_out;  // (nb, H_out) h_t
      // (nb, H_out) what the product reads: h̄_{t-1} with recurrent dropout, else h_{t-1}
      const Scalar* h_rec = dropout ? h_bar_steps.data() + (s % 2) * B * H_out + b0 * H_out : h_prev;
      Scalar* y_t = y + (t * B + b0) * ld_y;                                       // (nb, ld_y)
      Scalar* gates_t = gates + (t * B + b0) * G;                                  // (nb, G)
      if (s + 1 < T) prefetch_rows(gates + (seq.time_at(s + 1, T) * B + b0) * G, gate_cols, nb, 4, H);  // the next gx
      // rec (nb, 4 gate blocks of its units) = h̄_{t-1} · W_hh[its rows]ᵀ
      recurrent_product(mine.product.data(), ld_rec, rows_of(h_rec, H_out), hh, packed_hh, 4, u0, nu, nb);
      if (training) store_packed_rows(kept.h_prev, TB, t * B + b0, h_rec, out_cols, nb);
      if (layer_norm) {  // rec ← γ_hh ⊙ LN(rec) + β_hh, over whole rows
        layer_norm_recurrent_products(team, !by_rows, mine.product.data(), ld_rec, rec_gate_stride,
                                      rec_rows.data() + b0 * G, 4, H, u0, nu, nb, v.ln_hh_weight, v.ln_hh_bias,
                                      training ? kept.ln_hh_hat + (t * B + b0) * G : nullptr,
                                      training ? kept.ln_rstd + (t * B + b0) * 3 + 1 : nullptr, 3);
      }
      // c_t goes to the workspace (training) or over c_{t-1} in place; m_t is h_t unless projected.
      Scalar* c_t = training ? kept.c + (t * B + b0) * H : c_carried;
      Scalar* m_t = projected ? m_step.data() + b0 * H : h_next;
      // c̃_t (nb, H): its own buffer with zoneout of c (the workspace's when training), else c_t
      Scalar* c_cand = zoneout_c ? (training ? kept.c_cell + (t * B + b0) * H
                                             : (layer_norm ? cell_rows.data() + b0 * H : nullptr))
                                 : c_t;
      for_variants(peephole, zoneout_c, layer_norm, [&](auto with_peephole, auto with_zoneout, auto with_norm) {
        lstm_pointwise_forward<Scalar, decltype(with_peephole)::value, decltype(with_zoneout)::value,
                               decltype(with_norm)::value>(
            gates_t, c_t, m_t, mine.product.data(), ld_rec, rec_gate_stride, c_carried, training || layer_norm,
            v.w_ch, zone_rows(v.zone_c, v.zone_c_value, t, B, b0, H), zoneout_c ? c_cand : nullptr, seq_rows, t, nb,
            H, u0, nu);
      });
      if (layer_norm) {  // m_t = o ⊙ tanh(LN_c(c̃_t)), from whole rows of c̃_t
        if (!by_rows) team.barrier();  // c̃_t complete
        lstm_norm_cell_output(m_t, gates_t, c_cand, v.ln_c_weight, v.ln_c_bias,
                              training ? kept.ln_c_hat + (t * B + b0) * H : nullptr,
                              training ? kept.ln_rstd + (t * B + b0) * 3 + 2 : nullptr, 3, seq_rows, t, nb, H, u0, nu);
      }
      if (training) {  // sequences past their length carry c (also in the workspace)
        if (zoneout_c) zero_past_length(kept.c_cell + (t * B + b0) * H, unit_cols, seq_rows, t, nb);
        carry_past_length(c_t, c_carried, unit_cols, seq_rows, t, nb);
        copy_rows(Rows::Active, c_carried, c_t, unit_cols, seq_rows, t, nb);
      }
      if (projected) {
        zero_past_length(m_t, unit_cols, seq_rows, t, nb);
        if (training) store_packed_rows(kept.m, TB, t * B + b0, m_t, unit_cols, nb);
        if (!by_rows) team.barrier();  // m_t complete
        // its columns of h_t = m_t · W_hr[its rows]ᵀ
        recurrent_product(mine.product_proj.data(), out_panels * L, rows_of<Scalar>(m_t, H), hr, packed_hr, 1, o0,
                          no, nb);
        copy_rows(Rows::Active, h_next, out_cols, mine.product_proj.data(), proj_product_cols, seq_rows, t, nb);
      }
      // h̃_t (its columns) -> h_t with zoneout of h
      if (zoneout_h) {
        zoneout_rows(h_next, h_prev, out_cols, zone_rows(v.zone_h, v.zone_h_value, t, B, b0, H_out), seq_rows, t, nb);
      }
      // h_t is the output; sequences past their length: zero output, h carried.
      write_output(y_t, y_cols, h_next, out_cols, seq_rows, t, nb);
      carry_past_length(h_next, h_prev, out_cols, seq_rows, t, nb);
      if (dropout) {
        mask_rows(h_bar_steps.data() + ((s + 1) % 2) * B * H_out + b0 * H_out, h_next, v.keep_h + b0 * H_out,
                  out_cols, nb);
      }
      if (!by_rows) team.barrier();  // h_t complete
    }

    copy_columns(h_n + b0 * H_out, h_steps.data() + (T % 2) * B * H_out + b0 * H_out, out_cols, nb);
    copy_columns(c_n + b0 * H, c_carried, unit_cols, nb);
  });
}

// ---------------------------------------------------------------------------------------------
// Inference with int8 weights (int8.hpp): lstm_forward's walk, its products in int8, the gates
// in float32. gx = (float(acc_ih) · (s_x · s_ih) + b_ih) + b_hh for every row of x at once; per
// step, h_{t-1} quantized by rows, rec = float(acc_hh) · (s_h · s_hh), and the float cell's
// pointwise pass (a = gx + rec; peepholes and zoneout's expectation included); with a projection,
// m_t quantized by rows and h_t = float(acc_hr) · (s_m · s_hr). No layer normalization and no
// recurrent dropout (inference). The team shares the units (the rows of W_hh, c and m, and with a
// projection the rows of W_hr) and meets after each step's h_t (and m_t), every member quantizing
// whole rows of h itself (the same bits in each); or, for a large batch (split_by_rows), the
// sequences, without meeting in the time loop. A row's scale depends on that row alone.
//   y (T, B, ld_y) out   h_n (B, H_out) out   c_n (B, H) out   x (T, B, I)   h0, c0 or nullptr
//   w_ih (4H, I)   w_hh (4H, H_out)   b_ih, b_hh (4H) or nullptr   w_hr (P, H) when P > 0
template <typename Kernel>
void lstm_forward_int8(float* y, float* h_n, float* c_n, const float* x, const float* h0, const float* c0,
                       const Int8Matrix& w_ih, const Int8Matrix& w_hh, const float* b_ih, const float* b_hh,
                       const Int8Matrix& w_hr, const LstmVariants<float>& v, const LstmDims& d,
                       const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G(), P = d.P, H_out = d.H_out(), TB = T * B,
              ld_y = d.ld_y();
  const bool projected = P > 0, peephole = v.peephole(), zoneout_c = v.zoneout_c(), zoneout_h = v.zoneout_h();
  constexpr Index granule = kInt8PanelRows;  // a member's units (and outputs) start a panel
  TeamLease lease(members_for(2.0 * B * (G * H_out + P * H), H, granule), 2.0 * T * B * (G * (I + H_out) + P * H));
  const int members = lease.size();
  const bool by_rows = split_by_rows(B, members);
  // the rows a member quantizes: h (H_out), m (H), each padded to the weights' groups
  const Index widest = std::max(w_hh.padded_K(), projected ? w_hr.padded_K() : Index(0));

  Buffer<float> gates(TB * G);                          // (T, B, G) gx, then a step's activated gates
  Buffer<std::int8_t> q_x(TB * w_ih.padded_K());        // (T, B, padded I) x quantized by rows
  Buffer<float> s_x(TB);                                // (T, B) their scales
  Buffer<float> h_steps(2 * B * H_out);                 // (2, B, H_out) h_{t-1} and h_t, by parity of the step
  Buffer<float> c_state(B * H);                         // (B, H) c carried between steps
  Buffer<std::int8_t> q_rows(members * B * widest);     // per member (B, padded H_out or H): h_{t-1} or m_t quantized
  Buffer<float> s_rows(members * B);                    // per member (B): their scales
  Buffer<float> rec(B * G);                             // (B, G) a step's recurrent products
  Buffer<float> m_step(projected ? B * H : 0);          // (B, H) m_t, for the projection

  lease.run([&](Team& team) {
    // 1. x quantized by rows and its products with W_ih, both biases added.
    Kernel::input_projection(team, gates.data(), q_x.data(), s_x.data(), x, TB, w_ih, 4, b_ih, b_hh);

    // Its share: its units (rows of W_hh) and columns of h of every sequence, or its sequences.
    const Team::Range rows = by_rows ? team.part(B) : Team::Range{0, B};
    const Team::Range units = by_rows ? Team::Range{0, H} : team.part(H, granule);
    const Team::Range outs = by_rows ? Team::Range{0, H_out} : projected ? team.part(P, granule) : units;
    const Index b0 = rows.begin, nb = rows.size(), u0 = units.begin, nu = units.size(), o0 = outs.begin,
                no = outs.size();
    const SequenceOptions seq_rows = seq.rows_from(b0);
    const Columns unit_cols{H, u0, nu}, out_cols{H_out, o0, no}, y_cols{ld_y, o0, no};
    std::int8_t* q_mine = q_rows.data() + team.rank() * B * widest;  // (nb, K) its quantized rows
    float* s_mine = s_rows.data() + team.rank() * B;
    copy_or_zero(h_steps.data() + b0 * H_out, h0 ? h0 + b0 * H_out : nullptr, out_cols, nb);
    copy_or_zero(c_state.data() + b0 * H, c0 ? c0 + b0 * H : nullptr, unit_cols, nb);
    float* c_carried = c_state.data() + b0 * H;  // (nb, H) c_{t-1}, then c_t
    float* rec_rows = rec.data() + b0 * G;       // (nb, G)
    team.barrier();  // every row of gx, the initial state

    // 2. The recurrence over its rows [b0, b0 + nb).
    for (Index s = 0; s < T; ++s) {
      const Index t = seq.time_at(s, T);
      const float* h_prev = h_steps.data() + (s % 2) * B * H_out + b0 * H_out;  // (nb, H_out) h_{t-1}
      float* h_next = h_steps.data() + ((s + 1) % 2) * B * H_out + b0 * H_out;  // (nb, H_out) h_t
      float* gates_t = gates.data() + (t * B + b0) * G;                         // (nb, G)
      // rec (nb, its units of each gate block) = h_{t-1} · W_hh[its rows]ᵀ in int8, every row (the
      // rows past their length are not read)
      if (nu > 0) Kernel::recurrent_products(rec_rows, q_mine, s_mine, h_prev, nb, w_hh, 4, u0, nu);
      float* m_t = projected ? m_step.data() + b0 * H : h_next;
      for_variants(peephole, zoneout_c, false, [&](auto with_peephole, auto with_zoneout, auto) {
        lstm_pointwise_forward<float, decltype(with_peephole)::value, decltype(with_zoneout)::value, false>(
            gates_t, c_carried, m_t, rec_rows + u0, G, H, c_carried, false, v.w_ch,
            zone_rows(v.zone_c, v.zone_c_value, t, B, b0, H), nullptr, seq_rows, t, nb, H, u0, nu);
      });
      if (projected) {  // its columns of h_t = m_t · W_hr[its rows]ᵀ in int8, from whole rows of m_t
        if (!by_rows) team.barrier();  // m_t complete
        Kernel::rows_product(h_next, H_out, q_mine, s_mine, m_t, nb, w_hr, o0, no);
      }
      if (zoneout_h) {
        zoneout_rows(h_next, h_prev, out_cols, zone_rows(v.zone_h, v.zone_h_value, t, B, b0, H_out), seq_rows, t, nb);
      }
      write_output(y + (t * B + b0) * ld_y, y_cols, h_next, out_cols, seq_rows, t, nb);
      carry_past_length(h_next, h_prev, out_cols, seq_rows, t, nb);
      if (!by_rows) team.barrier();  // h_t complete
    }
    copy_columns(h_n + b0 * H_out, h_steps.data() + (T % 2) * B * H_out + b0 * H_out, out_cols, nb);
    copy_columns(c_n + b0 * H, c_carried, unit_cols, nb);
  });
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void lstm_backward(Scalar* dx, Scalar* dh0, Scalar* dc0, Scalar* dw_ih, Scalar* dw_hh, Scalar* dw_hr, Scalar* dw_ch,
                   Scalar* db, const LstmLayerNormGrads<Scalar>& dln, const Scalar* dy, const Scalar* dh_n,
                   const Scalar* dc_n,
                   const Scalar* ws, const Scalar* w_ih, const Scalar* w_hh, const Scalar* w_hr,
                   const LstmVariants<Scalar>& v, const LstmDims& d, const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G(), P = d.P, H_out = d.H_out(), TB = d.T * d.B,
              ld_y = d.ld_y();
  constexpr Index L = kPacket<Scalar>, granule = kUnitGranule<Scalar>;
  const bool projected = P > 0;
  const bool peephole = v.peephole(), zoneout_c = v.zoneout_c(), zoneout_h = v.zoneout_h();
  const bool layer_norm = v.layer_norm();
  const LstmWorkspace<Scalar, const Scalar*> kept(ws, d);  // the forward's workspace (see lstm.hpp)
  // c_{t-1} of walk position s: the c of the previous position, or the initial state.
  auto c_entering = [&](Index s) { return s == 0 ? kept.c0 : kept.c + seq.time_at(s - 1, T) * B * H; };

  TeamLease lease(members_for(2.0 * B * G * H_out + 2.0 * B * P * H, H, granule),
                  4.0 * T * B * (G * (I + H_out) + P * H));
  const int members = lease.size();

  Buffer<Scalar> scratch_dgates(TB * G);               // (T, B, G) gradient of every step's pre-activations
  Buffer<Scalar> scratch_dh_all(projected ? TB * P : 0);  // (T, B, P) dh_t of every step, for dW_hr
  // dh arriving from the next step: (B, H) without a projection, each member reading and writing
  // its own units; (2, B, P) with one, by parity of the step, as every member reads all of it.
  Buffer<Scalar> dh_steps(projected ? 2 * B * P : B * H);
  Buffer<Scalar> dc_state(B * H);                      // (B, H) dc arriving from the next step
  Buffer<Scalar> dh_carry(zoneout_h ? B * H_out : 0);   // (B, H_out) z^h ⊙ dh_t, the zoneout part of dh_{t-1}
  // With layer normalization: (T, B, G) the gradients of the recurrent and the input products
  // (through LN_hh and LN_ih), and (B, H) dn, the gradient of LN_c's output at a step, whole rows.
  Buffer<Scalar> scratch_da_hh(layer_norm ? TB * G : 0);
  Buffer<Scalar> scratch_da_ih(layer_norm ? TB * G : 0);
  Buffer<Scalar> dn_rows(layer_norm ? B * H : 0);
  const ColumnTasks<Scalar> dx_tasks(I, members);      // dX = dG · W_ih by columns
  // Per member: its columns of W_hh (its columns of h) and their product (B, panels * L); with a
  // projection its columns of W_hr (its units) and their product.
  auto scratch = member_scratch<Scalar>(members, H_out, granule, G * L, B * L, dx_tasks.scratch_size(G),
                                        WeightGradient<Scalar>::strip_size(TB));
  for (int k = 0; k < members; ++k) {
    if (projected) {
      const Index unit_panels = panel_count<Scalar>(split_part(H, granule, members, k).size());
      scratch[k].packed_proj.resize(unit_panels * P * L);   // its columns of W_hr
      scratch[k].product_proj.resize(B * unit_panels * L);  // (B, unit_panels * L)
    }
  }

  lease.run([&](Team& team) {
    MemberScratch<Scalar>& mine = scratch[team.rank()];
    const Team::Range units = team.part(H, granule);                   // its units
    const Team::Range outs = team.part(H_out, granule);                // its columns of h
    const Index u0 = units.begin, nu = units.size(), o0 = outs.begin, no = outs.size();
    const Index unit_panels = panel_count<Scalar>(nu), out_panels = panel_count<Scalar>(no);
    // Its columns: its units of c (and of gate block 0 of dG), its columns of h and dy (without
    // a projection, its units), and the blocks of the products that hold them.
    const Columns unit_cols{H, u0, nu}, gate_cols{G, u0, nu}, out_cols{H_out, o0, no}, y_cols{ld_y, o0, no};
    const Columns product_cols{out_panels * L, 0, no};
    // With zoneout of h, its columns of dh_t: dh̃_t = (1 − z^h) ⊙ dh_t in place, z^h ⊙ dh_t to dh_carry.
    auto split_zoneout = [&](Scalar* dh, Index t) {
      zoneout_gradient_rows(dh, dh_carry.data(), out_cols, zone_rows(v.zone_h, v.zone_h_value, t, B, 0, H_out), seq, t,
                            B);
    };
    // With a projection, dh_t complete (every member reads all of it): its part of dy_t added,
    // and kept for dW_hr (zero past a length).
    auto add_dy_and_keep = [&](Scalar* dh, Index t) {
      add_output_gradient(dh, out_cols, dy, y_cols, seq, t, B);
      if (zoneout_h) split_zoneout(dh, t);  // dh̃_t, the gradient of W_hr m_t
      Scalar* dh_kept = scratch_dh_all.data() + t * B * P;  // (B, P)
      copy_columns(dh_kept, dh, out_cols, B);
      zero_past_length(dh_kept, out_cols, seq, t, B);
    };

    // Its weights, packed once for all steps: columns of W_hh for dh_{t-1} = dG_t · W_hh, and
    // with a projection columns of W_hr for dm_t = dh_t · W_hr. Its part of the final state's
    // gradient (with a projection, with the first step's dy added).
    pack_columns(mine.packed.data(), w_hh, out_cols, G);
    if (projected) pack_columns(mine.packed_proj.data(), w_hr, unit_cols, P);
    copy_or_zero(dc_state.data(), dc_n, unit_cols, B);
    if (layer_norm) {  // its units of LN_c's gain and bias gradients, summed over the walk
      std::fill_n(dln.c_weight + u0, nu, Scalar(0));
      std::fill_n(dln.c_bias + u0, nu, Scalar(0));
    }
    copy_or_zero(dh_steps.data(), dh_n, out_cols, B);
    if (projected) add_dy_and_keep(dh_steps.data(), seq.time_at(T - 1, T));
    team.barrier();

    // 1. Reverse walk.
    for (Index s = T - 1; s >= 0; --s) {
      const Index t = seq.time_at(s, T), walked = T - 1 - s;
      Scalar* dgates_t = scratch_dgates.data() + t * B * G;  // (B, G)
      if (s > 0) {  // what the next step reads, fetched while this one computes
        const Index t_next = seq.time_at(s - 1, T);
        prefetch_rows(kept.gates + t_next * B * G, gate_cols, B, 4, H);
        prefetch_rows(kept.c + t_next * B * H, unit_cols, B);
        prefetch_rows(c_entering(s - 1), unit_cols, B);
        if (dy != nullptr) prefetch_rows(dy + t_next * B * ld_y, y_cols, B);
      }
      const Scalar* dm = nullptr;                              // its units of dm_t
      Index ld_dm = 0;
      Scalar* dh_t = dh_steps.data() + (projected ? (walked % 2) * B * P : 0);  // (B, H_out) dh_t
      if (!projected) {
        add_output_gradient(dh_t, unit_cols, dy, y_cols, seq, t, B);
        if (zoneout_h) split_zoneout(dh_t, t);
        dm = dh_t + u0;
        ld_dm = H;
      } else {
        // dm_t for its units = dh_t · W_hr[:, its units]
        panel_product(mine.product_proj.data(), unit_panels * L, unit_panels * L, rows_of<Scalar>(dh_t, P),
                      mine.packed_proj.data(), unit_panels, P, B);
        dm = mine.product_proj.data();
        ld_dm = unit_panels * L;
      }
      CellNormBackward<Scalar> norm;
      if (layer_norm) {  // m_t = o_t ⊙ tanh(LN_c(c̃_t)): dn for its units, then whole rows of it
        lstm_norm_cell_backward(dn_rows.data(), dln.c_weight, dln.c_bias, dm, ld_dm, kept.gates + t * B * G,
                                kept.ln_c_hat + t * B * H, v.ln_c_weight, v.ln_c_bias, seq, t, B, H, u0, nu);
        norm = {kept.ln_c_hat + t * B * H, kept.ln_rstd + 2, 3, v.ln_c_weight, v.ln_c_bias, dn_rows.data()};
        team.barrier();  // dn complete
      }
      for_variants(peephole, zoneout_c, layer_norm, [&](auto with_peephole, auto with_zoneout, auto with_norm) {
        lstm_pointwise_backward<Scalar, decltype(with_peephole)::value, decltype(with_zoneout)::value,
                                decltype(with_norm)::value>(
            dgates_t, dc_state.data(), dm, ld_dm, kept.gates + t * B * G, kept.c_cell + t * B * H, c_entering(s),
            v.w_ch, zone_rows(v.zone_c, v.zone_c_value, t, B, 0, H), norm, seq, t, B, H, u0, nu);
      });
      for (Index q = 0; q < 4; ++q) zero_past_length(dgates_t, Columns{G, q * H + u0, nu}, seq, t, B);
      team.barrier();  // dG_t complete
      // What dh_{t-1} comes from: dG_t, or with layer normalization dA_t = LN_hh's backward of it.
      const Scalar* d_recurrent = dgates_t;
      if (layer_norm) {
        Scalar* da_hh_t = scratch_da_hh.data() + t * B * G;  // (B, G)
        layer_norm_backward_rows(da_hh_t, dgates_t, v.ln_hh_weight, kept.ln_hh_hat + t * B * G,
                                 kept.ln_rstd + t * B * 3 + 1, 3, B, G, 4, H, u0, nu);
        team.barrier();  // dA_t complete
        d_recurrent = da_hh_t;
      }

      // Its columns of dh_{t-1} = dG_t · W_hh; sequences past their length pass dh_t through.
      panel_product(mine.product.data(), out_panels * L, out_panels * L, rows_of<Scalar>(d_recurrent, G),
                    mine.packed.data(), out_panels, G, B);
      Scalar* dh_prev = dh_steps.data() + (projected ? ((walked + 1) % 2) * B * P : 0);  // (B, H_out)
      recurrent_gradient_rows(dh_prev, out_cols, mine.product.data(), product_cols, v.keep_h,
                              zoneout_h ? dh_carry.data() : nullptr, seq, t, B);
      if (projected) {
        carry_past_length(dh_prev, dh_t, out_cols, seq, t, B);
        if (s > 0) add_dy_and_keep(dh_prev, seq.time_at(s - 1, T));  // the next step's dh
        team.barrier();  // dh_{t-1} complete
      }
    }
    const Scalar* dh_first = dh_steps.data() + (projected ? (T % 2) * B * P : 0);
    copy_columns(dh0, dh_first, out_cols, B);
    copy_columns(dc0, dc_state.data(), unit_cols, B);
    // Every dG_t (and dh_t) is complete: the last step ended with a barrier after writing them.

    // 2. Gradients of the inputs and weights over all steps (products.hpp); b_ih and b_hh share db;
    //    with a projection dW_hr = dHᵀ · M.
    if (peephole) peephole_gradient(dw_ch, scratch_dgates.data(), c_entering, kept.c_cell, seq, T, B, H, u0, nu);
    const Scalar* dg = scratch_dgates.data();  // (T, B, G)
    if (!layer_norm) {
      input_and_weight_gradients(team, dx_tasks, mine.packed_task.data(), mine.strip.data(), dx, dw_ih, dw_hh, db,
                                 static_cast<Scalar*>(nullptr), dg, dg, kept.x, kept.h_prev, w_ih, TB, I, G, H_out);
    } else {
      // a = LN_ih(X W_ihᵀ) + LN_hh(H̄ W_hhᵀ) + b: dA_ih of every row (LN_ih's backward of dG) by
      // blocks of rows, then the products from dA_ih and dA_hh, and the gains' and biases'
      // gradients as column sums: dγ = Σ dG ⊙ v̂, dβ = db = Σ dG.
      layer_norm_backward_in_tasks(team, scratch_da_ih.data(), dg, v.ln_ih_weight, kept.ln_ih_hat, kept.ln_rstd, 3,
                                   TB, G);
      team.barrier();  // dA_ih complete
      input_and_weight_gradients(team, dx_tasks, mine.packed_task.data(), mine.strip.data(), dx, dw_ih, dw_hh,
                                 static_cast<Scalar*>(nullptr), static_cast<Scalar*>(nullptr), scratch_da_ih.data(),
                                 scratch_da_hh.data(), kept.x, kept.h_prev, w_ih, TB, I, G, H_out);
      // dβ_ih = dβ_hh = db = Σ dG: summed once
      layer_norm_parameter_gradients(team, dln.ih_weight, dln.ih_bias, {dln.hh_bias, db}, dg, kept.ln_ih_hat, TB, G);
      layer_norm_parameter_gradients(team, dln.hh_weight, static_cast<Scalar*>(nullptr), {}, dg, kept.ln_hh_hat, TB,
                                     G);
    }
    if (projected) weight_gradients(team, scratch_dh_all.data(), P, {WeightGradient<Scalar>{dw_hr, kept.m, H}}, TB,
                                    mine.strip.data());
  });
}

// ---------------------------------------------------------------------------------------------
//   scratch_gx  (B, G) input part of the pre-activations, with the biases
//   scratch_rec (B, G) recurrent part h · W_hhᵀ
template <typename Scalar>
void lstm_cell_into(Scalar* h_new, Scalar* c_new, Scalar* scratch_gx, Scalar* scratch_rec,
                    const Scalar* x, const Scalar* h, const Scalar* c,
                    const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                    Index B, Index I, Index H) {
  const Index G = 4 * H;
  constexpr Index granule = kUnitGranule<Scalar>;
  // A step streams all of W_ih and W_hh once: members split the units (no barrier needed, each
  // member's units depend only on its own rows of the weights).
  TeamLease lease(members_for(2.0 * B * G * (I + H), H, granule), 2.0 * B * G * (I + H));

  lease.run([&](Team& team) {
    const Team::Range units = team.part(H, granule);
    const Index u0 = units.begin, nu = units.size();
    for (Index q = 0; q < 4; ++q) {  // gate q of its units: rows q * H + u0 ... of the weights
      const Index r0 = q * H + u0;
      Scalar* gx = scratch_gx + r0;    // (B, nu) of row stride G
      Scalar* rec = scratch_rec + r0;  // (B, nu) of row stride G
      // Dot products of whole rows (products.hpp): the same bits whichever member takes them.
      dot_rows(gx, G, x, I, w_ih + r0 * I, nu, I, B);
      auto gx_block = MatrixMap<Scalar>(scratch_gx, B, G).middleCols(r0, nu);
      if (b_ih != nullptr) gx_block.rowwise() += ConstRowVectorMap<Scalar>(b_ih + r0, nu);
      if (b_hh != nullptr) gx_block.rowwise() += ConstRowVectorMap<Scalar>(b_hh + r0, nu);
      if (h != nullptr) {
        dot_rows(rec, G, h, H, w_hh + r0 * H, nu, H, B);
      } else {
        for (Index b = 0; b < B; ++b) std::fill_n(rec + b * G, nu, Scalar(0));
      }
    }
    // A missing c is zeros: start c_new at zero and update it in place.
    const Scalar* c_prev = c;
    if (c_prev == nullptr) {
      zero_columns(c_new, Columns{H, u0, nu}, B);
      c_prev = c_new;
    }
    lstm_pointwise_forward<Scalar, /*kPeephole=*/false, /*kZoneout=*/false>(
        scratch_gx, c_new, h_new, scratch_rec + u0, G, H, c_prev, false, nullptr, ZoneRows<Scalar>{}, nullptr,
        SequenceOptions{}, 0, B, H, u0, nu);
  });
}

template <typename Scalar>
void lstm_cell(Scalar* h_new, Scalar* c_new,
               const Scalar* x, const Scalar* h, const Scalar* c,
               const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
               Index B, Index I, Index H) {
  Buffer<Scalar> scratch_gx(B * 4 * H);   // (B, G)
  Buffer<Scalar> scratch_rec(B * 4 * H);  // (B, G)
  lstm_cell_into(h_new, c_new, scratch_gx.data(), scratch_rec.data(), x, h, c, w_ih, w_hh, b_ih, b_hh, B, I, H);
}

// ---------------------------------------------------------------------------------------------
}  // namespace

// This level's LSTM kernels, for its table (level.cpp); with vnni, the int8 kernel of VNNI.
template <typename Scalar>
LstmKernels<Scalar> lstm_kernels(bool vnni) {
  if constexpr (std::is_same_v<Scalar, float>) {
    auto forward_int8 = &lstm_forward_int8<int8_base::Kernel>;
#if defined(LSTM_EXT_INT8_VNNI_TARGET)
    if (vnni) forward_int8 = &lstm_forward_int8<int8_vnni::Kernel>;
#endif
    return {&lstm_forward<Scalar>, &lstm_backward<Scalar>, &lstm_cell<Scalar>, &lstm_cell_into<Scalar>,
            forward_int8};
  } else {
    return {&lstm_forward<Scalar>, &lstm_backward<Scalar>, &lstm_cell<Scalar>, &lstm_cell_into<Scalar>, nullptr};
  }
}
template LstmKernels<float> lstm_kernels<float>(bool);
template LstmKernels<double> lstm_kernels<double>(bool);

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
