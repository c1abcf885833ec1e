// lstm_ext bindings for the LSTM core: validate, allocate, map, release the GIL, call.
//
// The ops compute in the dtype of their weights (float32 when w_ih is a float32 array, float64
// otherwise); every other argument is converted to it. C-contiguous arrays of that dtype are
// used in place, without a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>

#include "bindings/checks.hpp"
#include "rnn/lstm.hpp"

namespace lstm_ext::bindings {
namespace {

// The weights fix the layer's sizes H and I; every other argument must match them.
template <typename Scalar>
struct LstmWeights {
  CArray<Scalar> w_ih;  // (4H, I)
  CArray<Scalar> w_hh;  // (4H, H)
  Index I, H;
};

template <typename Scalar>
LstmWeights<Scalar> read_weights(py::handle w_ih_obj, py::handle w_hh_obj) {
  auto w_hh = to_array<Scalar>(w_hh_obj, "w_hh");
  require_ndim(w_hh, "w_hh", 2, "(4H, H)");
  const Index H = w_hh.shape(1);
  if (H < 1 || w_hh.shape(0) != 4 * H) {
    throw py::value_error("w_hh: expected shape (4H, H) with H >= 1 (4 gate blocks of H rows), got " +
                          shape_str(w_hh));
  }
  auto w_ih = to_array<Scalar>(w_ih_obj, "w_ih");
  require_ndim(w_ih, "w_ih", 2, "(4H, I)");
  const Index I = w_ih.shape(1);
  if (I < 1 || w_ih.shape(0) != 4 * H) {
    throw py::value_error("w_ih: expected shape (4H, I) with 4H = " + std::to_string(4 * H) +
                          " (from w_hh) and I >= 1, got " + shape_str(w_ih));
  }
  return {std::move(w_ih), std::move(w_hh), I, H};
}

// A sequence x (T, B, I) for the given weights, and the sizes of the call.
template <typename Scalar>
struct LstmSequence {
  CArray<Scalar> x;  // (T, B, I)
  LstmDims dims;
};

template <typename Scalar>
LstmSequence<Scalar> read_sequence(py::handle x_obj, const LstmWeights<Scalar>& w) {
  auto x = to_array<Scalar>(x_obj, "x");
  require_ndim(x, "x", 3, "(T, B, I)");
  const Index T = x.shape(0), B = x.shape(1);
  if (T < 1 || B < 1 || x.shape(2) != w.I) {
    throw py::value_error("x: expected shape (T, B, I) with T >= 1, B >= 1 and I = " + std::to_string(w.I) +
                          " (from w_ih), got " + shape_str(x));
  }
  return {std::move(x), LstmDims{T, B, w.I, w.H}};
}

template <typename Scalar>
std::optional<CArray<Scalar>> read_bias(py::handle obj, const std::string& name, Index G) {
  auto bias = to_optional_array<Scalar>(obj, name);
  if (bias) require_shape(*bias, name, {G}, "(4H,)");
  return bias;
}

template <typename Scalar>
std::optional<CArray<Scalar>> read_state(py::handle obj, const std::string& name, Index B, Index H) {
  auto state = to_optional_array<Scalar>(obj, name);
  if (state) require_shape(*state, name, {B, H}, "(B, H)");
  return state;
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
py::tuple forward(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                  py::handle b_hh_obj, py::handle h0_obj, py::handle c0_obj, bool training) {
  const auto w = read_weights<Scalar>(w_ih_obj, w_hh_obj);
  const auto seq = read_sequence<Scalar>(x_obj, w);
  const LstmDims d = seq.dims;
  const auto b_ih = read_bias<Scalar>(b_ih_obj, "b_ih", d.G());
  const auto b_hh = read_bias<Scalar>(b_hh_obj, "b_hh", d.G());
  const auto h0 = read_state<Scalar>(h0_obj, "h0", d.B, d.H);
  const auto c0 = read_state<Scalar>(c0_obj, "c0", d.B, d.H);

  // Outputs y, h_n, c_n, the workspace and the core's scratch, counted in double (no overflow).
  require_memory(double(d.T) * d.B * d.H + 2.0 * d.B * d.H + (training ? lstm_workspace_size<double>(d) : 0.0) +
                     lstm_forward_scratch_size<Scalar, double>(d, training),
                 sizeof(Scalar), "lstm_forward");

  CArray<Scalar> y({d.T, d.B, d.H}), h_n({d.B, d.H}), c_n({d.B, d.H});
  std::optional<CArray<Scalar>> ws;
  if (training) ws.emplace(std::vector<Index>{lstm_workspace_size(d)});

  Scalar* ws_data = ws ? ws->mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    lstm_forward<Scalar>(y.mutable_data(), h_n.mutable_data(), c_n.mutable_data(), ws_data, seq.x.data(),
                         data_or_null(h0), data_or_null(c0), w.w_ih.data(), w.w_hh.data(), data_or_null(b_ih),
                         data_or_null(b_hh), d);
  }
  return py::make_tuple(y, h_n, c_n, ws ? py::object(*ws) : py::object(py::none()));
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
py::tuple backward(py::handle dy_obj, py::handle dh_n_obj, py::handle dc_n_obj, py::handle x_obj,
                   py::handle w_ih_obj, py::handle w_hh_obj, py::handle ws_obj, bool bias) {
  const auto w = read_weights<Scalar>(w_ih_obj, w_hh_obj);
  const auto seq = read_sequence<Scalar>(x_obj, w);
  const LstmDims d = seq.dims;
  auto ws = to_array<Scalar>(ws_obj, "workspace");
  if (ws.ndim() != 1 || ws.shape(0) != lstm_workspace_size(d)) {
    throw py::value_error("workspace: expected the 1-D workspace of a training forward with (T, B, H) = " +
                          shape_str({d.T, d.B, d.H}) + ", i.e. shape " + shape_str({lstm_workspace_size(d)}) +
                          ", got " + shape_str(ws));
  }
  const auto dy = to_optional_array<Scalar>(dy_obj, "dy");
  if (dy) require_shape(*dy, "dy", {d.T, d.B, d.H}, "(T, B, H)");
  const auto dh_n = read_state<Scalar>(dh_n_obj, "dh_n", d.B, d.H);
  const auto dc_n = read_state<Scalar>(dc_n_obj, "dc_n", d.B, d.H);

  // The gradients and the core's scratch, counted in double (no overflow).
  require_memory(double(d.T) * d.B * d.I + 2.0 * d.B * d.H + double(d.G()) * (d.I + d.H + 2) +
                     lstm_backward_scratch_size<Scalar, double>(d),
                 sizeof(Scalar), "lstm_backward");

  CArray<Scalar> dx({d.T, d.B, d.I}), dh0({d.B, d.H}), dc0({d.B, d.H});
  CArray<Scalar> dw_ih({d.G(), d.I}), dw_hh({d.G(), d.H});
  std::optional<CArray<Scalar>> db_ih, db_hh;  // (4H) each
  if (bias) {
    db_ih.emplace(std::vector<Index>{d.G()});
    db_hh.emplace(std::vector<Index>{d.G()});
  }

  Scalar* db_ih_data = bias ? db_ih->mutable_data() : nullptr;
  Scalar* db_hh_data = bias ? db_hh->mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    lstm_backward<Scalar>(dx.mutable_data(), dh0.mutable_data(), dc0.mutable_data(), dw_ih.mutable_data(),
                          dw_hh.mutable_data(), db_ih_data,
                          data_or_null(dy), data_or_null(dh_n), data_or_null(dc_n), seq.x.data(), ws.data(),
                          w.w_ih.data(), w.w_hh.data(), d);
    // b_ih and b_hh enter the gates the same way: their gradients are equal, returned as two arrays.
    if (bias) std::copy_n(db_ih_data, d.G(), db_hh_data);
  }
  auto or_none = [](std::optional<CArray<Scalar>>& a) { return a ? py::object(*a) : py::object(py::none()); };
  return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, or_none(db_ih), or_none(db_hh));
}

// ---------------------------------------------------------------------------------------------
template <typename Scalar>
py::tuple cell(py::handle x_obj, py::handle h_obj, py::handle c_obj, py::handle w_ih_obj, py::handle w_hh_obj,
               py::handle b_ih_obj, py::handle b_hh_obj) {
  const auto w = read_weights<Scalar>(w_ih_obj, w_hh_obj);
  const Index I = w.I, H = w.H, G = 4 * H;
  auto x = to_array<Scalar>(x_obj, "x");
  require_ndim(x, "x", 2, "(B, I)");
  const Index B = x.shape(0);
  if (B < 1 || x.shape(1) != I) {
    throw py::value_error("x: expected shape (B, I) with B >= 1 and I = " + std::to_string(I) +
                          " (from w_ih), got " + shape_str(x));
  }
  const auto h = read_state<Scalar>(h_obj, "h", B, H);
  const auto c = read_state<Scalar>(c_obj, "c", B, H);
  const auto b_ih = read_bias<Scalar>(b_ih_obj, "b_ih", G);
  const auto b_hh = read_bias<Scalar>(b_hh_obj, "b_hh", G);
  require_memory(static_cast<double>(B) * (2.0 * H + 4.0 * H), sizeof(Scalar), "lstm_cell");

  CArray<Scalar> h_new({B, H}), c_new({B, H});
  {
    py::gil_scoped_release release;
    lstm_cell<Scalar>(h_new.mutable_data(), c_new.mutable_data(), x.data(), data_or_null(h), data_or_null(c),
                      w.w_ih.data(), w.w_hh.data(), data_or_null(b_ih), data_or_null(b_hh), B, I, H);
  }
  return py::make_tuple(h_new, c_new);
}

}  // namespace

void bind_lstm(py::module_& m) {
  m.def(
      "lstm_forward",
      [](py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh, py::handle h0,
         py::handle c0, bool training) {
        return is_float32_array(w_ih) ? forward<float>(x, w_ih, w_hh, b_ih, b_hh, h0, c0, training)
                                      : forward<double>(x, w_ih, w_hh, b_ih, b_hh, h0, c0, training);
      },
      py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(),
      py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("training") = false,
      "LSTM forward over a sequence: x (T, B, I) -> (y (T, B, H), h_n (B, H), c_n (B, H), workspace or None).");
  m.def(
      "lstm_backward",
      [](py::handle dy, py::handle dh_n, py::handle dc_n, py::handle x, py::handle w_ih, py::handle w_hh,
         py::handle workspace, bool bias) {
        return is_float32_array(w_ih) ? backward<float>(dy, dh_n, dc_n, x, w_ih, w_hh, workspace, bias)
                                      : backward<double>(dy, dh_n, dc_n, x, w_ih, w_hh, workspace, bias);
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
      py::arg("workspace"), py::arg("bias") = true,
      "LSTM backward through time -> (dx, dh0, dc0, dw_ih, dw_hh, db_ih or None, db_hh or None).");
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
