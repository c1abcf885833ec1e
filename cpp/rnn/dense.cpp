// lstm_ext core: the dense kernels (dense.hpp), compiled once per kernel level (kernels.hpp).
//
// Dimensions: N rows, I input features, O outputs.
//
//   linear forward    y (N, O) = x · Wᵀ + b: the input projection of the recurrent layers
//                     (products.hpp), by column tasks of the packed rows of W
//   linear backward   dx (N, I) = dy · W by column tasks, db = column sums of dy, dW = dyᵀ · x by
//                     strips of rows of dW from x packed by columns
//   elementwise       y = f(x) in packets, the last one zero-padded (common.hpp)
// Every element is computed by the same instructions whichever member of the team computes it.
#include "rnn/dense.hpp"

#include "rnn/kernels.hpp"
#include "rnn/products.hpp"

#include <cmath>
#include <limits>

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {
namespace {

// Members worth using for a product of `flops` over `columns` output columns.
template <typename Scalar>
int product_members(double flops, Index columns) {
  return members_for(flops, columns, kUnitGranule<Scalar>);
}

template <typename Scalar>
void linear_forward(Scalar* y, const Scalar* x, const Scalar* w, const Scalar* b, Index N, Index I, Index O) {
  const double flops = 2.0 * N * I * O;
  TeamLease lease(product_members<Scalar>(flops, O), flops);
  const ColumnTasks<Scalar> tasks(O, lease.size());
  std::vector<Buffer<Scalar>> packed(lease.size());  // per member: the rows of W of one task
  for (Buffer<Scalar>& p : packed) p.resize(tasks.scratch_size(I));
  lease.run([&](Team& team) {
    input_projection(team, tasks, packed[team.rank()].data(), y, x, w, b, static_cast<const Scalar*>(nullptr), N, I,
                     O);
  });
}

template <typename Scalar>
void linear_backward(Scalar* dx, Scalar* dw, Scalar* db, const Scalar* dy, const Scalar* x, const Scalar* w, Index N,
                     Index I, Index O) {
  const double flops = 4.0 * N * I * O;
  TeamLease lease(product_members<Scalar>(flops, std::max(I, O)), flops);
  const int members = lease.size();
  const ColumnTasks<Scalar> dx_tasks(I, members);
  Buffer<Scalar> packed_x(packed_size<Scalar>(I, N));  // x packed by columns, for dW
  std::vector<Buffer<Scalar>> task_scratch(members), strips(members);
  for (int k = 0; k < members; ++k) {
    task_scratch[k].resize(dx_tasks.scratch_size(O));                   // the columns of W of one task
    strips[k].resize(WeightGradient<Scalar>::strip_size(N));            // a strip of dyᵀ
  }
  lease.run([&](Team& team) {
    Scalar* mine = task_scratch[team.rank()].data();
    // dX = dY · W: M = Wᵀ, whose rows are the columns of W.
    team.tasks(dx_tasks.count(), [&](Index i) {
      const Index c0 = dx_tasks.first_column(i), cols = dx_tasks.columns(i);
      pack_columns(mine, w, Columns{I, c0, cols}, O);
      panel_product(dx + c0, I, cols, rows_of(dy, O), mine, dx_tasks.panels(i), O, N);
    });
    // db = column sums of dY.
    if (db != nullptr) {
      const OutputBlocks blocks{1, O};
      team.tasks(blocks.count(), [&](Index i) { column_sums(db, dy, N, Columns{O, blocks[i].c0, blocks[i].nc}); });
    }
    // dW = dYᵀ · X, from X packed by columns.
    pack_columns_in_tasks(team, packed_x.data(), x, N, I);
    team.barrier();  // X packed
    weight_gradients(team, dy, O, {WeightGradient<Scalar>{dw, packed_x.data(), I}}, N, strips[team.rank()].data());
  });
}

// f of a packet: the gates' exp, tanh and σ (common.hpp), Eigen's generic log. At the ends of
// the range, where those approximations stop: e^x is 0 below ln(smallest normal) (Eigen's exp
// clamps its argument there, which would give the smallest normal number for any x below), and
// ln x of a subnormal x is ln(x · 2^k) − k ln 2 (Eigen's log reads subnormals as the smallest
// normal number), x · 2^k being exact.
template <typename Scalar>
Packet<Scalar> apply(Elementwise f, const Packet<Scalar>& x) {
  using namespace Eigen::internal;
  using P = Packet<Scalar>;
  switch (f) {
    case Elementwise::Exp: {
      const P below_normal = pcmp_lt(x, pset1<P>(std::log(std::numeric_limits<Scalar>::min())));
      return pselect(below_normal, pzero(x), packet_exp<Scalar>(x));
    }
    case Elementwise::Tanh: return packet_tanh<Scalar>(x);
    case Elementwise::Sigmoid: return packet_sigmoid<Scalar>(x);
    case Elementwise::Log: break;
  }
  constexpr int k = std::numeric_limits<Scalar>::digits + 1;  // 2^k lifts any subnormal into the normal range
  const Scalar lift = std::ldexp(Scalar(1), k), shift = static_cast<Scalar>(k * 0.693147180559945309417232121458);
  const P subnormal = pand(pcmp_lt(pzero(x), x), pcmp_lt(x, pset1<P>(std::numeric_limits<Scalar>::min())));
  const P lifted = pselect(subnormal, pmul(x, pset1<P>(lift)), x);
  const P log = packet_log<Scalar>(lifted);
  return pselect(subnormal, psub(log, pset1<P>(shift)), log);
}

template <typename Scalar>
void elementwise(Scalar* y, const Scalar* x, Index n, Elementwise f) {
  constexpr Index L = kPacket<Scalar>;
  for (Index k = 0; k < n; k += L) {
    const Index lanes = std::min(L, n - k);
    store_packet(y + k, apply<Scalar>(f, load_packet(x + k, lanes)), lanes);
  }
}

// bf16 weights packed once for the recurrent products, block by block (dense.hpp).
void pack_bf16_blocks(std::uint16_t* packed, const std::uint16_t* m, Index blocks, Index rows, Index K) {
  const Index block_size = panel_count<float>(rows) * K * kPacket<float>;
  for (Index q = 0; q < blocks; ++q) pack_rows_bf16(packed + q * block_size, m + q * rows * K, K, rows, K);
}

}  // namespace

// This level's dense kernels, for its table (level.cpp).
template <typename Scalar>
DenseKernels<Scalar> dense_kernels() {
  if constexpr (std::is_same_v<Scalar, float>) {
    return {&linear_forward<Scalar>, &linear_backward<Scalar>, &elementwise<Scalar>, &pack_bf16_blocks};
  } else {
    return {&linear_forward<Scalar>, &linear_backward<Scalar>, &elementwise<Scalar>, nullptr};
  }
}
template DenseKernels<float> dense_kernels<float>();
template DenseKernels<double> dense_kernels<double>();

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
