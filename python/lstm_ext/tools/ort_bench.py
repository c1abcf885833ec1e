"""ONNX Runtime in the benchmark: one ONNX LSTM / GRU / RNN node per layer with lstm_ext's weights.

Needs the optional extras ``onnx`` and ``onnxruntime`` (``pip install "lstm_ext[onnx]"``). The node
gets the layer's weights in ONNX's gate orders (LSTM i, o, f, c from torch's i, f, g, o; GRU z, r,
h from r, z, n, with ``linear_before_reset = 1``, which is torch's and lstm_ext's GRU), runs with
the same number of intra-op threads as the other libraries, one inter-op thread, and the
graph's optimizations on. Used for inference only: ONNX Runtime has no training path for these
nodes.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from lstm_ext.cells import reorder_gates

__all__ = ["available", "onnx_model", "session", "runner"]


def available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_model(layer):
    """An ONNX model computing ``layer``'s output y (T, B, H) from x (T, B, I): one node per layer.

    Single-direction layers without projection (what the benchmark times)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layer.num_directions != 1 or layer.output_size != layer.hidden_size:
        raise ValueError("onnx_model: one direction and no projection only")
    cell, H = layer.cell, layer.hidden_size
    elem = TensorProto.DOUBLE if layer.dtype == np.float64 else TensorProto.FLOAT
    params = layer.state_dict()
    nodes, inits = [], []
    current = "x"
    for k in range(layer.num_layers):
        # torch's gate blocks -> ONNX's (LSTM i, f, g, o -> i, o, f, c; GRU r, z, n -> z, r, h)
        w = reorder_gates(params[f"weight_ih_l{k}"], cell.onnx_gates)[None]
        r = reorder_gates(params[f"weight_hh_l{k}"], cell.onnx_gates)[None]
        b_ih = params.get(f"bias_ih_l{k}")
        b_hh = params.get(f"bias_hh_l{k}")
        zeros = np.zeros(w.shape[1], layer.dtype)
        b = np.concatenate([reorder_gates(b_ih, cell.onnx_gates) if b_ih is not None else zeros,
                            reorder_gates(b_hh, cell.onnx_gates) if b_hh is not None else zeros])[None]
        inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(r, f"R{k}"),
                  numpy_helper.from_array(b, f"B{k}")]
        attrs = {"hidden_size": H, **cell.onnx_attributes(layer.options)}
        nodes.append(helper.make_node(cell.name, [current, f"W{k}", f"R{k}", f"B{k}"], [f"Y{k}"], **attrs))
        # Y (T, 1, B, H) -> (T, B, H)
        axes = f"axes{k}"
        inits.append(numpy_helper.from_array(np.array([1], np.int64), axes))
        nodes.append(helper.make_node("Squeeze", [f"Y{k}", axes], [f"h{k}"]))
        current = f"h{k}"
    nodes.append(helper.make_node("Identity", [current], ["y"]))
    graph = helper.make_graph(nodes, f"lstm_ext_{cell.name.lower()}",
                              [helper.make_tensor_value_info("x", elem, ["T", "B", layer.input_size])],
                              [helper.make_tensor_value_info("y", elem, ["T", "B", H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def session(layer, threads: int, spinning: bool = True):
    """An onnxruntime InferenceSession of ``onnx_model(layer)`` on `threads` intra-op threads.

    spinning: whether its idle threads spin after a call (ONNX Runtime's default) or sleep."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return onnxruntime.InferenceSession(onnx_model(layer).SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def runner(layer, x: np.ndarray, threads: int, spinning: bool = True) -> Optional[Callable[[], object]]:
    """A zero-argument call running ``layer``'s inference on x in ONNX Runtime, or None without it."""
    if not available():
        return None
    sess = session(layer, threads, spinning)
    feed = {"x": np.ascontiguousarray(x)}

    def call():
        return sess.run(None, feed)[0]

    call.session = sess
    return call
