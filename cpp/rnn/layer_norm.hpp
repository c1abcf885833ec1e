// lstm_ext core: layer normalization of rows (Ba, Kiros and Hinton 2016), for the cells'
// layer_norm variant. Kernel code, compiled once per kernel level (kernels.hpp).
//
// Of a row v of N values, with gain γ and bias β (N each):
//   LN(v) = γ ⊙ v̂ + β,   v̂ = (v − μ) · r,   r = 1 / sqrt(σ² + ε)
// μ and σ² the row's mean and population variance, ε = 1e-5 (torch.nn.LayerNorm's). Backward, for
// the gradient d of LN(v):
//   dv = r · (d ⊙ γ − mean(d ⊙ γ) − v̂ ⊙ mean(d ⊙ γ ⊙ v̂)),   dγ = Σ_rows d ⊙ v̂,   dβ = Σ_rows d
// The sums over a row are taken in double, in the order of the row: every member of a team that
// computes a row's statistics gets the same bits, so results do not depend on the team size.
// Where v̂ and dv cancel (a row whose spread is small next to its mean; dv, which is orthogonal
// to v̂, near 0) they are computed in double too (the scalar loops), or with μ and the means as a
// pair of Scalars hi + lo and fused multiply-adds (the cells' packet loops): v − μ_hi − μ_lo keeps
// the digits that v and μ share, which v − (Scalar)μ rounds away. In double the pair is (μ, 0)
// and nothing changes.
#pragma once

#include "rnn/common.hpp"

#include <initializer_list>

namespace lstm_ext {
namespace LSTM_EXT_LEVEL {

constexpr double kLayerNormEpsilon = 1e-5;

// A double split into a pair of Scalars, value ≈ hi + lo (lo = 0 when Scalar is double).
template <typename Scalar>
struct SplitDouble {
  Scalar hi;
  Scalar lo;
};
template <typename Scalar>
SplitDouble<Scalar> split_double(double value) {
  const Scalar hi = static_cast<Scalar>(value);
  return {hi, static_cast<Scalar>(value - static_cast<double>(hi))};
}

// The mean μ and r = 1 / sqrt(σ² + ε) of the N values v (two passes: the mean, then the squared
// deviations from it), in double.
struct RowStats {
  double mean;
  double rstd;
};
template <typename Scalar>
RowStats row_stats(const Scalar* v, Index N) {
  double sum = 0;
  for (Index j = 0; j < N; ++j) sum += v[j];
  const double mean = sum / static_cast<double>(N);
  double squares = 0;
  for (Index j = 0; j < N; ++j) {
    const double deviation = v[j] - mean;
    squares += deviation * deviation;
  }
  return {mean, 1.0 / std::sqrt(squares / static_cast<double>(N) + kLayerNormEpsilon)};
}

// v̂ = (v − μ) · r of one value, in double.
template <typename Scalar>
Scalar normalized_value(Scalar v, const RowStats& stats) {
  return static_cast<Scalar>((static_cast<double>(v) - stats.mean) * stats.rstd);
}

// The two means of a row's backward, over its N values, in double: mean(d ⊙ γ) and mean(d ⊙ γ ⊙ v̂).
struct RowGradientMeans {
  double of_dg;
  double of_dg_vhat;
};
template <typename Scalar>
RowGradientMeans row_gradient_means(const Scalar* d, const Scalar* gamma, const Scalar* v_hat, Index N) {
  double dg = 0, dg_vhat = 0;
  for (Index j = 0; j < N; ++j) {
    const double term = static_cast<double>(d[j]) * gamma[j];
    dg += term;
    dg_vhat += term * v_hat[j];
  }
  return {dg / static_cast<double>(N), dg_vhat / static_cast<double>(N)};
}

// Layer normalization of the rows of a (rows, N) block in place, all N columns: v ← γ ⊙ v̂ + β
// (+ add, a bias of N values added after, or nullptr; + add2 likewise). With v_hat (rows, N) and
// rstd (rows) not nullptr, v̂ and r of each row are kept (rstd at a stride of rstd_stride).
template <typename Scalar>
void layer_norm_rows(Scalar* v, Index rows, Index N, const Scalar* gamma, const Scalar* beta, const Scalar* add,
                     const Scalar* add2, Scalar* v_hat, Scalar* rstd, Index rstd_stride) {
  for (Index r = 0; r < rows; ++r) {
    Scalar* row = v + r * N;
    const RowStats stats = row_stats(row, N);
    if (rstd != nullptr) rstd[r * rstd_stride] = static_cast<Scalar>(stats.rstd);
    for (Index j = 0; j < N; ++j) {
      const Scalar normalized = normalized_value(row[j], stats);
      if (v_hat != nullptr) v_hat[r * N + j] = normalized;
      Scalar out = gamma[j] * normalized + beta[j];
      if (add != nullptr) out += add[j];
      if (add2 != nullptr) out += add2[j];
      row[j] = out;
    }
  }
}

// The backward of layer_norm_rows in some columns of each row (the statistics over the whole
// row): dv[j] = r · (d[j] γ[j] − mean(d ⊙ γ) − v̂[j] · mean(d ⊙ γ ⊙ v̂)), for the columns
// [q · block_stride + col0, q · block_stride + col0 + width) of each of `blocks` blocks (a member's
// units of every gate block).
//   dv (rows, N) out (those columns)    d, v_hat (rows, N)    rstd (rows) at a stride of rstd_stride
template <typename Scalar>
void layer_norm_backward_rows(Scalar* dv, const Scalar* d, const Scalar* gamma, const Scalar* v_hat,
                              const Scalar* rstd, Index rstd_stride, Index rows, Index N, Index blocks,
                              Index block_stride, Index col0, Index width) {
  for (Index r = 0; r < rows; ++r) {
    const Scalar* d_row = d + r * N;
    const Scalar* v_hat_row = v_hat + r * N;
    const RowGradientMeans means = row_gradient_means(d_row, gamma, v_hat_row, N);
    const double rs = rstd[r * rstd_stride];
    for (Index q = 0; q < blocks; ++q) {
      for (Index j = q * block_stride + col0; j < q * block_stride + col0 + width; ++j) {
        const double centered = static_cast<double>(d_row[j]) * gamma[j] - means.of_dg -
                                static_cast<double>(v_hat_row[j]) * means.of_dg_vhat;
        dv[r * N + j] = static_cast<Scalar>(rs * centered);
      }
    }
  }
}

// sums[c] += Σ_r a[r, c] · b[r, c] (b nullptr: Σ_r a[r, c]) for the columns `cols`, row by row in a
// fixed order (bitwise reproducible): the gain and bias gradients of a layer normalization.
template <typename Scalar>
void add_column_products(Scalar* sums, const Scalar* a, const Scalar* b, Index rows, Columns cols) {
  for (Index r = 0; r < rows; ++r) {
    const Scalar* a_row = cols.in_row(a, r);
    const Scalar* b_row = b != nullptr ? cols.in_row(b, r) : nullptr;
    for (Index j = 0; j < cols.width; ++j) sums[cols.col0 + j] += b_row != nullptr ? a_row[j] * b_row[j] : a_row[j];
  }
}

// ---------------------------------------------------------------------------------------------
// What the cells' time loops and their products do with these, on a team (parallel.hpp).

constexpr Index kLayerNormTaskRows = 64;  // rows per task of a layer normalization over all steps

// layer_norm_rows over the TB rows of v (TB, N), as tasks of kLayerNormTaskRows rows (the team
// meets before reading the result).
template <typename Scalar>
void layer_norm_rows_in_tasks(Team& team, Scalar* v, Index TB, Index N, const Scalar* gamma, const Scalar* beta,
                              const Scalar* add, const Scalar* add2, Scalar* v_hat, Scalar* rstd, Index rstd_stride) {
  team.tasks((TB + kLayerNormTaskRows - 1) / kLayerNormTaskRows, [&](Index i) {
    const Index r0 = i * kLayerNormTaskRows, rows = std::min(kLayerNormTaskRows, TB - r0);
    layer_norm_rows(v + r0 * N, rows, N, gamma, beta, add, add2, v_hat != nullptr ? v_hat + r0 * N : nullptr,
                    rstd != nullptr ? rstd + r0 * rstd_stride : nullptr, rstd_stride);
  });
}

// layer_norm_backward_rows over the TB rows, all columns, as tasks likewise.
template <typename Scalar>
void layer_norm_backward_in_tasks(Team& team, Scalar* dv, const Scalar* d, const Scalar* gamma, const Scalar* v_hat,
                                  const Scalar* rstd, Index rstd_stride, Index TB, Index N) {
  team.tasks((TB + kLayerNormTaskRows - 1) / kLayerNormTaskRows, [&](Index i) {
    const Index r0 = i * kLayerNormTaskRows, rows = std::min(kLayerNormTaskRows, TB - r0);
    layer_norm_backward_rows(dv + r0 * N, d + r0 * N, gamma, v_hat + r0 * N, rstd + r0 * rstd_stride, rstd_stride,
                             rows, N, 1, 0, 0, N);
  });
}

// A step's recurrent products normalized in place, rec ← γ ⊙ LN(rec) + β over whole rows of
// gates · H values, for a member's units [u0, u0 + nu) of its nb rows. The product (nb, ld) holds
// gate q of unit u0 + j at column q · gate_stride + j; LN needs whole rows, so the member's units go
// to rows (nb, gates · H) first, and once every member's are there (the team meets, unless its
// members split the rows: meet = false), each member normalizes its units.
//   v_hat (nb, gates · H) out: v̂ of its units, and rstd (nb, at rstd_stride) out: r (or nullptr)
template <typename Scalar>
void layer_norm_recurrent_products(Team& team, bool meet, Scalar* product, Index ld, Index gate_stride, Scalar* rows,
                                   Index gates, Index H, Index u0, Index nu, Index nb, const Scalar* gamma,
                                   const Scalar* beta, Scalar* v_hat, Scalar* rstd, Index rstd_stride) {
  const Index G = gates * H;
  for (Index b = 0; b < nb; ++b) {
    for (Index q = 0; q < gates; ++q) std::copy_n(product + b * ld + q * gate_stride, nu, rows + b * G + q * H + u0);
  }
  if (meet) team.barrier();  // the step's products complete
  for (Index b = 0; b < nb; ++b) {
    const Scalar* row = rows + b * G;
    const RowStats stats = row_stats(row, G);
    if (rstd != nullptr) rstd[b * rstd_stride] = static_cast<Scalar>(stats.rstd);
    for (Index q = 0; q < gates; ++q) {
      Scalar* out = product + b * ld + q * gate_stride;
      for (Index j = 0; j < nu; ++j) {
        const Index col = q * H + u0 + j;
        const Scalar normalized = normalized_value(row[col], stats);
        if (v_hat != nullptr) v_hat[b * G + col] = normalized;
        out[j] = gamma[col] * normalized + beta[col];
      }
    }
  }
}

// The gain's and bias's gradients of a layer normalization over all TB rows, by blocks of columns
// shared out as tasks: dγ = Σ d ⊙ v̂ and, unless dbeta is nullptr, dβ = Σ d, also copied to each of
// `copies` (a bias added after the normalization has the same gradient).
//   dgamma, dbeta (N) out     d, v_hat (TB, N)
template <typename Scalar>
void layer_norm_parameter_gradients(Team& team, Scalar* dgamma, Scalar* dbeta, std::initializer_list<Scalar*> copies,
                                    const Scalar* d, const Scalar* v_hat, Index TB, Index N) {
  const OutputBlocks blocks{1, N};
  team.tasks(blocks.count(), [&](Index i) {
    const Columns cols{N, blocks[i].c0, blocks[i].nc};
    std::fill_n(dgamma + cols.col0, cols.width, Scalar(0));
    add_column_products(dgamma, d, v_hat, TB, cols);
    if (dbeta == nullptr) return;
    column_sums(dbeta, d, TB, cols);
    for (Scalar* copy : copies) {
      if (copy != nullptr) std::copy_n(dbeta + cols.col0, cols.width, copy + cols.col0);
    }
  });
}

}  // namespace LSTM_EXT_LEVEL
}  // namespace lstm_ext
