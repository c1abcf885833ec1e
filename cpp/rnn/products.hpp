// lstm_ext core: the large products every cell does outside its time loop, shared out to a team.
//
// Pure C++17 + Eigen; no Python headers.
//
// Dimensions: T time steps, B batch, TB = T * B rows, I input features, G gate rows (4H, 3H or
// H), H_out the size of h.
//
//   forward:   gates (TB, G) = X (TB, I) · W_ihᵀ + b_ih [+ b_hh]     input projection of all steps
//   backward:  dX (TB, I) = dG_x · W_ih
//              dW_ih (G, I) = dG_xᵀ · X          dW_hh (G, H_out) = dG_hᵀ · H_prev
//              db_ih = column sums of dG_x       db_hh = column sums of dG_h
// dG_x is the gradient of the input part of the pre-activations and dG_h of the recurrent part:
// the same array for the LSTM and the RNN, two for the GRU (its reset gate acts in between).
//
// The input projection and dX run on the panel kernel (panel.hpp) by blocks of output columns,
// each task packing the weights it needs into its member's scratch. The weight gradients run on
// Eigen's GEMM in blocks fixed by the sizes (OutputBlocks). Either way every element is computed
// the same way whichever member computes it.
#pragma once

#include "rnn/common.hpp"
#include "rnn/panel.hpp"

#include <vector>

namespace lstm_ext {

// What one member of a team keeps for a time loop: its slice of the recurrent weights packed for
// panel_product, the product's result for one step, and the same for the LSTM's projection; and
// room for the weights of one task of a large product. Allocated before the team starts.
template <typename Scalar>
struct MemberScratch {
  Buffer<Scalar> packed;        // its rows (forward) or columns (backward) of W_hh, packed
  Buffer<Scalar> product;       // (B, panels * kPacket) the recurrent product of one step
  Buffer<Scalar> packed_proj;   // projection: its rows or columns of W_hr, packed
  Buffer<Scalar> product_proj;  // projection: (B, panels * kPacket)
  Buffer<Scalar> packed_task;   // the weights of one task of a large product (ColumnTasks)
};

// Scratch for each of `members` members, each owning a part of `count` rows split by `granule`:
// per panel of its part, `packed_per_panel` elements of packed weights and `product_per_panel`
// of product; and `task` elements for large products.
template <typename Scalar>
std::vector<MemberScratch<Scalar>> member_scratch(int members, Index count, Index granule, Index packed_per_panel,
                                                  Index product_per_panel, Index task) {
  std::vector<MemberScratch<Scalar>> scratch(members);
  for (int k = 0; k < members; ++k) {
    const Index panels = panel_count<Scalar>(split_part(count, granule, members, k).size());
    scratch[k].packed.resize(panels * packed_per_panel);
    scratch[k].product.resize(panels * product_per_panel);
    scratch[k].packed_task.resize(task);
  }
  return scratch;
}

// gates (TB, G) = X (TB, I) · W_ihᵀ + b_ih + b_hh (each bias may be nullptr), by column tasks.
//   scratch: one member's buffer of tasks.scratch_size(I) elements
template <typename Scalar>
void input_projection(Team& team, const ColumnTasks<Scalar>& tasks, Scalar* scratch, Scalar* gates, const Scalar* x,
                      const Scalar* w_ih, const Scalar* b_ih, const Scalar* b_hh, Index TB, Index I, Index G) {
  team.tasks(tasks.count(), [&](Index i) {
    const Index c0 = tasks.first_column(i), cols = tasks.columns(i);
    pack_rows(scratch, w_ih + c0 * I, I, cols, I);  // rows [c0, c0 + cols) of W_ih
    panel_product(gates + c0, G, cols, rows_of(x, I), scratch, tasks.panels(i), I, TB);
    auto block = MatrixMap<Scalar>(gates, TB, G).middleCols(c0, cols);
    if (b_ih != nullptr) block.rowwise() += ConstRowVectorMap<Scalar>(b_ih + c0, cols);
    if (b_hh != nullptr) block.rowwise() += ConstRowVectorMap<Scalar>(b_hh + c0, cols);
  });
}

// The gradients of the inputs and weights from those of the pre-activations, over all steps.
//   dx (TB, I), dw_ih (G, I), dw_hh (G, H_out) out; db_ih, db_hh (G) out or nullptr (skipped)
//   dg_x, dg_h (TB, G)   gradients of the input and the recurrent parts of the pre-activations
//   x (TB, I)            h_prev (TB, H_out) the hidden state entering each step
//   scratch: one member's buffer of dx_tasks.scratch_size(G) elements
template <typename Scalar>
void input_and_weight_gradients(Team& team, const ColumnTasks<Scalar>& dx_tasks, Scalar* scratch, Scalar* dx,
                                Scalar* dw_ih, Scalar* dw_hh, Scalar* db_ih, Scalar* db_hh, const Scalar* dg_x,
                                const Scalar* dg_h, const Scalar* x, const Scalar* h_prev, const Scalar* w_ih,
                                Index TB, Index I, Index G, Index H_out) {
  // dX = dG_x · W_ih: M = W_ihᵀ, whose rows are the columns of W_ih.
  team.tasks(dx_tasks.count(), [&](Index i) {
    const Index c0 = dx_tasks.first_column(i), cols = dx_tasks.columns(i);
    pack_columns(scratch, w_ih, I, c0, cols, G);
    panel_product(dx + c0, I, cols, rows_of(dg_x, G), scratch, dx_tasks.panels(i), G, TB);
  });
  // dW_ih = dG_xᵀ · X and dW_hh = dG_hᵀ · H_prev, in blocks of rows (gates).
  const ConstMatrixMap<Scalar> dGx(dg_x, TB, G), dGh(dg_h, TB, G), X(x, TB, I), H_prev(h_prev, TB, H_out);
  MatrixMap<Scalar> dW_ih(dw_ih, G, I), dW_hh(dw_hh, G, H_out);
  const OutputBlocks dw_ih_blocks{G, I}, dw_hh_blocks{G, H_out}, db_blocks{1, G};
  team.tasks(dw_ih_blocks.count(), [&](Index i) {
    const OutputBlocks::Block blk = dw_ih_blocks[i];
    dW_ih.block(blk.r0, blk.c0, blk.nr, blk.nc).noalias() =
        dGx.middleCols(blk.r0, blk.nr).transpose() * X.middleCols(blk.c0, blk.nc);
  });
  team.tasks(dw_hh_blocks.count(), [&](Index i) {
    const OutputBlocks::Block blk = dw_hh_blocks[i];
    dW_hh.block(blk.r0, blk.c0, blk.nr, blk.nc).noalias() =
        dGh.middleCols(blk.r0, blk.nr).transpose() * H_prev.middleCols(blk.c0, blk.nc);
  });
  team.tasks(db_blocks.count(), [&](Index i) {
    const OutputBlocks::Block blk = db_blocks[i];
    if (db_ih != nullptr) column_sums(db_ih, dg_x, TB, G, blk.c0, blk.nc);
    if (db_hh != nullptr) column_sums(db_hh, dg_h, TB, G, blk.c0, blk.nc);
  });
}

}  // namespace lstm_ext
