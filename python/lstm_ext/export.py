"""ONNX export: a layer as an ONNX graph that ONNX Runtime (or any ONNX runtime) runs.

For example::

    lstm_ext.export_onnx(layer, "model.onnx")                # inputs x [, h0, c0]; outputs y, h_n [, c_n]
    lstm_ext.export_onnx(layer, "model.onnx", lengths=True)  # and an input lengths (B,) int32
    session.run(None, {"x": x})                              # h0 (, c0) not fed: zeros

Each layer of the stack is one ONNX LSTM / GRU / RNN node (opset 17), in a chain; both directions
of a bidirectional layer are the node's two directions. The graph speaks the layer's own layout:

- input ``x`` (T, B, I), or (B, T, I) with batch_first; output ``y`` (T, B, D·H) (or batch-first),
  the directions side by side as in the layer's forward;
- inputs ``h0`` (num_layers·D, B, H) (and ``c0`` for the LSTM) and outputs ``h_n`` (and ``c_n``)
  in the layer's state layout; the state inputs are optional: not fed, they are zeros, the layer's
  default initial state (each has an initializer of zeros (num_layers·D, 1, H) of the same name, its
  default, which the graph broadcasts to x's batch size; ONNX Runtime lists them in
  ``get_overridable_initializers()`` rather than ``get_inputs()`` and logs a warning, when it loads
  the model, that they are not constants, which is what makes them overridable);
- with ``lengths=True`` an input ``lengths`` (B,) int32, each sequence's valid length (ONNX's
  sequence_lens): outputs past it are zero and the final states are those after its last valid
  step, the reverse direction starting there, as in the layer's forward with ``lengths``.

The graph adds the transposes and reshapes between that layout and ONNX's (T, D, B, H). Gates are
reordered from PyTorch's to ONNX's (the cell descriptions' ``onnx_gates``), the GRU is exported
with linear_before_reset = 1 (PyTorch's formulation). An LSTM with peepholes exports them as the
node's P input (ONNX's peepholes are the layer's). A projected LSTM (proj_size > 0), layer
normalization and zoneout have no ONNX equivalent and are refused. Dropout between layers and recurrent dropout are
training-time operations: the graph is the layer in inference mode. Needs the ``onnx`` package
(the ``onnx`` extra).

The graph is float32 whatever the layer's dtype: ONNX Runtime's LSTM, GRU and RNN operators run
only float32 (a float64 graph loads, then fails at its first run: "LSTM operator does not
support double yet"). A float64 layer is exported with its weights rounded to float32, and a
UserWarning says so; its inputs and outputs are then float32 too.

An int8 layer (``quantize_dynamic(layer)``) is exported with its int8 weights and their row
scales as they are (the file holds about a quarter of the float weights' bytes), with the same
inputs and outputs:

- the LSTM as ONNX Runtime's ``com.microsoft.DynamicQuantizeLSTM`` (int8 weights transposed, a
  scale per gate row, zero points 0), which quantizes the activations itself, per tensor (uint8);
- the GRU and the RNN, which have no such operator, as the float export's ONNX GRU / RNN node
  whose W and R inputs are computed by DequantizeLinear (per row: axis 0, a 1-D scale, int8 zero
  points 0) from int8 initializers ``W_int8{k}``, ``R_int8{k}`` (D·G·H, K), then reshaped to
  (D, G·H, K). Any runtime then runs the cell in float32 with the dequantized weights
  q · scale, exactly lstm_ext's, and float activations: the float layer with those weights, to
  float32 rounding, not the int8 layer's per-row activation quantization.

A bfloat16 layer has no ONNX form (refused).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, Union

import numpy as np
from numpy.typing import ArrayLike

from ._io import write_bytes_atomic
from ._typing import PathLike
from .cells import reorder_gates, require_supported
from .layers import RNNBase
from .quantized import QuantizedLayer

__all__ = ["export_onnx", "onnx_model"]

OPSET = 17


Exportable = Union[RNNBase, QuantizedLayer]


def onnx_model(layer: Exportable, *, lengths: bool = False, states: bool = True) -> Any:  # an onnx.ModelProto
    """The ONNX ModelProto of `layer` (see the module docstring); checked by onnx.checker.
    states=False leaves out the state inputs and outputs (zeros in, only y out). A float64 layer
    gives a float32 model, with a UserWarning."""
    _check_exportable(layer)
    return _build_model(layer, lengths, states, "onnx_model")


def _check_exportable(layer: Exportable) -> None:
    """TypeError or ValueError unless ONNX's operators can express `layer` (checked whether or
    not onnx is installed). An int8 LSTM becomes ONNX Runtime's com.microsoft.DynamicQuantizeLSTM,
    an int8 GRU or RNN its ONNX node fed by DequantizeLinear, each refusing the options the float
    export refuses; bfloat16 layers have no ONNX form (refused)."""
    if isinstance(layer, QuantizedLayer):
        if layer.dtype_name != "int8":
            raise ValueError(f"layer: a {layer.dtype_name} {layer.cell.name} has no ONNX Runtime operator; int8 "
                             "layers export (the LSTM as com.microsoft.DynamicQuantizeLSTM, the GRU and RNN through "
                             "DequantizeLinear)")
        what = "ONNX Runtime's DynamicQuantizeLSTM" if layer.cell.onnx_int8 else "ONNX's recurrent operators"
        require_supported(layer.cell, layer.options, "onnx", f"layer: {what}")
        return
    if not isinstance(layer, RNNBase):
        raise TypeError(f"layer: expected an lstm_ext LSTM, GRU or RNN, or one quantized to int8, got "
                        f"{type(layer).__name__}")
    require_supported(layer.cell, layer.options, "onnx", "layer: ONNX's recurrent operators")


def _build_model(exported: Exportable, lengths: bool, states: bool, caller: str) -> Any:  # an onnx.ModelProto
    """The graph of onnx_model and export_onnx (`caller`, named by the warning for a float64
    layer), in float32; `exported` checked by _check_exportable. An int8 LSTM's nodes are ONNX
    Runtime's DynamicQuantizeLSTM: its int8 weights transposed (D, I, 4H), one scale per gate row
    (D, 4H) and zero points 0 (ONNX Runtime quantizes the activations itself, per tensor). An
    int8 GRU's or RNN's nodes are the float graph's, W and R each the output of DequantizeLinear
    over the int8 rows (D·G·H, K) with their scales (D·G·H,), reshaped to (D, G·H, K)."""
    quantized = exported if isinstance(exported, QuantizedLayer) else None
    # int8 as ONNX Runtime's com.microsoft.DynamicQuantizeLSTM (the kinds that have it), else
    # (int8 GRU, RNN) the float graph's node fed by DequantizeLinear
    contrib = quantized is not None and quantized.cell.onnx_int8
    layer = exported  # (a QuantizedLayer has the sizes and settings read here)
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as error:
        raise ImportError(f"{caller} needs the onnx package: pip install \"lstm_ext[onnx]\"") from error
    if layer.dtype != np.float32 and quantized is None:
        warnings.warn(f"{caller}: the layer is {layer.dtype.name}, the model float32 (its weights rounded to float32, "
                      f"its inputs and outputs float32): ONNX Runtime's LSTM, GRU and RNN operators run only float32",
                      UserWarning, stacklevel=3)  # at the caller's caller: the user's line
    cell, H, D, L = layer.cell, layer.hidden_size, layer.num_directions, layer.num_layers
    # float32 throughout: ONNX Runtime's recurrent operators have no float64 kernels.
    element, dtype = TensorProto.FLOAT, np.float32
    params = ({name: value.astype(dtype) for name, value in exported.state_dict().items()}
              if not isinstance(exported, QuantizedLayer)
              else exported.floats)  # (int8: the biases and peepholes; the matrices are quantized.quantized)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []

    def constant(name: str, value: ArrayLike) -> str:
        if all(existing.name != name for existing in initializers):
            initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], **attributes: object) -> str:
        nodes.append(helper.make_node(op, inputs, outputs, **attributes))
        return outputs[0]

    def onnx_rows(value_of: Callable[[str], np.ndarray], base: str, suffixes: list[str]) -> np.ndarray:
        """(D, G·H, ...): each direction's value_of(base + suffix), its gate blocks in ONNX's order."""
        stacked: np.ndarray = np.stack([reorder_gates(value_of(base + suffix), cell.onnx_gates) for suffix in suffixes])
        return stacked

    def dequantized(letter: str, k: int, q: np.ndarray, scale: np.ndarray) -> str:
        """The node's input `letter`{k} (D, G·H, K) float32: q (D, G·H, K) int8 times its row scales
        (D, G·H), computed in the graph (DequantizeLinear takes one 1-D scale along one axis: the
        rows of all directions as one axis, then reshaped)."""
        D_rows, N, K = q.shape
        rows = node("DequantizeLinear", [constant(f"{letter}_int8{k}", q.reshape(D_rows * N, K)),
                                         constant(f"{letter}_scale{k}", scale.reshape(D_rows * N)),
                                         constant(f"{letter}_zero_point{k}", np.zeros(D_rows * N, np.int8))],
                    [f"{letter}{k}_rows"], axis=0)  # (D·G·H, K)
        return node("Reshape", [rows, constant(f"{letter}_shape{k}", np.array(q.shape, np.int64))], [f"{letter}{k}"])

    # The layer's layout -> ONNX's: x (B, T, I) -> (T, B, I).
    current = node("Transpose", ["x"], ["x_time_major"], perm=[1, 0, 2]) if layer.batch_first else "x"
    state_names = (["h"] + (["c"] if cell.has_cell_state else [])) if states else []
    # The state inputs are optional: each is a graph input with an initializer of the same name,
    # zeros (L·D, 1, H), its default when not fed (ONNX's rule since IR version 4). Expand broadcasts
    # it to (L·D, B, H), B read from x's batch axis, so that a run fed only x starts from the layer's
    # default initial state; a fed (L·D, B, H) state goes through unchanged.
    if state_names:
        batch_axis = 0 if layer.batch_first else 1
        batch = node("Shape", ["x"], ["batch_size"], start=batch_axis, end=batch_axis + 1)  # (1,)
        state_shape = node("Concat", [constant("state_rows", np.array([L * D], np.int64)), batch,
                                      constant("state_hidden", np.array([H], np.int64))], ["state_shape"], axis=0)
        for part in state_names:
            constant(f"{part}0", np.zeros((L * D, 1, H), dtype))
            node("Expand", [f"{part}0", state_shape], [f"{part}0_batch"])
    sequence_lens = "lengths" if lengths else ""  # ONNX's sequence_lens (B,) int32
    finals: dict[str, list[str]] = {part: [] for part in state_names}
    for k in range(L):
        suffixes = [f"_l{k}", f"_l{k}_reverse"][:D]
        if quantized is None:  # W (D, G·H, I_k), R (D, G·H, H)
            W_input, R_input = (constant(f"{letter}{k}", onnx_rows(params.__getitem__, base, suffixes))
                                for letter, base in (("W", "weight_ih"), ("R", "weight_hh")))
        else:  # int8 q (D, G·H, K) and their scales by gate row (D, G·H), of W and of R
            weights = quantized.quantized
            W_q, R_q = (onnx_rows(lambda name: weights[name].rows(), base, suffixes)
                        for base in ("weight_ih", "weight_hh"))
            W_scale, R_scale = (onnx_rows(lambda name: weights[name].scale, base, suffixes)
                                for base in ("weight_ih", "weight_hh"))
            if contrib:  # DynamicQuantizeLSTM's are transposed: (D, I_k, G·H) and (D, H, G·H)
                W_input = constant(f"W{k}", W_q.transpose(0, 2, 1))
                R_input = constant(f"R{k}", R_q.transpose(0, 2, 1))
            else:
                W_input, R_input = dequantized("W", k, W_q, W_scale), dequantized("R", k, R_q, R_scale)
        zeros = np.zeros(cell.num_gates * H, dtype)
        B = np.concatenate([onnx_rows(lambda name: params.get(name, zeros), base, suffixes)
                            for base in ("bias_ih", "bias_hh")], axis=1)  # (D, 2·G·H): Wb then Rb
        inputs = [current, W_input, R_input, constant(f"B{k}", B), sequence_lens]
        outputs = [f"Y{k}"]
        # This layer's rows of the initial states: (D, B, H).
        rows = (constant(f"rows_start{k}", np.array([k * D], np.int64)),
                constant(f"rows_end{k}", np.array([(k + 1) * D], np.int64)),
                constant("axis0", np.array([0], np.int64))) if state_names else ()
        for part in cell.state:
            state_input = ""  # absent: zeros
            if part in state_names:
                state_input = node("Slice", [f"{part}0_batch", *rows], [f"{part}0_l{k}"])
                outputs.append(f"Y_{part}{k}")
            inputs.append(state_input)
        if "weight_ch" + suffixes[0] in params:  # peepholes: ONNX's P (D, 3·H), rows in ONNX's order
            P = np.stack([reorder_gates(params["weight_ch" + s], cell.onnx_peephole_gates).reshape(-1)
                          for s in suffixes])
            inputs.append(constant(f"P{k}", P))
        attributes = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward",
                      **cell.onnx_attributes(layer.options, D)}
        if not contrib:
            while inputs[-1] == "":  # trailing absent inputs are left out
                inputs.pop()
            node(cell.name, inputs, outputs, **attributes)
        else:  # DynamicQuantizeLSTM: LSTM's eight inputs (P or "" in place), then the scales and zero points
            inputs += [""] * (8 - len(inputs))
            zero_points = np.zeros(W_scale.shape, np.int8)
            inputs += [constant(f"W_scale{k}", W_scale), constant(f"W_zero_point{k}", zero_points),
                       constant(f"R_scale{k}", R_scale), constant(f"R_zero_point{k}", zero_points)]
            node("DynamicQuantizeLSTM", inputs, outputs, domain="com.microsoft", **attributes)
        for part in state_names:
            finals[part].append(f"Y_{part}{k}")
        # Y (T, D, B, H) -> (T, B, D·H), the next layer's input: the directions side by side.
        if D == 1:
            current = node("Squeeze", [f"Y{k}", constant("axis1", np.array([1], np.int64))], [f"y{k}"])
        else:
            swapped = node("Transpose", [f"Y{k}"], [f"Y{k}_tbdh"], perm=[0, 2, 1, 3])
            current = node("Reshape", [swapped, constant("shape_tb_flat", np.array([0, 0, -1], np.int64))],
                           [f"y{k}"])
    # Outputs in the layer's layout.
    node("Transpose", [current], ["y"], perm=[1, 0, 2]) if layer.batch_first else node("Identity", [current], ["y"])
    for part in state_names:
        node("Concat", finals[part], [f"{part}_n"], axis=0)  # (L·D, B, H)

    T, Bn, I = ("B", "T", layer.input_size) if layer.batch_first else ("T", "B", layer.input_size)
    graph_inputs = [helper.make_tensor_value_info("x", element, [T, Bn, I])]
    graph_inputs += [helper.make_tensor_value_info(f"{part}0", element, [L * D, "B", H]) for part in state_names]
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["B"]))
    y_shape = ["B", "T", D * H] if layer.batch_first else ["T", "B", D * H]
    graph_outputs = [helper.make_tensor_value_info("y", element, y_shape)]
    graph_outputs += [helper.make_tensor_value_info(f"{part}_n", element, [L * D, "B", H]) for part in state_names]
    graph = helper.make_graph(nodes, f"lstm_ext_{cell.name.lower()}", graph_inputs, graph_outputs, initializers)
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="lstm_ext")
    onnx.checker.check_model(model)
    return model


def export_onnx(layer: Exportable, path: PathLike, *, lengths: bool = False, states: bool = True) -> None:
    """Write `layer` as an ONNX model to `path`, atomically (see the module docstring for its
    inputs and outputs; states=False: x (and lengths) in, y out). A float64 layer is written as a
    float32 model, with a UserWarning."""
    _check_exportable(layer)
    write_bytes_atomic(os.fspath(path), _build_model(layer, lengths, states, "export_onnx").SerializeToString())
