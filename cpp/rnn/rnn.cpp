// lstm_ext core: vanilla RNN forward and backward for one layer and one direction,
// compiled once per kernel level (kernels.hpp).
//
// Dimensions: T time steps, B batch, I input features, H hidden units.
//
// The kernel pattern (see rnn.hpp for the equations), on a team of threads (parallel.hpp):
//   forward   1. a (T*B, H) = X (T*B, I) · W_ihᵀ + b_ih + b_hh          one GEMM, all steps, in blocks
//             2. per step t (in the walk's order), each member for its own units u:
//                rec = h_{t-1} · W_hh[rows of u]ᵀ (packed once per call), h_t = act(a_t + rec).
//                One barrier per step; with a large batch (split_by_rows, common.hpp)
//                members take sequences instead: none.
//   backward  1. reverse walk, each member for its units: dh_t = dy_t + dh from the next step;
//                da_t = dh_t ⊙ act'(a_t) (tanh' = 1 − h², relu' = [h > 0]); after a barrier,
//                dh_{t-1} = da_t · W_hh[:, u] (its columns, packed once per call)
//             2. after the walk, in blocks: dX = dA · W_ih, dW_ih = dAᵀ · X,
//                dW_hh = dAᵀ · H_prev, and db = column sums of dA (X and H_prev kept packed in the
//                workspace by the forward)
// Nothing is allocated inside a time loop; results do not depend on the number of threads.
#include "rnn/rnn.hpp"

#include "rnn/int8.hpp"
#include "rnn/kernels.hpp"
#include "rnn/products.hpp"

#include <vector>

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {
namespace {

// The workspace's blocks (above); Pointer is Scalar* for the forward, const Scalar* for the backward.
template <typename Scalar, typename Pointer>
struct RnnWorkspace {
  Pointer h = nullptr, h_prev = nullptr, x = nullptr;
  RnnWorkspace(Pointer ws, const RnnDims& d) {
    if (ws == nullptr) return;  // inference: nothing kept
    const Index TB = d.T * d.B;
    h = ws;
    h_prev = h + TB * d.H;
    x = h_prev + packed_size<Scalar>(d.H, TB);
  }
};


// h = act(a + rec) for the units [u0, u0 + nu) of the active rows:
//   h, a  (B, H)       a in; h out (may alias a)
//   rec   (B, ld_rec)  h_{t-1} · W_hhᵀ for unit u0 + j at column j
template <typename Scalar>
void rnn_pointwise_forward(Scalar* h, const Scalar* a, const Scalar* rec, Index ld_rec, RnnActivation act,
                           const SequenceOptions& seq, Index t, Index B, Index H, Index u0, Index nu) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P zero = pset1<P>(Scalar(0));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    for (Index j = 0; j < nu; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, nu - j);
      const Index k = b * H + u0 + j;
      const P a_k = padd(load_packet(a + k, n), load_packet(rec + b * ld_rec + j, n));
      store_packet(h + k, act == RnnActivation::Tanh ? packet_tanh<Scalar>(a_k) : pmax(a_k, zero), n);
    }
  }
}

// da = dh ⊙ act'(a) for the units [u0, u0 + nu) of the active rows, from h = act(a):
//   tanh' = 1 − h²      relu' = 1 where h > 0, else 0 (PyTorch's choice at 0)
//   da (B, H) out       dh (B, H) in       h (B, H) in
template <typename Scalar>
void rnn_pointwise_backward(Scalar* da, const Scalar* dh, const Scalar* h, RnnActivation act,
                            const SequenceOptions& seq, Index t, Index B, Index H, Index u0, Index nu) {
  using P = Packet<Scalar>;
  using namespace Eigen::internal;
  const P one = pset1<P>(Scalar(1)), zero = pset1<P>(Scalar(0));
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    for (Index j = 0; j < nu; j += kPacket<Scalar>) {
      const Index n = std::min(kPacket<Scalar>, nu - j);
      const Index k = b * H + u0 + j;
      const P h_k = load_packet(h + k, n);
      const P slope = act == RnnActivation::Tanh ? psub(one, pmul(h_k, h_k)) : pand(pcmp_lt(zero, h_k), one);
      store_packet(da + k, pmul(load_packet(dh + k, n), slope), n);
    }
  }
}



// ---------------------------------------------------------------------------------------------
// (hh: W_hh's float rows, or in float32 inference its bf16 panels: RecurrentWeights, panel.hpp.)
template <typename Scalar>
void rnn_forward_steps(Scalar* y, Scalar* h_n, Scalar* ws, const Scalar* x, const Scalar* h0,
                       const Scalar* w_ih, const Scalar* w_hh, const std::uint16_t* packed_hh_bf16,
                       const Scalar* b_ih, const Scalar* b_hh, RnnActivation act, const RnnDims& d,
                       const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, TB = d.T * d.B, ld_y = d.ld_y();
  constexpr Index L = kPacket<Scalar>, granule = kUnitGranule<Scalar>;
  const bool training = ws != nullptr;

  const RnnWorkspace<Scalar, Scalar*> kept(ws, d);  // training only (see rnn.hpp)

  // Members split the units of every sequence, or, when the batch is large enough, the
  // sequences (split_by_rows).
  TeamLease lease(members_for(2.0 * B * H * H, H, granule), 2.0 * T * B * H * (I + H));
  const int members = lease.size();
  const bool by_rows = split_by_rows(B, members);

  Buffer<Scalar> scratch_a(training ? 0 : TB * H);  // (T, B, H) inference: pre-activations
  Buffer<Scalar> h_steps(2 * B * H);                // (2, B, H) h_{t-1} and h_t, by parity of the step
  Scalar* a = training ? kept.h : scratch_a.data();  // (T, B, H): a_t, then h_t in place (kept when training)
  const ColumnTasks<Scalar> input_tasks(H, members);  // a = X · W_ihᵀ by columns
  // Split by units, per member: its rows of W_hh (its units) and their product (B, panels * L).
  // Split by rows: all of W_hh packed once for every member, and per member the product of its rows.
  // The float panels stay empty where the products read bf16 weights themselves (panel.hpp).
  const RecurrentWeights<Scalar> hh(w_hh, packed_hh_bf16, H, H, B);
  const bool pack = hh.needs_packing();
  const Index all_unit_panels = panel_count<Scalar>(H);
  Buffer<Scalar> shared_packed(by_rows && pack ? all_unit_panels * H * L : 0);  // W_hh packed
  auto scratch = member_scratch<Scalar>(members, H, granule, by_rows || !pack ? 0 : H * L, by_rows ? 0 : B * L,
                                        input_tasks.scratch_size(I));
  for (int k = 0; by_rows && k < members; ++k) {
    scratch[k].product.resize(split_part(B, 1, members, k).size() * all_unit_panels * L);
  }

  lease.run([&](Team& team) {
    MemberScratch<Scalar>& mine = scratch[team.rank()];
    // Its share: its units of every sequence, or its sequences, every unit.
    const Team::Range rows = by_rows ? team.part(B) : Team::Range{0, B};
    const Team::Range units = by_rows ? Team::Range{0, H} : team.part(H, granule);
    const Index b0 = rows.begin, nb = rows.size();
    const Index u0 = units.begin, nu = units.size(), unit_panels = panel_count<Scalar>(nu);
    const SequenceOptions seq_rows = seq.rows_from(b0);  // its sequences' lengths
    const Scalar* packed_hh = by_rows ? shared_packed.data() : mine.packed.data();
    const Columns unit_cols{H, u0, nu}, y_cols{ld_y, u0, nu};  // its units of a and h, of y

    // 1. Input projection of all steps at once, and both biases.
    input_projection(team, input_tasks, mine.packed_task.data(), a, x, w_ih, b_ih, b_hh, TB, I, H);
    if (training) pack_columns_in_tasks(team, kept.x, x, TB, I);  // X packed for dW_ih
    if (pack && by_rows) {
      team.tasks(1, [&](Index) { hh.pack(shared_packed.data(), 0, 0, H); });
    } else if (pack) {
      hh.pack(mine.packed.data(), 0, u0, nu);
    }
    copy_or_zero(h_steps.data() + b0 * H, h0 ? h0 + b0 * H : nullptr, unit_cols, nb);
    team.barrier();

    // 2. The recurrence, over its rows [b0, b0 + nb) of every (B, ·) buffer.
    for (Index s = 0; s < T; ++s) {
      const Index t = seq.time_at(s, T);
      const Scalar* h_prev = h_steps.data() + (s % 2) * B * H + b0 * H;  // (nb, H) h_{t-1}
      Scalar* h_next = h_steps.data() + ((s + 1) % 2) * B * H + b0 * H;  // (nb, H) h_t
      Scalar* a_t = a + (t * B + b0) * H;                                  // (nb, H)
      Scalar* y_t = y + (t * B + b0) * ld_y;                               // (nb, ld_y)
      if (s + 1 < T) prefetch_rows(a + (seq.time_at(s + 1, T) * B + b0) * H, unit_cols, nb);  // the next a_t
      recurrent_product(mine.product.data(), unit_panels * L, rows_of(h_prev, H), hh, packed_hh, 1, u0, nu, nb);
      if (training) store_packed_rows(kept.h_prev, TB, t * B + b0, h_prev, unit_cols, nb);
      rnn_pointwise_forward(a_t, a_t, mine.product.data(), unit_panels * L, act, seq_rows, t, nb, H, u0, nu);
      // Outputs: h_t, zero past a sequence's length; h carried there.
      write_output(y_t, y_cols, a_t, unit_cols, seq_rows, t, nb);
      copy_rows(Rows::Active, h_next, a_t, unit_cols, seq_rows, t, nb);
      carry_past_length(h_next, h_prev, unit_cols, seq_rows, t, nb);
      if (!by_rows) team.barrier();  // h_t complete
    }
    copy_columns(h_n + b0 * H, h_steps.data() + (T % 2) * B * H + b0 * H, unit_cols, nb);
  });
}

template <typename Scalar>
void rnn_forward(Scalar* y, Scalar* h_n, Scalar* ws, const Scalar* x, const Scalar* h0,
                 const Scalar* w_ih, const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh,
                 RnnActivation act, const RnnDims& d, const SequenceOptions& seq) {
  rnn_forward_steps(y, h_n, ws, x, h0, w_ih, w_hh, nullptr, b_ih, b_hh, act, d, seq);
}

// Inference with bf16 recurrent weights (rnn.hpp).
void rnn_forward_bf16(float* y, float* h_n, const float* x, const float* h0, const float* w_ih,
                      const std::uint16_t* packed_hh_bf16, const float* b_ih, const float* b_hh, RnnActivation act,
                      const RnnDims& d, const SequenceOptions& seq) {
  rnn_forward_steps<float>(y, h_n, nullptr, x, h0, w_ih, nullptr, packed_hh_bf16, b_ih, b_hh, act, d, seq);
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
void rnn_backward(Scalar* dx, Scalar* dh0, Scalar* dw_ih, Scalar* dw_hh, Scalar* db,
                  const Scalar* dy, const Scalar* dh_n, const Scalar* ws, const Scalar* w_ih, const Scalar* w_hh,
                  RnnActivation act, const RnnDims& d, const SequenceOptions& seq) {
  const Index T = d.T, B = d.B, I = d.I, H = d.H, TB = d.T * d.B, ld_y = d.ld_y();
  constexpr Index L = kPacket<Scalar>, granule = kUnitGranule<Scalar>;

  const RnnWorkspace<Scalar, const Scalar*> kept(ws, d);  // the forward's workspace (see rnn.hpp)

  TeamLease lease(members_for(2.0 * B * H * H, H, granule), 4.0 * T * B * H * (I + H));
  const int members = lease.size();

  Buffer<Scalar> scratch_da(TB * H);        // (T, B, H) gradient of every step's pre-activations
  Buffer<Scalar> dh_state(B * H);           // (B, H) dh arriving from the next step, by member units
  const ColumnTasks<Scalar> dx_tasks(I, members);  // dX = dA · W_ih by columns
  // Per member: its columns of W_hh (its units) and their product (B, panels * L).
  auto scratch = member_scratch<Scalar>(members, H, granule, H * L, B * L, dx_tasks.scratch_size(H),
                                        WeightGradient<Scalar>::strip_size(TB));

  lease.run([&](Team& team) {
    MemberScratch<Scalar>& mine = scratch[team.rank()];
    const Team::Range units = team.part(H, granule);
    const Index u0 = units.begin, nu = units.size(), unit_panels = panel_count<Scalar>(nu);
    // Its columns: its units of h, a and dy, and the block of the product that holds them.
    const Columns unit_cols{H, u0, nu}, y_cols{ld_y, u0, nu}, product_cols{unit_panels * L, 0, nu};
    pack_columns(mine.packed.data(), w_hh, unit_cols, H);
    copy_or_zero(dh_state.data(), dh_n, unit_cols, B);
    team.barrier();

    // 1. Reverse walk.
    for (Index s = T - 1; s >= 0; --s) {
      const Index t = seq.time_at(s, T);
      add_output_gradient(dh_state.data(), unit_cols, dy, y_cols, seq, t, B);  // dh_t
      Scalar* da_t = scratch_da.data() + t * B * H;
      if (s > 0) {  // what the next step reads, fetched while this one computes
        const Index t_next = seq.time_at(s - 1, T);
        prefetch_rows(kept.h + t_next * B * H, unit_cols, B);
        if (dy != nullptr) prefetch_rows(dy + t_next * B * ld_y, y_cols, B);
      }
      rnn_pointwise_backward(da_t, dh_state.data(), kept.h + t * B * H, act, seq, t, B, H, u0, nu);
      zero_past_length(da_t, unit_cols, seq, t, B);
      team.barrier();  // da_t complete
      // Its units of dh_{t-1} = da_t · W_hh; sequences past their length pass dh through.
      panel_product(mine.product.data(), unit_panels * L, unit_panels * L, rows_of<Scalar>(da_t, H),
                    mine.packed.data(), unit_panels, H, B);
      copy_rows(Rows::Active, dh_state.data(), unit_cols, mine.product.data(), product_cols, seq, t, B);
    }
    copy_columns(dh0, dh_state.data(), unit_cols, B);

    // 2. Gradients of the inputs and weights over all steps (products.hpp); b_ih and b_hh share db.
    input_and_weight_gradients(team, dx_tasks, mine.packed_task.data(), mine.strip.data(), dx, dw_ih, dw_hh, db,
                               static_cast<Scalar*>(nullptr), scratch_da.data(), scratch_da.data(), kept.x,
                               kept.h_prev, w_ih, TB, I, H, H);
  });
}

// ---------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------
// Inference with int8 weights (int8.hpp): gx = (float(acc_ih) · (s_x · s_ih) + b_ih) + b_hh for
// every row of x, per step rec = float(acc_hh) · (s_h · s_hh) from h_{t-1} quantized by rows, and
// h_t = act(gx + rec).
template <typename Kernel>
void rnn_forward_int8(float* y, float* h_n, const float* x, const float* h0, const Int8Matrix& w_ih,
                      const Int8Matrix& w_hh, const float* b_ih, const float* b_hh, RnnActivation act,
                      const RnnDims& d, const SequenceOptions& seq) {
  const Index H = d.H;
  int8_forward_h_only<Kernel>(y, h_n, x, h0, w_ih, w_hh, b_ih, b_hh, 1, d.T, d.B, H, d.ld_y(), seq,
                      [&](float* gx_t, const float* rec, const float*, float* h_next, const SequenceOptions& seq_rows,
                          Index t, Index nb, Index u0, Index nu) {
                        rnn_pointwise_forward<float>(h_next, gx_t, rec + u0, H, act, seq_rows, t, nb, H, u0, nu);
                      });
}

}  // namespace

// This level's RNN kernels, for its table (level.cpp); with vnni, the int8 kernel of VNNI.
template <typename Scalar>
RnnKernels<Scalar> rnn_kernels(bool vnni) {
  if constexpr (std::is_same_v<Scalar, float>) {
    auto forward_int8 = &rnn_forward_int8<int8_base::Kernel>;
#if defined(LSTM_EXT_INT8_VNNI_TARGET)
    if (vnni) forward_int8 = &rnn_forward_int8<int8_vnni::Kernel>;
#endif
    return {&rnn_forward<Scalar>, &rnn_backward<Scalar>, forward_int8, &rnn_forward_bf16};
  } else {
    return {&rnn_forward<Scalar>, &rnn_backward<Scalar>, nullptr, nullptr};
  }
}
template RnnKernels<float> rnn_kernels<float>(bool);
template RnnKernels<double> rnn_kernels<double>(bool);

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
