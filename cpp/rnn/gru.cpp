// lstm_ext core: GRU forward and backward for one layer and one direction,
// compiled once per kernel level (kernels.hpp).
//
// Dimensions: T time steps, B batch, I input features, H hidden units, G = 3H gate rows.
//
// The kernel pattern (see gru.hpp for the equations), on a team of threads (parallel.hpp):
//   forward   1. gx (T*B, G) = X (T*B, I) · W_ihᵀ + b_ih        one GEMM, all steps, in blocks
//             2. per step t (in the walk's order), each member for its own units u:
//                rec = h_{t-1} · W_hh[rows of u]ᵀ (packed once per call), then one fused pass:
//                r, z, n and h_t. The recurrent part of n, gh_n = rec_n + b_hn, is kept for
//                backward because the reset gate multiplies it. One barrier per step; with a large
//                batch (split_by_rows, common.hpp) members take sequences instead: none.
//   backward  1. reverse walk, each member for its units: dh_t = dy_t + dh from the next step;
//                the fused pass gives the gradients of the input pre-activations
//                dGx_t = [da_r, da_z, da_n] and of the recurrent ones dGh_t = [da_r, da_z,
//                da_n ⊙ r], and the direct part dh_t ⊙ z; after a barrier,
//                dh_{t-1} = dh_t ⊙ z + dGh_t · W_hh[:, u] (its columns, packed once per call)
//             2. after the walk, in blocks: dX = dGx · W_ih, dW_ih = dGxᵀ · X,
//                dW_hh = dGhᵀ · H_prev; db_ih, db_hh = column sums of dGx, dGh (X and H_prev
//                kept packed in the workspace by the forward)
// Nothing is allocated inside a time loop; results do not depend on the number of threads.
#include "rnn/gru.hpp"

#include "rnn/int8.hpp"
#include "rnn/kernels.hpp"
#include "rnn/layer_norm.hpp"
#include "rnn/products.hpp"

#include <vector>

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {
namespace {

// The workspace's blocks (above); Pointer is Scalar* for the forward, const Scalar* for the backward.
template <typename Scalar, typename Pointer>
struct GruWorkspace {
  Pointer gates = nullptr, hn = nullptr, h_prev = nullptr, x = nullptr, ln_ih_hat = nullptr, ln_hh_hat = nullptr,
          ln_rstd = nullptr;
  GruWorkspace(Pointer ws, const GruDims& d) {
    if (ws == nullptr) return;  // inference: nothing kept
    const Index TB = d.T * d.B;
    gates = ws;
    hn = gates + TB * d.G();
    h_prev = hn + TB * d.H;
    x = h_prev + packed_size<Scalar>(d.H, TB);
    if (d.layer_norm) {
      ln_ih_hat = x + packed_size<Scalar>(d.I, TB);
      ln_hh_hat = ln_ih_hat + TB * d.G();
      ln_rstd = ln_hh_hat + TB * d.G();  // (T, B, 2): r of LN_ih, LN_hh
    }
  }
};


// ---------------------------------------------------------------------------------------------
// Fused pointwise forward of one step, for the units [u0, u0 + nu) of the active rows:
//   r = σ(gx_r + gh_r)   z = σ(gx_z + gh_z)   n = tanh(gx_n + r ⊙ gh_n)
//   h' = (1 − z) ⊙ n + z ⊙ h               with gh = rec + b_hh
//   gx     (B, 3H)       in: input pre-activations; out: activated r, z, n (when hn is kept)
//   rec    (B, ld_rec)   h_{t-1} · W_hhᵀ: gate q of unit u0 + j at column q * rec_gate_stride + j
//   b_hh   (3H) or nullptr
//   hn     (B, H)        out: gh_n (when kept), nullptr otherwise
//   h_new  (B, H)        out          h_prev (B, H) in
template <typename Scalar>
void gru_pointwise_forward(Scalar* gx, Scalar* hn, Scalar* h_new, const Scalar* rec, Index ld_rec,
                           Index rec_gate_stride, const Scalar* b_hh, const Scalar* h_prev,
                           const SequenceOptions& seq, Index t, Index B, Index H, Index u0, Index nu) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1));
  auto bias = [&](Index q, Index j, Index n) {
    return b_hh != nullptr ? load_packet(b_hh + q * H + u0 + j, n) : pset1<P>(Scalar(0));
  };
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    Scalar* a = gx + b * 3 * H + u0;     // gate q of unit u0 + j at a[q * H + j]
    const Scalar* r_b = rec + b * ld_rec;  // gate q of unit u0 + j at r_b[q * rec_gate_stride + j]
    const Index s = rec_gate_stride;
    for (Index j = 0; j < nu; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, nu - j);
      const Index k = b * H + u0 + j;  // this packet's offset in the (B, H) buffers
      const P r = packet_sigmoid<Scalar>(padd(load_packet(a + j, n), padd(load_packet(r_b + j, n), bias(0, j, n))));
      const P z = packet_sigmoid<Scalar>(
          padd(load_packet(a + H + j, n), padd(load_packet(r_b + s + j, n), bias(1, j, n))));
      const P gh_n = padd(load_packet(r_b + 2 * s + j, n), bias(2, j, n));
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
// Fused pointwise backward of one step, for the units [u0, u0 + nu) of the active rows, from the
// kept activations:
//   da_n = dh ⊙ (1 − z) ⊙ (1 − n²)
//   da_z = dh ⊙ (h_{t-1} − n) ⊙ z ⊙ (1 − z)
//   da_r = da_n ⊙ gh_n ⊙ r ⊙ (1 − r)
//   dgx = [da_r, da_z, da_n]     dgh = [da_r, da_z, da_n ⊙ r]     dh_direct = dh ⊙ z
//   dgx, dgh  (B, 3H)  out (inactive rows not written)
//   dh        (B, H)   in: dh_t; out: dh ⊙ z, the part of dh_{t-1} that skips W_hh
//   gates     (B, 3H)  activated r, z, n      hn (B, H) gh_n
//   h_prev    packed (H columns over TB rows): h_{t-1} of this step's rows t * B + b
template <typename Scalar>
void gru_pointwise_backward(Scalar* dgx, Scalar* dgh, Scalar* dh, const Scalar* gates, const Scalar* hn,
                            const Scalar* h_prev, Index TB, const SequenceOptions& seq, Index t, Index B, Index H,
                            Index u0, Index nu) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    const Scalar* a = gates + b * 3 * H + u0;
    Scalar* dax = dgx + b * 3 * H + u0;
    Scalar* dah = dgh + b * 3 * H + u0;
    for (Index j = 0; j < nu; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, nu - j);
      const Index k = b * H + u0 + j;
      const P r = load_packet(a + j, n), z = load_packet(a + H + j, n), n_t = load_packet(a + 2 * H + j, n);
      const P dh_k = load_packet(dh + k, n);
      const P da_n = pmul(pmul(dh_k, psub(one, z)), psub(one, pmul(n_t, n_t)));
      const P h_k = load_packet(packed_row_packet(h_prev, TB, t * B + b, u0 + j), n);
      const P da_z = pmul(pmul(dh_k, psub(h_k, n_t)), pmul(z, psub(one, z)));
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



// ---------------------------------------------------------------------------------------------
// (hh: W_hh's float rows, or in float32 inference its bf16 panels: RecurrentWeights, panel.hpp.)
template <typename Scalar>
void gru_forward_steps(Scalar* y, Scalar* h_n, Scalar* ws, const Scalar* x, const Scalar* h0,
                       const Scalar* w_ih, const Scalar* w_hh, const std::uint16_t* packed_hh_bf16,
                       const Scalar* b_ih, const Scalar* b_hh, const GruLayerNorm<Scalar>& ln, const GruDims& d,
                       const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G(), TB = d.T * d.B, ld_y = d.ld_y();
  constexpr Index L = kPacket<Scalar>, granule = kUnitGranule<Scalar>;
  const bool training = ws != nullptr;
  const bool layer_norm = ln.on();

  const GruWorkspace<Scalar, Scalar*> kept(ws, d);  // training only (see gru.hpp)

  // Members split the units of every sequence, or, when the batch is large enough, the
  // sequences (split_by_rows).
  TeamLease lease(members_for(2.0 * B * G * H, H, granule), 2.0 * T * B * G * (I + H));
  const int members = lease.size();
  const bool by_rows = split_by_rows(B, members);

  Buffer<Scalar> scratch_gx(training ? 0 : TB * G);  // (T, B, G) inference: the input projections
  Buffer<Scalar> h_steps(2 * B * H);                 // (2, B, H) h_{t-1} and h_t, by parity of the step
  Buffer<Scalar> rec_rows(layer_norm ? B * G : 0);   // (B, G) a step's recurrent products, every unit (LN_hh)
  Scalar* gx = training ? kept.gates : scratch_gx.data();  // (T, B, G)
  const ColumnTasks<Scalar> input_tasks(G, members);     // gx = X · W_ihᵀ by columns
  // Split by units, per member: its rows of W_hh (three gate blocks of its units) and their
  // product (B, 3 * panels * L). Split by rows: all of W_hh packed once for every member, and per
  // member the product of its rows.
  // The float panels stay empty where the products read bf16 weights themselves (panel.hpp).
  const RecurrentWeights<Scalar> hh(w_hh, packed_hh_bf16, H, H, B);
  const bool pack = hh.needs_packing();
  const Index all_unit_panels = panel_count<Scalar>(H);
  Buffer<Scalar> shared_packed(by_rows && pack ? 3 * all_unit_panels * H * L : 0);  // W_hh packed
  auto scratch = member_scratch<Scalar>(members, H, granule, by_rows || !pack ? 0 : 3 * H * L,
                                        by_rows ? 0 : 3 * B * L, input_tasks.scratch_size(I));
  for (int k = 0; by_rows && k < members; ++k) {
    scratch[k].product.resize(split_part(B, 1, members, k).size() * 3 * all_unit_panels * L);
  }

  lease.run([&](Team& team) {
    MemberScratch<Scalar>& mine = scratch[team.rank()];
    // Its share: its units of every sequence, or its sequences, every unit.
    const Team::Range rows = by_rows ? team.part(B) : Team::Range{0, B};
    const Team::Range units = by_rows ? Team::Range{0, H} : team.part(H, granule);
    const Index b0 = rows.begin, nb = rows.size();
    const Index u0 = units.begin, nu = units.size(), unit_panels = panel_count<Scalar>(nu);
    const Index rec_gate_stride = unit_panels * L, ld_rec = 3 * rec_gate_stride;
    const SequenceOptions seq_rows = seq.rows_from(b0);  // its sequences' lengths
    const Scalar* packed_hh = by_rows ? shared_packed.data() : mine.packed.data();
    // Its columns: its units of h, of y and of gate block 0 of gx.
    const Columns unit_cols{H, u0, nu}, y_cols{ld_y, u0, nu}, gate_cols{G, u0, nu};

    // 1. Input projection of all steps at once (b_hh belongs to the recurrent part: reset gate).
    //    With layer normalization: X · W_ihᵀ, then LN_ih of every row, b_ih added after it.
    input_projection(team, input_tasks, mine.packed_task.data(), gx, x, w_ih, layer_norm ? nullptr : b_ih,
                     static_cast<const Scalar*>(nullptr), TB, I, G);
    if (layer_norm) {
      team.barrier();  // every column of the projections
      layer_norm_rows_in_tasks(team, gx, TB, G, ln.ih_weight, ln.ih_bias, b_ih, static_cast<const Scalar*>(nullptr),
                               kept.ln_ih_hat, kept.ln_rstd, 2);
    }
    if (training) pack_columns_in_tasks(team, kept.x, x, TB, I);  // X packed for dW_ih
    if (pack && by_rows) {
      team.tasks(3, [&](Index q) { hh.pack(shared_packed.data() + q * all_unit_panels * H * L, q, 0, H); });
    } else if (pack) {
      for (Index q = 0; q < 3; ++q) hh.pack(mine.packed.data() + q * unit_panels * H * L, q, u0, nu);
    }
    copy_or_zero(h_steps.data() + b0 * H, h0 ? h0 + b0 * H : nullptr, unit_cols, nb);
    team.barrier();

    // 2. The recurrence, over its rows [b0, b0 + nb) of every (B, ·) buffer.
    for (Index s = 0; s < T; ++s) {
      const Index t = seq.time_at(s, T);
      const Scalar* h_prev = h_steps.data() + (s % 2) * B * H + b0 * H;  // (nb, H) h_{t-1}
      Scalar* h_next = h_steps.data() + ((s + 1) % 2) * B * H + b0 * H;  // (nb, H) h_t
      Scalar* y_t = y + (t * B + b0) * ld_y;                               // (nb, ld_y)
      if (s + 1 < T) prefetch_rows(gx + (seq.time_at(s + 1, T) * B + b0) * G, gate_cols, nb, 3, H);  // the next gx
      recurrent_product(mine.product.data(), ld_rec, rows_of(h_prev, H), hh, packed_hh, 3, u0, nu, nb);
      if (training) store_packed_rows(kept.h_prev, TB, t * B + b0, h_prev, unit_cols, nb);
      if (layer_norm) {  // rec ← γ_hh ⊙ LN(rec) + β_hh, over whole rows
        layer_norm_recurrent_products(team, !by_rows, mine.product.data(), ld_rec, rec_gate_stride,
                                      rec_rows.data() + b0 * G, 3, H, u0, nu, nb, ln.hh_weight, ln.hh_bias,
                                      training ? kept.ln_hh_hat + (t * B + b0) * G : nullptr,
                                      training ? kept.ln_rstd + (t * B + b0) * 2 + 1 : nullptr, 2);
      }
      Scalar* hn_t = training ? kept.hn + (t * B + b0) * H : nullptr;
      gru_pointwise_forward(gx + (t * B + b0) * G, hn_t, h_next, mine.product.data(), ld_rec, rec_gate_stride, b_hh,
                            h_prev, seq_rows, t, nb, H, u0, nu);
      // h_t is the output; sequences past their length: zero output, h carried.
      write_output(y_t, y_cols, h_next, unit_cols, seq_rows, t, nb);
      if (training) zero_past_length(hn_t, unit_cols, seq_rows, t, nb);
      carry_past_length(h_next, h_prev, unit_cols, seq_rows, t, nb);
      if (!by_rows) team.barrier();  // h_t complete
    }
    copy_columns(h_n + b0 * H, h_steps.data() + (T % 2) * B * H + b0 * H, unit_cols, nb);
  });
}

template <typename Scalar>
void gru_forward(Scalar* y, Scalar* h_n, Scalar* ws, const Scalar* x, const Scalar* h0,
                 const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                 const GruLayerNorm<Scalar>& ln, const GruDims& d, const SequenceOptions& seq) {
  gru_forward_steps(y, h_n, ws, x, h0, w_ih, w_hh, nullptr, b_ih, b_hh, ln, d, seq);
}

// Inference with bf16 recurrent weights (gru.hpp).
void gru_forward_bf16(float* y, float* h_n, const float* x, const float* h0, const float* w_ih,
                      const std::uint16_t* packed_hh_bf16, const float* b_ih, const float* b_hh, const GruDims& d,
                      const SequenceOptions& seq) {
  gru_forward_steps<float>(y, h_n, nullptr, x, h0, w_ih, nullptr, packed_hh_bf16, b_ih, b_hh, {}, d, seq);
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void gru_backward(Scalar* dx, Scalar* dh0, Scalar* dw_ih, Scalar* dw_hh, Scalar* db_ih, Scalar* db_hh,
                  const GruLayerNormGrads<Scalar>& dln, const Scalar* dy, const Scalar* dh_n, const Scalar* ws,
                  const Scalar* w_ih, const Scalar* w_hh, const GruLayerNorm<Scalar>& ln, const GruDims& d,
                  const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, G = d.G(), TB = d.T * d.B, ld_y = d.ld_y();
  constexpr Index L = kPacket<Scalar>, granule = kUnitGranule<Scalar>;
  const bool layer_norm = ln.on();

  const GruWorkspace<Scalar, const Scalar*> kept(ws, d);  // the forward's workspace (see gru.hpp)

  TeamLease lease(members_for(2.0 * B * G * H, H, granule), 4.0 * T * B * G * (I + H));
  const int members = lease.size();

  Buffer<Scalar> scratch_dgx(TB * G);             // (T, B, G) gradient of the input pre-activations
  Buffer<Scalar> scratch_dgh(TB * G);             // (T, B, G) gradient of the recurrent pre-activations
  Buffer<Scalar> dh_state(B * H);                 // (B, H) dh arriving from the next step, by member units
  // With layer normalization: (T, B, G) the gradients of the recurrent and the input products
  // (through LN_hh and LN_ih).
  Buffer<Scalar> scratch_da_hh(layer_norm ? TB * G : 0);
  Buffer<Scalar> scratch_da_ih(layer_norm ? TB * G : 0);
  const ColumnTasks<Scalar> dx_tasks(I, members);  // dX = dGx · W_ih by columns
  // Per member: its columns of W_hh (its units) and their product (B, panels * L).
  auto scratch = member_scratch<Scalar>(members, H, granule, G * L, B * L, dx_tasks.scratch_size(G),
                                        WeightGradient<Scalar>::strip_size(TB));

  lease.run([&](Team& team) {
    MemberScratch<Scalar>& mine = scratch[team.rank()];
    const Team::Range units = team.part(H, granule);
    const Index u0 = units.begin, nu = units.size(), unit_panels = panel_count<Scalar>(nu);
    // Its columns: its units of h, of dy and of gate block 0 of dG, and the block of the product
    // that holds them.
    const Columns unit_cols{H, u0, nu}, y_cols{ld_y, u0, nu}, gate_cols{G, u0, nu};
    const Columns product_cols{unit_panels * L, 0, nu};
    pack_columns(mine.packed.data(), w_hh, unit_cols, G);
    copy_or_zero(dh_state.data(), dh_n, unit_cols, B);
    team.barrier();

    // 1. Reverse walk.
    for (Index s = T - 1; s >= 0; --s) {
      const Index t = seq.time_at(s, T);
      add_output_gradient(dh_state.data(), unit_cols, dy, y_cols, seq, t, B);  // dh_t
      Scalar* dgx_t = scratch_dgx.data() + t * B * G;
      Scalar* dgh_t = scratch_dgh.data() + t * B * G;
      if (s > 0) {  // what the next step reads, fetched while this one computes
        const Index t_next = seq.time_at(s - 1, T);
        prefetch_rows(kept.gates + t_next * B * G, gate_cols, B, 3, H);
        prefetch_rows(kept.hn + t_next * B * H, unit_cols, B);
        if (dy != nullptr) prefetch_rows(dy + t_next * B * ld_y, y_cols, B);
      }
      // dh_state becomes dh_t ⊙ z_t for the active rows; inactive rows pass through unchanged.
      gru_pointwise_backward(dgx_t, dgh_t, dh_state.data(), kept.gates + t * B * G, kept.hn + t * B * H, kept.h_prev,
                             TB, seq, t, B, H, u0, nu);
      for (Index q = 0; q < 3; ++q) {
        zero_past_length(dgx_t, Columns{G, q * H + u0, nu}, seq, t, B);
        zero_past_length(dgh_t, Columns{G, q * H + u0, nu}, seq, t, B);
      }
      team.barrier();  // dGh_t complete
      // What dh_{t-1} comes from: dGh_t, or with layer normalization dA_t = LN_hh's backward of it.
      const Scalar* d_recurrent = dgh_t;
      if (layer_norm) {
        Scalar* da_hh_t = scratch_da_hh.data() + t * B * G;  // (B, G)
        layer_norm_backward_rows(da_hh_t, dgh_t, ln.hh_weight, kept.ln_hh_hat + t * B * G,
                                 kept.ln_rstd + t * B * 2 + 1, 2, B, G, 3, H, u0, nu);
        team.barrier();  // dA_t complete
        d_recurrent = da_hh_t;
      }
      // Its units of dh_{t-1} = dh_t ⊙ z + dGh_t · W_hh.
      panel_product(mine.product.data(), unit_panels * L, unit_panels * L, rows_of<Scalar>(d_recurrent, G),
                    mine.packed.data(), unit_panels, G, B);
      add_rows(Rows::Active, dh_state.data(), unit_cols, mine.product.data(), product_cols, seq, t, B);
    }
    copy_columns(dh0, dh_state.data(), unit_cols, B);
    // Every dGx_t and dGh_t is complete: the last step wrote them before its barrier.

    // 2. Gradients of the inputs and weights over all steps (products.hpp).
    if (!layer_norm) {
      input_and_weight_gradients(team, dx_tasks, mine.packed_task.data(), mine.strip.data(), dx, dw_ih, dw_hh, db_ih,
                                 db_hh, scratch_dgx.data(), scratch_dgh.data(), kept.x, kept.h_prev, w_ih, TB, I, G,
                                 H);
    } else {
      // gx = LN_ih(X W_ihᵀ) + b_ih, gh = LN_hh(H W_hhᵀ) + b_hh: dA_ih of every row (LN_ih's
      // backward of dGx) by blocks of rows, the products from dA_ih and dA_hh, and the gains' and
      // biases' gradients as column sums: dγ = Σ dG ⊙ v̂, dβ = db = Σ dG.
      layer_norm_backward_in_tasks(team, scratch_da_ih.data(), scratch_dgx.data(), ln.ih_weight, kept.ln_ih_hat,
                                   kept.ln_rstd, 2, TB, G);
      team.barrier();  // dA_ih complete
      input_and_weight_gradients(team, dx_tasks, mine.packed_task.data(), mine.strip.data(), dx, dw_ih, dw_hh,
                                 static_cast<Scalar*>(nullptr), static_cast<Scalar*>(nullptr), scratch_da_ih.data(),
                                 scratch_da_hh.data(), kept.x, kept.h_prev, w_ih, TB, I, G, H);
      layer_norm_parameter_gradients(team, dln.ih_weight, dln.ih_bias, {db_ih}, scratch_dgx.data(), kept.ln_ih_hat,
                                     TB, G);
      layer_norm_parameter_gradients(team, dln.hh_weight, dln.hh_bias, {db_hh}, scratch_dgh.data(), kept.ln_hh_hat,
                                     TB, G);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------
// Inference with int8 weights (int8.hpp): gx = float(acc_ih) · (s_x · s_ih) + b_ih for every row
// of x, per step rec = float(acc_hh) · (s_h · s_hh) from h_{t-1} quantized by rows, and the float
// cell's pointwise pass (r = σ(gx_r + (rec_r + b_hr)), ..., n = tanh(gx_n + r ⊙ (rec_n + b_hn))).
template <typename Kernel>
void gru_forward_int8(float* y, float* h_n, const float* x, const float* h0, const Int8Matrix& w_ih,
                      const Int8Matrix& w_hh, const float* b_ih, const float* b_hh, const GruDims& d,
                      const SequenceOptions& seq) {
  const Index H = d.H, G = d.G();
  int8_forward_h_only<Kernel>(y, h_n, x, h0, w_ih, w_hh, b_ih, nullptr, 3, d.T, d.B, H, d.ld_y(), seq,
                      [&](float* gx_t, const float* rec, const float* h_prev, float* h_next,
                          const SequenceOptions& seq_rows, Index t, Index nb, Index u0, Index nu) {
                        gru_pointwise_forward<float>(gx_t, nullptr, h_next, rec + u0, G, H, b_hh, h_prev, seq_rows,
                                                     t, nb, H, u0, nu);
                      });
}

}  // namespace

// This level's GRU kernels, for its table (level.cpp); with vnni, the int8 kernel of VNNI.
template <typename Scalar>
GruKernels<Scalar> gru_kernels(bool vnni) {
  if constexpr (std::is_same_v<Scalar, float>) {
    auto forward_int8 = &gru_forward_int8<int8_base::Kernel>;
#if defined(LSTM_EXT_INT8_VNNI_TARGET)
    if (vnni) forward_int8 = &gru_forward_int8<int8_vnni::Kernel>;
#endif
    return {&gru_forward<Scalar>, &gru_backward<Scalar>, forward_int8, &gru_forward_bf16};
  } else {
    return {&gru_forward<Scalar>, &gru_backward<Scalar>, nullptr, nullptr};
  }
}
template GruKernels<float> gru_kernels<float>(bool);
template GruKernels<double> gru_kernels<double>(bool);

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
