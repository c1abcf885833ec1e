// lstm_ext core: what every recurrent cell shares.
//
// Pure C++17 + Eigen; no Python headers anywhere under cpp/rnn/.
//
// Dimension legend (the same letters in every file of the core):
//   T  time steps              B  batch size
//   I  input features          H  hidden units
//   P  projected hidden size (LSTM with projection; otherwise the output size is H)
//   G  gate rows (4H for the LSTM, 3H for the GRU, H for the vanilla RNN)
//
// Conventions: buffers are row-major (C order) and time-major: a sequence is (T, B, I), so the
// rows of step t start at t*B. Eigen sees them through Maps of row-major matrices; nothing here
// owns a caller's memory.
//
// Every cell runs one layer in one direction over a batch of sequences, with two options
// (SequenceOptions): `reverse` walks the time steps from T-1 down to 0, and `lengths` gives each
// sequence's valid length. A sequence b is active at time t when t < lengths[b]; at inactive
// steps its state is carried unchanged, its output row is zero and its gradients pass through.
// This is PyTorch's packed-sequence meaning: the final state is the state after the last valid
// step, and the reverse direction starts at each sequence's own last valid step.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace lstm_ext {

using Index = Eigen::Index;

template <typename Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename Scalar>
using MatrixMap = Eigen::Map<RowMatrix<Scalar>>;
template <typename Scalar>
using ConstMatrixMap = Eigen::Map<const RowMatrix<Scalar>>;
template <typename Scalar>
using RowVectorMap = Eigen::Map<Eigen::Matrix<Scalar, 1, Eigen::Dynamic>>;
template <typename Scalar>
using ConstRowVectorMap = Eigen::Map<const Eigen::Matrix<Scalar, 1, Eigen::Dynamic>>;
template <typename Scalar>
using ArrayMap = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
template <typename Scalar>
using ConstArrayMap = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
// An owned, aligned scratch buffer (allocated before a time loop, never inside it).
template <typename Scalar>
using Buffer = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

// ---------------------------------------------------------------------------------------------
// Direction and valid lengths of a sequence batch.
struct SequenceOptions {
  bool reverse = false;                    // walk t = T-1, ..., 0
  const std::int64_t* lengths = nullptr;   // (B) valid lengths in [1, T]; nullptr = all T

  // The time step processed at position s (0 <= s < T) of the forward walk.
  Index time_at(Index s, Index T) const { return reverse ? T - 1 - s : s; }
  // Whether sequence b is inside its valid length at time t.
  bool active(Index b, Index t) const { return lengths == nullptr || t < lengths[b]; }
};

// For rows that are inactive at time t, copy `count` values per row from `from` (B, count) to
// `to` (B, count): the carried state. Rows that are active are left alone.
template <typename Scalar>
void carry_inactive_rows(Scalar* to, const Scalar* from, const SequenceOptions& seq, Index t, Index B,
                         Index count) {
  if (seq.lengths == nullptr) return;
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) std::copy_n(from + b * count, count, to + b * count);
  }
}

// For rows that are inactive at time t, set `count` values per row of `rows` (B, count) to zero.
template <typename Scalar>
void zero_inactive_rows(Scalar* rows, const SequenceOptions& seq, Index t, Index B, Index count) {
  if (seq.lengths == nullptr) return;
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) std::fill_n(rows + b * count, count, Scalar(0));
  }
}

// For rows that are active at time t, copy `count` values per row from `from` to `to` (B, count).
template <typename Scalar>
void copy_active_rows(Scalar* to, const Scalar* from, const SequenceOptions& seq, Index t, Index B,
                      Index count) {
  for (Index b = 0; b < B; ++b) {
    if (seq.active(b, t)) std::copy_n(from + b * count, count, to + b * count);
  }
}

// For rows that are active at time t, add `count` values per row of `from` to `to` (B, count).
template <typename Scalar>
void add_active_rows(Scalar* to, const Scalar* from, const SequenceOptions& seq, Index t, Index B, Index count) {
  for (Index b = 0; b < B; ++b) {
    if (!seq.active(b, t)) continue;
    for (Index j = 0; j < count; ++j) to[b * count + j] += from[b * count + j];
  }
}

// sums (cols) = column sums of m (rows, cols), added row by row in a fixed order: a column-sum
// expression would sum in an order that depends on the buffers' alignment, and bias gradients
// must be bitwise reproducible.
template <typename Scalar>
void column_sums(Scalar* sums, const Scalar* m, Index rows, Index cols) {
  RowVectorMap<Scalar> total(sums, cols);
  total.setZero();
  for (Index r = 0; r < rows; ++r) total += ConstRowVectorMap<Scalar>(m + r * cols, cols);
}

// (rows, cols) = a copy of `from`, or zeros when `from` is nullptr (an absent initial state).
template <typename Scalar>
void copy_or_zero(Scalar* to, const Scalar* from, Index count) {
  if (from != nullptr) {
    std::copy_n(from, count, to);
  } else {
    std::fill_n(to, count, Scalar(0));
  }
}

// ---------------------------------------------------------------------------------------------
// Packets: the pointwise kernels walk each row of H values in SIMD packets of kPacket values,
// the last one zero-padded, so that every element goes through the same instructions whatever
// its position in the row or the alignment of the buffer. Results are therefore bitwise
// reproducible: they depend on the values and sizes only. (Eigen's own array expressions
// switch to scalar code for unaligned heads and ragged tails, whose tanh and logistic differ
// from the packet versions in the last bits.)
template <typename Scalar>
using Packet = typename Eigen::internal::packet_traits<Scalar>::type;
template <typename Scalar>
constexpr Index kPacket = Eigen::internal::unpacket_traits<Packet<Scalar>>::size;

// n <= kPacket values from p; the lanes past n are zero.
template <typename Scalar>
inline Packet<Scalar> load_packet(const Scalar* p, Index n) {
  if (n == kPacket<Scalar>) return Eigen::internal::ploadu<Packet<Scalar>>(p);
  alignas(64) Scalar lanes[kPacket<Scalar>] = {};
  std::copy_n(p, n, lanes);
  return Eigen::internal::pload<Packet<Scalar>>(lanes);
}

// The first n <= kPacket lanes of v to p.
template <typename Scalar>
inline void store_packet(Scalar* p, const Packet<Scalar>& v, Index n) {
  if (n == kPacket<Scalar>) return Eigen::internal::pstoreu(p, v);
  alignas(64) Scalar lanes[kPacket<Scalar>];
  Eigen::internal::pstore(lanes, v);
  std::copy_n(lanes, n, p);
}

// σ(x) = 1 / (1 + e^(−x)): Eigen's packet logistic (a rational approximation for float,
// 1 / (1 + exp(−x)) with the packet exp for double).
template <typename Scalar>
inline Packet<Scalar> packet_sigmoid(const Packet<Scalar>& x) {
  return Eigen::internal::scalar_logistic_op<Scalar>().packetOp(x);
}

// tanh(x): Eigen's packet tanh where it has one (float), else std::tanh lane by lane (double).
template <typename Scalar>
inline Packet<Scalar> packet_tanh(const Packet<Scalar>& x) {
  if constexpr (Eigen::internal::packet_traits<Scalar>::HasTanh) {
    return Eigen::internal::ptanh(x);
  } else {
    alignas(64) Scalar lanes[kPacket<Scalar>];
    Eigen::internal::pstore(lanes, x);
    for (Scalar& v : lanes) v = std::tanh(v);
    return Eigen::internal::pload<Packet<Scalar>>(lanes);
  }
}

// ---------------------------------------------------------------------------------------------
// PackedMatmul: out (B, N) += in (B, K) · Mᵀ for a fixed M (N, K), many times.
//
// A recurrent product multiplies the same weight matrix by a new small batch at every step. A
// general GEMM would repack the weights and allocate packing buffers at every call; here M is
// packed once, in the layout of Eigen's GEBP micro-kernel, and each call only packs the small
// `in` block into a buffer allocated up front. Calls never allocate.
//
// MStorage says how M is laid out in memory: Eigen::RowMajor for M = W_hh stored (G, H), or
// Eigen::ColMajor for M = W_hhᵀ when W_hh (G, H) is stored row-major.
//
// In Eigen's column-major terms the product is res (N × B) += M (N × K) · inᵀ (K × B), where
// res is `out` read column-major and inᵀ is `in` read column-major.
template <typename Scalar, int MStorage>
class PackedMatmul {
 public:
  PackedMatmul(const Scalar* m, Index n, Index k, Index max_batch)
      : n_(n), k_(k), max_batch_(max_batch),
        packed_m_((n + Traits::mr) * k),             // whole M, plus one panel of slack
        packed_in_((max_batch + Traits::nr) * k) {   // one batch of `in`, plus slack
    const LhsMapper m_map(m, MStorage == Eigen::RowMajor ? k : n);
    PackLhs pack;
    pack(packed_m_.data(), m_map, k_, n_);
  }

  // out (batch, N) row-major, contiguous; in (batch, K) row-major, contiguous; batch <= max_batch.
  void accumulate(Scalar* out, const Scalar* in, Index batch) {
    eigen_assert(batch <= max_batch_);
    const RhsMapper in_map(in, k_);
    PackRhs pack;
    pack(packed_in_.data(), in_map, k_, batch);
    const ResMapper res(out, n_);
    Gebp gebp;
    gebp(res, packed_m_.data(), packed_in_.data(), n_, k_, batch, Scalar(1));
  }

  // Elements this object allocates for M (N, K) and batches of up to max_batch rows; Count =
  // double gives the size of any request without overflow.
  template <typename Count = Index>
  static Count buffer_size(Index n, Index k, Index max_batch) {
    return (Count(n) + Traits::mr) * k + (Count(max_batch) + Traits::nr) * k;
  }

 private:
  using Traits = Eigen::internal::gebp_traits<Scalar, Scalar>;
  using LhsMapper = Eigen::internal::const_blas_data_mapper<Scalar, Index, MStorage>;
  using RhsMapper = Eigen::internal::const_blas_data_mapper<Scalar, Index, Eigen::ColMajor>;
  using ResMapper = Eigen::internal::blas_data_mapper<Scalar, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;
  using PackLhs = Eigen::internal::gemm_pack_lhs<Scalar, Index, LhsMapper, Traits::mr, Traits::LhsProgress,
                                                 typename Traits::LhsPacket4Packing, MStorage>;
  using PackRhs = Eigen::internal::gemm_pack_rhs<Scalar, Index, RhsMapper, Traits::nr, Eigen::ColMajor>;
  using Gebp = Eigen::internal::gebp_kernel<Scalar, Scalar, Index, ResMapper, Traits::mr, Traits::nr>;

  Index n_, k_, max_batch_;
  Buffer<Scalar> packed_m_;   // M in GEBP lhs panels: (N, K) rounded up to whole panels
  Buffer<Scalar> packed_in_;  // `in` of one call in GEBP rhs panels: (K, max_batch)
};

}  // namespace lstm_ext
