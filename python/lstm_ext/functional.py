"""One LSTM layer in one direction, as functions over the compiled core.

Shapes are PyTorch's and time-major: x (T, B, I), w_ih (4H, I), w_hh (4H, H), b_ih and b_hh
(4H,), h0 and c0 (B, H). The ops compute in the dtype of ``w_ih`` (float32 when it is a float32
array, float64 otherwise) and convert every other argument to it; C-contiguous arrays of that
dtype are used in place. Bad arguments raise TypeError or ValueError naming the argument.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from . import _core

__all__ = ["LstmOutput", "LstmGrads", "lstm_forward", "lstm_backward", "lstm_cell"]


class LstmOutput(NamedTuple):
    """What lstm_forward returns."""

    y: np.ndarray  #: (T, B, H) h_t of every step
    h_n: np.ndarray  #: (B, H) final hidden state
    c_n: np.ndarray  #: (B, H) final cell state
    workspace: Optional[np.ndarray]  #: what backward needs (training only), else None


class LstmGrads(NamedTuple):
    """What lstm_backward returns: the gradient of the loss w.r.t. each input of the forward."""

    dx: np.ndarray  #: (T, B, I)
    dh0: np.ndarray  #: (B, H)
    dc0: np.ndarray  #: (B, H)
    dw_ih: np.ndarray  #: (4H, I)
    dw_hh: np.ndarray  #: (4H, H)
    db_ih: Optional[np.ndarray]  #: (4H,), None without bias
    db_hh: Optional[np.ndarray]  #: (4H,), None without bias


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *, training=False) -> LstmOutput:
    """LSTM forward over a whole sequence.

    h0 / c0 None mean zeros; b_ih / b_hh None mean no bias. With ``training=True`` the result
    carries the workspace that :func:`lstm_backward` needs; otherwise nothing is kept.
    """
    return LstmOutput(*_core.lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, bool(training)))


def lstm_backward(dy, dh_n, dc_n, x, w_ih, w_hh, workspace, *, bias=True) -> LstmGrads:
    """Backpropagation through time for a training-mode :func:`lstm_forward`.

    dy (T, B, H), dh_n and dc_n (B, H) are the gradients of the loss w.r.t. the outputs and the
    final state, each None for zeros. x, w_ih, w_hh and workspace are those of the forward.
    With ``bias=False`` the bias gradients are None.
    """
    if workspace is None:
        raise ValueError("workspace: expected the workspace of lstm_forward(..., training=True), got None")
    return LstmGrads(*_core.lstm_backward(dy, dh_n, dc_n, x, w_ih, w_hh, workspace, bool(bias)))


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One step for streaming inference: x (B, I), h and c (B, H) (None = zeros) -> (h', c')."""
    return _core.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh)
