"""ONNX Runtime in the benchmark: one ONNX LSTM / GRU / RNN node per layer with lstm_ext's weights.

Needs the optional extras ``onnx`` and ``onnxruntime`` (``pip install "lstm_ext[onnx]"``). The graph
is lstm_ext.export's (the layer's weights in ONNX's gate orders, ``linear_before_reset = 1`` for the
GRU, which is torch's and lstm_ext's), without the state inputs and outputs; it runs with
the same number of intra-op threads as the other libraries, one inter-op thread, and the
graph's optimizations on. Used for inference only: ONNX Runtime has no training path for these
nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from lstm_ext import export

if TYPE_CHECKING:
    from lstm_ext.layers import RNNBase

__all__ = ["available", "onnx_model", "session", "runner"]


def available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_model(layer: RNNBase) -> Any:  # an onnx.ModelProto
    """The graph the benchmark times: lstm_ext.export's, without state inputs and outputs (x in,
    y out), one ONNX node per layer."""
    return export.onnx_model(layer, states=False)


def session(layer: RNNBase, threads: int, spinning: bool = True) -> Any:  # an onnxruntime.InferenceSession
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


def runner(layer: RNNBase, x: np.ndarray, threads: int, spinning: bool = True) -> Optional[Callable[[], object]]:
    """A zero-argument call running ``layer``'s inference on x in ONNX Runtime, or None without it."""
    if not available():
        return None
    sess = session(layer, threads, spinning)
    feed = {"x": np.ascontiguousarray(x)}

    def call() -> Any:
        return sess.run(None, feed)[0]

    call.session = sess  # type: ignore[attr-defined]  # the session, kept with the call (a function attribute)
    return call
