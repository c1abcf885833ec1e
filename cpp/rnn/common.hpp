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

// Which rows of a batch a helper touches at time t.
enum class Rows { Active, Inactive, All };

// f(b) for every row b of B that is `which` at time t.
template <typename F>
void for_rows(Rows which, const SequenceOptions& seq, Index t, Index B, F&& f) {
  for (Index b = 0; b < B; ++b) {
    if (which == Rows::All || seq.active(b, t) == (which == Rows::Active)) f(b);
  }
}

// In row-major (B, ld) buffers, the columns [col0, col0 + cols) of the `which` rows at time t:
// copied from `from` to `to`, added from `from` to `to`, or set to zero.
template <typename Scalar>
void copy_rows(Rows which, Scalar* to, const Scalar* from, Index ld, Index col0, Index cols,
               const SequenceOptions& seq, Index t, Index B) {
  for_rows(which, seq, t, B, [&](Index b) { std::copy_n(from + b * ld + col0, cols, to + b * ld + col0); });
}
template <typename Scalar>
void add_rows(Rows which, Scalar* to, const Scalar* from, Index ld, Index col0, Index cols,
              const SequenceOptions& seq, Index t, Index B) {
  for_rows(which, seq, t, B, [&](Index b) {
    for (Index j = col0; j < col0 + cols; ++j) to[b * ld + j] += from[b * ld + j];
  });
}
// The same between buffers of different row strides: (B, ld_to) and (B, ld_from), e.g. a
// direction's own h and its columns of a shared (T, B, D * H) output.
template <typename Scalar>
void copy_rows(Rows which, Scalar* to, Index ld_to, const Scalar* from, Index ld_from, Index col0, Index cols,
               const SequenceOptions& seq, Index t, Index B) {
  for_rows(which, seq, t, B, [&](Index b) { std::copy_n(from + b * ld_from + col0, cols, to + b * ld_to + col0); });
}
template <typename Scalar>
void add_rows(Rows which, Scalar* to, Index ld_to, const Scalar* from, Index ld_from, Index col0, Index cols,
              const SequenceOptions& seq, Index t, Index B) {
  for_rows(which, seq, t, B, [&](Index b) {
    for (Index j = col0; j < col0 + cols; ++j) to[b * ld_to + j] += from[b * ld_from + j];
  });
}
template <typename Scalar>
void zero_rows(Rows which, Scalar* rows, Index ld, Index col0, Index cols, const SequenceOptions& seq, Index t,
               Index B) {
  for_rows(which, seq, t, B, [&](Index b) { std::fill_n(rows + b * ld + col0, cols, Scalar(0)); });
}

// sums[c] for the columns [col0, col0 + cols) of m (rows, ld): column sums, added row by row in a
// fixed order: a column-sum expression would sum in an order that depends on the buffers'
// alignment, and bias gradients must be bitwise reproducible.
template <typename Scalar>
void column_sums(Scalar* sums, const Scalar* m, Index rows, Index ld, Index col0, Index cols) {
  RowVectorMap<Scalar> total(sums + col0, cols);
  total.setZero();
  for (Index r = 0; r < rows; ++r) total += ConstRowVectorMap<Scalar>(m + r * ld + col0, cols);
}

// In row-major (B, ld) buffers, the columns [col0, col0 + cols) of every row: a copy of `from`,
// or zeros when `from` is nullptr (an absent initial state or gradient).
template <typename Scalar>
void copy_or_zero(Scalar* to, const Scalar* from, Index ld, Index col0, Index cols, Index B) {
  for (Index b = 0; b < B; ++b) {
    if (from != nullptr) {
      std::copy_n(from + b * ld + col0, cols, to + b * ld + col0);
    } else {
      std::fill_n(to + b * ld + col0, cols, Scalar(0));
    }
  }
}

// Asks the cache for the columns [col0, col0 + cols) of `blocks` column blocks `block_stride`
// apart (gate blocks), in every row of a row-major (B, ld) buffer: what the next time step will
// read, fetched while this step computes.
template <typename Scalar>
void prefetch_rows(const Scalar* rows, Index ld, Index col0, Index cols, Index blocks, Index block_stride, Index B) {
  constexpr Index kLine = 64 / sizeof(Scalar);
  for (Index b = 0; b < B; ++b) {
    for (Index q = 0; q < blocks; ++q) {
      const Scalar* first = rows + b * ld + q * block_stride + col0;
      for (Index j = 0; j < cols; j += kLine) Eigen::internal::prefetch(first + j);
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
