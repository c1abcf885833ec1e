// lstm_ext bindings: turning Python arguments into checked, C-contiguous NumPy arrays.
//
// Every check runs before any memory is touched or allocated, and every error names the
// argument with the expected and the actual shape or type:
//   TypeError    the argument is not an array of real numbers (complex, object, strings, ...)
//   ValueError   wrong number of axes, wrong shape, sizes that do not fit together
//   MemoryError  the call would need more memory than this machine has
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <vector>

namespace lstm_ext::bindings {

namespace py = pybind11;
using Index = py::ssize_t;

// A C-contiguous array of Scalar, the only kind of array the bindings hand to the core.
template <typename Scalar>
using CArray = py::array_t<Scalar, py::array::c_style | py::array::forcecast>;

// "(3, 4, 5)"
std::string shape_str(const py::array& a);
std::string shape_str(const std::vector<Index>& shape);

// True when `obj` is a NumPy array of float32: the functional ops compute in the dtype of their
// weights, float32 when these are float32 arrays and float64 otherwise.
bool is_float32_array(py::handle obj);

// Converts any array-like of real numbers (bool, integer or floating) to a C-contiguous array of
// Scalar. An array that already is one is returned as it is, without a copy.
py::array as_real_array(py::handle obj, const std::string& name);
template <typename Scalar>
CArray<Scalar> to_array(py::handle obj, const std::string& name) {
  auto converted = CArray<Scalar>::ensure(as_real_array(obj, name));
  if (!converted) throw py::error_already_set();
  return converted;
}
// Same, with None meaning "absent".
template <typename Scalar>
std::optional<CArray<Scalar>> to_optional_array(py::handle obj, const std::string& name) {
  if (obj.is_none()) return std::nullopt;
  return to_array<Scalar>(obj, name);
}
template <typename Scalar>
const Scalar* data_or_null(const std::optional<CArray<Scalar>>& a) {
  return a ? a->data() : nullptr;
}

// ValueError unless `a` has `ndim` axes; `legend` names them, e.g. "(T, B, I)".
void require_ndim(const py::array& a, const std::string& name, int ndim, const std::string& legend);
// ValueError unless `a` has exactly `expected` shape; `legend` names the axes.
void require_shape(const py::array& a, const std::string& name, const std::vector<Index>& expected,
                   const std::string& legend);

// MemoryError when `elements` values of `bytes_each` bytes exceed this machine's physical memory.
// `elements` is a double so that products of huge sizes cannot overflow before the check.
void require_memory(double elements, std::size_t bytes_each, const std::string& what);

}  // namespace lstm_ext::bindings
