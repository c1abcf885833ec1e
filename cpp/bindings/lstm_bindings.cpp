// lstm_ext bindings for the LSTM core: validate, allocate, map, release the GIL, call.
//
// The ops compute in the dtype of their weights (float32 when w_ih is a float32 array, float64
// otherwise); every other argument is converted to it. C-contiguous arrays of that dtype are
// used in place, without a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

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

// A zoneout argument: None (no zoneout), a number z in [0, 1] (the same weight everywhere: a
// layer in inference uses the expectation) or an array of `shape` (a training forward's masks).
template <typename Scalar>
struct ZoneoutArg {
  std::optional<CArray<Scalar>> rows;  // `shape`, or none
  Scalar value = 0;
};
template <typename Scalar>
ZoneoutArg<Scalar> read_zoneout(py::handle obj, const std::string& name, const std::vector<Index>& shape,
                                const std::string& legend) {
  if (obj.is_none()) return {};
  const py::array a = as_real_array(obj, name);
  if (a.ndim() == 0) {
    const double z = obj.cast<double>();
    if (!(z >= 0.0 && z <= 1.0)) {
      throw py::value_error(name + ": expected a zoneout weight in [0, 1] or an array of shape " + legend + ", got " +
                            std::to_string(z));
    }
    return {std::nullopt, static_cast<Scalar>(z)};
  }
  return {read_optional<Scalar>(obj, name, shape, legend), Scalar(0)};
}

// The variants' arguments of a call (LstmVariants), for every direction: peephole weights w_ch
// (3, H) (a pair when bidirectional), the recurrent dropout mask keep_h (B, H_out) and the
// zoneout weights zone_c (T, B, H), zone_h (T, B, H_out) (each with a leading axis of 2 when
// bidirectional).
// Layer normalization's gains and biases, in this order (each a pair when bidirectional).
constexpr std::array<const char*, 6> kLayerNormNames = {"ln_ih_weight", "ln_ih_bias", "ln_hh_weight",
                                                        "ln_hh_bias", "ln_c_weight", "ln_c_bias"};

template <typename Scalar>
struct LstmVariantArgs {
  std::vector<std::optional<CArray<Scalar>>> w_ch;  // per direction
  std::optional<CArray<Scalar>> keep_h;
  ZoneoutArg<Scalar> zone_c, zone_h;
  std::vector<std::array<std::optional<CArray<Scalar>>, 6>> ln;  // per direction: kLayerNormNames

  bool zoneout_c() const { return zone_c.rows.has_value() || zone_c.value != 0; }
  bool layer_norm() const { return ln[0][0].has_value(); }
  // The variants of direction k.
  LstmVariants<Scalar> direction(int k, const LstmDims& d) const {
    const Index B = d.B, H = d.H, H_out = d.H_out(), T = d.T;
    LstmVariants<Scalar> v;
    v.w_ch = data_or_null(w_ch[k]);
    v.keep_h = keep_h ? keep_h->data() + k * B * H_out : nullptr;
    v.zone_c = zone_c.rows ? zone_c.rows->data() + k * T * B * H : nullptr;
    v.zone_h = zone_h.rows ? zone_h.rows->data() + k * T * B * H_out : nullptr;
    v.zone_c_value = zone_c.value;
    v.zone_h_value = zone_h.value;
    v.ln_ih_weight = data_or_null(ln[k][0]);
    v.ln_ih_bias = data_or_null(ln[k][1]);
    v.ln_hh_weight = data_or_null(ln[k][2]);
    v.ln_hh_bias = data_or_null(ln[k][3]);
    v.ln_c_weight = data_or_null(ln[k][4]);
    v.ln_c_bias = data_or_null(ln[k][5]);
    return v;
  }
};
template <typename Scalar>
LstmVariantArgs<Scalar> read_lstm_variants(const Directions& dirs, const LstmDims& d, py::handle w_ch_obj,
                                           py::handle keep_h_obj, py::handle zone_c_obj, py::handle zone_h_obj,
                                           const std::array<py::handle, 6>& ln_objs) {
  const Index T = d.T, B = d.B, H = d.H, H_out = d.H_out();
  const std::string h_out = d.P > 0 ? "P" : "H";
  LstmVariantArgs<Scalar> v;
  for (int k = 0; k < dirs.count; ++k) {
    v.w_ch.push_back(read_optional<Scalar>(dirs.item(w_ch_obj, k, "w_ch"), "w_ch", {3, H}, "(3, H)"));
    if (k > 0 && v.w_ch[k].has_value() != v.w_ch[0].has_value()) {
      throw py::value_error("w_ch: expected peephole weights in both directions or in neither");
    }
  }
  v.keep_h = read_optional<Scalar>(keep_h_obj, "keep_h", dirs.shape({B, H_out}), dirs.legend("(B, " + h_out + ")"));
  v.zone_c = read_zoneout<Scalar>(zone_c_obj, "zone_c", dirs.shape({T, B, H}), dirs.legend("(T, B, H)"));
  v.zone_h = read_zoneout<Scalar>(zone_h_obj, "zone_h", dirs.shape({T, B, H_out}), dirs.legend("(T, B, " + h_out + ")"));
  // Layer normalization: all six arrays in every direction, or none.
  for (int k = 0; k < dirs.count; ++k) {
    std::array<std::optional<CArray<Scalar>>, 6> direction;
    for (std::size_t n = 0; n < kLayerNormNames.size(); ++n) {
      const bool cell = n >= 4;  // ln_c_*: (H,), the others (4H,)
      direction[n] = read_optional<Scalar>(dirs.item(ln_objs[n], k, kLayerNormNames[n]), kLayerNormNames[n],
                                           {cell ? H : d.G()}, cell ? "(H,)" : "(4H,)");
      if (direction[n].has_value() != direction[0].has_value()) {
        throw py::value_error(std::string(kLayerNormNames[n]) + ": expected all six layer normalization arrays " +
                              "(ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias, ln_c_weight, ln_c_bias) or none");
      }
    }
    v.ln.push_back(std::move(direction));
  }
  return v;
}

std::string sizes_str(const LstmDims& d) {
  return d.P > 0 ? "(T, B, H, P) = " + shape_str({d.T, d.B, d.H, d.P}) : "(T, B, H) = " + shape_str({d.T, d.B, d.H});
}

// The weights of each direction (dirs.count of them, each of the forward's shapes).
template <typename Scalar>
std::vector<LstmWeights<Scalar>> read_lstm_direction_weights(const Directions& dirs, py::handle w_ih, py::handle w_hh,
                                                             py::handle w_hr) {
  std::vector<LstmWeights<Scalar>> weights;
  for (int k = 0; k < dirs.count; ++k) {
    weights.push_back(read_lstm_weights<Scalar>(dirs.item(w_ih, k, "w_ih"), dirs.item(w_hh, k, "w_hh"),
                                                dirs.item(w_hr, k, "w_hr")));
    if (k == 0) continue;
    require_same_shape(weights[k].w.w_ih, weights[0].w.w_ih, "w_ih");
    require_same_shape(weights[k].w.w_hh, weights[0].w.w_hh, "w_hh");
    if (weights[k].w_hr.has_value() != weights[0].w_hr.has_value()) {
      throw py::value_error("w_hr: expected a projection in both directions or in neither");
    }
  }
  return weights;
}

// ---------------------------------------------------------------------------------------------
// The ops take the arguments of their functions in functional.py, in the same order, with the
// same keyword-only ones (bind_lstm), and compute in the dtype of w_ih (dispatch_dtype).

py::tuple lstm_forward(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                       py::handle b_hh_obj, py::handle h0_obj, py::handle c0_obj, py::handle w_hr_obj,
                       py::handle w_ch_obj, py::handle keep_h_obj, py::handle zone_c_obj, py::handle zone_h_obj,
                       py::handle ln_ih_weight, py::handle ln_ih_bias, py::handle ln_hh_weight, py::handle ln_hh_bias,
                       py::handle ln_c_weight, py::handle ln_c_bias, py::handle lengths_obj, bool reverse,
                       bool training, bool bidirectional) {
  return dispatch_dtype(w_ih_obj, bidirectional, [&](auto scalar) {
    using Scalar = decltype(scalar);
    const Directions dirs = read_directions(bidirectional, reverse);
    const int D = dirs.count;
    const auto lw = read_lstm_direction_weights<Scalar>(dirs, w_ih_obj, w_hh_obj, w_hr_obj);
    const auto x = read_sequence<Scalar>(x_obj, lw[0].w.I);
    LstmDims d = lstm_dims(x.shape(0), x.shape(1), lw[0]);
    const Index B = d.B, H = d.H, H_out = d.H_out();
    d.y_stride = D * H_out;  // the directions side by side in y
    const Kernels<Scalar>& kernel = kernels<Scalar>();
    const auto b_ih = read_direction_biases<Scalar>(dirs, b_ih_obj, "b_ih", d.G(), "(4H,)");
    const auto b_hh = read_direction_biases<Scalar>(dirs, b_hh_obj, "b_hh", d.G(), "(4H,)");
    const auto h0 =
        read_optional<Scalar>(h0_obj, "h0", dirs.shape({B, H_out}), dirs.legend(d.P > 0 ? "(B, P)" : "(B, H)"));
    const auto c0 = read_optional<Scalar>(c0_obj, "c0", dirs.shape({B, H}), dirs.legend("(B, H)"));
    const auto lengths = read_lengths(lengths_obj, d.T, B);
    const auto variants = read_lstm_variants<Scalar>(
        dirs, d, w_ch_obj, keep_h_obj, zone_c_obj, zone_h_obj,
        {ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias, ln_c_weight, ln_c_bias});
    d.zoneout_c = variants.zoneout_c();
    d.layer_norm = variants.layer_norm();

    // Outputs y, h_n, c_n, the workspaces and the core's scratch of every direction.
    const Index ws_size = lstm_workspace_size(d, kernel.lanes);
    require_memory(D * lstm_forward_call_size<double>(d, training, get_num_threads(), kernel.lanes), sizeof(Scalar),
                   "lstm_forward");

    auto y = new_array<Scalar>({d.T, B, D * H_out});
    auto h_n = new_array<Scalar>(dirs.shape({B, H_out}));
    auto c_n = new_array<Scalar>(dirs.shape({B, H}));
    std::optional<CArray<Scalar>> ws;
    if (training) ws.emplace(new_array<Scalar>(dirs.shape({ws_size})));

    Scalar* ws_data = ws ? ws->mutable_data() : nullptr;
    const Scalar* h0_data = data_or_null(h0);
    const Scalar* c0_data = data_or_null(c0);
    Scalar *y_data = y.mutable_data(), *h_n_data = h_n.mutable_data(), *c_n_data = c_n.mutable_data();
    without_gil([&] {
      // direction k: its columns of y, its rows of the states
      run_directions(D, d.recurrent_weight_bytes<Scalar>(), [&](int k) {
        kernel.lstm.forward(y_data + k * H_out, h_n_data + k * B * H_out, c_n_data + k * B * H,
                            ws_data ? ws_data + k * ws_size : nullptr, x.data(),
                            h0_data ? h0_data + k * B * H_out : nullptr, c0_data ? c0_data + k * B * H : nullptr,
                            lw[k].w.w_ih.data(), lw[k].w.w_hh.data(), data_or_null(b_ih[k]), data_or_null(b_hh[k]),
                            data_or_null(lw[k].w_hr), variants.direction(k, d), d,
                            sequence_options(reverse || k == 1, lengths));
      });
    });
    return py::make_tuple(y, h_n, c_n, or_none(ws));
  });
}

// ---------------------------------------------------------------------------------------------
py::tuple lstm_backward(py::handle dy_obj, py::handle dh_n_obj, py::handle dc_n_obj, py::handle x_obj,
                        py::handle w_ih_obj, py::handle w_hh_obj, py::handle ws_obj, py::handle w_hr_obj,
                        py::handle w_ch_obj, py::handle keep_h_obj, py::handle zone_c_obj, py::handle zone_h_obj,
                        py::handle ln_ih_weight, py::handle ln_ih_bias, py::handle ln_hh_weight,
                        py::handle ln_hh_bias, py::handle ln_c_weight, py::handle ln_c_bias, py::handle lengths_obj,
                        bool reverse, bool bias, bool bidirectional) {
  return dispatch_dtype(w_ih_obj, bidirectional, [&](auto scalar) {
    using Scalar = decltype(scalar);
    const Directions dirs = read_directions(bidirectional, reverse);
    const int D = dirs.count;
    const auto lw = read_lstm_direction_weights<Scalar>(dirs, w_ih_obj, w_hh_obj, w_hr_obj);
    const auto [T, B_x] = read_sequence_sizes(x_obj, lw[0].w.I);
    LstmDims d = lstm_dims(T, B_x, lw[0]);
    const Index B = d.B, H = d.H, H_out = d.H_out(), G = d.G(), I = d.I, P = d.P;
    d.y_stride = D * H_out;
    const auto variants = read_lstm_variants<Scalar>(
        dirs, d, w_ch_obj, keep_h_obj, zone_c_obj, zone_h_obj,
        {ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias, ln_c_weight, ln_c_bias});
    d.zoneout_c = variants.zoneout_c();
    d.layer_norm = variants.layer_norm();
    const Kernels<Scalar>& kernel = kernels<Scalar>();
    const Index ws_size = lstm_workspace_size(d, kernel.lanes);
    const auto ws = read_workspace<Scalar>(ws_obj, dirs.shape({ws_size}), sizes_str(d));
    const auto dy = read_optional<Scalar>(dy_obj, "dy", {d.T, B, D * H_out},
                                          D > 1 ? "(T, B, 2 * H_out)" : (P > 0 ? "(T, B, P)" : "(T, B, H)"));
    const auto dh_n =
        read_optional<Scalar>(dh_n_obj, "dh_n", dirs.shape({B, H_out}), dirs.legend(P > 0 ? "(B, P)" : "(B, H)"));
    const auto dc_n = read_optional<Scalar>(dc_n_obj, "dc_n", dirs.shape({B, H}), dirs.legend("(B, H)"));
    const auto lengths = read_lengths(lengths_obj, d.T, B);

    // The gradients and the core's scratch of every direction.
    require_memory(D * lstm_backward_call_size<double>(d, get_num_threads(), kernel.lanes), sizeof(Scalar),
                   "lstm_backward");

    auto dx = new_array<Scalar>({d.T, B, I});
    std::optional<CArray<Scalar>> dx_reverse;  // (T, B, I) the reverse direction's part of dx
    if (D > 1) dx_reverse.emplace(new_array<Scalar>({d.T, B, I}));
    auto dh0 = new_array<Scalar>(dirs.shape({B, H_out}));
    auto dc0 = new_array<Scalar>(dirs.shape({B, H}));
    auto dw_ih = new_array<Scalar>(dirs.shape({G, I}));
    auto dw_hh = new_array<Scalar>(dirs.shape({G, H_out}));
    std::optional<CArray<Scalar>> dw_hr, dw_ch, db_ih, db_hh;  // (P, H); (3, H); (4H) each, per direction
    if (P > 0) dw_hr.emplace(new_array<Scalar>(dirs.shape({P, H})));
    if (variants.w_ch[0]) dw_ch.emplace(new_array<Scalar>(dirs.shape({3, H})));
    std::array<std::optional<CArray<Scalar>>, 6> dln;  // kLayerNormNames' gradients, per direction
    if (d.layer_norm) {
      for (std::size_t n = 0; n < dln.size(); ++n) dln[n].emplace(new_array<Scalar>(dirs.shape({n >= 4 ? H : G})));
    }
    if (bias) {
      db_ih.emplace(new_array<Scalar>(dirs.shape({G})));
      db_hh.emplace(new_array<Scalar>(dirs.shape({G})));
    }

    Scalar* dw_hr_data = dw_hr ? dw_hr->mutable_data() : nullptr;
    Scalar* dw_ch_data = dw_ch ? dw_ch->mutable_data() : nullptr;
    Scalar* db_ih_data = bias ? db_ih->mutable_data() : nullptr;
    Scalar* db_hh_data = bias ? db_hh->mutable_data() : nullptr;
    Scalar* dx_parts[2] = {dx.mutable_data(), dx_reverse ? dx_reverse->mutable_data() : nullptr};
    const Scalar *dy_data = data_or_null(dy), *dh_n_data = data_or_null(dh_n), *dc_n_data = data_or_null(dc_n);
    Scalar *dh0_data = dh0.mutable_data(), *dc0_data = dc0.mutable_data();
    Scalar *dw_ih_data = dw_ih.mutable_data(), *dw_hh_data = dw_hh.mutable_data();
    // The layer normalization's gradients of direction k.
    auto dln_of = [&](int k) {
      if (!d.layer_norm) return LstmLayerNormGrads<Scalar>{};
      auto at = [&](std::size_t n) { return dln[n]->mutable_data() + k * (n >= 4 ? H : G); };
      return LstmLayerNormGrads<Scalar>{at(0), at(1), at(2), at(3), at(4), at(5)};
    };
    without_gil([&] {
      // direction k: its columns of dy, its rows of the states, its gradients
      run_directions(D, d.recurrent_weight_bytes<Scalar>(), [&](int k) {
        kernel.lstm.backward(dx_parts[k], dh0_data + k * B * H_out, dc0_data + k * B * H, dw_ih_data + k * G * I,
                             dw_hh_data + k * G * H_out, dw_hr_data ? dw_hr_data + k * P * H : nullptr,
                             dw_ch_data ? dw_ch_data + k * 3 * H : nullptr,
                             db_ih_data ? db_ih_data + k * G : nullptr, dln_of(k), dy_data ? dy_data + k * H_out : nullptr,
                             dh_n_data ? dh_n_data + k * B * H_out : nullptr,
                             dc_n_data ? dc_n_data + k * B * H : nullptr, ws.data() + k * ws_size,
                             lw[k].w.w_ih.data(), lw[k].w.w_hh.data(), data_or_null(lw[k].w_hr),
                             variants.direction(k, d), d, sequence_options(reverse || k == 1, lengths));
      });
      if (D > 1) add_into(dx_parts[0], dx_parts[1], d.T * B * I);  // dx = the forward's part + the reverse's
      // b_ih and b_hh enter the gates the same way: their gradients are equal, returned as two arrays.
      if (bias) std::copy_n(db_ih_data, D * G, db_hh_data);
    });
    return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, or_none(db_ih), or_none(db_hh), or_none(dw_hr),
                          or_none(dw_ch), or_none(dln[0]), or_none(dln[1]), or_none(dln[2]), or_none(dln[3]),
                          or_none(dln[4]), or_none(dln[5]));
  });
}

// ---------------------------------------------------------------------------------------------
py::tuple lstm_cell(py::handle x_obj, py::handle h_obj, py::handle c_obj, py::handle w_ih_obj, py::handle w_hh_obj,
                    py::handle b_ih_obj, py::handle b_hh_obj) {
  return dispatch_dtype(w_ih_obj, /*bidirectional=*/false, [&](auto scalar) {
    using Scalar = decltype(scalar);
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
  });
}

// ---------------------------------------------------------------------------------------------
// A stream (Python: lstm_ext.Stream): the weights of an LSTM stack, copied once, and its state,
// kept between steps, so that a step checks only its input and allocates only its output.
//   per layer k: w_ih (4H, I_k), w_hh (4H, H), b_ih, b_hh (4H) or none; h (two buffers (B, H), by
//   parity of the step: a step reads h_{t-1} whole while it writes h_t), c (B, H), updated in place
template <typename Scalar>
class LstmStream {
 public:
  LstmStream(const py::list& layers, Index batch) : B(batch) {
    if (layers.size() < 1) throw py::value_error("layers: expected at least one (w_ih, w_hh, b_ih, b_hh)");
    if (B < 1) throw py::value_error("batch_size: expected >= 1, got " + std::to_string(B));
    for (std::size_t k = 0; k < layers.size(); ++k) {
      const py::tuple t = layers[k].cast<py::tuple>();
      if (t.size() != 4) throw py::value_error("layers: expected (w_ih, w_hh, b_ih, b_hh) per layer");
      auto w = read_weights<Scalar>(t[0], t[1], 4, "4H", false);
      if (k == 0) {
        I = w.I, H = w.H;
      } else if (w.H != H || w.I != H) {
        throw py::value_error("layers: layer " + std::to_string(k) + " expected w_ih (4H, H) and w_hh (4H, H) with H = " +
                              std::to_string(H) + ", got " + shape_str(w.w_ih) + " and " + shape_str(w.w_hh));
      }
      Layer layer;
      layer.w_ih.assign(w.w_ih.data(), w.w_ih.data() + w.w_ih.size());
      layer.w_hh.assign(w.w_hh.data(), w.w_hh.data() + w.w_hh.size());
      const auto b_ih = read_optional<Scalar>(t[2], "b_ih", {4 * H}, "(4H,)");
      const auto b_hh = read_optional<Scalar>(t[3], "b_hh", {4 * H}, "(4H,)");
      if (b_ih) layer.b_ih.assign(b_ih->data(), b_ih->data() + 4 * H);
      if (b_hh) layer.b_hh.assign(b_hh->data(), b_hh->data() + 4 * H);
      layer.h[0].assign(B * H, Scalar(0));
      layer.h[1].assign(B * H, Scalar(0));
      layer.c.assign(B * H, Scalar(0));
      layers_.push_back(std::move(layer));
    }
    scratch_gx.assign(B * 4 * H, Scalar(0));
    scratch_rec.assign(B * 4 * H, Scalar(0));
  }

  // x (B, I) -> h_t of the last layer (B, H), a new array.
  py::array step(py::handle x_obj) {
    const Busy busy(*this, "step");
    auto x = to_array<Scalar>(x_obj, "x");
    if (x.ndim() != 2 || x.shape(0) != B || x.shape(1) != I) {
      throw py::value_error("x: expected shape (B, I) = (" + std::to_string(B) + ", " + std::to_string(I) + "), got " +
                            shape_str(x));
    }
    auto out = new_array<Scalar>({B, H});
    const Kernels<Scalar>& kernel = kernels<Scalar>();
    without_gil([&] {
      const Scalar* input = x.data();
      Index input_size = I;
      for (Layer& layer : layers_) {
        const Scalar* h_prev = layer.h[parity].data();
        Scalar* h_new = layer.h[1 - parity].data();
        kernel.lstm.cell_into(h_new, layer.c.data(), scratch_gx.data(), scratch_rec.data(), input, h_prev,
                              layer.c.data(), layer.w_ih.data(), layer.w_hh.data(), data_or_null(layer.b_ih),
                              data_or_null(layer.b_hh), B, input_size, H);
        input = h_new, input_size = H;
      }
      std::copy_n(input, B * H, out.mutable_data());
    });
    parity = 1 - parity;
    return out;
  }

  // (h, c), each (L, B, H), copies.
  py::tuple state() {
    const Busy busy(*this, "state");
    const Index L = static_cast<Index>(layers_.size());
    auto h = new_array<Scalar>({L, B, H});
    auto c = new_array<Scalar>({L, B, H});
    for (Index k = 0; k < L; ++k) {
      std::copy_n(layers_[k].h[parity].data(), B * H, h.mutable_data() + k * B * H);
      std::copy_n(layers_[k].c.data(), B * H, c.mutable_data() + k * B * H);
    }
    return py::make_tuple(h, c);
  }

  // Sets (h, c) from arrays of shape (L, B, H), or zeros for None.
  void set_state(py::handle h_obj, py::handle c_obj) {
    const Busy busy(*this, "set_state");
    const Index L = static_cast<Index>(layers_.size());
    const auto h = read_optional<Scalar>(h_obj, "h", {L, B, H}, "(num_layers, B, H)");
    const auto c = read_optional<Scalar>(c_obj, "c", {L, B, H}, "(num_layers, B, H)");
    for (Index k = 0; k < L; ++k) {
      Layer& layer = layers_[k];
      if (h) std::copy_n(h->data() + k * B * H, B * H, layer.h[parity].data());
      else std::fill(layer.h[parity].begin(), layer.h[parity].end(), Scalar(0));
      if (c) std::copy_n(c->data() + k * B * H, B * H, layer.c.data());
      else std::fill(layer.c.begin(), layer.c.end(), Scalar(0));
    }
  }

  const Index B;
  Index I = 0, H = 0;

 private:
  struct Layer {
    std::vector<Scalar> w_ih, w_hh, b_ih, b_hh;  // biases empty when absent
    std::vector<Scalar> h[2], c;
  };
  // Marks the stream in use for one call: a step releases the GIL while it computes, so a second
  // Python thread could otherwise step the same stream, or read or set its state, meanwhile.
  class Busy {
   public:
    Busy(LstmStream& stream, const char* what) : stream_(stream) {
      if (stream_.busy_.exchange(true)) {
        throw std::runtime_error(std::string("Stream.") + what + ": another thread is stepping this stream; a " +
                                 "stream is one sequence's state (use one stream per thread)");
      }
    }
    ~Busy() { stream_.busy_.store(false); }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;

   private:
    LstmStream& stream_;
  };
  static const Scalar* data_or_null(const std::vector<Scalar>& v) { return v.empty() ? nullptr : v.data(); }
  std::atomic<bool> busy_{false};
  std::vector<Layer> layers_;
  std::vector<Scalar> scratch_gx, scratch_rec;  // (B, 4H) each
  int parity = 0;                               // which of h[0], h[1] holds h_{t-1}
};

template <typename Scalar>
void bind_stream(py::module_& m, const char* name) {
  py::class_<LstmStream<Scalar>>(m, name)
      .def(py::init<const py::list&, Index>(), py::arg("layers"), py::arg("batch_size"))
      .def("step", &LstmStream<Scalar>::step, py::arg("x"), "x (B, I) -> h_t of the last layer (B, H)")
      .def("state", &LstmStream<Scalar>::state, "(h, c), each (num_layers, B, H)")
      .def("set_state", &LstmStream<Scalar>::set_state, py::arg("h"), py::arg("c"))
      .def_readonly("batch_size", &LstmStream<Scalar>::B)
      .def_readonly("input_size", &LstmStream<Scalar>::I)
      .def_readonly("hidden_size", &LstmStream<Scalar>::H);
}

// ---------------------------------------------------------------------------------------------
// What the LSTM's inference entry points (int8, bfloat16) read besides their weights, written once:
// x (T, B, I), the biases (4H), the initial states, the peepholes (3, H) and zoneout's expectation,
// the lengths, all float32 and checked; the dims and variants they give.
struct LstmInferenceArgs {
  CArray<float> x;                                   // (T, B, I)
  LstmDims d;
  std::optional<CArray<float>> b_ih, b_hh, h0, c0, w_ch;  // (4H), (4H), (B, H_out), (B, H), (3, H)
  std::optional<CArray<std::int64_t>> lengths;       // (B)
  LstmVariants<float> v;                             // w_ch and zoneout's weights
};

LstmInferenceArgs read_lstm_inference(py::handle x_obj, Index I, Index H, Index P, py::handle b_ih_obj,
                                      py::handle b_hh_obj, py::handle h0_obj, py::handle c0_obj, py::handle w_ch_obj,
                                      double zone_c, double zone_h, py::handle lengths_obj) {
  LstmInferenceArgs a{read_sequence<float>(x_obj, I), {}, {}, {}, {}, {}, {}, {}, {}};
  a.d = LstmDims{a.x.shape(0), a.x.shape(1), I, H, P};
  const Index B = a.d.B, G = a.d.G();
  a.b_ih = read_optional<float>(b_ih_obj, "b_ih", {G}, "(4H,)");
  a.b_hh = read_optional<float>(b_hh_obj, "b_hh", {G}, "(4H,)");
  a.h0 = read_optional<float>(h0_obj, "h0", {B, a.d.H_out()}, P > 0 ? "(B, P)" : "(B, H)");
  a.c0 = read_optional<float>(c0_obj, "c0", {B, H}, "(B, H)");
  a.w_ch = read_optional<float>(w_ch_obj, "w_ch", {3, H}, "(3, H)");
  for (const auto& [z, name] : {std::pair{zone_c, "zone_c"}, std::pair{zone_h, "zone_h"}}) {
    if (!(z >= 0.0 && z <= 1.0)) {
      throw py::value_error(std::string(name) + ": expected a zoneout weight in [0, 1], got " + std::to_string(z));
    }
  }
  a.lengths = read_lengths(lengths_obj, a.d.T, B);
  a.v.w_ch = data_or_null(a.w_ch);
  a.v.zone_c_value = static_cast<float>(zone_c);
  a.v.zone_h_value = static_cast<float>(zone_h);
  a.d.zoneout_c = a.v.zoneout_c();
  return a;
}

// y (T, B, H_out), h_n (B, H_out), c_n (B, H) allocated, and run(y, h_n, c_n) without the GIL.
template <typename Run>
py::tuple lstm_inference_outputs(const LstmDims& d, Run&& run) {
  auto y = new_array<float>({d.T, d.B, d.H_out()});
  auto h_n = new_array<float>({d.B, d.H_out()});
  auto c_n = new_array<float>({d.B, d.H});
  float *y_data = y.mutable_data(), *h_n_data = h_n.mutable_data(), *c_n_data = c_n.mutable_data();
  without_gil([&] { run(y_data, h_n_data, c_n_data); });
  return py::make_tuple(y, h_n, c_n);
}

// ---------------------------------------------------------------------------------------------
// Inference with int8 weights (lstm_ext.quantize_dynamic), one direction. A weight matrix comes as
// a tuple (panels, scale, sum) (read_int8_matrix); everything else is float32.

py::tuple lstm_forward_int8(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                            py::handle b_hh_obj, py::handle h0_obj, py::handle c0_obj, py::handle w_hr_obj,
                            py::handle w_ch_obj, double zone_c, double zone_h, py::handle lengths_obj, bool reverse) {
  const bool projected = !w_hr_obj.is_none();
  const Index P = projected ? int8_matrix_rows(w_hr_obj, "w_hr") : 0;
  const Int8Weights w = read_int8_weights(x_obj, w_ih_obj, w_hh_obj, 4, "4H", P);
  const Index I = w.I, H = w.H, H_out = w.H_out, G = 4 * H;
  if (projected && (P < 1 || P >= H)) {  // torch's rule too: proj_size < hidden_size
    throw py::value_error("w_hr: expected (P, H) with a projection to fewer units than H (0 < P < H = " +
                          std::to_string(H) + "), got P = " + std::to_string(P));
  }
  std::optional<Int8Arg> w_hr;
  if (projected) w_hr.emplace(read_int8_matrix(w_hr_obj, "w_hr", 1, H));
  const LstmInferenceArgs a = read_lstm_inference(x_obj, I, H, P, b_ih_obj, b_hh_obj, h0_obj, c0_obj, w_ch_obj, zone_c,
                                                  zone_h, lengths_obj);
  // y, h_n, gx, x quantized, a step's products (int8_call_elements), and c, m with the projection
  require_memory(int8_call_elements(a.d.T, a.d.B, I, G, H_out) + double(a.d.B) * 3 * H, sizeof(float),
                 "lstm_forward_int8");
  const Int8Matrix hr = w_hr ? w_hr->matrix() : Int8Matrix{};
  return lstm_inference_outputs(a.d, [&](float* y, float* h_n, float* c_n) {
    kernels<float>().lstm.forward_int8(y, h_n, c_n, a.x.data(), data_or_null(a.h0), data_or_null(a.c0),
                                       w.w_ih.matrix(), w.w_hh.matrix(), data_or_null(a.b_ih), data_or_null(a.b_hh),
                                       hr, a.v, a.d, sequence_options(reverse, a.lengths));
  });
}

// bfloat16 weights packed once for the recurrent products of this process's kernel level
// (DenseKernels::pack_bf16): w (blocks · rows, K) bf16 bits -> (blocks, panels, K, lanes), panels =
// ceil(rows / lanes). The lanes are the level's: an array packed for another level is refused by
// its shape.
py::array pack_bf16(py::handle w_obj, Index blocks) {
  const py::array w_any = as_real_array(w_obj, "w");
  require_ndim(w_any, "w", 2, "(blocks * rows, K)");
  if (blocks < 1 || w_any.shape(0) % blocks != 0) {
    throw py::value_error("w: expected a number of rows that is a multiple of blocks = " + std::to_string(blocks) +
                          ", got shape " + shape_str(w_any));
  }
  const Index rows = w_any.shape(0) / blocks, K = w_any.shape(1);
  const auto w = read_bf16_matrix(w_obj, "w", blocks * rows, K, "(blocks * rows, K)");
  const Kernels<float>& kernel = kernels<float>();
  const Index lanes = kernel.lanes, panels = (rows + lanes - 1) / lanes;
  require_memory(double(blocks) * panels * K * lanes / 2, sizeof(float), "pack_bf16");
  auto packed = new_array<std::uint16_t>({blocks, panels, K, lanes});
  std::uint16_t* packed_data = packed.mutable_data();
  without_gil([&] { kernel.dense.pack_bf16(packed_data, w.data(), blocks, rows, K); });
  return std::move(packed);
}

// Inference with bfloat16 recurrent weights, one direction: W_ih float32 (its bf16 values; the
// input projection is one large product, bound by the multiply-adds), W_hh and W_hr bf16 packed by
// pack_bf16 (W_hh in 4 gate blocks), read by every step's products; everything else float32. The
// float forward's walk.
py::tuple lstm_forward_bf16(py::handle x_obj, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                            py::handle b_hh_obj, py::handle h0_obj, py::handle c0_obj, Index proj_size,
                            py::handle w_hr_obj, py::handle w_ch_obj, double zone_c, double zone_h,
                            py::handle lengths_obj, bool reverse) {
  const auto w_ih = to_array<float>(w_ih_obj, "w_ih");
  require_ndim(w_ih, "w_ih", 2, "(4H, I)");
  const Index G = w_ih.shape(0), I = w_ih.shape(1), H = G / 4;
  if (G < 4 || G % 4 != 0) throw py::value_error("w_ih: expected shape (4H, I), got " + shape_str(w_ih));
  const bool projected = proj_size > 0;
  if (proj_size < 0 || proj_size >= H) {
    throw py::value_error("proj_size: expected 0 (none) or 0 < P < H = " + std::to_string(H) + ", got " +
                          std::to_string(proj_size));
  }
  if (projected == w_hr_obj.is_none()) throw py::value_error("w_hr: expected packed W_hr exactly when proj_size > 0");
  const Index H_out = projected ? proj_size : H, P = proj_size;
  const Kernels<float>& kernel = kernels<float>();
  const auto w_hh = read_packed_bf16(w_hh_obj, "w_hh", 4, H, H_out, "H");
  std::optional<py::array_t<std::uint16_t, py::array::c_style>> w_hr;
  if (projected) w_hr.emplace(read_packed_bf16(w_hr_obj, "w_hr", 1, P, H, "P"));
  LstmInferenceArgs a = read_lstm_inference(x_obj, I, H, P, b_ih_obj, b_hh_obj, h0_obj, c0_obj, w_ch_obj, zone_c,
                                            zone_h, lengths_obj);
  a.v.packed_hh_bf16 = w_hh.data();
  a.v.packed_hr_bf16 = w_hr ? w_hr->data() : nullptr;
  require_memory(lstm_forward_call_size<double>(a.d, false, get_num_threads(), kernel.lanes), sizeof(float),
                 "lstm_forward_bf16");
  return lstm_inference_outputs(a.d, [&](float* y, float* h_n, float* c_n) {
    kernel.lstm.forward(y, h_n, c_n, nullptr, a.x.data(), data_or_null(a.h0), data_or_null(a.c0), w_ih.data(), nullptr,
                        data_or_null(a.b_ih), data_or_null(a.b_hh), nullptr, a.v, a.d,
                        sequence_options(reverse, a.lengths));
  });
}

}  // namespace

void bind_lstm(py::module_& m) {
  m.def("pack_bf16", &pack_bf16, py::arg("w"), py::arg("blocks") = 1,
        "bfloat16 weights (uint16 bits, (blocks * rows, K)) packed for this process's recurrent products: "
        "(blocks, panels, K, lanes).");
  m.def("lstm_forward_bf16", &lstm_forward_bf16, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(), py::arg("h0") = py::none(),
        py::arg("c0") = py::none(), py::kw_only(), py::arg("proj_size") = 0, py::arg("w_hr") = py::none(),
        py::arg("w_ch") = py::none(), py::arg("zone_c") = 0.0, py::arg("zone_h") = 0.0, py::arg("lengths") = py::none(),
        py::arg("reverse") = false,
        "LSTM inference with bfloat16 recurrent weights (W_hh in 4 blocks and W_hr packed by pack_bf16; w_ih "
        "float32), one direction: x (T, B, I) float32 -> (y (T, B, H_out), h_n (B, H_out), c_n (B, H)).");
  bind_stream<float>(m, "LstmStream32");
  bind_stream<double>(m, "LstmStream64");
  m.def("lstm_forward", &lstm_forward, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(),
        py::arg("b_hh") = py::none(), py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::kw_only(),
        py::arg("w_hr") = py::none(), py::arg("w_ch") = py::none(), py::arg("keep_h") = py::none(),
        py::arg("zone_c") = py::none(), py::arg("zone_h") = py::none(), py::arg("ln_ih_weight") = py::none(),
        py::arg("ln_ih_bias") = py::none(), py::arg("ln_hh_weight") = py::none(), py::arg("ln_hh_bias") = py::none(),
        py::arg("ln_c_weight") = py::none(), py::arg("ln_c_bias") = py::none(), py::arg("lengths") = py::none(),
        py::arg("reverse") = false, py::arg("training") = false, py::arg("bidirectional") = false,
        "LSTM forward over a sequence: x (T, B, I) -> (y (T, B, H_out), h_n (B, H_out), c_n (B, H), workspace or "
        "None); bidirectional: weights in pairs, y (T, B, 2 * H_out), states (2, B, ·).");
  m.def("lstm_backward", &lstm_backward, py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("x"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("workspace"), py::kw_only(), py::arg("w_hr") = py::none(),
        py::arg("w_ch") = py::none(), py::arg("keep_h") = py::none(), py::arg("zone_c") = py::none(),
        py::arg("zone_h") = py::none(), py::arg("ln_ih_weight") = py::none(), py::arg("ln_ih_bias") = py::none(),
        py::arg("ln_hh_weight") = py::none(), py::arg("ln_hh_bias") = py::none(), py::arg("ln_c_weight") = py::none(),
        py::arg("ln_c_bias") = py::none(), py::arg("lengths") = py::none(), py::arg("reverse") = false,
        py::arg("bias") = true,
        py::arg("bidirectional") = false,
        "LSTM backward through time -> (dx, dh0, dc0, dw_ih, dw_hh, db_ih or None, db_hh or None, dw_hr or None, "
        "dw_ch or None, dln_ih_weight, dln_ih_bias, dln_hh_weight, dln_hh_bias, dln_c_weight, dln_c_bias (each None "
        "without layer normalization)); "
        "bidirectional: a leading axis of 2 on every gradient but dx.");
  m.def("lstm_forward_int8", &lstm_forward_int8, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(), py::arg("h0") = py::none(),
        py::arg("c0") = py::none(), py::kw_only(), py::arg("w_hr") = py::none(), py::arg("w_ch") = py::none(),
        py::arg("zone_c") = 0.0, py::arg("zone_h") = 0.0, py::arg("lengths") = py::none(), py::arg("reverse") = false,
        "LSTM inference with int8 weights (quantized by rows and packed: (panels, scale, sum) tuples from "
        "lstm_ext.quantized.pack_int8) and int8 activations quantized by rows, one direction: x (T, B, I) float32 "
        "-> (y (T, B, H_out), h_n (B, H_out), c_n (B, H)).");
  m.def("lstm_cell", &lstm_cell, py::arg("x"), py::arg("h"), py::arg("c"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(),
        "One LSTM step: x (B, I), h, c (B, H) -> (h', c').");
}

}  // namespace lstm_ext::bindings
