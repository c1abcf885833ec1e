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

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "rnn/kernels.hpp"
#include "rnn/parallel.hpp"
#include "rnn/scratch.hpp"
#include "rnn/types.hpp"

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

// Reads any array-like of real numbers (bool, integer or floating) as a NumPy array (without a
// copy when it is one).
py::array as_real_array(py::handle obj, const std::string& name);
// A C-contiguous copy of `arr` in `dtype`, made by NumPy, after checking that it fits in memory:
// MemoryError naming the argument otherwise, or NumPy's own when the allocation fails (pybind11's
// array_t::ensure would swallow that error).
py::array contiguous_copy(const py::array& arr, const py::dtype& dtype, std::size_t itemsize, const std::string& name);
// Converts any array-like of real numbers to a C-contiguous array of Scalar. An array that
// already is one is returned as it is, without a copy.
template <typename Scalar>
CArray<Scalar> to_array(py::handle obj, const std::string& name) {
  py::array arr = as_real_array(obj, name);
  if (!CArray<Scalar>::check_(arr)) arr = contiguous_copy(arr, py::dtype::of<Scalar>(), sizeof(Scalar), name);
  return py::reinterpret_borrow<CArray<Scalar>>(arr);
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

// A new C-contiguous array of `shape` (uninitialised) for an output: its memory is a block of the
// core's scratch cache (rnn/scratch.hpp), given back to the cache when NumPy frees the array, so
// that a training loop's outputs, workspaces and gradients reuse pages instead of faulting in
// fresh ones at every call.
template <typename Scalar>
CArray<Scalar> new_array(const std::vector<Index>& shape) {
  struct Owned {
    void* block;
    std::size_t capacity;
  };
  std::size_t count = 1;
  for (Index n : shape) count *= static_cast<std::size_t>(n);
  auto owned = std::make_unique<Owned>();
  owned->block = acquire_scratch(std::max<std::size_t>(count, 1) * sizeof(Scalar), &owned->capacity);
  Scalar* data = static_cast<Scalar*>(owned->block);
  py::capsule base;
  try {
    base = py::capsule(owned.get(), [](void* p) {
      std::unique_ptr<Owned> owned(static_cast<Owned*>(p));
      release_scratch(owned->block, owned->capacity);
    });
  } catch (...) {
    release_scratch(owned->block, owned->capacity);
    throw;
  }
  owned.release();  // the capsule owns it now
  return CArray<Scalar>(shape, data, base);
}

// None, or the Python object of an optional output.
template <typename Scalar>
py::object or_none(const std::optional<CArray<Scalar>>& a) {
  return a ? py::object(*a) : py::object(py::none());
}

// ---------------------------------------------------------------------------------------------
// The arguments every recurrent cell shares. `gates` is the number of gate blocks (4 LSTM, 3 GRU,
// 1 RNN) and `G` its name in messages ("4H", "3H", "H").

// The weights fix a layer's sizes; every other argument must match them.
template <typename Scalar>
struct RecurrentWeights {
  CArray<Scalar> w_ih;  // (G, I)
  CArray<Scalar> w_hh;  // (G, H_out)
  Index I, H, H_out;    // H_out = H unless the LSTM has a projection
};
template <typename Scalar>
RecurrentWeights<Scalar> read_weights(py::handle w_ih_obj, py::handle w_hh_obj, Index gates, const std::string& G,
                                      bool projected) {
  const std::string hh_legend = "(" + G + (projected ? ", P)" : ", H)");
  auto w_hh = to_array<Scalar>(w_hh_obj, "w_hh");
  require_ndim(w_hh, "w_hh", 2, hh_legend);
  const Index rows = w_hh.shape(0), H = rows / gates, H_out = w_hh.shape(1);
  if (H < 1 || rows != gates * H || H_out < 1 || (!projected && H_out != H)) {
    throw py::value_error("w_hh: expected shape " + hh_legend + " with H >= 1 (" + std::to_string(gates) +
                          " gate blocks of H rows), got " + shape_str(w_hh));
  }
  auto w_ih = to_array<Scalar>(w_ih_obj, "w_ih");
  require_ndim(w_ih, "w_ih", 2, "(" + G + ", I)");
  const Index I = w_ih.shape(1);
  if (I < 1 || w_ih.shape(0) != rows) {
    throw py::value_error("w_ih: expected shape (" + G + ", I) with " + G + " = " + std::to_string(rows) +
                          " (from w_hh) and I >= 1, got " + shape_str(w_ih));
  }
  return {std::move(w_ih), std::move(w_hh), I, H, H_out};
}

// x (T, B, I) for the given input size I; the shape is read from it.
template <typename Scalar>
CArray<Scalar> read_sequence(py::handle x_obj, Index I) {
  auto x = to_array<Scalar>(x_obj, "x");
  require_ndim(x, "x", 3, "(T, B, I)");
  if (x.shape(0) < 1 || x.shape(1) < 1 || x.shape(2) != I) {
    throw py::value_error("x: expected shape (T, B, I) with T >= 1, B >= 1 and I = " + std::to_string(I) +
                          " (from w_ih), got " + shape_str(x));
  }
  return x;
}

// The sizes (T, B) of x (T, B, I) for the given input size I, read without converting x: a
// backward checks that it is given its forward's input, whose values the workspace keeps.
std::pair<Index, Index> read_sequence_sizes(py::handle x_obj, Index I);

// An optional array of exactly `shape`, e.g. a bias (G,) or a state (B, H); None = absent.
template <typename Scalar>
std::optional<CArray<Scalar>> read_optional(py::handle obj, const std::string& name, const std::vector<Index>& shape,
                                            const std::string& legend) {
  auto array = to_optional_array<Scalar>(obj, name);
  if (array) require_shape(*array, name, shape, legend);
  return array;
}

// ---------------------------------------------------------------------------------------------
// The directions of a call. A call runs one direction (`reverse` chooses which) or, with
// `bidirectional`, both directions of a layer at once (run_directions): each weight argument is
// then a pair (forward, reverse) of arrays (a bias may be None), the states and every gradient
// get a leading axis of 2, and y and dy hold the two directions side by side, (T, B, 2 * H_out),
// the forward direction in the first H_out columns.
struct Directions {
  int count = 1;  // 1 or 2

  // Argument `obj` for direction k: the object itself for one direction, item k of the pair for
  // two (None stays None). TypeError for anything but a pair.
  py::object item(py::handle obj, int k, const std::string& name) const;
  // A per-direction shape with a leading axis of 2 for two directions; its legend likewise.
  std::vector<Index> shape(std::vector<Index> shape) const;
  std::string legend(const std::string& legend) const;
};
// ValueError when both are set (a bidirectional call runs the second direction in reverse itself).
Directions read_directions(bool bidirectional, bool reverse);
// The float32-or-float64 choice of a call: the dtype of (the first direction's) w_ih.
bool is_float32_weights(py::handle w_ih, bool bidirectional);
// The dtype of a call, decided here and nowhere else: returns op(float{}) when (the first
// direction's) w_ih is a float32 array, op(double{}) otherwise. `op` takes its Scalar from the type
// of its argument (a lambda `[&](auto scalar) { using Scalar = decltype(scalar); ... }`), so that
// an op's body is written once for both dtypes; it returns a tuple of arrays of that dtype.
template <typename Op>
py::tuple dispatch_dtype(py::handle w_ih, bool bidirectional, Op&& op) {
  if (is_float32_weights(w_ih, bidirectional)) return op(float{});
  return op(double{});
}
// ValueError unless the reverse direction's array `a` has the shape of the forward's `like`.
void require_same_shape(const py::array& a, const py::array& like, const std::string& name);

// The workspace of a training forward: an array of `shape` ((size,) for one direction, (2, size)
// for two); `sizes` describes the call for the message, e.g. "(T, B, H) = (4, 3, 6)".
template <typename Scalar>
CArray<Scalar> read_workspace(py::handle obj, const std::vector<Index>& shape, const std::string& sizes) {
  auto ws = to_array<Scalar>(obj, "workspace");
  bool same = ws.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t k = 0; same && k < shape.size(); ++k) same = ws.shape(k) == shape[k];
  if (!same) {
    throw py::value_error(std::string("workspace: expected the ") +
                          (shape.size() == 1 ? "1-D workspace of a training forward" : "workspace of a bidirectional training forward") +
                          " with " + sizes + ", i.e. shape " + shape_str(shape) + ", got " + shape_str(ws));
  }
  return ws;
}

// lengths (B,): integers in [1, T], or None (every sequence has T steps). TypeError for
// non-integers, ValueError for the wrong shape or a length out of range.
std::optional<CArray<std::int64_t>> read_lengths(py::handle obj, Index T, Index B);

// PyEval_RestoreThread(state), or, when the interpreter ends this thread instead, sleep until
// the process ends (see without_gil).
void take_back_gil(PyThreadState* state);

// The direction and lengths of a call, for the core.
inline SequenceOptions sequence_options(bool reverse, const std::optional<CArray<std::int64_t>>& lengths) {
  return SequenceOptions{reverse, lengths ? lengths->data() : nullptr};
}

// Runs compute() without the GIL and takes the GIL back after it, by plain calls rather than a
// scoped guard's destructor. When the interpreter is finalizing, CPython ends a (daemon) thread
// that asks for the GIL back with pthread_exit, whose forced unwind would pass through the frames
// of this call: through a destructor (noexcept) it ends in std::terminate, through the frames
// that hold Python objects it would release them without the GIL. So that unwind is stopped
// here and the thread sleeps until the process, which is ending, ends it.
template <typename Compute>
void without_gil(Compute&& compute) {
  PyThreadState* state = PyEval_SaveThread();
  try {
    compute();
  } catch (...) {
    take_back_gil(state);
    throw;
  }
  take_back_gil(state);
}

// The weights of each direction (dirs.count of them, each of the forward's shapes).
template <typename Scalar>
std::vector<RecurrentWeights<Scalar>> read_direction_weights(const Directions& dirs, py::handle w_ih, py::handle w_hh,
                                                             Index gates, const std::string& G) {
  std::vector<RecurrentWeights<Scalar>> weights;
  for (int k = 0; k < dirs.count; ++k) {
    weights.push_back(read_weights<Scalar>(dirs.item(w_ih, k, "w_ih"), dirs.item(w_hh, k, "w_hh"), gates, G, false));
    if (k == 0) continue;
    require_same_shape(weights[k].w_ih, weights[0].w_ih, "w_ih");
    require_same_shape(weights[k].w_hh, weights[0].w_hh, "w_hh");
  }
  return weights;
}

// An optional bias (G,) of each direction; `legend` names its shape, e.g. "(4H,)".
template <typename Scalar>
std::vector<std::optional<CArray<Scalar>>> read_direction_biases(const Directions& dirs, py::handle obj,
                                                                  const std::string& name, Index G,
                                                                  const std::string& legend) {
  std::vector<std::optional<CArray<Scalar>>> biases;
  for (int k = 0; k < dirs.count; ++k) biases.push_back(read_optional<Scalar>(dirs.item(obj, k, name), name, {G}, legend));
  return biases;
}

// to[i] += from[i] for i < count (the reverse direction's part of dx added to the forward's).
template <typename Scalar>
void add_into(Scalar* to, const Scalar* from, Index count) {
  for (Index i = 0; i < count; ++i) to[i] += from[i];
}

// MemoryError when `elements` values of `bytes_each` bytes exceed this machine's physical memory.
// `elements` is a double so that products of huge sizes cannot overflow before the check.
void require_memory(double elements, std::size_t bytes_each, const std::string& what);

// ---------------------------------------------------------------------------------------------
// Inference with int8 weights (lstm_ext.quantize_dynamic): a weight matrix W (N, K) quantized by
// rows, N = blocks · rows, comes as one tuple (panels, scale, sum) (lstm_ext.quantized.pack_int8):
// panels an int8 array (blocks, ⌈rows/16⌉, ⌈K/4⌉, 16, 4) in the kernels' layout (types.hpp), scale
// float32 (N,), sum int32 (N,) the rows' sums of q (TypeError for any other kind or dtype: no
// silent conversion).
struct Int8Arg {
  py::array_t<std::int8_t, py::array::c_style> panels;  // (blocks, ⌈rows/16⌉, ⌈K/4⌉, 16, 4)
  CArray<float> scale;                                    // (N)
  py::array_t<std::int32_t, py::array::c_style> sum;    // (N)
  Index rows = 0, K = 0;
  Int8Matrix matrix() const { return {panels.data(), scale.data(), sum.data(), rows, K}; }
};
// The number of rows N of the int8 matrix `obj` (the length of its scales), checked for its kind.
Index int8_matrix_rows(py::handle obj, const std::string& name);
Int8Arg read_int8_matrix(py::handle obj, const std::string& name, Index blocks, Index K);
// bfloat16 weights (lstm_ext.quantize_dynamic(..., "bfloat16")): a uint16 array (N, K) of the upper
// 16 bits of float32 values (TypeError for any other dtype).
py::array_t<std::uint16_t, py::array::c_style> read_bf16_matrix(py::handle obj, const std::string& name, Index N,
                                                                Index K, const std::string& legend);
// A cell's W_ih (G, I) and W_hh (G, H_out), G = gates · H: H from W_hh's rows, I from x (T, B, I),
// H_out = H or the P given (a projection); `G` names G in messages: "4H", "3H", "H".
struct Int8Weights {
  Int8Arg w_ih, w_hh;
  Index I, H, H_out;
};
Int8Weights read_int8_weights(py::handle x, py::handle w_ih, py::handle w_hh, Index gates, const std::string& G,
                              Index P = 0);
// Float32 values an int8 call of a cell with state h (GRU, RNN) allocates, at most, for T steps of B
// rows, I inputs, G gate rows, H units: y, h_n, gx, x quantized (a quarter of a float each), the
// states and a step's products, and the quantized rows of up to 4 members (a quarter each).
inline double int8_call_elements(Index T, Index B, Index I, Index G, Index H) {
  return double(T) * B * (H + G + 1 + I / 4.0) + double(B) * (4 * H + G + 1) + double(B) * H;
}

// bfloat16 weights packed by pack_bf16 in this process: a uint16 array (blocks, ceil(rows / lanes),
// K, lanes), lanes those of this process's kernel level (an array packed for another level is refused
// by its shape); `rows_legend` names rows in messages ("H", "P").
py::array_t<std::uint16_t, py::array::c_style> read_packed_bf16(py::handle obj, const std::string& name, Index blocks,
                                                                Index rows, Index K, const std::string& rows_legend);

}  // namespace lstm_ext::bindings
