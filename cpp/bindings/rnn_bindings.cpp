// lstm_ext bindings for the vanilla RNN core: validate, allocate, map, release the GIL, call.
// Dtype rules as for the LSTM: the dtype of w_ih decides, everything else is converted.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>

#include "bindings/checks.hpp"

namespace lstm_ext::bindings {
namespace {

RnnActivation read_nonlinearity(const std::string& name) {
  if (name == "tanh") return RnnActivation::Tanh;
  if (name == "relu") return RnnActivation::Relu;
  throw py::value_error("nonlinearity: expected 'tanh' or 'relu', got '" + name + "'");
}

// The ops take the arguments of their functions in functional.py, in the same order, with the
// same keyword-only ones (bind_rnn), and compute in the dtype of w_ih (dispatch_dtype).

py::tuple rnn_forward(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                      py::handle b_hh_obj, py::handle h0_obj, const std::string& nonlinearity, py::handle lengths_obj,
                      bool reverse, bool training, bool bidirectional) {
  return dispatch_dtype(w_ih_obj, bidirectional, [&](auto scalar) {
    using Scalar = decltype(scalar);
    const RnnActivation act = read_nonlinearity(nonlinearity);
    const Directions dirs = read_directions(bidirectional, reverse);
    const int D = dirs.count;
    const auto w = read_direction_weights<Scalar>(dirs, w_ih_obj, w_hh_obj, 1, "H");
    const auto x = read_sequence<Scalar>(x_obj, w[0].I);
    RnnDims d{x.shape(0), x.shape(1), w[0].I, w[0].H};
    const Index B = d.B, H = d.H;
    d.y_stride = D * H;  // the directions side by side in y
    const Kernels<Scalar>& kernel = kernels<Scalar>();
    const auto b_ih = read_direction_biases<Scalar>(dirs, b_ih_obj, "b_ih", H, "(H,)");
    const auto b_hh = read_direction_biases<Scalar>(dirs, b_hh_obj, "b_hh", H, "(H,)");
    const auto h0 = read_optional<Scalar>(h0_obj, "h0", dirs.shape({B, H}), dirs.legend("(B, H)"));
    const auto lengths = read_lengths(lengths_obj, d.T, B);

    // Outputs y, h_n, the workspaces and the core's scratch of every direction.
    const Index ws_size = rnn_workspace_size(d, kernel.lanes);
    require_memory(D * rnn_forward_call_size<double>(d, training, get_num_threads(), kernel.lanes), sizeof(Scalar),
                   "rnn_forward");

    auto y = new_array<Scalar>({d.T, B, D * H});
    auto h_n = new_array<Scalar>(dirs.shape({B, H}));
    std::optional<CArray<Scalar>> ws;
    if (training) ws.emplace(new_array<Scalar>(dirs.shape({ws_size})));
    Scalar *ws_data = ws ? ws->mutable_data() : nullptr, *y_data = y.mutable_data(), *h_n_data = h_n.mutable_data();
    const Scalar* h0_data = data_or_null(h0);
    without_gil([&] {
      // direction k: its columns of y, its rows of the states
      run_directions(D, d.recurrent_weight_bytes<Scalar>(), [&](int k) {
        kernel.rnn.forward(y_data + k * H, h_n_data + k * B * H, ws_data ? ws_data + k * ws_size : nullptr, x.data(),
                           h0_data ? h0_data + k * B * H : nullptr, w[k].w_ih.data(), w[k].w_hh.data(),
                           data_or_null(b_ih[k]), data_or_null(b_hh[k]), act, d,
                           sequence_options(reverse || k == 1, lengths));
      });
    });
    return py::make_tuple(y, h_n, or_none(ws));
  });
}

py::tuple rnn_backward(py::handle dy_obj, py::handle dh_n_obj, py::handle x_obj, py::handle w_ih_obj,
                       py::handle w_hh_obj, py::handle ws_obj, const std::string& nonlinearity, py::handle lengths_obj,
                       bool reverse, bool bias, bool bidirectional) {
  return dispatch_dtype(w_ih_obj, bidirectional, [&](auto scalar) {
    using Scalar = decltype(scalar);
    const RnnActivation act = read_nonlinearity(nonlinearity);
    const Directions dirs = read_directions(bidirectional, reverse);
    const int D = dirs.count;
    const auto w = read_direction_weights<Scalar>(dirs, w_ih_obj, w_hh_obj, 1, "H");
    const auto [T, B] = read_sequence_sizes(x_obj, w[0].I);
    RnnDims d{T, B, w[0].I, w[0].H};
    const Index H = d.H, I = d.I;
    d.y_stride = D * H;
    const Kernels<Scalar>& kernel = kernels<Scalar>();
    const Index ws_size = rnn_workspace_size(d, kernel.lanes);
    const auto ws = read_workspace<Scalar>(ws_obj, dirs.shape({ws_size}), "(T, B, H) = " + shape_str({T, B, H}));
    const auto dy = read_optional<Scalar>(dy_obj, "dy", {T, B, D * H}, D > 1 ? "(T, B, 2 * H)" : "(T, B, H)");
    const auto dh_n = read_optional<Scalar>(dh_n_obj, "dh_n", dirs.shape({B, H}), dirs.legend("(B, H)"));
    const auto lengths = read_lengths(lengths_obj, T, B);

    // The gradients and the core's scratch of every direction.
    require_memory(D * rnn_backward_call_size<double>(d, get_num_threads(), kernel.lanes), sizeof(Scalar),
                   "rnn_backward");

    auto dx = new_array<Scalar>({T, B, I});
    std::optional<CArray<Scalar>> dx_reverse;  // (T, B, I) the reverse direction's part of dx
    if (D > 1) dx_reverse.emplace(new_array<Scalar>({T, B, I}));
    auto dh0 = new_array<Scalar>(dirs.shape({B, H}));
    auto dw_ih = new_array<Scalar>(dirs.shape({H, I}));
    auto dw_hh = new_array<Scalar>(dirs.shape({H, H}));
    std::optional<CArray<Scalar>> db_ih, db_hh;  // (H) each, per direction
    if (bias) {
      db_ih.emplace(new_array<Scalar>(dirs.shape({H})));
      db_hh.emplace(new_array<Scalar>(dirs.shape({H})));
    }
    Scalar* db_ih_data = bias ? db_ih->mutable_data() : nullptr;
    Scalar* db_hh_data = bias ? db_hh->mutable_data() : nullptr;
    Scalar* dx_parts[2] = {dx.mutable_data(), dx_reverse ? dx_reverse->mutable_data() : nullptr};
    const Scalar *dy_data = data_or_null(dy), *dh_n_data = data_or_null(dh_n);
    Scalar *dh0_data = dh0.mutable_data(), *dw_ih_data = dw_ih.mutable_data(), *dw_hh_data = dw_hh.mutable_data();
    without_gil([&] {
      // direction k: its columns of dy, its rows of the states, its gradients
      run_directions(D, d.recurrent_weight_bytes<Scalar>(), [&](int k) {
        kernel.rnn.backward(dx_parts[k], dh0_data + k * B * H, dw_ih_data + k * H * I, dw_hh_data + k * H * H,
                            db_ih_data ? db_ih_data + k * H : nullptr, dy_data ? dy_data + k * H : nullptr,
                            dh_n_data ? dh_n_data + k * B * H : nullptr, ws.data() + k * ws_size, w[k].w_ih.data(),
                            w[k].w_hh.data(), act, d, sequence_options(reverse || k == 1, lengths));
      });
      if (D > 1) add_into(dx_parts[0], dx_parts[1], T * B * I);  // dx = the forward's part + the reverse's
      // b_ih and b_hh enter the same sum: their gradients are equal, returned as two arrays.
      if (bias) std::copy_n(db_ih_data, D * H, db_hh_data);
    });
    return py::make_tuple(dx, dh0, dw_ih, dw_hh, or_none(db_ih), or_none(db_hh));
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
