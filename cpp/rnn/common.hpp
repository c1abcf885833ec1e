// lstm_ext core: what the kernels of every cell share (packets, activations, scratch, rows).
//
// Pure C++17 + Eigen; no Python headers. Kernel code: compiled once per kernel level, into the
// level's namespace lstm_ext::LSTM_EXT_LEVEL (kernels.hpp), like every file that includes it.
// The dimension legend and the sequence options are in types.hpp.
//
// Eigen sees the row-major buffers through Maps of row-major matrices.
#pragma once

#ifndef LSTM_EXT_LEVEL
#error "rnn/common.hpp is kernel code, compiled once per kernel level: CMake defines LSTM_EXT_LEVEL (see kernels.hpp)"
#endif

#include <Eigen/Core>

#include "rnn/parallel.hpp"
#include "rnn/scratch.hpp"
#include "rnn/types.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {

static_assert(std::is_same_v<Index, Eigen::Index>);

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
// An owned, aligned buffer of `size` elements of uninitialised scratch (allocated before a time
// loop, never inside it), from the cache of blocks earlier calls released (scratch.hpp);
// move-only. resize() keeps the memory when it is large enough and does not keep the contents.
template <typename Scalar>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(Index size) { resize(size); }
  ~Buffer() { reset(); }
  Buffer(Buffer&& other) noexcept { swap(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    Buffer(std::move(other)).swap(*this);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void resize(Index size) {
    const std::size_t bytes = static_cast<std::size_t>(size) * sizeof(Scalar);
    if (bytes > capacity_) {
      reset();
      data_ = static_cast<Scalar*>(acquire_scratch(bytes, &capacity_));
    }
    size_ = size;
  }
  Scalar* data() { return data_; }
  const Scalar* data() const { return data_; }
  Index size() const { return size_; }

 private:
  void reset() noexcept {
    if (data_ != nullptr) release_scratch(data_, capacity_);
    data_ = nullptr;
    capacity_ = 0;
    size_ = 0;
  }
  void swap(Buffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(capacity_, other.capacity_);
    std::swap(size_, other.size_);
  }

  Scalar* data_ = nullptr;
  std::size_t capacity_ = 0;  // bytes of the block
  Index size_ = 0;            // elements in use
};

// ---------------------------------------------------------------------------------------------
// Blocks of rows. A member of a team works on some columns of every (B, ·) buffer (its units, its
// columns of h), in all rows of the batch or in its own rows; Columns names those columns, and
// the helpers below take the rows. Every buffer is row-major.

// The columns [col0, col0 + width) of every row of a buffer whose rows are ld elements apart.
struct Columns {
  Index ld;     // elements from one row to the next
  Index col0;   // the first column
  Index width;  // how many columns

  // Where these columns of row b of `rows` start.
  template <typename Scalar>
  Scalar* in_row(Scalar* rows, Index b) const {
    return rows + b * ld + col0;
  }
};

// The columns `cols` of B rows: copied from `from` to `to`, or set to zero; copy_or_zero copies,
// or sets zeros when `from` is nullptr (an absent initial state or gradient).
template <typename Scalar>
void copy_columns(Scalar* to, const Scalar* from, Columns cols, Index B) {
  for (Index b = 0; b < B; ++b) std::copy_n(cols.in_row(from, b), cols.width, cols.in_row(to, b));
}
template <typename Scalar>
void zero_columns(Scalar* to, Columns cols, Index B) {
  for (Index b = 0; b < B; ++b) std::fill_n(cols.in_row(to, b), cols.width, Scalar(0));
}
template <typename Scalar>
void copy_or_zero(Scalar* to, const Scalar* from, Columns cols, Index B) {
  if (from != nullptr) {
    copy_columns(to, from, cols, B);
  } else {
    zero_columns(to, cols, B);
  }
}

// Which rows of a batch a helper touches at time t: the sequences within their length (Active) or
// past it (Inactive).
enum class Rows { Active, Inactive };

// f(b) for every row b of B that is `which` at time t.
template <typename F>
void for_rows(Rows which, const SequenceOptions& seq, Index t, Index B, F&& f) {
  for (Index b = 0; b < B; ++b) {
    if (seq.active(b, t) == (which == Rows::Active)) f(b);
  }
}

// In the `which` rows at time t: to's columns `to_cols` = from's columns `from_cols` (as many),
// or += them. The two buffers may have different row strides and first columns, e.g. a
// direction's own h and its columns of a shared (T, B, D * H) output, or a product's block and
// a member's columns of h.
template <typename Scalar>
void copy_rows(Rows which, Scalar* to, Columns to_cols, const Scalar* from, Columns from_cols,
               const SequenceOptions& seq, Index t, Index B) {
  for_rows(which, seq, t, B,
           [&](Index b) { std::copy_n(from_cols.in_row(from, b), to_cols.width, to_cols.in_row(to, b)); });
}
template <typename Scalar>
void copy_rows(Rows which, Scalar* to, const Scalar* from, Columns cols, const SequenceOptions& seq, Index t, Index B) {
  copy_rows(which, to, cols, from, cols, seq, t, B);
}
template <typename Scalar>
void add_rows(Rows which, Scalar* to, Columns to_cols, const Scalar* from, Columns from_cols,
              const SequenceOptions& seq, Index t, Index B) {
  for_rows(which, seq, t, B, [&](Index b) {
    Scalar* sum = to_cols.in_row(to, b);
    const Scalar* term = from_cols.in_row(from, b);
    for (Index j = 0; j < to_cols.width; ++j) sum[j] += term[j];
  });
}

// What the time loops of every cell do for the sequences past their length (types.hpp): their
// state is carried, their output is zero, their gradients pass through.

// Zeros in the rows past their length at time t: a step there has no output, and adds nothing to
// a weight's gradient.
template <typename Scalar>
void zero_past_length(Scalar* rows, Columns cols, const SequenceOptions& seq, Index t, Index B) {
  for_rows(Rows::Inactive, seq, t, B, [&](Index b) { std::fill_n(cols.in_row(rows, b), cols.width, Scalar(0)); });
}

// The rows past their length at time t keep the state they entered with: state_t = state_prev
// there. (A gradient passes such a step the same way.)
template <typename Scalar>
void carry_past_length(Scalar* state_t, const Scalar* state_prev, Columns cols, const SequenceOptions& seq, Index t,
                       Index B) {
  copy_rows(Rows::Inactive, state_t, state_prev, cols, seq, t, B);
}

// y_t, the output of step t: h_t in the rows within their length, zeros past it.
template <typename Scalar>
void write_output(Scalar* y_t, Columns y_cols, const Scalar* h_t, Columns h_cols, const SequenceOptions& seq,
                  Index t, Index B) {
  copy_rows(Rows::Active, y_t, y_cols, h_t, h_cols, seq, t, B);
  zero_past_length(y_t, y_cols, seq, t, B);
}

// dh_t += dy_t, the gradient of step t's output, in the rows within their length (past it a step
// has no output, and its dy is ignored). dy (T, B, y_cols.ld), nullptr = zeros: nothing to add.
template <typename Scalar>
void add_output_gradient(Scalar* dh_t, Columns dh_cols, const Scalar* dy, Columns y_cols, const SequenceOptions& seq,
                         Index t, Index B) {
  if (dy != nullptr) add_rows(Rows::Active, dh_t, dh_cols, dy + t * B * y_cols.ld, y_cols, seq, t, B);
}

// sums[c] for the columns `cols` of m (rows, cols.ld): column sums, added row by row in a fixed
// order: a column-sum expression would sum in an order that depends on the buffers' alignment,
// and bias gradients must be bitwise reproducible.
template <typename Scalar>
void column_sums(Scalar* sums, const Scalar* m, Index rows, Columns cols) {
  RowVectorMap<Scalar> total(sums + cols.col0, cols.width);
  total.setZero();
  for (Index r = 0; r < rows; ++r) total += ConstRowVectorMap<Scalar>(cols.in_row(m, r), cols.width);
}

// Asks the cache for the columns `cols` of B rows, in each of `blocks` column blocks
// `block_stride` apart (gate blocks): what the next time step will read, fetched while this step
// computes.
template <typename Scalar>
void prefetch_rows(const Scalar* rows, Columns cols, Index B, Index blocks = 1, Index block_stride = 0) {
  constexpr Index kLine = 64 / sizeof(Scalar);
  for (Index b = 0; b < B; ++b) {
    for (Index q = 0; q < blocks; ++q) {
      const Scalar* first = cols.in_row(rows, b) + q * block_stride;
      for (Index j = 0; j < cols.width; j += kLine) Eigen::internal::prefetch(first + j);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Large products (input projections, weight gradients) run as blocks of their output, shared
// out to a team as tasks. The blocks follow from the sizes alone (never from the team size), so
// every element is computed by the same product whichever member takes its block.
struct OutputBlocks {
  static constexpr Index kBlock = 256;  // rows or columns per block
  Index rows, cols;                     // the whole output
  struct Block {
    Index r0, nr, c0, nc;  // rows [r0, r0 + nr), columns [c0, c0 + nc)
  };
  // Blocks run along the longer side of the output.
  bool by_rows() const { return rows >= cols; }
  Index count() const { return ((by_rows() ? rows : cols) + kBlock - 1) / kBlock; }
  Block operator[](Index i) const {
    const Index begin = i * kBlock, length = std::min(kBlock, (by_rows() ? rows : cols) - begin);
    return by_rows() ? Block{begin, length, 0, cols} : Block{0, rows, begin, length};
  }
};

// Members worth using for a time loop: each must get at least `granule` units (a cache line of
// values) and kMinFlopsPerMember of work per step, or the barrier at every step costs more than
// the parallel work saves. Depends on get_num_threads().
inline int members_for(double flops_per_step, Index units, Index granule) {
  constexpr double kMinFlopsPerMember = 16384;
  const Index by_units = std::max<Index>(1, (units + granule - 1) / granule);
  const double by_work = std::max(1.0, flops_per_step / kMinFlopsPerMember);
  return static_cast<int>(std::max<Index>(1, std::min<Index>({get_num_threads(), by_units, static_cast<Index>(by_work)})));
}

// How a team shares the steps of a time loop. By units: each member computes its units of every
// sequence, and since h_t is assembled from every member's part, the team meets at a barrier at
// every step; each member reads only its rows of the recurrent weights, which stay in its own
// cache. By rows: each member runs its own sequences with every unit, and the team never meets
// inside the loop, since the sequences of a batch never exchange anything; each member reads all
// of the weights. The row split pays when each member has enough rows that a step is bound by
// the multiply-adds, not by reading the weights (kRowSplitMinRows rows per member).
constexpr Index kRowSplitMinRows = 16;
inline bool split_by_rows(Index B, int members) { return members > 1 && B >= kRowSplitMinRows * members; }

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

// The first n <= kPacket lanes of v to p. (v by value: a reference would make callers keep their
// packets in memory instead of registers.)
template <typename Scalar>
inline void store_packet(Scalar* p, Packet<Scalar> v, Index n) {
  if (n == kPacket<Scalar>) return Eigen::internal::pstoreu(p, v);
  alignas(64) Scalar lanes[kPacket<Scalar>];
  Eigen::internal::pstore(lanes, v);
  std::copy_n(lanes, n, p);
}

// e^x of a packet: Eigen's generic exp for float at every level (Cody-Waite reduction by ln 2 in
// two parts, polynomial, ldexp down to the subnormals), its double exp for double. Not Eigen's
// AVX-512 float exp: that one reduces by ln 2 in one part and builds 2^m from exponent bits, so
// its relative error grows with |x| (3.3e-7 near x = −87, measured) and it returns 0 below
// x = −87.3, where e^x is still a normal float.
template <typename Scalar>
inline Packet<Scalar> packet_exp(const Packet<Scalar>& x) {
  if constexpr (std::is_same_v<Scalar, float>) {
    return Eigen::internal::pexp_float(x);
  } else {
    return Eigen::internal::pexp(x);
  }
}

// ln x of a packet: Eigen's generic log at every level (the same polynomial per lane; Eigen's own
// plog of a level may be another), std::log lane by lane where there are no packets.
template <typename Scalar>
inline Packet<Scalar> packet_log(const Packet<Scalar>& x) {
  if constexpr (!Eigen::internal::packet_traits<Scalar>::Vectorizable) {
    return std::log(x);
  } else if constexpr (std::is_same_v<Scalar, float>) {
    return Eigen::internal::plog_float(x);
  } else {
    return Eigen::internal::plog_double(x);
  }
}

// σ(x) = 1 / (1 + e^(−x)), for float and double. Not Eigen's own float logistic: that one
// approximates σ(x) − 0.5 (and σ by e^x below −9), which is accurate to a few ulps of 0.5, not of
// σ: measured over [−100, 100] its worst relative error is 8.2e-4 (at x = −8.87). Gates near 0 (a
// closed forget or input gate) need relative accuracy: their products over many steps are the
// gradients that reach early steps. Measured in float, at every level (tests/test_gate_accuracy.py):
// within 1.9e-7 relative wherever σ(x) is a normal float (x > −87.3), subnormal values down to
// x = −88.7 within 3e-7, and 0 below, where σ(x) < 3e-39 (e^(−x) = inf). Large x gives 1.
template <typename Scalar>
inline Packet<Scalar> packet_sigmoid(const Packet<Scalar>& x) {
  using namespace Eigen::internal;
  const Packet<Scalar> one = pset1<Packet<Scalar>>(Scalar(1));
  return pdiv(one, padd(one, packet_exp<Scalar>(pnegate(x))));
}

// tanh of double packets, which Eigen 3.4 lacks: Cephes' tanh, every lane both ways, then a
// select (so that every lane runs the same instructions):
//   |x| <  0.625:  tanh x = x + x³ · P(x²) / Q(x²)        (Cephes' rational approximation)
//   |x| >= 0.625:  tanh x = ±(1 − 2 / (e^(2|x|) + 1))      (e^(2|x|) = inf gives ±1)
// Measured against long double over [−40, 40]: worst relative error 2.6e-16 (2.3 ulp), 6.4×
// faster than std::tanh lane by lane.
template <typename P>
inline P packet_tanh_cephes(const P& x) {
  using namespace Eigen::internal;
  const P one = pset1<P>(1.0), two = pset1<P>(2.0);
  const P ax = pabs(x), z = pmul(x, x);
  P p = pmadd(z, pset1<P>(-9.64399179425052238628e-1), pset1<P>(-9.92877231001918586564e1));
  p = pmadd(z, p, pset1<P>(-1.61468768441708447952e3));  // P(z), degree 2
  P q = padd(z, pset1<P>(1.12811678491632931402e2));
  q = pmadd(z, q, pset1<P>(2.23548839060100448583e3));
  q = pmadd(z, q, pset1<P>(4.84406305325125486048e3));   // Q(z), degree 3, monic
  const P near_zero = pmadd(pmul(x, z), pdiv(p, q), x);
  const P away = psub(one, pdiv(two, padd(pexp(padd(ax, ax)), one)));  // tanh |x|
  const P signed_away = pselect(pcmp_lt(x, pzero(x)), pnegate(away), away);
  return pselect(pcmp_lt(ax, pset1<P>(0.625)), near_zero, signed_away);
}

// tanh(x): Eigen's packet tanh for float (worst relative error 2.7e-7 over [−100, 100]), the
// Cephes formula above for double packets, std::tanh lane by lane where double has no packets.
template <typename Scalar>
inline Packet<Scalar> packet_tanh(const Packet<Scalar>& x) {
  using Traits = Eigen::internal::packet_traits<Scalar>;
  if constexpr (Traits::HasTanh) {
    return Eigen::internal::ptanh(x);
  } else if constexpr (std::is_same_v<Scalar, double> && Traits::Vectorizable && Traits::HasExp) {
    return packet_tanh_cephes(x);
  } else {
    alignas(64) Scalar lanes[kPacket<Scalar>];
    Eigen::internal::pstore(lanes, x);
    for (Scalar& v : lanes) v = std::tanh(v);
    return Eigen::internal::pload<Packet<Scalar>>(lanes);
  }
}

// The granule of a split of units between members: one cache line of values, so that members
// never write to the same line of a shared (B, H) buffer.
template <typename Scalar>
constexpr Index kUnitGranule = std::max<Index>(64 / sizeof(Scalar), kPacket<Scalar>);

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
