"""ONNX export (lstm_ext.export_onnx): every exported model runs in ONNX Runtime and gives the
layer's outputs and final states (float32, within 1e-5 of their scale), in the layer's own
layout, with and without lengths, fed initial states or not (zeros by default). A float64 layer
is exported as a float32 model, with a warning (ONNX Runtime's recurrent operators run only float32)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import needs

import lstm_ext
from lstm_ext.export import onnx_model

needs("onnx")
ort = needs("onnxruntime")

LAYERS = {
    "LSTM": (lstm_ext.LSTM, {}),
    "LSTM peephole": (lstm_ext.LSTM, {"peephole": True}),  # ONNX's P input
    "LSTM recurrent dropout": (lstm_ext.LSTM, {"recurrent_dropout": 0.5}),  # inference is the plain cell's
    "GRU": (lstm_ext.GRU, {}),
    "RNN tanh": (lstm_ext.RNN, {}),
    "RNN relu": (lstm_ext.RNN, {"nonlinearity": "relu"}),
}
SHAPES = {
    "1 layer": {},
    "2 layers bidirectional": {"num_layers": 2, "bidirectional": True},
    "3 layers batch_first no bias": {"num_layers": 3, "batch_first": True, "bias": False},
}


def run_both(layer, lengths, states=True, feed_states=True):
    """The layer's outputs (y and its final states when exported with states) and ONNX Runtime's for
    the same x (and lengths); with feed_states, both start from the same random initial states, else
    the layer from its default and the session fed no state input."""
    rng = np.random.default_rng(3)
    T, B = 7, 4
    x = rng.standard_normal((B, T, layer.input_size) if layer.batch_first else (T, B, layer.input_size))
    x = x.astype(np.float32)
    rows = layer.num_layers * layer.num_directions
    parts = [rng.standard_normal((rows, B, layer.hidden_size)).astype(np.float32) for _ in layer.cell.state]
    lens = np.array([7, 3, 5, 1], np.int32) if lengths else None
    initial = (tuple(parts) if len(parts) > 1 else parts[0]) if states and feed_states else None
    y, state_n = layer(x, initial, lengths=lens)
    session = ort.InferenceSession(onnx_model(layer, lengths=lengths, states=states).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    feed = {"x": x}
    if states and feed_states:
        feed.update({f"{part}0": value for part, value in zip(layer.cell.state, parts)})
    if lengths:
        feed["lengths"] = lens
    theirs = session.run(None, feed)
    ours = [y] + ((list(state_n) if isinstance(state_n, tuple) else [state_n]) if states else [])
    return ours, theirs


def assert_same_outputs(layer, ours, theirs):
    """ONNX Runtime's y, h_n (, c_n) are the layer's: same shapes, within 1e-5 of their scale (the
    message gives each tensor's worst error relative to its scale)."""
    assert len(theirs) == len(ours) == 1 + len(layer.cell.state)
    for name, a, b in zip(["y", "h_n", "c_n"], theirs, ours):
        assert a.shape == b.shape, name
        assert np.abs(b).max() > 0.01, name  # not a degenerate case
        # Relative to the scale: ONNX Runtime's float tanh differs near zero by up to 2.4e-5 of the value.
        error = float(np.abs(a - b).max() / np.abs(b).max())
        assert error < 1e-5, f"{name}: worst error {error:.3g} of the scale"


@pytest.mark.parametrize("lengths", [False, True], ids=["all steps", "lengths"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", LAYERS)
def test_the_exported_model_gives_the_layers_outputs_in_onnx_runtime(kind, shape, lengths):
    cls, extra = LAYERS[kind]
    layer = cls(3, 5, seed=1, **extra, **SHAPES[shape]).eval()
    ours, theirs = run_both(layer, lengths)
    assert_same_outputs(layer, ours, theirs)


DEFAULT_STATE_KINDS = ["LSTM", "LSTM peephole", "GRU", "RNN tanh"]
DEFAULT_STATE_SHAPES = {
    "1 layer": {},
    "2 layers bidirectional": {"num_layers": 2, "bidirectional": True},
    "1 layer batch_first": {"batch_first": True},
    "2 layers bidirectional batch_first": {"num_layers": 2, "bidirectional": True, "batch_first": True},
}


@pytest.mark.parametrize("lengths", [False, True], ids=["all steps", "lengths"])
@pytest.mark.parametrize("shape", DEFAULT_STATE_SHAPES)
@pytest.mark.parametrize("kind", DEFAULT_STATE_KINDS)
def test_the_state_inputs_are_optional_zeros_by_default(kind, shape, lengths):
    # session.run(None, {"x": x}) (and lengths) is the layer's forward from its default initial
    # state; feeding h0 (, c0) still starts from them.
    cls, extra = LAYERS[kind]
    layer = cls(3, 5, seed=1, **extra, **DEFAULT_STATE_SHAPES[shape]).eval()
    for feed_states in (False, True):
        ours, theirs = run_both(layer, lengths, feed_states=feed_states)
        assert_same_outputs(layer, ours, theirs)


def test_without_states_the_graph_has_x_in_and_y_out(tmp_path):
    layer = lstm_ext.GRU(3, 5, num_layers=2, seed=1).eval()
    ours, theirs = run_both(layer, lengths=False, states=False)
    assert len(theirs) == 1 and float(np.abs(theirs[0] - ours[0]).max()) < 1e-5
    path = tmp_path / "gru.onnx"
    lstm_ext.export_onnx(layer, path, states=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"] and [o.name for o in session.get_outputs()] == ["y"]


def test_export_writes_a_file_with_the_layers_inputs_and_outputs(tmp_path):
    import onnx
    path = tmp_path / "lstm.onnx"
    lstm_ext.export_onnx(lstm_ext.LSTM(3, 5, bidirectional=True, seed=0), path, lengths=True)
    assert [i.name for i in onnx.load(str(path)).graph.input] == ["x", "h0", "c0", "lengths"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # ONNX Runtime lists the inputs a run must feed apart from those with a default (an initializer),
    # which keep their declared shape.
    assert [i.name for i in session.get_inputs()] == ["x", "lengths"]
    assert [(i.name, i.shape) for i in session.get_overridable_initializers()] == [("h0", [2, "B", 5]),
                                                                                ("c0", [2, "B", 5])]
    assert [o.name for o in session.get_outputs()] == ["y", "h_n", "c_n"]


def test_what_onnx_cannot_express_is_refused():
    with pytest.raises(ValueError, match=r"ONNX's recurrent operators cannot run a LSTM with a projection \(proj_size=2\)"):
        onnx_model(lstm_ext.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match="layer: expected an lstm_ext LSTM, GRU or RNN, or one quantized to int8, got Linear"):
        onnx_model(lstm_ext.Linear(3, 4))


def test_peepholes_are_the_nodes_P_input_in_onnx_order():
    layer = lstm_ext.LSTM(3, 4, peephole=True, bidirectional=True, seed=0)
    model = onnx_model(layer)
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    assert len(node.input) == 8 and node.input[7] == "P0"
    P = next(i for i in model.graph.initializer if i.name == "P0")
    from onnx import numpy_helper
    P = numpy_helper.to_array(P)
    w_ch = layer.state_dict()["weight_ch_l0_reverse"]  # rows i, f, o -> ONNX's i, o, f
    np.testing.assert_array_equal(P[1], np.concatenate([w_ch[0], w_ch[2], w_ch[1]]))


@pytest.mark.parametrize("zoneout", [(0.1, 0.0), (0.0, 0.2)])
def test_zoneout_has_no_onnx_equivalent(zoneout):
    with pytest.raises(ValueError, match=r"ONNX's recurrent operators cannot run a LSTM with zoneout "
                                         r"\(zoneout=\(0\.\d, 0\.\d\)\)"):
        onnx_model(lstm_ext.LSTM(3, 4, zoneout=zoneout))


FLOAT64_WARNING = (r"the layer is float64, the model float32 \(its weights rounded to float32, its inputs and outputs "
                   r"float32\): ONNX Runtime's LSTM, GRU and RNN operators run only float32")


@pytest.mark.parametrize("shape", ["1 layer", "2 layers bidirectional"])
@pytest.mark.parametrize("kind", ["LSTM", "LSTM peephole", "GRU", "RNN tanh"])
def test_a_float64_layer_is_exported_in_float32_with_a_warning(kind, shape):
    # A float64 graph loaded in ONNX Runtime and then failed at its first run ("LSTM operator does
    # not support double yet"; GRU the same; RNN NOT_IMPLEMENTED), with no word at export.
    cls, extra = LAYERS[kind]
    layer = cls(3, 5, seed=1, dtype=np.float64, **extra, **SHAPES[shape]).eval()
    with pytest.warns(UserWarning, match="onnx_model: " + FLOAT64_WARNING):
        ours, theirs = run_both(layer, lengths=True)  # x and the initial states: float32 values
    assert all(a.dtype == np.float32 for a in theirs) and all(b.dtype == np.float64 for b in ours)
    assert_same_outputs(layer, ours, theirs)  # within float32's tolerance of the float64 layer


def test_export_onnx_of_a_float64_layer_writes_a_float32_model_and_says_so(tmp_path):
    import onnx
    from onnx import TensorProto

    path = tmp_path / "gru.onnx"
    with pytest.warns(UserWarning, match="export_onnx: " + FLOAT64_WARNING) as caught:
        lstm_ext.export_onnx(lstm_ext.GRU(3, 5, dtype=np.float64, seed=0), path)
    assert len(caught) == 1 and caught[0].filename == __file__  # pointed at the caller's line
    graph = onnx.load(str(path)).graph
    assert {value.type.tensor_type.elem_type for value in [*graph.input, *graph.output]} == {TensorProto.FLOAT}
    assert {tensor.data_type for tensor in graph.initializer if tensor.name in ("W0", "R0", "B0", "h0")} == {
        TensorProto.FLOAT}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y, h_n = session.run(None, {"x": np.ones((4, 2, 3), np.float32)})
    assert y.shape == (4, 2, 5) and y.dtype == np.float32 and np.isfinite(y).all()
