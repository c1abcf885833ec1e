// lstm_ext bindings for the GRU core: validate, allocate, map, release the GIL, call.
// Dtype rules as for the LSTM: the dtype of w_ih decides, everything else is converted.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <string>
#include <vector>

#include "bindings/checks.hpp"

namespace lstm_ext::bindings {
namespace {

// Layer normalization's gains and biases (3H,) each, in this order, per direction: all four or none.
constexpr std::array<const char*, 4> kGruLayerNormNames = {"ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias"};

template <typename Scalar>
using GruLayerNormArgs = std::vector<std::array<std::optional<CArray<Scalar>>, 4>>;  // per direction

template <typename Scalar>
GruLayerNormArgs<Scalar> read_gru_layer_norm(const Directions& dirs, Index G, const std::array<py::handle, 4>& objs) {
  GruLayerNormArgs<Scalar> ln;
  for (int k = 0; k < dirs.count; ++k) {
    std::array<std::optional<CArray<Scalar>>, 4> direction;
    for (std::size_t n = 0; n < kGruLayerNormNames.size(); ++n) {
      direction[n] = read_optional<Scalar>(dirs.item(objs[n], k, kGruLayerNormNames[n]), kGruLayerNormNames[n], {G},
                                           "(3H,)");
      if (direction[n].has_value() != direction[0].has_value()) {
        throw py::value_error(std::string(kGruLayerNormNames[n]) + ": expected all four layer normalization arrays " +
                              "(ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias) or none");
      }
    }
    ln.push_back(std::move(direction));
  }
  return ln;
}

template <typename Scalar>
GruLayerNorm<Scalar> gru_layer_norm(const GruLayerNormArgs<Scalar>& ln, int k) {
  return {data_or_null(ln[k][0]), data_or_null(ln[k][1]), data_or_null(ln[k][2]), data_or_null(ln[k][3])};
}

// The ops take the arguments of their functions in functional.py, in the same order, with the
// same keyword-only ones (bind_gru), and compute in the dtype of w_ih (dispatch_dtype).

py::tuple gru_forward(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                      py::handle b_hh_obj, py::handle h0_obj, py::handle ln_ih_weight, py::handle ln_ih_bias,
                      py::handle ln_hh_weight, py::handle ln_hh_bias, py::handle lengths_obj, bool reverse,
                      bool training, bool bidirectional) {
  return dispatch_dtype(w_ih_obj, bidirectional, [&](auto scalar) {
    using Scalar = decltype(scalar);
    const Directions dirs = read_directions(bidirectional, reverse);
    const int D = dirs.count;
    const auto w = read_direction_weights<Scalar>(dirs, w_ih_obj, w_hh_obj, 3, "3H");
    const auto x = read_sequence<Scalar>(x_obj, w[0].I);
    GruDims d{x.shape(0), x.shape(1), w[0].I, w[0].H};
    const Index B = d.B, H = d.H;
    d.y_stride = D * H;  // the directions side by side in y
    const Kernels<Scalar>& kernel = kernels<Scalar>();
    const auto b_ih = read_direction_biases<Scalar>(dirs, b_ih_obj, "b_ih", d.G(), "(3H,)");
    const auto b_hh = read_direction_biases<Scalar>(dirs, b_hh_obj, "b_hh", d.G(), "(3H,)");
    const auto h0 = read_optional<Scalar>(h0_obj, "h0", dirs.shape({B, H}), dirs.legend("(B, H)"));
    const auto lengths = read_lengths(lengths_obj, d.T, B);
    const auto ln = read_gru_layer_norm<Scalar>(dirs, d.G(), {ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias});
    d.layer_norm = ln[0][0].has_value();

    // Outputs y, h_n, the workspaces and the core's scratch of every direction.
    const Index ws_size = gru_workspace_size(d, kernel.lanes);
    require_memory(D * gru_forward_call_size<double>(d, training, get_num_threads(), kernel.lanes), sizeof(Scalar),
                   "gru_forward");

    auto y = new_array<Scalar>({d.T, B, D * H});
    auto h_n = new_array<Scalar>(dirs.shape({B, H}));
    std::optional<CArray<Scalar>> ws;
    if (training) ws.emplace(new_array<Scalar>(dirs.shape({ws_size})));
    Scalar *ws_data = ws ? ws->mutable_data() : nullptr, *y_data = y.mutable_data(), *h_n_data = h_n.mutable_data();
    const Scalar* h0_data = data_or_null(h0);
    without_gil([&] {
      // direction k: its columns of y, its rows of the states
      run_directions(D, d.recurrent_weight_bytes<Scalar>(), [&](int k) {
        kernel.gru.forward(y_data + k * H, h_n_data + k * B * H, ws_data ? ws_data + k * ws_size : nullptr, x.data(),
                           h0_data ? h0_data + k * B * H : nullptr, w[k].w_ih.data(), w[k].w_hh.data(),
                           data_or_null(b_ih[k]), data_or_null(b_hh[k]), gru_layer_norm(ln, k), d,
                           sequence_options(reverse || k == 1, lengths));
      });
    });
    return py::make_tuple(y, h_n, or_none(ws));
  });
}

py::tuple gru_backward(py::handle dy_obj, py::handle dh_n_obj, py::handle x_obj, py::handle w_ih_obj,
                       py::handle w_hh_obj, py::handle ws_obj, py::handle ln_ih_weight, py::handle ln_ih_bias,
                       py::handle ln_hh_weight, py::handle ln_hh_bias, py::handle lengths_obj, bool reverse, bool bias,
                       bool bidirectional) {
  return dispatch_dtype(w_ih_obj, bidirectional, [&](auto scalar) {
    using Scalar = decltype(scalar);
    const Directions dirs = read_directions(bidirectional, reverse);
    const int D = dirs.count;
    const auto w = read_direction_weights<Scalar>(dirs, w_ih_obj, w_hh_obj, 3, "3H");
    const auto [T, B] = read_sequence_sizes(x_obj, w[0].I);
    GruDims d{T, B, w[0].I, w[0].H};
    const Index H = d.H, I = d.I, G = d.G();
    d.y_stride = D * H;
    const auto ln = read_gru_layer_norm<Scalar>(dirs, G, {ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias});
    d.layer_norm = ln[0][0].has_value();
    const Kernels<Scalar>& kernel = kernels<Scalar>();
    const Index ws_size = gru_workspace_size(d, kernel.lanes);
    const auto ws = read_workspace<Scalar>(ws_obj, dirs.shape({ws_size}), "(T, B, H) = " + shape_str({T, B, H}));
    const auto dy = read_optional<Scalar>(dy_obj, "dy", {T, B, D * H}, D > 1 ? "(T, B, 2 * H)" : "(T, B, H)");
    const auto dh_n = read_optional<Scalar>(dh_n_obj, "dh_n", dirs.shape({B, H}), dirs.legend("(B, H)"));
    const auto lengths = read_lengths(lengths_obj, T, B);

    // The gradients and the core's scratch of every direction.
    require_memory(D * gru_backward_call_size<double>(d, get_num_threads(), kernel.lanes), sizeof(Scalar),
                   "gru_backward");

    auto dx = new_array<Scalar>({T, B, I});
    std::optional<CArray<Scalar>> dx_reverse;  // (T, B, I) the reverse direction's part of dx
    if (D > 1) dx_reverse.emplace(new_array<Scalar>({T, B, I}));
    auto dh0 = new_array<Scalar>(dirs.shape({B, H}));
    auto dw_ih = new_array<Scalar>(dirs.shape({G, I}));
    auto dw_hh = new_array<Scalar>(dirs.shape({G, H}));
    std::optional<CArray<Scalar>> db_ih, db_hh;  // (3H) each, per direction
    if (bias) {
      db_ih.emplace(new_array<Scalar>(dirs.shape({G})));
      db_hh.emplace(new_array<Scalar>(dirs.shape({G})));
    }
    std::array<std::optional<CArray<Scalar>>, 4> dln;  // kGruLayerNormNames' gradients, (3H) per direction
    if (d.layer_norm) {
      for (auto& grad : dln) grad.emplace(new_array<Scalar>(dirs.shape({G})));
    }
    auto dln_of = [&](int k) {
      if (!d.layer_norm) return GruLayerNormGrads<Scalar>{};
      auto at = [&](std::size_t n) { return dln[n]->mutable_data() + k * G; };
      return GruLayerNormGrads<Scalar>{at(0), at(1), at(2), at(3)};
    };
    Scalar* db_ih_data = bias ? db_ih->mutable_data() : nullptr;
    Scalar* db_hh_data = bias ? db_hh->mutable_data() : nullptr;
    Scalar* dx_parts[2] = {dx.mutable_data(), dx_reverse ? dx_reverse->mutable_data() : nullptr};
    const Scalar *dy_data = data_or_null(dy), *dh_n_data = data_or_null(dh_n);
    Scalar *dh0_data = dh0.mutable_data(), *dw_ih_data = dw_ih.mutable_data(), *dw_hh_data = dw_hh.mutable_data();
    without_gil([&] {
      // direction k: its columns of dy, its rows of the states, its gradients
      run_directions(D, d.recurrent_weight_bytes<Scalar>(), [&](int k) {
        kernel.gru.backward(dx_parts[k], dh0_data + k * B * H, dw_ih_data + k * G * I, dw_hh_data + k * G * H,
                            db_ih_data ? db_ih_data + k * G : nullptr, db_hh_data ? db_hh_data + k * G : nullptr,
                            dln_of(k), dy_data ? dy_data + k * H : nullptr,
                            dh_n_data ? dh_n_data + k * B * H : nullptr, ws.data() + k * ws_size, w[k].w_ih.data(),
                            w[k].w_hh.data(), gru_layer_norm(ln, k), d, sequence_options(reverse || k == 1, lengths));
      });
      if (D > 1) add_into(dx_parts[0], dx_parts[1], T * B * I);  // dx = the forward's part + the reverse's
    });
    return py::make_tuple(dx, dh0, dw_ih, dw_hh, or_none(db_ih), or_none(db_hh), or_none(dln[0]), or_none(dln[1]),
                          or_none(dln[2]), or_none(dln[3]));
  });
}

}  // namespace

// Inference with int8 weights (lstm_ext.quantize_dynamic), one direction: W_ih, W_hh as int8
// matrices, (panels, scale, sum) tuples (read_int8_weights), everything else float32.
py::tuple gru_forward_int8(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                           py::handle b_hh_obj, py::handle h0_obj, py::handle lengths_obj, bool reverse) {
  return h_only_forward_int8(
      "gru_forward_int8", 3, "3H", x_obj, w_ih_obj, w_hh_obj, b_ih_obj, b_hh_obj, h0_obj, lengths_obj, reverse,
      [](float* y, float* h_n, const float* x, const float* h0, const Int8Weights& w, const float* b_ih,
         const float* b_hh, Index T, Index B, const SequenceOptions& seq) {
        kernels<float>().gru.forward_int8(y, h_n, x, h0, w.w_ih.matrix(), w.w_hh.matrix(), b_ih, b_hh,
                                          GruDims{T, B, w.I, w.H}, seq);
      });
}

// Inference with bfloat16 recurrent weights (lstm_ext.quantize_dynamic), one direction: W_ih float32
// (its bf16 values), W_hh bf16 packed by pack_bf16 in 3 gate blocks, everything else float32.
py::tuple gru_forward_bf16(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                           py::handle b_hh_obj, py::handle h0_obj, py::handle lengths_obj, bool reverse) {
  return h_only_forward_bf16(
      "gru_forward_bf16", 3, "3H", x_obj, w_ih_obj, w_hh_obj, b_ih_obj, b_hh_obj, h0_obj, lengths_obj, reverse,
      [](Index T, Index B, Index I, Index H) {
        return gru_forward_call_size<double>(GruDims{T, B, I, H}, false, get_num_threads(), kernels<float>().lanes);
      },
      [](float* y, float* h_n, const float* x, const float* h0, const float* w_ih, const std::uint16_t* w_hh,
         const float* b_ih, const float* b_hh, Index T, Index B, Index I, Index H, const SequenceOptions& seq) {
        kernels<float>().gru.forward_bf16(y, h_n, x, h0, w_ih, w_hh, b_ih, b_hh, GruDims{T, B, I, H}, seq);
      });
}

void bind_gru(py::module_& m) {
  m.def("gru_forward_bf16", &gru_forward_bf16, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(), py::arg("h0") = py::none(), py::kw_only(),
        py::arg("lengths") = py::none(), py::arg("reverse") = false,
        "GRU inference with bfloat16 recurrent weights (W_hh packed by pack_bf16 in 3 blocks; w_ih float32), "
        "one direction: x (T, B, I) float32 -> (y (T, B, H), h_n (B, H)).");
  m.def("gru_forward_int8", &gru_forward_int8, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(), py::arg("h0") = py::none(), py::kw_only(),
        py::arg("lengths") = py::none(), py::arg("reverse") = false,
        "GRU inference with int8 weights ((panels, scale, sum) tuples from lstm_ext.quantized.pack_int8), one "
        "direction: x (T, B, I) float32 -> (y (T, B, H), h_n (B, H)).");
  m.def("gru_forward", &gru_forward, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(),
        py::arg("b_hh") = py::none(), py::arg("h0") = py::none(), py::kw_only(), py::arg("ln_ih_weight") = py::none(),
        py::arg("ln_ih_bias") = py::none(), py::arg("ln_hh_weight") = py::none(), py::arg("ln_hh_bias") = py::none(),
        py::arg("lengths") = py::none(), py::arg("reverse") = false, py::arg("training") = false,
        py::arg("bidirectional") = false,
        "GRU forward over a sequence: x (T, B, I) -> (y (T, B, H), h_n (B, H), workspace or None); bidirectional: "
        "weights in pairs, y (T, B, 2 * H), states (2, B, H).");
  m.def("gru_backward", &gru_backward, py::arg("dy"), py::arg("dh_n"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("workspace"), py::kw_only(), py::arg("ln_ih_weight") = py::none(), py::arg("ln_ih_bias") = py::none(),
        py::arg("ln_hh_weight") = py::none(), py::arg("ln_hh_bias") = py::none(), py::arg("lengths") = py::none(),
        py::arg("reverse") = false, py::arg("bias") = true, py::arg("bidirectional") = false,
        "GRU backward through time -> (dx, dh0, dw_ih, dw_hh, db_ih or None, db_hh or None, dln_ih_weight, "
        "dln_ih_bias, dln_hh_weight, dln_hh_bias (each None without layer normalization)); bidirectional: a "
        "leading axis of 2 on every gradient but dx.");
}

}  // namespace lstm_ext::bindings
