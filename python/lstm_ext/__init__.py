"""lstm_ext: LSTM forward and backpropagation through time in C++/Eigen, with a NumPy API.

    import lstm_ext
    layer = lstm_ext.LSTM(input_size=8, hidden_size=32, seed=0)
    y, (h_n, c_n) = layer(x)                # x (T, B, 8) -> y (T, B, 32)
    dx, (dh0, dc0) = layer.backward(dy)     # parameter gradients land in layer.grads

``lstm_ext.functional`` has the one-layer ops over the compiled core, ``lstm_ext.reference`` the
same maths in plain NumPy (the oracle the tests compare against).
"""

from . import functional, reference
from ._core import build_info
from .functional import lstm_backward, lstm_cell, lstm_forward
from .layers import LSTM, Module

__version__ = "0.1.0"

__all__ = [
    "LSTM",
    "Module",
    "build_info",
    "functional",
    "lstm_backward",
    "lstm_cell",
    "lstm_forward",
    "reference",
]
