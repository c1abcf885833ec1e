// lstm_ext bindings for the GRU core: validate, allocate, map, release the GIL, call.
// Dtype rules as for the LSTM: the dtype of w_ih decides, everything else is converted.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/checks.hpp"

namespace lstm_ext::bindings {
namespace {

template <typename Scalar>
py::tuple forward(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                  py::handle b_hh_obj, py::handle h0_obj, bool training, py::handle lengths_obj, bool reverse) {
  const auto w = read_weights<Scalar>(w_ih_obj, w_hh_obj, 3, "3H", false);
  const auto x = read_sequence<Scalar>(x_obj, w.I);
  const GruDims d{x.shape(0), x.shape(1), w.I, w.H};
  const Kernels<Scalar>& kernel = kernels<Scalar>();
  const auto b_ih = read_optional<Scalar>(b_ih_obj, "b_ih", {d.G()}, "(3H,)");
  const auto b_hh = read_optional<Scalar>(b_hh_obj, "b_hh", {d.G()}, "(3H,)");
  const auto h0 = read_optional<Scalar>(h0_obj, "h0", {d.B, d.H}, "(B, H)");
  const auto lengths = read_lengths(lengths_obj, d.T, d.B);

  // Outputs y, h_n, the workspace and the core's scratch, counted in double (no overflow).
  require_memory(double(d.T) * d.B * d.H + double(d.B) * d.H + (training ? gru_workspace_size<double>(d, kernel.lanes) : 0.0) +
                     gru_forward_scratch_size<double>(d, training, get_num_threads(), kernel.lanes),
                 sizeof(Scalar), "gru_forward");

  auto y = new_array<Scalar>({d.T, d.B, d.H});
  auto h_n = new_array<Scalar>({d.B, d.H});
  std::optional<CArray<Scalar>> ws;
  if (training) ws.emplace(new_array<Scalar>({gru_workspace_size(d, kernel.lanes)}));
  Scalar* ws_data = ws ? ws->mutable_data() : nullptr;
  without_gil([&] {
    kernel.gru.forward(y.mutable_data(), h_n.mutable_data(), ws_data, x.data(), data_or_null(h0), w.w_ih.data(),
                       w.w_hh.data(), data_or_null(b_ih), data_or_null(b_hh), d, sequence_options(reverse, lengths));
  });
  return py::make_tuple(y, h_n, or_none(ws));
}

template <typename Scalar>
py::tuple backward(py::handle dy_obj, py::handle dh_n_obj, py::handle x_obj, py::handle w_ih_obj,
                   py::handle w_hh_obj, py::handle ws_obj, bool bias, py::handle lengths_obj, bool reverse) {
  const auto w = read_weights<Scalar>(w_ih_obj, w_hh_obj, 3, "3H", false);
  const auto [T, B] = read_sequence_sizes(x_obj, w.I);
  const GruDims d{T, B, w.I, w.H};
  const Kernels<Scalar>& kernel = kernels<Scalar>();
  const auto ws = read_workspace<Scalar>(ws_obj, gru_workspace_size(d, kernel.lanes), "(T, B, H) = " + shape_str({T, B, d.H}));
  const auto dy = read_optional<Scalar>(dy_obj, "dy", {d.T, d.B, d.H}, "(T, B, H)");
  const auto dh_n = read_optional<Scalar>(dh_n_obj, "dh_n", {d.B, d.H}, "(B, H)");
  const auto lengths = read_lengths(lengths_obj, d.T, d.B);

  // The gradients and the core's scratch, counted in double (no overflow).
  require_memory(double(d.T) * d.B * d.I + double(d.B) * d.H + double(d.G()) * (d.I + d.H + 2) +
                     gru_backward_scratch_size<double>(d, get_num_threads(), kernel.lanes),
                 sizeof(Scalar), "gru_backward");

  auto dx = new_array<Scalar>({d.T, d.B, d.I});
  auto dh0 = new_array<Scalar>({d.B, d.H});
  auto dw_ih = new_array<Scalar>({d.G(), d.I});
  auto dw_hh = new_array<Scalar>({d.G(), d.H});
  std::optional<CArray<Scalar>> db_ih, db_hh;  // (3H) each
  if (bias) {
    db_ih.emplace(new_array<Scalar>({d.G()}));
    db_hh.emplace(new_array<Scalar>({d.G()}));
  }
  Scalar* db_ih_data = bias ? db_ih->mutable_data() : nullptr;
  Scalar* db_hh_data = bias ? db_hh->mutable_data() : nullptr;
  without_gil([&] {
    kernel.gru.backward(dx.mutable_data(), dh0.mutable_data(), dw_ih.mutable_data(), dw_hh.mutable_data(),
                        db_ih_data, db_hh_data, data_or_null(dy), data_or_null(dh_n), ws.data(),
                        w.w_ih.data(), w.w_hh.data(), d, sequence_options(reverse, lengths));
  });
  return py::make_tuple(dx, dh0, dw_ih, dw_hh, or_none(db_ih), or_none(db_hh));
}

}  // namespace

void bind_gru(py::module_& m) {
  m.def(
      "gru_forward",
      [](py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh, py::handle h0,
         bool training, py::handle lengths, bool reverse) {
        return is_float32_array(w_ih) ? forward<float>(x, w_ih, w_hh, b_ih, b_hh, h0, training, lengths, reverse)
                                      : forward<double>(x, w_ih, w_hh, b_ih, b_hh, h0, training, lengths, reverse);
      },
      py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(),
      py::arg("h0") = py::none(), py::arg("training") = false, py::arg("lengths") = py::none(),
      py::arg("reverse") = false,
      "GRU forward over a sequence: x (T, B, I) -> (y (T, B, H), h_n (B, H), workspace or None).");
  m.def(
      "gru_backward",
      [](py::handle dy, py::handle dh_n, py::handle x, py::handle w_ih, py::handle w_hh, py::handle workspace,
         bool bias, py::handle lengths, bool reverse) {
        return is_float32_array(w_ih) ? backward<float>(dy, dh_n, x, w_ih, w_hh, workspace, bias, lengths, reverse)
                                      : backward<double>(dy, dh_n, x, w_ih, w_hh, workspace, bias, lengths, reverse);
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("workspace"),
      py::arg("bias") = true, py::arg("lengths") = py::none(), py::arg("reverse") = false,
      "GRU backward through time -> (dx, dh0, dw_ih, dw_hh, db_ih or None, db_hh or None).");
}

}  // namespace lstm_ext::bindings
