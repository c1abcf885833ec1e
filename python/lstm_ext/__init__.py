"""lstm_ext: LSTM, GRU and RNN forward and backpropagation through time in C++/Eigen, with a NumPy API.

For example::

    import lstm_ext
    layer = lstm_ext.LSTM(input_size=8, hidden_size=32, num_layers=2, bidirectional=True, seed=0)
    y, (h_n, c_n) = layer(x, lengths=lengths)   # x (T, B, 8) -> y (T, B, 64)
    dx, (dh0, dc0) = layer.backward(dy)         # parameter gradients land in layer.grads

The layers take torch.nn's arguments and state dicts; ``from_torch`` / ``layer.to_torch()`` and
``from_keras`` move weights in and out. ``lstm_ext.functional`` has the one-layer ops over the
compiled core, ``lstm_ext.reference`` the same maths in plain NumPy (the oracle the tests
compare against), ``lstm_ext.cells`` the description of each cell kind that the rest reads.
``Sequential`` holds layers; ``lstm_ext.training`` trains it, ``lstm_ext.checkpoint`` stores it;
``quantize_dynamic`` makes an inference copy in int8 or with bfloat16 weights.
"""

from . import cells, functional, reference
from ._core import build_info, release_scratch_cache, scratch_cache_bytes
from ._parallel import OversubscriptionWarning, get_num_threads, set_num_threads, team_limit
from .functional import (gru_backward, gru_forward, lstm_backward, lstm_cell, lstm_forward, rnn_backward,
                         rnn_forward)
from .checkpoint import CheckpointError
from .export import export_onnx
from .flow import gradient_flow
from .interop import from_keras, from_torch, to_torch
from .layers import GRU, LSTM, RNN, Module, RNNBase
from .losses import cross_entropy, mse_loss
from .loading import load
from .model import Sequential
from .nn import Embedding, LastStep, Linear, ReLU, Sigmoid, Tanh
from .optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm
from .quantized import quantize_dynamic
from .stream import Stream

__version__ = "0.1.0"

__all__ = [
    "Adam", "AdamW", "CheckpointError", "Embedding", "GRU", "LSTM", "LastStep", "Linear", "Module", "Optimizer",
    "OversubscriptionWarning", "RNN", "RNNBase", "ReLU", "SGD", "Sequential", "Sigmoid", "Stream", "Tanh",
    "build_info", "cells", "clip_grad_norm", "cross_entropy", "export_onnx", "from_keras", "from_torch",
    "functional", "get_num_threads", "gradient_flow", "gru_backward", "gru_forward", "load", "lstm_backward",
    "lstm_cell", "lstm_forward", "mse_loss", "quantize_dynamic", "reference", "release_scratch_cache", "rnn_backward", "rnn_forward",
    "scratch_cache_bytes", "set_num_threads", "team_limit", "to_torch",
]
