"""One recurrent layer in one direction, as functions over the compiled core.

Shapes are PyTorch's and time-major: x (T, B, I), states (B, H). LSTM weights w_ih (4H, I),
w_hh (4H, H) (or (4H, P) with a projection w_hr (P, H)), biases (4H,); GRU (3H, ·) and (3H,);
RNN (H, ·) and (H,). The ops compute in the dtype of ``w_ih`` (float32 when it is a float32
array, float64 otherwise) and convert every other argument to it; C-contiguous arrays of that
dtype are used in place. Bad arguments raise TypeError or ValueError naming the argument.

A training forward returns a workspace (a 1-D array) that holds everything its backward needs,
the input included. Every sequence op takes ``lengths`` (B,) integers in [1, T] (None = all T)
and ``reverse``:
steps at t >= lengths[b] output zeros and carry the state unchanged, the final state is the one
after each sequence's last valid step, and ``reverse=True`` walks from each sequence's own last
valid step back to step 0. A backward must be given the same ``lengths`` and ``reverse`` as
its forward.

``bidirectional=True`` runs both directions of a layer in one call (at once, one per thread, on a
team of two threads): every weight and bias argument is then a pair (forward, reverse) of arrays,
the initial and final states and every parameter gradient get a leading axis of 2, y and dy are
(T, B, 2 * H_out) with the forward direction in the first H_out columns (PyTorch's layout), and
dx is the sum of both directions' parts. ``reverse`` must then be False.

The LSTM variants (see :mod:`lstm_ext.cells` for their equations) are keyword arguments of
lstm_forward and lstm_backward, all absent by default: ``w_ch`` (3, H) the peephole weights
(rows i, f, o; a pair when bidirectional), ``keep_h`` (B, H_out) the recurrent dropout mask,
``zone_c`` (T, B, H) and ``zone_h`` (T, B, H_out) the zoneout weights of the previous state (an
array of masks, or one number in [0, 1] for every element); with ``bidirectional=True`` the
masks get a leading axis of 2. Layer normalization takes its gains and biases ``ln_ih_weight``,
``ln_ih_bias``, ``ln_hh_weight``, ``ln_hh_bias`` (4H,) and ``ln_c_weight``, ``ln_c_bias`` (H,), all
six or none (pairs when bidirectional). A backward takes the forward's variants.

The layers around the recurrent ones have their arithmetic here too, computed by the core so that
a training run gives the same bits on every CPU with fused multiply-add (NumPy's matrix products
go to a BLAS whose kernel depends on the CPU, and its exp, log and tanh take SIMD paths per CPU):
:func:`linear_forward` / :func:`linear_backward` (``lstm_ext.Linear``), and the elementwise
:func:`exp`, :func:`log`, :func:`tanh`, :func:`sigmoid` (the activations and the losses).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _core

__all__ = [
    "LstmOutput", "LstmGrads", "lstm_forward", "lstm_backward", "lstm_cell",
    "GruOutput", "GruGrads", "gru_forward", "gru_backward",
    "RnnOutput", "RnnGrads", "rnn_forward", "rnn_backward",
    "linear_forward", "linear_backward", "exp", "log", "tanh", "sigmoid",
]


class LstmOutput(NamedTuple):
    """What lstm_forward returns."""

    y: np.ndarray  #: (T, B, H_out) h_t of every step, H_out = P with a projection, else H
    h_n: np.ndarray  #: (B, H_out) final hidden state
    c_n: np.ndarray  #: (B, H) final cell state
    workspace: Optional[np.ndarray]  #: what backward needs (training only), else None


class LstmGrads(NamedTuple):
    """What lstm_backward returns: the gradient of the loss w.r.t. each input of the forward."""

    dx: np.ndarray  #: (T, B, I)
    dh0: np.ndarray  #: (B, H_out)
    dc0: np.ndarray  #: (B, H)
    dw_ih: np.ndarray  #: (4H, I)
    dw_hh: np.ndarray  #: (4H, H_out)
    db_ih: Optional[np.ndarray]  #: (4H,), None without bias
    db_hh: Optional[np.ndarray]  #: (4H,), None without bias
    dw_hr: Optional[np.ndarray] = None  #: (P, H), None without projection
    dw_ch: Optional[np.ndarray] = None  #: (3, H), None without peepholes
    dln_ih_weight: Optional[np.ndarray] = None  #: (4H,), None without layer normalization
    dln_ih_bias: Optional[np.ndarray] = None  #: (4H,), None without layer normalization
    dln_hh_weight: Optional[np.ndarray] = None  #: (4H,), None without layer normalization
    dln_hh_bias: Optional[np.ndarray] = None  #: (4H,), None without layer normalization
    dln_c_weight: Optional[np.ndarray] = None  #: (H,), None without layer normalization
    dln_c_bias: Optional[np.ndarray] = None  #: (H,), None without layer normalization


def lstm_forward(x: ArrayLike, w_ih: ArrayLike, w_hh: ArrayLike, b_ih: Optional[ArrayLike] = None,
                 b_hh: Optional[ArrayLike] = None, h0: Optional[ArrayLike] = None, c0: Optional[ArrayLike] = None, *,
                 w_hr: Optional[ArrayLike] = None, w_ch: Optional[ArrayLike] = None, keep_h: Optional[ArrayLike] = None,
                 zone_c: Optional[Union[ArrayLike, float]] = None, zone_h: Optional[Union[ArrayLike, float]] = None,
                 ln_ih_weight: Optional[ArrayLike] = None, ln_ih_bias: Optional[ArrayLike] = None,
                 ln_hh_weight: Optional[ArrayLike] = None, ln_hh_bias: Optional[ArrayLike] = None,
                 ln_c_weight: Optional[ArrayLike] = None, ln_c_bias: Optional[ArrayLike] = None,
                 lengths: Optional[ArrayLike] = None, reverse: bool = False, training: bool = False,
                 bidirectional: bool = False) -> LstmOutput:
    """LSTM forward over a whole sequence.

    x (T, B, I), w_ih (4H, I), w_hh (4H, H), b_ih and b_hh (4H,), h0 and c0 (B, H); returns y
    (T, B, H_out), h_n (B, H_out) and c_n (B, H) (:class:`LstmOutput`). h0 / c0 None mean zeros;
    b_ih / b_hh None mean no bias; w_hr (P, H), P < H, adds the projection
    h_t = W_hr (o_t ⊙ tanh c_t), with w_hh (4H, P) and h0 (B, P). w_ch, keep_h, zone_c and zone_h
    are the variants (module docstring). With ``training=True`` the result carries the workspace
    that :func:`lstm_backward` needs; otherwise nothing is kept.
    """
    return LstmOutput(*_core.lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr=w_hr, w_ch=w_ch, keep_h=keep_h,
                                          zone_c=zone_c, zone_h=zone_h, ln_ih_weight=ln_ih_weight,
                                          ln_ih_bias=ln_ih_bias, ln_hh_weight=ln_hh_weight, ln_hh_bias=ln_hh_bias,
                                          ln_c_weight=ln_c_weight, ln_c_bias=ln_c_bias, lengths=lengths,
                                          reverse=bool(reverse), training=bool(training),
                                          bidirectional=bool(bidirectional)))


def _require_workspace(workspace: object, op: str) -> None:
    if workspace is None:
        raise ValueError(f"workspace: expected the workspace of {op}(..., training=True), got None")


def lstm_backward(dy: Optional[ArrayLike], dh_n: Optional[ArrayLike], dc_n: Optional[ArrayLike], x: ArrayLike,
                  w_ih: ArrayLike, w_hh: ArrayLike, workspace: Optional[ArrayLike], *, w_hr: Optional[ArrayLike] = None,
                  w_ch: Optional[ArrayLike] = None, keep_h: Optional[ArrayLike] = None,
                  zone_c: Optional[Union[ArrayLike, float]] = None, zone_h: Optional[Union[ArrayLike, float]] = None,
                  ln_ih_weight: Optional[ArrayLike] = None, ln_ih_bias: Optional[ArrayLike] = None,
                  ln_hh_weight: Optional[ArrayLike] = None, ln_hh_bias: Optional[ArrayLike] = None,
                  ln_c_weight: Optional[ArrayLike] = None, ln_c_bias: Optional[ArrayLike] = None,
                  lengths: Optional[ArrayLike] = None, reverse: bool = False, bias: bool = True,
                  bidirectional: bool = False) -> LstmGrads:
    """Backpropagation through time for a training-mode :func:`lstm_forward`.

    dy (T, B, H_out), dh_n (B, H_out) and dc_n (B, H) are the gradients of the loss w.r.t. the
    outputs and the final state, each None for zeros. x, the weights, workspace, the variants,
    lengths and reverse are those of the forward (dw_ch is returned with peepholes). The workspace keeps what backward needs of the input, so x
    is only checked for its shape: changing it after the forward does not change the gradients.
    With ``bias=False`` the bias gradients are None.
    """
    _require_workspace(workspace, "lstm_forward")
    return LstmGrads(*_core.lstm_backward(dy, dh_n, dc_n, x, w_ih, w_hh, workspace, w_hr=w_hr, w_ch=w_ch,
                                          keep_h=keep_h, zone_c=zone_c, zone_h=zone_h, ln_ih_weight=ln_ih_weight,
                                          ln_ih_bias=ln_ih_bias, ln_hh_weight=ln_hh_weight, ln_hh_bias=ln_hh_bias,
                                          ln_c_weight=ln_c_weight, ln_c_bias=ln_c_bias, lengths=lengths,
                                          reverse=bool(reverse), bias=bool(bias), bidirectional=bool(bidirectional)))


def lstm_cell(x: ArrayLike, h: Optional[ArrayLike], c: Optional[ArrayLike], w_ih: ArrayLike, w_hh: ArrayLike,
              b_ih: Optional[ArrayLike] = None, b_hh: Optional[ArrayLike] = None) -> tuple[np.ndarray, np.ndarray]:
    """One step for streaming inference: x (B, I), h and c (B, H) (None = zeros) -> (h', c')."""
    return _core.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh)


class GruOutput(NamedTuple):
    """What gru_forward returns."""

    y: np.ndarray  #: (T, B, H)
    h_n: np.ndarray  #: (B, H)
    workspace: Optional[np.ndarray]  #: what backward needs (training only), else None


class GruGrads(NamedTuple):
    """What gru_backward returns."""

    dx: np.ndarray  #: (T, B, I)
    dh0: np.ndarray  #: (B, H)
    dw_ih: np.ndarray  #: (3H, I)
    dw_hh: np.ndarray  #: (3H, H)
    db_ih: Optional[np.ndarray]  #: (3H,), None without bias
    db_hh: Optional[np.ndarray]  #: (3H,), None without bias
    dln_ih_weight: Optional[np.ndarray] = None  #: (3H,), None without layer normalization
    dln_ih_bias: Optional[np.ndarray] = None  #: (3H,), None without layer normalization
    dln_hh_weight: Optional[np.ndarray] = None  #: (3H,), None without layer normalization
    dln_hh_bias: Optional[np.ndarray] = None  #: (3H,), None without layer normalization


def gru_forward(x: ArrayLike, w_ih: ArrayLike, w_hh: ArrayLike, b_ih: Optional[ArrayLike] = None,
                b_hh: Optional[ArrayLike] = None, h0: Optional[ArrayLike] = None, *,
                ln_ih_weight: Optional[ArrayLike] = None, ln_ih_bias: Optional[ArrayLike] = None,
                ln_hh_weight: Optional[ArrayLike] = None, ln_hh_bias: Optional[ArrayLike] = None,
                lengths: Optional[ArrayLike] = None, reverse: bool = False, training: bool = False,
                bidirectional: bool = False) -> GruOutput:
    """GRU forward over a whole sequence (PyTorch's formulation, gates r, z, n).

    x (T, B, I), w_ih (3H, I), w_hh (3H, H), b_ih and b_hh (3H,) (None: no bias), h0 (B, H) (None:
    zeros); returns y (T, B, H) and h_n (B, H) (:class:`GruOutput`), with the workspace that
    :func:`gru_backward` needs when ``training=True``.
    """
    return GruOutput(*_core.gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, ln_ih_weight=ln_ih_weight,
                                        ln_ih_bias=ln_ih_bias, ln_hh_weight=ln_hh_weight, ln_hh_bias=ln_hh_bias,
                                        lengths=lengths, reverse=bool(reverse), training=bool(training),
                                        bidirectional=bool(bidirectional)))


def gru_backward(dy: Optional[ArrayLike], dh_n: Optional[ArrayLike], x: ArrayLike, w_ih: ArrayLike, w_hh: ArrayLike,
                 workspace: Optional[ArrayLike], *, ln_ih_weight: Optional[ArrayLike] = None,
                 ln_ih_bias: Optional[ArrayLike] = None, ln_hh_weight: Optional[ArrayLike] = None,
                 ln_hh_bias: Optional[ArrayLike] = None, lengths: Optional[ArrayLike] = None, reverse: bool = False,
                 bias: bool = True, bidirectional: bool = False) -> GruGrads:
    """Backpropagation through time for a training-mode :func:`gru_forward`.

    dy (T, B, H) and dh_n (B, H) are the gradients of the loss w.r.t. the outputs and the final
    state, each None for zeros; x (T, B, I), the weights, workspace, lengths and reverse are those
    of the forward. Returns :class:`GruGrads`; with ``bias=False`` the bias gradients are None.
    """
    _require_workspace(workspace, "gru_forward")
    return GruGrads(*_core.gru_backward(dy, dh_n, x, w_ih, w_hh, workspace, ln_ih_weight=ln_ih_weight,
                                        ln_ih_bias=ln_ih_bias, ln_hh_weight=ln_hh_weight, ln_hh_bias=ln_hh_bias,
                                        lengths=lengths, reverse=bool(reverse), bias=bool(bias),
                                        bidirectional=bool(bidirectional)))


class RnnOutput(NamedTuple):
    """What rnn_forward returns."""

    y: np.ndarray  #: (T, B, H)
    h_n: np.ndarray  #: (B, H)
    workspace: Optional[np.ndarray]  #: what backward needs (training only), else None


class RnnGrads(NamedTuple):
    """What rnn_backward returns."""

    dx: np.ndarray  #: (T, B, I)
    dh0: np.ndarray  #: (B, H)
    dw_ih: np.ndarray  #: (H, I)
    dw_hh: np.ndarray  #: (H, H)
    db_ih: Optional[np.ndarray]  #: (H,), None without bias
    db_hh: Optional[np.ndarray]  #: (H,), None without bias


def rnn_forward(x: ArrayLike, w_ih: ArrayLike, w_hh: ArrayLike, b_ih: Optional[ArrayLike] = None,
                b_hh: Optional[ArrayLike] = None, h0: Optional[ArrayLike] = None, *, nonlinearity: str = "tanh",
                lengths: Optional[ArrayLike] = None, reverse: bool = False, training: bool = False,
                bidirectional: bool = False) -> RnnOutput:
    """Vanilla RNN forward: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act 'tanh' or 'relu'.

    x (T, B, I), w_ih (H, I), w_hh (H, H), b_ih and b_hh (H,) (None: no bias), h0 (B, H) (None:
    zeros); returns y (T, B, H) and h_n (B, H) (:class:`RnnOutput`), with the workspace that
    :func:`rnn_backward` needs when ``training=True``.
    """
    return RnnOutput(*_core.rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, nonlinearity=nonlinearity, lengths=lengths,
                                        reverse=bool(reverse), training=bool(training),
                                        bidirectional=bool(bidirectional)))


def rnn_backward(dy: Optional[ArrayLike], dh_n: Optional[ArrayLike], x: ArrayLike, w_ih: ArrayLike, w_hh: ArrayLike,
                 workspace: Optional[ArrayLike], *, nonlinearity: str = "tanh", lengths: Optional[ArrayLike] = None,
                 reverse: bool = False, bias: bool = True, bidirectional: bool = False) -> RnnGrads:
    """Backpropagation through time for a training-mode :func:`rnn_forward`.

    dy (T, B, H) and dh_n (B, H) are the gradients of the loss w.r.t. the outputs and the final
    state, each None for zeros; x (T, B, I), the weights, workspace, nonlinearity, lengths and
    reverse are those of the forward. Returns :class:`RnnGrads`; with ``bias=False`` the bias
    gradients are None.
    """
    _require_workspace(workspace, "rnn_forward")
    return RnnGrads(*_core.rnn_backward(dy, dh_n, x, w_ih, w_hh, workspace, nonlinearity=nonlinearity,
                                        lengths=lengths, reverse=bool(reverse), bias=bool(bias),
                                        bidirectional=bool(bidirectional)))


# -- the dense layers' arithmetic --------------------------------------------------------------------

def _rows(a: np.ndarray, width: int) -> np.ndarray:
    """(..., width) as (N, width): a view when it can be one."""
    return a.reshape(-1, width) if a.ndim >= 1 else a


def _linear_arguments(x: ArrayLike, w: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """x (..., I) and w (O, I) as arrays, their shapes checked (the core checks the rest)."""
    w_array = np.asarray(w)
    x_array = np.asarray(x)
    if w_array.ndim != 2:
        raise ValueError(f"w: expected shape (O, I), got {w_array.shape}")
    if x_array.ndim < 1 or x_array.shape[-1] != w_array.shape[1]:
        raise ValueError(f"x: expected shape (..., I) with I = {w_array.shape[1]} (from w), got {x_array.shape}")
    return x_array, w_array


def linear_forward(x: ArrayLike, w: ArrayLike, b: Optional[ArrayLike] = None) -> np.ndarray:
    """y (..., O) = x (..., I) · wᵀ + b, w (O, I), b (O,) or None, in the dtype of ``w`` (float32
    when it is a float32 array, float64 otherwise). Each element is one chain of fused
    multiply-adds over i in order: the same bits on every CPU with FMA."""
    x_array, w_array = _linear_arguments(x, w)
    (y,) = _core.linear_forward(_rows(x_array, w_array.shape[1]), w, b)
    out: np.ndarray = y.reshape(x_array.shape[:-1] + (w_array.shape[0],))
    return out


def linear_backward(dy: ArrayLike, x: ArrayLike, w: ArrayLike, *, bias: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """The gradients of :func:`linear_forward` from dy (..., O): (dx (..., I) = dy · w,
    dw (O, I) = Σ dyᵀ · x, db (O,) = Σ dy over every leading position, or None with
    ``bias=False``), each sum in one order whatever the CPU."""
    x_array, w_array = _linear_arguments(x, w)
    dy_array = np.asarray(dy)
    expected = x_array.shape[:-1] + (w_array.shape[0],)
    if dy_array.shape != expected:
        raise ValueError(f"dy: expected shape {expected} (x's leading axes and O from w), got {dy_array.shape}")
    dx, dw, db = _core.linear_backward(_rows(dy_array, w_array.shape[0]), _rows(x_array, w_array.shape[1]), w,
                                       bias=bool(bias))
    return dx.reshape(x_array.shape), dw, db


def exp(x: ArrayLike) -> np.ndarray:
    """e^x elementwise (float32 stays float32, anything else is computed in float64); 0 where e^x
    is below the smallest normal number."""
    return _core.exp(x)


def log(x: ArrayLike) -> np.ndarray:
    """ln x elementwise (float32 stays float32, anything else float64): −inf at 0, NaN below."""
    return _core.log(x)


def tanh(x: ArrayLike) -> np.ndarray:
    """tanh x elementwise, as the gates compute it (float32 stays float32, anything else float64)."""
    return _core.tanh(x)


def sigmoid(x: ArrayLike) -> np.ndarray:
    """σ(x) = 1 / (1 + e^(−x)) elementwise, as the gates compute it: relative accuracy down to
    σ's smallest normal values (float32 stays float32, anything else float64)."""
    return _core.sigmoid(x)
