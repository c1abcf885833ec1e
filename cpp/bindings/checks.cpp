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

namespace {

// The parts of an int8 matrix: (panels, scale, sum), or a TypeError naming what came.
py::tuple int8_parts(py::handle obj, const std::string& name) {
  if (!py::isinstance<py::tuple>(obj) || py::len(obj) != 3) {
    throw py::type_error(name + ": expected an int8 matrix, a tuple (panels, scale, sum) made by "
                         "lstm_ext.quantized.pack_int8, got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  return py::reinterpret_borrow<py::tuple>(obj);
}

// An array of exactly dtype T (no conversion), or a TypeError.
template <typename T>
py::array_t<T, py::array::c_style> exact_array(py::handle obj, const std::string& name, const char* dtype_name) {
  if (!py::isinstance<py::array>(obj) || !py::reinterpret_borrow<py::array>(obj).dtype().is(py::dtype::of<T>())) {
    const std::string got = py::isinstance<py::array>(obj)
                                ? "an array of " + std::string(py::str(py::reinterpret_borrow<py::array>(obj).dtype()))
                                : std::string(py::str(py::type::of(obj).attr("__name__")));
    throw py::type_error(name + ": expected an array of " + dtype_name + ", got " + got);
  }
  return py::array_t<T, py::array::c_style>::ensure(obj);
}

}  // namespace

Index int8_matrix_rows(py::handle obj, const std::string& name) {
  const auto scale = to_array<float>(int8_parts(obj, name)[1], name + " scale");
  require_ndim(scale, name + " scale", 1, "(N,)");
  return scale.shape(0);
}

Int8Arg read_int8_matrix(py::handle obj, const std::string& name, Index blocks, Index K) {
  const py::tuple parts = int8_parts(obj, name);
  Int8Arg w;
  w.scale = to_array<float>(parts[1], name + " scale");
  require_ndim(w.scale, name + " scale", 1, "(N,)");
  const Index N = w.scale.shape(0);
  if (N < blocks || N % blocks != 0) {
    throw py::value_error(name + " scale: expected a length that is a multiple of " + std::to_string(blocks) +
                          " (one block of rows per gate), got " + std::to_string(N));
  }
  if (K > kInt8MaxInner) {
    throw py::value_error(name + ": int8 sums are exact for at most " + std::to_string(kInt8MaxInner) +
                          " inputs per output, got " + std::to_string(K));
  }
  w.rows = N / blocks;
  w.K = K;
  w.panels = exact_array<std::int8_t>(parts[0], name + " panels", "int8");
  const Int8Matrix m = w.matrix();
  require_shape(w.panels, name + " panels", {blocks, m.panels_per_block(), m.groups(), kInt8PanelRows, kInt8Group},
                "(blocks, ceil(rows / 16), ceil(K / 4), 16, 4)");
  w.sum = exact_array<std::int32_t>(parts[2], name + " sum", "int32");
  require_shape(w.sum, name + " sum", {N}, "(N,)");
  return w;
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

py::array_t<std::uint16_t, py::array::c_style> read_packed_bf16(py::handle obj, const std::string& name, Index blocks,
                                                                Index rows, Index K, const std::string& rows_legend) {
  const Index lanes = kernels<float>().lanes;
  const py::dtype uint16 = py::dtype::of<std::uint16_t>();
  if (!py::isinstance<py::array>(obj) || !py::reinterpret_borrow<py::array>(obj).dtype().is(uint16)) {
    throw py::type_error(name + ": expected bf16 weights packed by pack_bf16 (a uint16 array)");
  }
  auto a = py::array_t<std::uint16_t, py::array::c_style>::ensure(obj);
  require_shape(a, name, {blocks, (rows + lanes - 1) / lanes, K, lanes},
                "(" + std::to_string(blocks) + ", ceil(" + rows_legend + " / lanes), " + std::to_string(K) +
                    ", lanes = " + std::to_string(lanes) + ") from pack_bf16 in this process");
  return a;
}

Int8Weights read_int8_weights(py::handle x, py::handle w_ih, py::handle w_hh, Index gates, const std::string& G,
                              Index P) {
  const Index rows = int8_matrix_rows(w_hh, "w_hh"), H = rows / gates;
  if (rows < gates || rows % gates != 0) {
    throw py::value_error("w_hh: expected " + G + " rows, a multiple of " + std::to_string(gates) + ", got " +
                          std::to_string(rows));
  }
  const py::array x_array = as_real_array(x, "x");
  require_ndim(x_array, "x", 3, "(T, B, I)");
  const Index I = x_array.shape(2), H_out = P > 0 ? P : H;
  Int8Arg ih = read_int8_matrix(w_ih, "w_ih", gates, I);
  if (ih.rows != H) {
    throw py::value_error("w_ih: expected " + G + " = " + std::to_string(rows) + " rows (those of w_hh), got " +
                          std::to_string(ih.rows * gates));
  }
  Int8Arg hh = read_int8_matrix(w_hh, "w_hh", gates, H_out);
  return {std::move(ih), std::move(hh), I, H, H_out};
}

}  // namespace lstm_ext::bindings
