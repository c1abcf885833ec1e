// lstm_ext bindings of the cells whose state is h alone (GRU, RNN), written once for both kinds:
// the float forward and backward (float32 or float64, one direction or both) and the inference entry
// points with int8 or bfloat16 weights. A kind's binding says only what is its own: its kernels,
// its sizes (the HOnlyKind traits below) and its extra arguments (the GRU's layer normalization,
// the RNN's nonlinearity), through the callables it passes.
#pragma once

#include <string>
#include <utility>

#include "bindings/checks.hpp"

namespace lstm_ext::bindings {

// What the templates need of a kind: its dims type, its gate blocks and the name of G in messages,
// its sizes (gru.hpp, rnn.hpp), whether b_ih and b_hh enter one sum (their gradients then equal:
// the kernel writes db_ih, copied to db_hh), and the names of its ops for MemoryError.
//   struct Kind {
//     using Dims = ...;  static constexpr Index gates;  static constexpr const char* G, *forward_name,
//     *backward_name;  static constexpr bool one_bias_sum;
//     static Index workspace_size(const Dims&, Index lanes);
//     static double forward_call_size(const Dims&, bool training, int members, Index lanes);
//     static double backward_call_size(const Dims&, int members, Index lanes);
//   };

// The float forward: x (T, B, I), the weights and biases of each direction, h0, the lengths,
// checked; prepare(dirs, d) reads the kind's own arguments (it may set d's flags) and returns them
// as `extra`; y, h_n and (training) the workspaces allocated; without the GIL, for each direction
// k, run(k, y, h_n, ws, x, h0, w_ih, w_hh, b_ih, b_hh, extra, d, seq) with k's pointers.
// -> (y, h_n, workspace or None).
template <typename Kind, typename Scalar, typename Prepare, typename Run>
py::tuple h_only_forward(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                         py::handle b_hh_obj, py::handle h0_obj, py::handle lengths_obj, bool reverse, bool training,
                         bool bidirectional, Prepare&& prepare, Run&& run) {
  const std::string G = Kind::G, legend = "(" + G + ",)";
  const Directions dirs = read_directions(bidirectional, reverse);
  const int D = dirs.count;
  const auto w = read_direction_weights<Scalar>(dirs, w_ih_obj, w_hh_obj, Kind::gates, G);
  const auto x = read_sequence<Scalar>(x_obj, w[0].I);
  typename Kind::Dims d{x.shape(0), x.shape(1), w[0].I, w[0].H};
  const Index B = d.B, H = d.H;
  d.y_stride = D * H;  // the directions side by side in y
  const Index lanes = kernels<Scalar>().lanes;
  const auto b_ih = read_direction_biases<Scalar>(dirs, b_ih_obj, "b_ih", d.G(), legend);
  const auto b_hh = read_direction_biases<Scalar>(dirs, b_hh_obj, "b_hh", d.G(), legend);
  const auto h0 = read_optional<Scalar>(h0_obj, "h0", dirs.shape({B, H}), dirs.legend("(B, H)"));
  const auto lengths = read_lengths(lengths_obj, d.T, B);
  const auto extra = prepare(dirs, d);

  // Outputs y, h_n, the workspaces and the core's scratch of every direction.
  const Index ws_size = Kind::workspace_size(d, lanes);
  require_memory(D * Kind::forward_call_size(d, training, get_num_threads(), lanes), sizeof(Scalar),
                 Kind::forward_name);
  auto y = new_array<Scalar>({d.T, B, D * H});
  auto h_n = new_array<Scalar>(dirs.shape({B, H}));
  std::optional<CArray<Scalar>> ws;
  if (training) ws.emplace(new_array<Scalar>(dirs.shape({ws_size})));
  Scalar *ws_data = ws ? ws->mutable_data() : nullptr, *y_data = y.mutable_data(), *h_n_data = h_n.mutable_data();
  const Scalar* h0_data = data_or_null(h0);
  without_gil([&] {
    // direction k: its columns of y, its rows of the states
    run_directions(D, d.template recurrent_weight_bytes<Scalar>(), [&](int k) {
      run(k, y_data + k * H, h_n_data + k * B * H, ws_data ? ws_data + k * ws_size : nullptr, x.data(),
          h0_data ? h0_data + k * B * H : nullptr, w[k].w_ih.data(), w[k].w_hh.data(), data_or_null(b_ih[k]),
          data_or_null(b_hh[k]), extra, d, sequence_options(reverse || k == 1, lengths));
    });
  });
  return py::make_tuple(y, h_n, or_none(ws));
}

// One direction's gradients as the kernels write them (out), and what they read.
template <typename Scalar>
struct HOnlyGradients {
  Scalar *dx, *dh0, *dw_ih, *dw_hh, *db_ih, *db_hh;  // db_ih, db_hh nullptr without biases
  const Scalar *dy, *dh_n, *ws, *w_ih, *w_hh;         // dy, dh_n nullptr = zeros
};

// The float backward: dy, dh_n, the forward's workspace and weights, the lengths, checked;
// prepare(dirs, d) reads the kind's own arguments and allocates its own gradients, returned as
// `extra`; the gradients allocated; without the GIL, for each direction k, run(k, g, extra, d, seq)
// with k's HOnlyGradients g; then finish(extra) -> a tuple of the kind's own gradients.
// -> (dx, dh0, dw_ih, dw_hh, db_ih or None, db_hh or None, *finish(extra)).
template <typename Kind, typename Scalar, typename Prepare, typename Run, typename Finish>
py::tuple h_only_backward(py::handle dy_obj, py::handle dh_n_obj, py::handle x_obj, py::handle w_ih_obj,
                          py::handle w_hh_obj, py::handle ws_obj, py::handle lengths_obj, bool reverse, bool bias,
                          bool bidirectional, Prepare&& prepare, Run&& run, Finish&& finish) {
  const Directions dirs = read_directions(bidirectional, reverse);
  const int D = dirs.count;
  const auto w = read_direction_weights<Scalar>(dirs, w_ih_obj, w_hh_obj, Kind::gates, Kind::G);
  const auto [T, B] = read_sequence_sizes(x_obj, w[0].I);
  typename Kind::Dims d{T, B, w[0].I, w[0].H};
  const Index H = d.H, I = d.I, G = d.G();
  d.y_stride = D * H;
  auto extra = prepare(dirs, d);
  const Index lanes = kernels<Scalar>().lanes;
  const Index ws_size = Kind::workspace_size(d, lanes);
  const auto ws = read_workspace<Scalar>(ws_obj, dirs.shape({ws_size}), "(T, B, H) = " + shape_str({T, B, H}));
  const auto dy = read_optional<Scalar>(dy_obj, "dy", {T, B, D * H}, D > 1 ? "(T, B, 2 * H)" : "(T, B, H)");
  const auto dh_n = read_optional<Scalar>(dh_n_obj, "dh_n", dirs.shape({B, H}), dirs.legend("(B, H)"));
  const auto lengths = read_lengths(lengths_obj, T, B);

  // The gradients and the core's scratch of every direction.
  require_memory(D * Kind::backward_call_size(d, get_num_threads(), lanes), sizeof(Scalar), Kind::backward_name);
  auto dx = new_array<Scalar>({T, B, I});
  std::optional<CArray<Scalar>> dx_reverse;  // (T, B, I) the reverse direction's part of dx
  if (D > 1) dx_reverse.emplace(new_array<Scalar>({T, B, I}));
  auto dh0 = new_array<Scalar>(dirs.shape({B, H}));
  auto dw_ih = new_array<Scalar>(dirs.shape({G, I}));
  auto dw_hh = new_array<Scalar>(dirs.shape({G, H}));
  std::optional<CArray<Scalar>> db_ih, db_hh;  // (G) each, per direction
  if (bias) {
    db_ih.emplace(new_array<Scalar>(dirs.shape({G})));
    db_hh.emplace(new_array<Scalar>(dirs.shape({G})));
  }
  Scalar* db_ih_data = bias ? db_ih->mutable_data() : nullptr;
  Scalar* db_hh_data = bias ? db_hh->mutable_data() : nullptr;
  Scalar* dx_parts[2] = {dx.mutable_data(), dx_reverse ? dx_reverse->mutable_data() : nullptr};
  const Scalar *dy_data = data_or_null(dy), *dh_n_data = data_or_null(dh_n);
  Scalar *dh0_data = dh0.mutable_data(), *dw_ih_data = dw_ih.mutable_data(), *dw_hh_data = dw_hh.mutable_data();
  without_gil([&] {
    // direction k: its columns of dy, its rows of the states, its gradients
    run_directions(D, d.template recurrent_weight_bytes<Scalar>(), [&](int k) {
      const HOnlyGradients<Scalar> g{dx_parts[k], dh0_data + k * B * H, dw_ih_data + k * G * I,
                                     dw_hh_data + k * G * H, db_ih_data ? db_ih_data + k * G : nullptr,
                                     db_hh_data ? db_hh_data + k * G : nullptr, dy_data ? dy_data + k * H : nullptr,
                                     dh_n_data ? dh_n_data + k * B * H : nullptr, ws.data() + k * ws_size,
                                     w[k].w_ih.data(), w[k].w_hh.data()};
      run(k, g, extra, d, sequence_options(reverse || k == 1, lengths));
    });
    if (D > 1) add_into(dx_parts[0], dx_parts[1], T * B * I);  // dx = the forward's part + the reverse's
    // b_ih and b_hh entering one sum: their gradients are equal, returned as two arrays.
    if (Kind::one_bias_sum && bias) std::copy_n(db_ih_data, D * G, db_hh_data);
  });
  return py::tuple(py::make_tuple(dx, dh0, dw_ih, dw_hh, or_none(db_ih), or_none(db_hh)) + finish(extra));
}

// The inference bindings of a cell whose state is h alone (GRU, RNN: `gates` blocks of H rows, `G`
// naming them in messages: "3H", "H"), one direction, written once for both kinds and both weight
// types: x (T, B, I), b_ih, b_hh (G), h0 (B, H), lengths, float32 and checked against the weights'
// I and H; require_memory(elements(T, B)) floats; y (T, B, H) and h_n (B, H) allocated;
// run(y, h_n, x, h0, b_ih, b_hh, T, B, seq) calls the kind's kernel without the GIL.
template <typename Elements, typename Run>
py::tuple h_only_inference(const char* name, Index gates, const std::string& G, Index I, Index H, py::handle x_obj,
                           py::handle b_ih_obj, py::handle b_hh_obj, py::handle h0_obj, py::handle lengths_obj,
                           bool reverse, Elements&& elements, Run&& run) {
  const auto x = read_sequence<float>(x_obj, I);
  const Index T = x.shape(0), B = x.shape(1), rows = gates * H;
  const auto b_ih = read_optional<float>(b_ih_obj, "b_ih", {rows}, "(" + G + ",)");
  const auto b_hh = read_optional<float>(b_hh_obj, "b_hh", {rows}, "(" + G + ",)");
  const auto h0 = read_optional<float>(h0_obj, "h0", {B, H}, "(B, H)");
  const auto lengths = read_lengths(lengths_obj, T, B);
  require_memory(elements(T, B), sizeof(float), name);
  auto y = new_array<float>({T, B, H});
  auto h_n = new_array<float>({B, H});
  float *y_data = y.mutable_data(), *h_n_data = h_n.mutable_data();
  without_gil([&] {
    run(y_data, h_n_data, x.data(), data_or_null(h0), data_or_null(b_ih), data_or_null(b_hh), T, B,
        sequence_options(reverse, lengths));
  });
  return py::make_tuple(y, h_n);
}

// With int8 weights: W_ih, W_hh as int8 matrices (read_int8_weights);
// run(y, h_n, x, h0, w, b_ih, b_hh, T, B, seq).
template <typename Run>
py::tuple h_only_forward_int8(const char* name, Index gates, const std::string& G, py::handle x_obj,
                              py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj, py::handle b_hh_obj,
                              py::handle h0_obj, py::handle lengths_obj, bool reverse, Run&& run) {
  const Int8Weights w = read_int8_weights(x_obj, w_ih_obj, w_hh_obj, gates, G);
  return h_only_inference(
      name, gates, G, w.I, w.H, x_obj, b_ih_obj, b_hh_obj, h0_obj, lengths_obj, reverse,
      [&](Index T, Index B) { return int8_call_elements(T, B, w.I, gates * w.H, w.H); },
      [&](float* y, float* h_n, const float* x, const float* h0, const float* b_ih, const float* b_hh, Index T,
          Index B, const SequenceOptions& seq) { run(y, h_n, x, h0, w, b_ih, b_hh, T, B, seq); });
}

// With bfloat16 recurrent weights: W_ih float32 (G, I) (its bf16 values), W_hh packed by pack_bf16
// in `gates` blocks (read_packed_bf16); elements(T, B, I, H) floats the call needs;
// run(y, h_n, x, h0, w_ih, packed_hh, b_ih, b_hh, T, B, I, H, seq).
template <typename Elements, typename Run>
py::tuple h_only_forward_bf16(const char* name, Index gates, const std::string& G, py::handle x_obj,
                              py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj, py::handle b_hh_obj,
                              py::handle h0_obj, py::handle lengths_obj, bool reverse, Elements&& elements, Run&& run) {
  const auto w_ih = to_array<float>(w_ih_obj, "w_ih");
  require_ndim(w_ih, "w_ih", 2, "(" + G + ", I)");
  const Index rows = w_ih.shape(0), I = w_ih.shape(1), H = rows / gates;
  if (rows < gates || rows % gates != 0) {
    throw py::value_error("w_ih: expected shape (" + G + ", I), got " + shape_str(w_ih));
  }
  const auto w_hh = read_packed_bf16(w_hh_obj, "w_hh", gates, H, H, "H");
  return h_only_inference(
      name, gates, G, I, H, x_obj, b_ih_obj, b_hh_obj, h0_obj, lengths_obj, reverse,
      [&](Index T, Index B) { return elements(T, B, I, H); },
      [&](float* y, float* h_n, const float* x, const float* h0, const float* b_ih, const float* b_hh, Index T,
          Index B, const SequenceOptions& seq) {
        run(y, h_n, x, h0, w_ih.data(), w_hh.data(), b_ih, b_hh, T, B, I, H, seq);
      });
}

}  // namespace lstm_ext::bindings
