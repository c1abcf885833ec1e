// lstm_ext bindings for the dense kernels (rnn/dense.hpp): validate, allocate, map, release the
// GIL, call. The linear ops compute in the dtype of w (float32 when it is a float32 array, float64
// otherwise) and convert everything else to it; the elementwise ops keep a float32 array's dtype
// and compute everything else in float64.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/checks.hpp"

namespace lstm_ext::bindings {
namespace {

// w (O, I) and x (N, I): the sizes (N, I, O), checked.
template <typename Scalar>
std::tuple<Index, Index, Index> linear_sizes(const CArray<Scalar>& x, const CArray<Scalar>& w) {
  require_ndim(w, "w", 2, "(O, I)");
  require_ndim(x, "x", 2, "(N, I)");
  const Index O = w.shape(0), I = w.shape(1);
  if (O < 1 || I < 1) throw py::value_error("w: expected shape (O, I) with O >= 1 and I >= 1, got " + shape_str(w));
  if (x.shape(1) != I) {
    throw py::value_error("x: expected shape (N, I) with I = " + std::to_string(I) + " (from w), got " + shape_str(x));
  }
  return {x.shape(0), I, O};
}

py::tuple linear_forward(py::handle x_obj, py::handle w_obj, py::handle b_obj) {
  return dispatch_dtype(w_obj, /*bidirectional=*/false, [&](auto scalar) {
    using Scalar = decltype(scalar);
    const auto w = to_array<Scalar>(w_obj, "w");
    const auto x = to_array<Scalar>(x_obj, "x");
    const auto [N, I, O] = linear_sizes(x, w);
    const auto b = read_optional<Scalar>(b_obj, "b", {O}, "(O,)");
    const Kernels<Scalar>& kernel = kernels<Scalar>();
    require_memory(double(N) * O + linear_scratch_size<double>(N, I, O, get_num_threads(), kernel.lanes),
                   sizeof(Scalar), "linear_forward");
    auto y = new_array<Scalar>({N, O});
    Scalar* y_data = y.mutable_data();
    if (N > 0) {
      without_gil([&] { kernel.dense.linear_forward(y_data, x.data(), w.data(), data_or_null(b), N, I, O); });
    }
    return py::make_tuple(y);
  });
}

py::tuple linear_backward(py::handle dy_obj, py::handle x_obj, py::handle w_obj, bool bias) {
  return dispatch_dtype(w_obj, /*bidirectional=*/false, [&](auto scalar) {
    using Scalar = decltype(scalar);
    const auto w = to_array<Scalar>(w_obj, "w");
    const auto x = to_array<Scalar>(x_obj, "x");
    const auto [N, I, O] = linear_sizes(x, w);
    const auto dy = to_array<Scalar>(dy_obj, "dy");
    require_shape(dy, "dy", {N, O}, "(N, O)");
    const Kernels<Scalar>& kernel = kernels<Scalar>();
    require_memory(double(N) * I + double(O) * (I + 1) + linear_scratch_size<double>(N, I, O, get_num_threads(),
                                                                                      kernel.lanes),
                   sizeof(Scalar), "linear_backward");
    auto dx = new_array<Scalar>({N, I});
    auto dw = new_array<Scalar>({O, I});
    std::optional<CArray<Scalar>> db;
    if (bias) db.emplace(new_array<Scalar>({O}));
    Scalar *dx_data = dx.mutable_data(), *dw_data = dw.mutable_data(), *db_data = bias ? db->mutable_data() : nullptr;
    without_gil([&] {
      if (N > 0) {
        kernel.dense.linear_backward(dx_data, dw_data, db_data, dy.data(), x.data(), w.data(), N, I, O);
      } else {  // no rows: nothing to add up
        std::fill_n(dw_data, O * I, Scalar(0));
        if (db_data != nullptr) std::fill_n(db_data, O, Scalar(0));
      }
    });
    return py::make_tuple(dx, dw, or_none(db));
  });
}

// y = f(x), elementwise, in x's shape.
py::array elementwise(py::handle x_obj, Elementwise f) {
  auto compute = [&](auto scalar) -> py::array {
    using Scalar = decltype(scalar);
    const auto x = to_array<Scalar>(x_obj, "x");
    std::vector<Index> shape(x.shape(), x.shape() + x.ndim());
    const Index n = x.size();
    auto y = new_array<Scalar>(shape);
    Scalar* y_data = y.mutable_data();
    const Kernels<Scalar>& kernel = kernels<Scalar>();
    without_gil([&] { kernel.dense.elementwise(y_data, x.data(), n, f); });
    return y;
  };
  if (is_float32_array(x_obj)) return compute(float{});
  return compute(double{});
}

}  // namespace

void bind_dense(py::module_& m) {
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
        "y (N, O) = x (N, I) · wᵀ + b, w (O, I), b (O,) or None: a 1-tuple (y,). Each element one chain of fused "
        "multiply-adds in order: the same bits on every CPU with FMA.");
  m.def("linear_backward", &linear_backward, py::arg("dy"), py::arg("x"), py::arg("w"), py::kw_only(),
        py::arg("bias") = true,
        "(dx (N, I) = dy · w, dw (O, I) = dyᵀ · x, db (O,) = Σ_rows dy, or None without bias).");
  m.def("exp", [](py::handle x) { return elementwise(x, Elementwise::Exp); }, py::arg("x"),
        "e^x elementwise (float32 stays float32, anything else float64).");
  m.def("log", [](py::handle x) { return elementwise(x, Elementwise::Log); }, py::arg("x"),
        "ln x elementwise (float32 stays float32, anything else float64).");
  m.def("tanh", [](py::handle x) { return elementwise(x, Elementwise::Tanh); }, py::arg("x"),
        "tanh x elementwise, as the gates compute it (float32 stays float32, anything else float64).");
  m.def("sigmoid", [](py::handle x) { return elementwise(x, Elementwise::Sigmoid); }, py::arg("x"),
        "σ(x) = 1 / (1 + e^(−x)) elementwise, as the gates compute it (float32 stays float32, anything else "
        "float64).");
}

}  // namespace lstm_ext::bindings
