// lstm_ext bindings for the GRU core: validate, allocate, map, release the GIL, call.
// Dtype rules as for the LSTM: the dtype of w_ih decides, everything else is converted.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <string>
#include <vector>

#include "bindings/h_only.hpp"

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

// The GRU as the h-only templates see it (h_only.hpp).
struct GruKind {
  using Dims = GruDims;
  static constexpr Index gates = 3;
  static constexpr const char* G = "3H";
  static constexpr const char* forward_name = "gru_forward";
  static constexpr const char* backward_name = "gru_backward";
  static constexpr bool one_bias_sum = false;  // b_hh's n block sits inside the reset gate's product
  static Index workspace_size(const Dims& d, Index lanes) { return gru_workspace_size(d, lanes); }
  static double forward_call_size(const Dims& d, bool training, int members, Index lanes) {
    return gru_forward_call_size<double>(d, training, members, lanes);
  }
  static double backward_call_size(const Dims& d, int members, Index lanes) {
    return gru_backward_call_size<double>(d, members, lanes);
  }
};

// The ops take the arguments of their functions in functional.py, in the same order, with the
// same keyword-only ones (bind_gru), and compute in the dtype of w_ih (dispatch_dtype).

py::tuple gru_forward(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                      py::handle b_hh_obj, py::handle h0_obj, py::handle ln_ih_weight, py::handle ln_ih_bias,
                      py::handle ln_hh_weight, py::handle ln_hh_bias, py::handle lengths_obj, bool reverse,
                      bool training, bool bidirectional) {
  return dispatch_dtype(w_ih_obj, bidirectional, [&](auto scalar) {
    using Scalar = decltype(scalar);
    return h_only_forward<GruKind, Scalar>(
        x_obj, w_ih_obj, w_hh_obj, b_ih_obj, b_hh_obj, h0_obj, lengths_obj, reverse, training, bidirectional,
        [&](const Directions& dirs, GruDims& d) {
          auto ln = read_gru_layer_norm<Scalar>(dirs, d.G(), {ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias});
          d.layer_norm = ln[0][0].has_value();
          return ln;
        },
        [](int k, Scalar* y, Scalar* h_n, Scalar* ws, const Scalar* x, const Scalar* h0, const Scalar* w_ih,
           const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh, const GruLayerNormArgs<Scalar>& ln,
           const GruDims& d, const SequenceOptions& seq) {
          kernels<Scalar>().gru.forward(y, h_n, ws, x, h0, w_ih, w_hh, b_ih, b_hh, gru_layer_norm(ln, k), d, seq);
        });
  });
}

// The GRU's own gradients besides h_only_backward's: layer normalization's (kGruLayerNormNames'
// order, (3H) per direction), with it only.
template <typename Scalar>
struct GruBackwardExtra {
  GruLayerNormArgs<Scalar> ln;
  std::array<std::optional<CArray<Scalar>>, 4> dln;
};

py::tuple gru_backward(py::handle dy_obj, py::handle dh_n_obj, py::handle x_obj, py::handle w_ih_obj,
                       py::handle w_hh_obj, py::handle ws_obj, py::handle ln_ih_weight, py::handle ln_ih_bias,
                       py::handle ln_hh_weight, py::handle ln_hh_bias, py::handle lengths_obj, bool reverse, bool bias,
                       bool bidirectional) {
  return dispatch_dtype(w_ih_obj, bidirectional, [&](auto scalar) {
    using Scalar = decltype(scalar);
    return h_only_backward<GruKind, Scalar>(
        dy_obj, dh_n_obj, x_obj, w_ih_obj, w_hh_obj, ws_obj, lengths_obj, reverse, bias, bidirectional,
        [&](const Directions& dirs, GruDims& d) {
          GruBackwardExtra<Scalar> extra;
          extra.ln = read_gru_layer_norm<Scalar>(dirs, d.G(), {ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias});
          d.layer_norm = extra.ln[0][0].has_value();
          if (d.layer_norm) {
            for (auto& grad : extra.dln) grad.emplace(new_array<Scalar>(dirs.shape({d.G()})));
          }
          return extra;
        },
        [](int k, const HOnlyGradients<Scalar>& g, GruBackwardExtra<Scalar>& extra, const GruDims& d,
           const SequenceOptions& seq) {
          GruLayerNormGrads<Scalar> dln;
          if (d.layer_norm) {
            auto at = [&](std::size_t n) { return extra.dln[n]->mutable_data() + k * d.G(); };
            dln = GruLayerNormGrads<Scalar>{at(0), at(1), at(2), at(3)};
          }
          kernels<Scalar>().gru.backward(g.dx, g.dh0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, dln, g.dy, g.dh_n, g.ws,
                                         g.w_ih, g.w_hh, gru_layer_norm(extra.ln, k), d, seq);
        },
        [](GruBackwardExtra<Scalar>& extra) {
          return py::make_tuple(or_none(extra.dln[0]), or_none(extra.dln[1]), or_none(extra.dln[2]),
                                or_none(extra.dln[3]));
        });
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
