// lstm_ext bindings: argument checks (see checks.hpp).
#include "bindings/checks.hpp"

#include <algorithm>
#include <chrono>
#include <sstream>
#include <thread>

#ifdef __GLIBCXX__
#include <cxxabi.h>
#endif

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace lstm_ext::bindings {

std::string shape_str(const std::vector<Index>& shape) {
  std::ostringstream out;
  out << "(";
  for (std::size_t k = 0; k < shape.size(); ++k) out << (k ? ", " : "") << shape[k];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

std::string shape_str(const py::array& a) {
  return shape_str(std::vector<Index>(a.shape(), a.shape() + a.ndim()));
}

bool is_float32_array(py::handle obj) {
  if (!py::isinstance<py::array>(obj)) return false;
  const py::dtype dt = py::reinterpret_borrow<py::array>(obj).dtype();
  return dt.kind() == 'f' && dt.itemsize() == 4;
}

py::array as_real_array(py::handle obj, const std::string& name) {
  py::array arr;
  if (py::isinstance<py::array>(obj)) {
    arr = py::reinterpret_borrow<py::array>(obj);
  } else {
    try {
      arr = py::module_::import("numpy").attr("asarray")(obj);
    } catch (py::error_already_set& e) {
      if (e.matches(PyExc_MemoryError)) throw;
      throw py::value_error(name + ": cannot be read as an array of real numbers (" + e.what() + ")");
    }
  }
  const char kind = arr.dtype().kind();
  if (kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f') {
    const std::string source =
        py::isinstance<py::array>(obj) ? "" : " (read from a " + py::str(obj.get_type().attr("__name__")).cast<std::string>() + ")";
    throw py::type_error(name + ": expected real numbers (float32, float64 or integers), got dtype " +
                         py::str(arr.dtype()).cast<std::string>() + source);
  }
  return arr;
}

py::array contiguous_copy(const py::array& arr, const py::dtype& dtype, std::size_t itemsize, const std::string& name) {
  require_memory(static_cast<double>(arr.size()), itemsize, name + " (converted to a contiguous " +
                                                                py::str(dtype).cast<std::string>() + " copy)");
  return py::module_::import("numpy").attr("ascontiguousarray")(arr, dtype);
}

void require_ndim(const py::array& a, const std::string& name, int ndim, const std::string& legend) {
  if (a.ndim() != ndim) {
    throw py::value_error(name + ": expected a " + std::to_string(ndim) + "-D array " + legend +
                          ", got shape " + shape_str(a));
  }
}

void require_shape(const py::array& a, const std::string& name, const std::vector<Index>& expected,
                   const std::string& legend) {
  const bool same = a.ndim() == static_cast<Index>(expected.size()) &&
                    std::equal(expected.begin(), expected.end(), a.shape());
  if (!same) {
    throw py::value_error(name + ": expected shape " + legend + " = " + shape_str(expected) + ", got " +
                          shape_str(a));
  }
}

py::object Directions::item(py::handle obj, int k, const std::string& name) const {
  if (count == 1 || obj.is_none()) return py::reinterpret_borrow<py::object>(obj);
  if (!(py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) || py::len(obj) != 2) {
    throw py::type_error(name + ": expected a pair (forward, reverse) of arrays for a bidirectional call, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))) +
                         (py::hasattr(obj, "__len__") ? " of length " + std::to_string(py::len(obj)) : std::string()));
  }
  return py::reinterpret_borrow<py::object>(obj)[py::int_(k)];
}

std::vector<Index> Directions::shape(std::vector<Index> shape) const {
  if (count > 1) shape.insert(shape.begin(), count);
  return shape;
}

std::string Directions::legend(const std::string& legend) const {
  return count > 1 ? "(2, " + legend.substr(1) : legend;
}

Directions read_directions(bool bidirectional, bool reverse) {
  if (bidirectional && reverse) {
    throw py::value_error("reverse: a bidirectional call runs the reverse direction itself; expected reverse=False");
  }
  return Directions{bidirectional ? 2 : 1};
}

bool is_float32_weights(py::handle w_ih, bool bidirectional) {
  if (bidirectional && (py::isinstance<py::list>(w_ih) || py::isinstance<py::tuple>(w_ih)) && py::len(w_ih) > 0) {
    return is_float32_array(py::reinterpret_borrow<py::object>(w_ih)[py::int_(0)]);
  }
  return is_float32_array(w_ih);
}

void require_same_shape(const py::array& a, const py::array& like, const std::string& name) {
  bool same = a.ndim() == like.ndim();
  for (py::ssize_t k = 0; same && k < a.ndim(); ++k) same = a.shape(k) == like.shape(k);
  if (!same) {
    throw py::value_error(name + ": expected the reverse direction's array of the forward's shape " + shape_str(like) +
                          ", got " + shape_str(a));
  }
}

std::pair<Index, Index> read_sequence_sizes(py::handle x_obj, Index I) {
  const py::array x = as_real_array(x_obj, "x");
  require_ndim(x, "x", 3, "(T, B, I)");
  if (x.shape(0) < 1 || x.shape(1) < 1 || x.shape(2) != I) {
    throw py::value_error("x: expected shape (T, B, I) with T >= 1, B >= 1 and I = " + std::to_string(I) +
                          " (from w_ih), got " + shape_str(x));
  }
  return {x.shape(0), x.shape(1)};
}

std::optional<CArray<std::int64_t>> read_lengths(py::handle obj, Index T, Index B) {
  if (obj.is_none()) return std::nullopt;
  const py::module_ np = py::module_::import("numpy");
  py::array raw;
  try {
    raw = np.attr("asarray")(obj);
  } catch (py::error_already_set& e) {
    if (e.matches(PyExc_MemoryError)) throw;
    throw py::value_error(std::string("lengths: cannot be read as an array of integers (") + e.what() + ")");
  }
  const char kind = raw.dtype().kind();
  if (kind != 'i' && kind != 'u') {
    throw py::type_error("lengths: expected integers (one valid length per sequence), got dtype " +
                         py::str(raw.dtype()).cast<std::string>());
  }
  require_shape(raw, "lengths", {B}, "(B,)");
  // Range-check in the source dtype, before a conversion to int64 could wrap a huge unsigned.
  const py::object out_of_range = np.attr("logical_or")(np.attr("less")(raw, 1), np.attr("greater")(raw, T));
  if (py::cast<bool>(np.attr("any")(out_of_range))) {
    const py::object index = np.attr("argmax")(out_of_range);
    throw py::value_error("lengths: expected every length in [1, T] = [1, " + std::to_string(T) + "], got " +
                          py::str(raw.attr("__getitem__")(index)).cast<std::string>() + " at index " +
                          py::str(index).cast<std::string>());
  }
  if (CArray<std::int64_t>::check_(raw)) return py::reinterpret_borrow<CArray<std::int64_t>>(raw);
  return py::reinterpret_borrow<CArray<std::int64_t>>(
      contiguous_copy(raw, py::dtype::of<std::int64_t>(), sizeof(std::int64_t), "lengths"));
}

void take_back_gil(PyThreadState* state) {
#ifdef __GLIBCXX__
  try {
    PyEval_RestoreThread(state);
  } catch (abi::__forced_unwind&) {
    // pthread_exit from a finalizing interpreter: never leave this handler (leaving it without
    // rethrowing would abort); the process's exit ends the thread.
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
#else
  PyEval_RestoreThread(state);
#endif
}

void require_memory(double elements, std::size_t bytes_each, const std::string& what) {
  double physical = 1e18;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGE_SIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page_size > 0) physical = static_cast<double>(pages) * static_cast<double>(page_size);
#endif
  const double needed = elements * static_cast<double>(bytes_each);
  if (needed > physical) {
    std::ostringstream msg;
    msg.precision(3);
    msg << what << ": needs " << needed / (1 << 30) << " GiB, more than this machine's " << physical / (1 << 30)
        << " GiB of memory";
    PyErr_SetString(PyExc_MemoryError, msg.str().c_str());
    throw py::error_already_set();
  }
}

Int8Arg read_int8_matrix(py::handle q_obj, py::handle scale_obj, const std::string& name, Index N, Index K,
                         const std::string& legend) {
  const py::dtype int8 = py::dtype::of<std::int8_t>();
  if (!py::isinstance<py::array>(q_obj) || !py::reinterpret_borrow<py::array>(q_obj).dtype().is(int8)) {
    const std::string got = py::isinstance<py::array>(q_obj)
                                ? "an array of " + std::string(py::str(py::reinterpret_borrow<py::array>(q_obj).dtype()))
                                : std::string(py::str(py::type::of(q_obj).attr("__name__")));
    throw py::type_error(name + ": expected an int8 array " + legend + ", got " + got);
  }
  auto q = py::array_t<std::int8_t, py::array::c_style>::ensure(q_obj);
  require_shape(q, name, {N, K}, legend);
  if (K > kInt8MaxInner) {
    throw py::value_error(name + ": int8 sums are exact for at most " + std::to_string(kInt8MaxInner) +
                          " inputs per output, got " + std::to_string(K));
  }
  auto scale = to_array<float>(scale_obj, name + "_scale");
  require_shape(scale, name + "_scale", {N}, "(" + legend.substr(1, legend.find(',') - 1) + ",)");
  return {std::move(q), std::move(scale)};
}

py::array_t<std::uint16_t, py::array::c_style> read_bf16_matrix(py::handle obj, const std::string& name, Index N,
                                                                Index K, const std::string& legend) {
  const py::dtype uint16 = py::dtype::of<std::uint16_t>();
  if (!py::isinstance<py::array>(obj) || !py::reinterpret_borrow<py::array>(obj).dtype().is(uint16)) {
    const std::string got = py::isinstance<py::array>(obj)
                                ? "an array of " + std::string(py::str(py::reinterpret_borrow<py::array>(obj).dtype()))
                                : std::string(py::str(py::type::of(obj).attr("__name__")));
    throw py::type_error(name + ": expected a uint16 array " + legend + " of bfloat16 values, got " + got);
  }
  auto w = py::array_t<std::uint16_t, py::array::c_style>::ensure(obj);
  require_shape(w, name, {N, K}, legend);
  return w;
}

Int8Weights read_int8_weights(py::handle q_ih, py::handle s_ih, py::handle q_hh, py::handle s_hh, Index gates,
                              const std::string& G, bool projected) {
  const std::string hh_legend = "(" + G + (projected ? ", P)" : ", H)");
  const py::array hh = as_real_array(q_hh, "w_hh");
  require_ndim(hh, "w_hh", 2, hh_legend);
  const Index rows = hh.shape(0), H = rows / gates, H_out = hh.shape(1);
  if (rows < gates || rows % gates != 0 || (!projected && H_out != H)) {
    throw py::value_error("w_hh: expected shape " + hh_legend + ", got " + shape_str(hh));
  }
  const py::array ih = as_real_array(q_ih, "w_ih");
  require_ndim(ih, "w_ih", 2, "(" + G + ", I)");
  const Index I = ih.shape(1);
  Int8Arg w_ih = read_int8_matrix(q_ih, s_ih, "w_ih", rows, I, "(" + G + ", I)");
  Int8Arg w_hh = read_int8_matrix(q_hh, s_hh, "w_hh", rows, H_out, hh_legend);
  return {std::move(w_ih), std::move(w_hh), I, H, H_out};
}

}  // namespace lstm_ext::bindings
