// lstm_ext bindings for the vanilla RNN core: validate, allocate, map, release the GIL, call.
// Dtype rules as for the LSTM: the dtype of w_ih decides, everything else is converted.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>

#include "bindings/h_only.hpp"

namespace lstm_ext::bindings {
namespace {

RnnActivation read_nonlinearity(const std::string& name) {
  if (name == "tanh") return RnnActivation::Tanh;
  if (name == "relu") return RnnActivation::Relu;
  throw py::value_error("nonlinearity: expected 'tanh' or 'relu', got '" + name + "'");
}

// The vanilla RNN as the h-only templates see it (h_only.hpp).
struct RnnKind {
  using Dims = RnnDims;
  static constexpr Index gates = 1;
  static constexpr const char* G = "H";
  static constexpr const char* forward_name = "rnn_forward";
  static constexpr const char* backward_name = "rnn_backward";
  static constexpr bool one_bias_sum = true;  // h_t = act(W_ih x + b_ih + W_hh h + b_hh)
  static Index workspace_size(const Dims& d, Index lanes) { return rnn_workspace_size(d, lanes); }
  static double forward_call_size(const Dims& d, bool training, int members, Index lanes) {
    return rnn_forward_call_size<double>(d, training, members, lanes);
  }
  static double backward_call_size(const Dims& d, int members, Index lanes) {
    return rnn_backward_call_size<double>(d, members, lanes);
  }
};

// The ops take the arguments of their functions in functional.py, in the same order, with the
// same keyword-only ones (bind_rnn), and compute in the dtype of w_ih (dispatch_dtype).

py::tuple rnn_forward(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                      py::handle b_hh_obj, py::handle h0_obj, const std::string& nonlinearity, py::handle lengths_obj,
                      bool reverse, bool training, bool bidirectional) {
  return dispatch_dtype(w_ih_obj, bidirectional, [&](auto scalar) {
    using Scalar = decltype(scalar);
    const RnnActivation act = read_nonlinearity(nonlinearity);
    return h_only_forward<RnnKind, Scalar>(
        x_obj, w_ih_obj, w_hh_obj, b_ih_obj, b_hh_obj, h0_obj, lengths_obj, reverse, training, bidirectional,
        [](const Directions&, RnnDims&) { return 0; },
        [act](int, Scalar* y, Scalar* h_n, Scalar* ws, const Scalar* x, const Scalar* h0, const Scalar* w_ih,
              const Scalar* w_hh, const Scalar* b_ih, const Scalar* b_hh, int, const RnnDims& d,
              const SequenceOptions& seq) {
          kernels<Scalar>().rnn.forward(y, h_n, ws, x, h0, w_ih, w_hh, b_ih, b_hh, act, d, seq);
        });
  });
}

py::tuple rnn_backward(py::handle dy_obj, py::handle dh_n_obj, py::handle x_obj, py::handle w_ih_obj,
                       py::handle w_hh_obj, py::handle ws_obj, const std::string& nonlinearity, py::handle lengths_obj,
                       bool reverse, bool bias, bool bidirectional) {
  return dispatch_dtype(w_ih_obj, bidirectional, [&](auto scalar) {
    using Scalar = decltype(scalar);
    const RnnActivation act = read_nonlinearity(nonlinearity);
    return h_only_backward<RnnKind, Scalar>(
        dy_obj, dh_n_obj, x_obj, w_ih_obj, w_hh_obj, ws_obj, lengths_obj, reverse, bias, bidirectional,
        [](const Directions&, RnnDims&) { return 0; },
        [act](int, const HOnlyGradients<Scalar>& g, int, const RnnDims& d, const SequenceOptions& seq) {
          kernels<Scalar>().rnn.backward(g.dx, g.dh0, g.dw_ih, g.dw_hh, g.db_ih, g.dy, g.dh_n, g.ws, g.w_ih, g.w_hh,
                                         act, d, seq);
        },
        [](int) { return py::tuple(); });
  });
}

}  // namespace

// Inference with int8 weights (lstm_ext.quantize_dynamic), one direction: W_ih, W_hh as int8
// matrices, (panels, scale, sum) tuples (read_int8_weights), everything else float32.
py::tuple rnn_forward_int8(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                           py::handle b_hh_obj, py::handle h0_obj, const std::string& nonlinearity,
                           py::handle lengths_obj, bool reverse) {
  const RnnActivation act = read_nonlinearity(nonlinearity);
  return h_only_forward_int8(
      "rnn_forward_int8", 1, "H", x_obj, w_ih_obj, w_hh_obj, b_ih_obj, b_hh_obj, h0_obj, lengths_obj, reverse,
      [act](float* y, float* h_n, const float* x, const float* h0, const Int8Weights& w, const float* b_ih,
            const float* b_hh, Index T, Index B, const SequenceOptions& seq) {
        kernels<float>().rnn.forward_int8(y, h_n, x, h0, w.w_ih.matrix(), w.w_hh.matrix(), b_ih, b_hh, act,
                                          RnnDims{T, B, w.I, w.H}, seq);
      });
}

// Inference with bfloat16 recurrent weights (lstm_ext.quantize_dynamic), one direction: W_ih float32
// (its bf16 values), W_hh bf16 packed by pack_bf16 in 1 gate block, everything else float32.
py::tuple rnn_forward_bf16(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                           py::handle b_hh_obj, py::handle h0_obj, const std::string& nonlinearity, py::handle lengths_obj, bool reverse) {
  const RnnActivation act = read_nonlinearity(nonlinearity);
  return h_only_forward_bf16(
      "rnn_forward_bf16", 1, "H", x_obj, w_ih_obj, w_hh_obj, b_ih_obj, b_hh_obj, h0_obj, lengths_obj, reverse,
      [](Index T, Index B, Index I, Index H) {
        return rnn_forward_call_size<double>(RnnDims{T, B, I, H}, false, get_num_threads(), kernels<float>().lanes);
      },
      [act](float* y, float* h_n, const float* x, const float* h0, const float* w_ih, const std::uint16_t* w_hh,
         const float* b_ih, const float* b_hh, Index T, Index B, Index I, Index H, const SequenceOptions& seq) {
        kernels<float>().rnn.forward_bf16(y, h_n, x, h0, w_ih, w_hh, b_ih, b_hh, act, RnnDims{T, B, I, H}, seq);
      });
}

void bind_rnn(py::module_& m) {
  m.def("rnn_forward_bf16", &rnn_forward_bf16, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(), py::arg("h0") = py::none(), py::kw_only(),
        py::arg("nonlinearity") = "tanh", py::arg("lengths") = py::none(), py::arg("reverse") = false,
        "Vanilla RNN inference with bfloat16 recurrent weights (W_hh packed by pack_bf16 in 1 block; w_ih float32), "
        "one direction: x (T, B, I) float32 -> (y (T, B, H), h_n (B, H)).");
  m.def("rnn_forward_int8", &rnn_forward_int8, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(), py::arg("h0") = py::none(), py::kw_only(),
        py::arg("nonlinearity") = "tanh", py::arg("lengths") = py::none(), py::arg("reverse") = false,
        "Vanilla RNN inference with int8 weights ((panels, scale, sum) tuples from lstm_ext.quantized.pack_int8), "
        "one direction: x (T, B, I) float32 -> (y (T, B, H), h_n (B, H)).");
  m.def("rnn_forward", &rnn_forward, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(),
        py::arg("b_hh") = py::none(), py::arg("h0") = py::none(), py::kw_only(), py::arg("nonlinearity") = "tanh",
        py::arg("lengths") = py::none(), py::arg("reverse") = false, py::arg("training") = false,
        py::arg("bidirectional") = false,
        "Vanilla RNN forward over a sequence: x (T, B, I) -> (y (T, B, H), h_n (B, H), workspace or None); "
        "bidirectional: weights in pairs, y (T, B, 2 * H), states (2, B, H).");
  m.def("rnn_backward", &rnn_backward, py::arg("dy"), py::arg("dh_n"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("workspace"), py::kw_only(), py::arg("nonlinearity") = "tanh", py::arg("lengths") = py::none(),
        py::arg("reverse") = false, py::arg("bias") = true, py::arg("bidirectional") = false,
        "Vanilla RNN backward through time -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh); bidirectional: a leading axis "
        "of 2 on every gradient but dx.");
}

}  // namespace lstm_ext::bindings
