// lstm_ext bindings for the LSTM core: validate, allocate, map, release the GIL, call.
//
// The ops compute in the dtype of their weights (float32 when w_ih is a float32 array, float64
// otherwise); every other argument is converted to it. C-contiguous arrays of that dtype are
// used in place, without a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>

#include "bindings/checks.hpp"

namespace lstm_ext::bindings {
namespace {

// The weights of a call, with the projection W_hr (P, H) when given.
template <typename Scalar>
struct LstmWeights {
  RecurrentWeights<Scalar> w;
  std::optional<CArray<Scalar>> w_hr;  // (P, H)
};

template <typename Scalar>
LstmWeights<Scalar> read_lstm_weights(py::handle w_ih, py::handle w_hh, py::handle w_hr_obj) {
  const bool projected = !w_hr_obj.is_none();
  auto w = read_weights<Scalar>(w_ih, w_hh, 4, "4H", projected);
  if (projected && w.H_out >= w.H) {  // torch's rule too: proj_size < hidden_size
    throw py::value_error("w_hh: expected shape (4H, P) with a projection to fewer units than H (P < H = " +
                          std::to_string(w.H) + "), got " + shape_str(w.w_hh));
  }
  auto w_hr = read_optional<Scalar>(w_hr_obj, "w_hr", {w.H_out, w.H}, "(P, H)");
  return {std::move(w), std::move(w_hr)};
}

template <typename Scalar>
LstmDims lstm_dims(Index T, Index B, const LstmWeights<Scalar>& lw) {
  return LstmDims{T, B, lw.w.I, lw.w.H, lw.w_hr ? lw.w.H_out : 0};
}

std::string sizes_str(const LstmDims& d) {
  return d.P > 0 ? "(T, B, H, P) = " + shape_str({d.T, d.B, d.H, d.P}) : "(T, B, H) = " + shape_str({d.T, d.B, d.H});
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
py::tuple forward(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                  py::handle b_hh_obj, py::handle h0_obj, py::handle c0_obj, bool training, py::handle w_hr_obj,
                  py::handle lengths_obj, bool reverse) {
  const auto lw = read_lstm_weights<Scalar>(w_ih_obj, w_hh_obj, w_hr_obj);
  const auto x = read_sequence<Scalar>(x_obj, lw.w.I);
  const LstmDims d = lstm_dims(x.shape(0), x.shape(1), lw);
  const Index B = d.B, H = d.H, H_out = d.H_out();
  const Kernels<Scalar>& kernel = kernels<Scalar>();
  const auto b_ih = read_optional<Scalar>(b_ih_obj, "b_ih", {d.G()}, "(4H,)");
  const auto b_hh = read_optional<Scalar>(b_hh_obj, "b_hh", {d.G()}, "(4H,)");
  const auto h0 = read_optional<Scalar>(h0_obj, "h0", {B, H_out}, d.P > 0 ? "(B, P)" : "(B, H)");
  const auto c0 = read_optional<Scalar>(c0_obj, "c0", {B, H}, "(B, H)");
  const auto lengths = read_lengths(lengths_obj, d.T, B);

  // Outputs y, h_n, c_n, the workspace and the core's scratch, counted in double (no overflow).
  require_memory(double(d.T) * B * H_out + double(B) * (H_out + H) +
                     (training ? lstm_workspace_size<double>(d, kernel.lanes) : 0.0) +
                     lstm_forward_scratch_size<double>(d, training, get_num_threads(), kernel.lanes),
                 sizeof(Scalar), "lstm_forward");

  auto y = new_array<Scalar>({d.T, B, H_out});
  auto h_n = new_array<Scalar>({B, H_out});
  auto c_n = new_array<Scalar>({B, H});
  std::optional<CArray<Scalar>> ws;
  if (training) ws.emplace(new_array<Scalar>({lstm_workspace_size(d, kernel.lanes)}));

  Scalar* ws_data = ws ? ws->mutable_data() : nullptr;
  without_gil([&] {
    kernel.lstm.forward(y.mutable_data(), h_n.mutable_data(), c_n.mutable_data(), ws_data, x.data(),
                        data_or_null(h0), data_or_null(c0), lw.w.w_ih.data(), lw.w.w_hh.data(), data_or_null(b_ih),
                        data_or_null(b_hh), data_or_null(lw.w_hr), d, sequence_options(reverse, lengths));
  });
  return py::make_tuple(y, h_n, c_n, or_none(ws));
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
py::tuple backward(py::handle dy_obj, py::handle dh_n_obj, py::handle dc_n_obj, py::handle x_obj,
                   py::handle w_ih_obj, py::handle w_hh_obj, py::handle ws_obj, bool bias, py::handle w_hr_obj,
                   py::handle lengths_obj, bool reverse) {
  const auto lw = read_lstm_weights<Scalar>(w_ih_obj, w_hh_obj, w_hr_obj);
  const auto [T, B_x] = read_sequence_sizes(x_obj, lw.w.I);
  const LstmDims d = lstm_dims(T, B_x, lw);
  const Index B = d.B, H = d.H, H_out = d.H_out(), G = d.G();
  const Kernels<Scalar>& kernel = kernels<Scalar>();
  const auto ws = read_workspace<Scalar>(ws_obj, lstm_workspace_size(d, kernel.lanes), sizes_str(d));
  const auto dy = read_optional<Scalar>(dy_obj, "dy", {d.T, B, H_out}, d.P > 0 ? "(T, B, P)" : "(T, B, H)");
  const auto dh_n = read_optional<Scalar>(dh_n_obj, "dh_n", {B, H_out}, d.P > 0 ? "(B, P)" : "(B, H)");
  const auto dc_n = read_optional<Scalar>(dc_n_obj, "dc_n", {B, H}, "(B, H)");
  const auto lengths = read_lengths(lengths_obj, d.T, B);

  // The gradients and the core's scratch, counted in double (no overflow).
  require_memory(double(d.T) * B * d.I + double(B) * (H_out + H) + double(G) * (d.I + H_out + 2) +
                     double(d.P) * H + lstm_backward_scratch_size<double>(d, get_num_threads(), kernel.lanes),
                 sizeof(Scalar), "lstm_backward");

  auto dx = new_array<Scalar>({d.T, B, d.I});
  auto dh0 = new_array<Scalar>({B, H_out});
  auto dc0 = new_array<Scalar>({B, H});
  auto dw_ih = new_array<Scalar>({G, d.I});
  auto dw_hh = new_array<Scalar>({G, H_out});
  std::optional<CArray<Scalar>> dw_hr, db_ih, db_hh;  // (P, H); (4H) each
  if (d.P > 0) dw_hr.emplace(new_array<Scalar>({d.P, H}));
  if (bias) {
    db_ih.emplace(new_array<Scalar>({G}));
    db_hh.emplace(new_array<Scalar>({G}));
  }

  Scalar* dw_hr_data = dw_hr ? dw_hr->mutable_data() : nullptr;
  Scalar* db_ih_data = bias ? db_ih->mutable_data() : nullptr;
  Scalar* db_hh_data = bias ? db_hh->mutable_data() : nullptr;
  without_gil([&] {
    kernel.lstm.backward(dx.mutable_data(), dh0.mutable_data(), dc0.mutable_data(), dw_ih.mutable_data(),
                         dw_hh.mutable_data(), dw_hr_data, db_ih_data, data_or_null(dy), data_or_null(dh_n),
                         data_or_null(dc_n), ws.data(), lw.w.w_ih.data(), lw.w.w_hh.data(),
                         data_or_null(lw.w_hr), d, sequence_options(reverse, lengths));
    // b_ih and b_hh enter the gates the same way: their gradients are equal, returned as two arrays.
    if (bias) std::copy_n(db_ih_data, G, db_hh_data);
  });
  return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, or_none(db_ih), or_none(db_hh), or_none(dw_hr));
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
py::tuple cell(py::handle x_obj, py::handle h_obj, py::handle c_obj, py::handle w_ih_obj, py::handle w_hh_obj,
               py::handle b_ih_obj, py::handle b_hh_obj) {
  const auto w = read_weights<Scalar>(w_ih_obj, w_hh_obj, 4, "4H", false);
  const Index I = w.I, H = w.H, G = 4 * H;
  const Kernels<Scalar>& kernel = kernels<Scalar>();
  auto x = to_array<Scalar>(x_obj, "x");
  require_ndim(x, "x", 2, "(B, I)");
  const Index B = x.shape(0);
  if (B < 1 || x.shape(1) != I) {
    throw py::value_error("x: expected shape (B, I) with B >= 1 and I = " + std::to_string(I) +
                          " (from w_ih), got " + shape_str(x));
  }
  const auto h = read_optional<Scalar>(h_obj, "h", {B, H}, "(B, H)");
  const auto c = read_optional<Scalar>(c_obj, "c", {B, H}, "(B, H)");
  const auto b_ih = read_optional<Scalar>(b_ih_obj, "b_ih", {G}, "(4H,)");
  const auto b_hh = read_optional<Scalar>(b_hh_obj, "b_hh", {G}, "(4H,)");
  require_memory(static_cast<double>(B) * (2.0 * H + 4.0 * H), sizeof(Scalar), "lstm_cell");

  auto h_new = new_array<Scalar>({B, H});
  auto c_new = new_array<Scalar>({B, H});
  without_gil([&] {
    kernel.lstm.cell(h_new.mutable_data(), c_new.mutable_data(), x.data(), data_or_null(h), data_or_null(c),
                     w.w_ih.data(), w.w_hh.data(), data_or_null(b_ih), data_or_null(b_hh), B, I, H);
  });
  return py::make_tuple(h_new, c_new);
}

}  // namespace

void bind_lstm(py::module_& m) {
  m.def(
      "lstm_forward",
      [](py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh, py::handle h0,
         py::handle c0, bool training, py::handle w_hr, py::handle lengths, bool reverse) {
        return is_float32_array(w_ih)
                   ? forward<float>(x, w_ih, w_hh, b_ih, b_hh, h0, c0, training, w_hr, lengths, reverse)
                   : forward<double>(x, w_ih, w_hh, b_ih, b_hh, h0, c0, training, w_hr, lengths, reverse);
      },
      py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(),
      py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("training") = false,
      py::arg("w_hr") = py::none(), py::arg("lengths") = py::none(), py::arg("reverse") = false,
      "LSTM forward over a sequence: x (T, B, I) -> (y (T, B, H_out), h_n (B, H_out), c_n (B, H), workspace or "
      "None).");
  m.def(
      "lstm_backward",
      [](py::handle dy, py::handle dh_n, py::handle dc_n, py::handle x, py::handle w_ih, py::handle w_hh,
         py::handle workspace, bool bias, py::handle w_hr, py::handle lengths, bool reverse) {
        return is_float32_array(w_ih)
                   ? backward<float>(dy, dh_n, dc_n, x, w_ih, w_hh, workspace, bias, w_hr, lengths, reverse)
                   : backward<double>(dy, dh_n, dc_n, x, w_ih, w_hh, workspace, bias, w_hr, lengths, reverse);
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
      py::arg("workspace"), py::arg("bias") = true, py::arg("w_hr") = py::none(), py::arg("lengths") = py::none(),
      py::arg("reverse") = false,
      "LSTM backward through time -> (dx, dh0, dc0, dw_ih, dw_hh, db_ih or None, db_hh or None, dw_hr or None).");
  m.def(
      "lstm_cell",
      [](py::handle x, py::handle h, py::handle c, py::handle w_ih, py::handle w_hh, py::handle b_ih,
         py::handle b_hh) {
        return is_float32_array(w_ih) ? cell<float>(x, h, c, w_ih, w_hh, b_ih, b_hh)
                                      : cell<double>(x, h, c, w_ih, w_hh, b_ih, b_hh);
      },
      py::arg("x"), py::arg("h"), py::arg("c"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(),
      py::arg("b_hh") = py::none(), "One LSTM step: x (B, I), h, c (B, H) -> (h', c').");
}

}  // namespace lstm_ext::bindings
