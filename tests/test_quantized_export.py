"""ONNX export of int8 layers (lstm_ext.export_onnx of quantize_dynamic(layer), issue 28).

An int8 GRU or RNN has no ONNX Runtime operator of its own: it is exported as the float export's
GRU / RNN node whose W and R are DequantizeLinear (per row) of int8 initializers, so the file
holds the int8 weights, and ONNX Runtime runs the cell in float32 on the dequantized weights
Ŵ = q · scale with float activations. Hence two bounds, each a named constant below:

- against the float layer loaded with Ŵ (the same weights, float activations): float32
  rounding only, FLOAT32_AGREEMENT of the output's scale, the float export's tolerance
  (tests/test_export.py: ONNX Runtime's vectorised tanh and σ and its order of summation);
- against our int8 layer, which also quantizes every activation row (x_t, h_{t−1}, a layer's
  input) at every call: from the same state, one step differs by no more than the activation
  rounding's bound (quantized_reference.product_error_bound against Ŵ, for both products),
  carried through the cell (σ' ≤ 1/4; tanh and relu 1-Lipschitz), plus FLOAT32_AGREEMENT. Over a
  sequence the steps' errors compound through the recurrence; the end-to-end difference is
  measured and held to the int8 class (END_TO_END), not derived.

The int8 LSTM (ONNX Runtime's DynamicQuantizeLSTM, which expresses every int8 LSTM the float
export accepts: peepholes, lengths, states, bidirectional, stacked, no bias) is tested in
tests/test_quantized.py; here only its node and what stays refused.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_parity, needs

import lstm_ext
from lstm_ext import quantized_reference as qref
from lstm_ext.cells import reorder_gates
from lstm_ext.export import onnx_model
from lstm_ext.quantized import quantize_dynamic

onnx = needs("onnx")
ort = needs("onnxruntime")

# ONNX Runtime against the float layer with the dequantized weights: relative to the output's scale
# (lstm_ext.testing.relative_error), float32 rounding (tests/test_export.py's bound).
FLOAT32_AGREEMENT = 1e-5
# ONNX Runtime against our int8 layer over a whole sequence: int8's kind of difference (measured at
# most 1.1e-2 here). Not what catches a wrong export: r and z swapped, or one matrix's row scales
# reversed, moves y by only 0.03-0.06 at these sizes; the check against Ŵ catches them to 1e-5.
END_TO_END = 0.05
# The per-step bound is a worst case (every rounding aligned with the weights); the steps' worst
# error reaches this part of it or more (measured 0.21-0.35), so that the bound is not vacuous.
BOUND_REACHED = 0.05
# An int8 weight takes a byte; its row's scale and zero point 5 bytes a row: with K = 64 inputs
# the weights take (K + 5) / 4K = 0.27 of float32's. The file, biases and all, is held to this
# (measured 0.28 for the GRU, 0.29 for the RNN).
FILE_RATIO = 0.3

KINDS = {
    "GRU": (lstm_ext.GRU, {}),
    "RNN tanh": (lstm_ext.RNN, {}),
    "RNN relu": (lstm_ext.RNN, {"nonlinearity": "relu"}),
}
SHAPES = {
    "1 layer": {},
    "2 layers": {"num_layers": 2},
    "2 layers bidirectional": {"num_layers": 2, "bidirectional": True},
    "2 layers bidirectional batch_first no bias": {"num_layers": 2, "bidirectional": True, "batch_first": True,
                                                   "bias": False},
}
# The initial states: random ones fed to both, or none fed (zeros, the graph's default), or a
# graph without state inputs and outputs (states=False: x in, y out).
STATES = ["fed", "default", "no state outputs"]


def dequantized_copy(layer, quantized):
    """A float32 layer like `layer` whose weight matrices are the int8 layer's Ŵ = q · scale (per
    row, rounded once: quantized_reference.dequantize_rows, what DequantizeLinear computes) and
    whose biases are its float32 ones."""
    copy = type(layer)(**{**layer.config(), "dtype": "float32"}).eval()
    copy.load_state_dict({**quantized.floats, **{name: qref.dequantize_rows(weight.rows(), weight.scale)
                                                 for name, weight in quantized.quantized.items()}})
    return copy


def session_of(quantized, lengths=False, states=True):
    return ort.InferenceSession(onnx_model(quantized, lengths=lengths, states=states).SerializeToString(),
                                providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("states", STATES)
@pytest.mark.parametrize("lengths", [False, True], ids=["all steps", "lengths"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_onnx_runtime_runs_the_layer_with_dequantized_weights(kind, shape, lengths, states):
    cls, extra = KINDS[kind]
    layer = cls(6, 12, seed=3, **extra, **SHAPES[shape]).eval()
    quantized = quantize_dynamic(layer)
    reference = dequantized_copy(layer, quantized)
    rng = np.random.default_rng(4)
    T, B = 9, 4
    x = rng.standard_normal((B, T, 6) if layer.batch_first else (T, B, 6)).astype(np.float32)
    h0 = rng.standard_normal((layer.num_layers * layer.num_directions, B, 12)).astype(np.float32)
    lens = np.array([9, 3, 6, 1], np.int32) if lengths else None
    fed = states == "fed"
    feed = {"x": x, **({"h0": h0} if fed else {}), **({"lengths": lens} if lengths else {})}
    theirs = session_of(quantized, lengths, states != "no state outputs").run(None, feed)
    names = ["y", "h_n"][:len(theirs)]  # (states=False: y only)
    want = dict(zip(names, reference(x, h0 if fed else None, lengths=lens)))
    assert [a.shape for a in theirs] == [b.shape for b in want.values()]
    assert all(np.abs(value).max() > 0.01 for value in want.values())  # not a degenerate case
    assert_parity("onnx int8 vs dequantized", np.float32, dict(zip(names, theirs)), want, FLOAT32_AGREEMENT)
    # our int8 layer: the same weights, its activations quantized per row at every step
    ours = quantized(x, h0 if fed else None, lengths=lens)
    errors = {name: float(np.abs(mine - their).max()) for name, mine, their in zip(names, ours, theirs)}
    assert max(errors.values()) < END_TO_END, errors


# -- one step from the same state: the activation quantization's bound --------------------------------

def weights_of(quantized, suffix):
    """{base name: (q, scale, Ŵ float64)} of the int8 matrices and {base name: float64} of the
    biases (zeros without bias) of one layer and direction, rows in PyTorch's gate order."""
    G, H = quantized.cell.num_gates, quantized.hidden_size
    matrices = {base: (w.rows(), w.scale, qref.dequantize_rows(w.rows(), w.scale).astype(np.float64))
                for base in ("weight_ih", "weight_hh") for w in [quantized.quantized[base + suffix]]}
    biases = {base: quantized.floats.get(base + suffix, np.zeros(G * H, np.float32)).astype(np.float64)
              for base in ("bias_ih", "bias_hh")}
    return matrices, biases


def preactivation_bounds(matrices, biases, inputs, d_inputs, inputs_theirs, h):
    """The float side's gx = x̃ Ŵ_ihᵀ + b_ih and gh = h Ŵ_hhᵀ + b_hh (float64, x̃ ONNX Runtime's
    input), and bounds on |gx − gx_ours| and |gh − gh_ours| (B, G·H): our int8 products against the
    dequantized weights (product_error_bound), and, for a layer above the first, the inputs'
    difference d_inputs = |x̃ − x_ours| through |Ŵ_ih|."""
    (q_ih, s_ih, w_ih), (q_hh, s_hh, w_hh) = matrices["weight_ih"], matrices["weight_hh"]
    gx = inputs_theirs.astype(np.float64) @ w_ih.T + biases["bias_ih"]
    gh = h.astype(np.float64) @ w_hh.T + biases["bias_hh"]
    d_gx = qref.product_error_bound(inputs, None, q_ih, s_ih) + d_inputs @ np.abs(w_ih).T
    d_gh = qref.product_error_bound(h, None, q_hh, s_hh)
    return gx, gh, d_gx, d_gh


def gru_step_bound(gx, gh, d_gx, d_gh, h):
    """|h'_theirs − h'_ours| for r = σ(a_r), z = σ(a_z), n = tanh(gx_n + r ⊙ gh_n),
    h' = (1 − z) ⊙ n + z ⊙ h, from the pre-activations' bounds:
        δr ≤ (δgx_r + δgh_r) / 4, δz likewise (σ' ≤ 1/4)
        δn ≤ δgx_n + δr |gh_n| + min(1, r + δr) δgh_n (r gh − r' gh' = (r − r') gh + r' (gh − gh'))
        δh' ≤ δn + δz |h − n|  (h'_A − h'_B = (1 − z_B)(n_A − n_B) + (z_A − z_B)(h − n_A), 0 < z_B < 1)
    with r, z, n, gh the float side's (A)."""
    (gx_r, gx_z, gx_n), (gh_r, gh_z, gh_n) = np.split(gx, 3, axis=1), np.split(gh, 3, axis=1)
    (dx_r, dx_z, dx_n), (dh_r, dh_z, dh_n) = np.split(d_gx, 3, axis=1), np.split(d_gh, 3, axis=1)
    r, z = 1 / (1 + np.exp(-(gx_r + gh_r))), 1 / (1 + np.exp(-(gx_z + gh_z)))
    n = np.tanh(gx_n + r * gh_n)
    d_r, d_z = (dx_r + dh_r) / 4, (dx_z + dh_z) / 4
    d_n = dx_n + d_r * np.abs(gh_n) + np.minimum(1, r + d_r) * dh_n
    return d_n + d_z * np.abs(h - n)


def rnn_step_bound(gx, gh, d_gx, d_gh, h):
    """|h'_theirs − h'_ours| for h' = tanh or relu(gx + gh), both 1-Lipschitz: δgx + δgh."""
    return d_gx + d_gh


STEP_BOUNDS = {"GRU": gru_step_bound, "RNN": rnn_step_bound}


@pytest.mark.parametrize("bidirectional", [False, True], ids=["unidirectional", "bidirectional"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_step_is_our_int8_step_within_the_activation_quantization_bound(kind, bidirectional):
    # T = 25 steps, each a one-step run of the exported model (T = 1, fed h0) and of our int8 layer
    # from the same state, our int8 layer's new state the next step's: both layers of a 2-layer
    # stack (the second's input is the first's output, which differs between the two by the first's
    # error, carried through |Ŵ_ih|) and, bidirectional, both directions of each step.
    cls, extra = KINDS[kind]
    I, H, B, T = 16, 32, 4, 25
    layer = cls(I, H, num_layers=2, bidirectional=bidirectional, seed=5, **extra).eval()
    quantized = quantize_dynamic(layer)
    session = session_of(quantized)
    D = layer.num_directions
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h = rng.standard_normal((2 * D, B, H)).astype(np.float32)
    step_bound = STEP_BOUNDS[layer.cell.name]
    ratios = []
    for t in range(T):
        theirs = session.run(None, {"x": x[t:t + 1], "h0": h})[1]  # h_n (2·D, B, H): each layer's after the step
        ours = quantized(x[t:t + 1], h)[1]
        inputs, inputs_theirs, d_inputs = x[t], x[t], np.zeros_like(x[t], np.float64)
        for k in range(2):
            for d, suffix in enumerate([f"_l{k}", f"_l{k}_reverse"][:D]):
                row = k * D + d
                matrices, biases = weights_of(quantized, suffix)
                gx, gh, d_gx, d_gh = preactivation_bounds(matrices, biases, inputs, d_inputs, inputs_theirs, h[row])
                bound = step_bound(gx, gh, d_gx, d_gh, h[row].astype(np.float64))
                bound += FLOAT32_AGREEMENT * max(1.0, float(np.abs(theirs[row]).max()))
                error = np.abs(theirs[row].astype(np.float64) - ours[row])
                assert np.all(error <= bound), (f"step {t}, layer {k}, direction {d}: worst error / bound "
                                                f"{np.max(error / bound):.3f}")
                ratios.append(float(np.max(error / bound)))
            # the next layer's input: this layer's outputs (the directions side by side), ours and theirs
            inputs = np.concatenate(list(ours[k * D:(k + 1) * D]), axis=1)
            inputs_theirs = np.concatenate(list(theirs[k * D:(k + 1) * D]), axis=1)
            d_inputs = np.abs(inputs_theirs.astype(np.float64) - inputs)
        h = ours
    assert max(ratios) >= BOUND_REACHED, f"worst step error / bound {max(ratios):.3f}: the bound is loose"


# -- the file ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_the_file_stores_the_int8_weights_as_they_are(kind, tmp_path):
    from onnx import TensorProto, numpy_helper

    cls, extra = KINDS[kind]
    layer = cls(64, 64, num_layers=2, bidirectional=True, seed=7, **extra).eval()
    quantized = quantize_dynamic(layer)
    int8_path, float_path = tmp_path / "int8.onnx", tmp_path / "float.onnx"
    lstm_ext.export_onnx(quantized, int8_path)
    lstm_ext.export_onnx(layer, float_path)
    model = onnx.load(str(int8_path))
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    D = layer.num_directions
    for k in range(layer.num_layers):
        for letter, base in (("W", "weight_ih"), ("R", "weight_hh")):
            stored = initializers[f"{letter}_int8{k}"]
            assert stored.data_type == TensorProto.INT8 and f"{letter}{k}" not in initializers
            # lstm_ext's int8 rows and scales, each direction's gate blocks in ONNX's order, one after the other
            want = [quantized.quantized[base + suffix] for suffix in [f"_l{k}", f"_l{k}_reverse"][:D]]
            np.testing.assert_array_equal(numpy_helper.to_array(stored), np.concatenate(
                [reorder_gates(w.rows(), layer.cell.onnx_gates) for w in want]))
            np.testing.assert_array_equal(numpy_helper.to_array(initializers[f"{letter}_scale{k}"]), np.concatenate(
                [reorder_gates(w.scale, layer.cell.onnx_gates) for w in want]))
            assert not numpy_helper.to_array(initializers[f"{letter}_zero_point{k}"]).any()
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("DequantizeLinear") == 2 * layer.num_layers and ops.count(layer.cell.name) == layer.num_layers
    assert [opset.domain for opset in model.opset_import] == [""]  # no ONNX Runtime contrib operator
    float_initializers = onnx.load(str(float_path)).graph.initializer
    # a byte for each float32 W and R element, exactly
    assert 4 * sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer if "_int8" in t.name) == sum(
        numpy_helper.to_array(t).nbytes for t in float_initializers if t.name[0] in "WR" and t.name[1:].isdigit())
    float_bytes = sum(numpy_helper.to_array(t).nbytes for t in float_initializers)
    int8_bytes = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    assert int8_bytes <= FILE_RATIO * float_bytes, int8_bytes / float_bytes
    assert int8_path.stat().st_size <= FILE_RATIO * float_path.stat().st_size


# -- what each int8 kind exports as, and what stays refused ------------------------------------------

def test_the_int8_lstm_is_still_onnx_runtimes_dynamic_quantize_lstm():
    model = onnx_model(quantize_dynamic(lstm_ext.LSTM(3, 4, peephole=True, bidirectional=True, seed=0)))
    ops = {node.op_type for node in model.graph.node}
    assert "DynamicQuantizeLSTM" in ops and "DequantizeLinear" not in ops and "LSTM" not in ops


def test_what_int8_onnx_cannot_express_is_refused():
    # bfloat16 has no ONNX form; the int8 layers refuse what the float export refuses (a projection
    # and zoneout have no ONNX LSTM form at all, DynamicQuantizeLSTM's included).
    with pytest.raises(ValueError, match=r"layer: a bfloat16 LSTM has no ONNX Runtime operator; int8 layers export "
                                         r"\(the LSTM as com.microsoft.DynamicQuantizeLSTM, the GRU and RNN through "
                                         r"DequantizeLinear\)"):
        lstm_ext.export_onnx(quantize_dynamic(lstm_ext.LSTM(3, 4), "bfloat16"), "unused.onnx")
    with pytest.raises(ValueError, match=r"layer: ONNX Runtime's DynamicQuantizeLSTM cannot run a LSTM with a "
                                         r"projection \(proj_size=2\)"):
        lstm_ext.export_onnx(quantize_dynamic(lstm_ext.LSTM(3, 4, proj_size=2)), "unused.onnx")
    with pytest.raises(ValueError, match=r"layer: ONNX Runtime's DynamicQuantizeLSTM cannot run a LSTM with zoneout "
                                         r"\(zoneout=\(0\.1, 0\.2\)\)"):
        onnx_model(quantize_dynamic(lstm_ext.LSTM(3, 4, zoneout=(0.1, 0.2))))
