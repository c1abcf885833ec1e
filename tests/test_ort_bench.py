"""The benchmark's ONNX Runtime side computes what lstm_ext computes (same weights, ONNX's gate orders)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import needs

import lstm_ext
from lstm_ext.tools import ort_bench

needs("onnx")
needs("onnxruntime")


@pytest.mark.parametrize("kind, extra", [("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"})],
                         ids=["LSTM", "GRU", "RNN tanh", "RNN relu"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_the_onnx_node_gives_lstm_ext_outputs(kind, extra, num_layers):
    layer = getattr(lstm_ext, kind)(5, 12, num_layers=num_layers, seed=4, **extra).eval()
    x = np.random.default_rng(1).standard_normal((6, 3, 5)).astype(np.float32)
    y, _ = layer(x)
    theirs = ort_bench.runner(layer, x, threads=1)()
    # Relative to the outputs' scale (measured: at most 3e-7), not element by element: ONNX
    # Runtime's float tanh is a different approximation, which near zero differs by up to 2.4e-5 of
    # the value. A wrong gate order or bias would be off by the scale itself.
    worst = float(np.max(np.abs(theirs - y)) / np.max(np.abs(y)))
    print(f"onnxruntime {kind} {extra} L{num_layers}: worst error {worst:.1e} of the outputs' scale")
    assert worst < 1e-5


def test_what_the_onnx_model_cannot_express_is_refused():
    with pytest.raises(ValueError, match="ONNX.s recurrent operators cannot run a LSTM with a projection"):
        ort_bench.onnx_model(lstm_ext.LSTM(3, 4, proj_size=2))
