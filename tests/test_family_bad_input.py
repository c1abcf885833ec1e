"""Bad input to the recurrent family raises TypeError or ValueError naming the argument, with the
expected and the actual value or shape; never a crash."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lstm_ext

T, B, I, H = 4, 3, 5, 6

CONSTRUCTOR_ERRORS = {
    "proj_size = hidden_size": ("LSTM", dict(proj_size=H), ValueError,
                                r"proj_size: expected an integer in \[0, hidden_size\) = \[0, 6\), got 6"),
    "proj_size > hidden_size": ("LSTM", dict(proj_size=9), ValueError, r"proj_size: .* got 9"),
    "proj_size negative": ("LSTM", dict(proj_size=-1), ValueError, r"proj_size: .* got -1"),
    "proj_size float": ("LSTM", dict(proj_size=2.0), TypeError, r"proj_size: expected an integer .* got float 2.0"),
    "dropout 1": ("LSTM", dict(num_layers=2, dropout=1.0), ValueError,
                  r"dropout: expected a probability in \[0, 1\), got 1.0"),
    "dropout negative": ("GRU", dict(num_layers=2, dropout=-0.1), ValueError, r"dropout: .* got -0.1"),
    "dropout 1.5": ("RNN", dict(num_layers=2, dropout=1.5), ValueError, r"dropout: .* got 1.5"),
    "dropout str": ("GRU", dict(dropout="0.5"), TypeError, r"dropout: expected a probability in \[0, 1\), got str"),
    "num_layers 0": ("LSTM", dict(num_layers=0), ValueError, r"num_layers: expected an integer >= 1, got 0"),
    "num_layers -2": ("GRU", dict(num_layers=-2), ValueError, r"num_layers: expected an integer >= 1, got -2"),
    "num_layers float": ("RNN", dict(num_layers=1.5), TypeError, r"num_layers: expected an integer >= 1, got float"),
    "nonlinearity": ("RNN", dict(nonlinearity="sigmoid"), ValueError,
                     r"nonlinearity: expected 'tanh' or 'relu', got 'sigmoid'"),
    "GRU proj_size": ("GRU", dict(proj_size=2), TypeError, r"unexpected keyword argument 'proj_size'"),
}


@pytest.mark.parametrize("kind, changes, error, message", CONSTRUCTOR_ERRORS.values(), ids=CONSTRUCTOR_ERRORS.keys())
def test_constructor_errors(kind, changes, error, message):
    with pytest.raises(error, match=message):
        getattr(lstm_ext, kind)(I, H, **changes)


LENGTH_ERRORS = {
    "too long": ([4, 5, 1], ValueError, r"lengths: expected every length in \[1, T\] = \[1, 4\], got 5 at index 1"),
    "zero": ([4, 0, 1], ValueError, r"lengths: .*\[1, 4\], got 0 at index 1"),
    "negative": ([-1, 2, 1], ValueError, r"lengths: .*got -1 at index 0"),
    "too few": ([4, 3], ValueError, r"lengths: expected shape \(B,\) = \(3,\), got \(2,\)"),
    "too many": ([4, 3, 2, 1], ValueError, r"lengths: expected shape \(B,\) = \(3,\), got \(4,\)"),
    "2-D": ([[4, 3, 2]], ValueError, r"lengths: expected shape \(B,\) = \(3,\), got \(1, 3\)"),
    "floats": ([4.0, 3.0, 2.0], TypeError, r"lengths: expected integers .* got dtype float64"),
    "strings": (["4", "3", "2"], TypeError, r"lengths: expected integers"),
    "huge unsigned": (np.array([2**64 - 1, 2, 3], dtype=np.uint64), ValueError, r"lengths: .*at index 0"),
}


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("lengths, error, message", LENGTH_ERRORS.values(), ids=LENGTH_ERRORS.keys())
def test_layer_lengths_errors(kind, lengths, error, message):
    layer = getattr(lstm_ext, kind)(I, H, bidirectional=True)
    with pytest.raises(error, match=message):
        layer(np.zeros((T, B, I)), lengths=lengths)
    layer(np.zeros((T, B, I)), lengths=[4, 1, 2])  # the layer still works


@pytest.mark.parametrize("lengths, error, message", LENGTH_ERRORS.values(), ids=LENGTH_ERRORS.keys())
@pytest.mark.parametrize("op", ["lstm", "gru", "rnn"])
def test_functional_lengths_errors(op, lengths, error, message):
    rows = {"lstm": 4, "gru": 3, "rnn": 1}[op] * H
    forward = getattr(lstm_ext, f"{op}_forward")
    with pytest.raises(error, match=message):
        forward(np.zeros((T, B, I)), np.zeros((rows, I)), np.zeros((rows, H)), lengths=lengths)


def test_state_structure_and_shape_errors():
    lstm = lstm_ext.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2)
    gru = lstm_ext.GRU(I, H, num_layers=3)
    x = np.zeros((T, B, I))

    def fails(layer, state, error, message):
        with pytest.raises(error, match=message):
            layer(x, state)

    h, c = np.zeros((4, B, 2)), np.zeros((4, B, H))
    lstm(x, (h, c))
    fails(lstm, h, TypeError, re.escape("state: expected a tuple (h, c) of two arrays, h of shape "
                                        "(num_layers * num_directions, B, proj_size) = (4, 3, 2) and c of shape "
                                        "(num_layers * num_directions, B, H) = (4, 3, 6), or None; got ndarray"))
    fails(lstm, (np.zeros((2, B, 2)), c), ValueError,
          re.escape("state[0] (h): expected shape (num_layers * num_directions, B, proj_size) = (4, 3, 2), "
                    "got (2, 3, 2)"))
    fails(lstm, (h, np.zeros((4, B, 2))), ValueError,
          re.escape("state[1] (c): expected shape (num_layers * num_directions, B, H) = (4, 3, 6), got (4, 3, 2)"))
    gru(x, np.zeros((3, B, H)))
    fails(gru, (np.zeros((3, B, H)),), TypeError,
          re.escape("state: expected one array h of shape (num_layers * num_directions, B, H) = (3, 3, 6), or None; "
                    "got tuple (GRU has no cell state)"))
    fails(gru, np.zeros((1, B, H)), ValueError,
          re.escape("state: expected shape (num_layers * num_directions, B, H) = (3, 3, 6), got (1, 3, 6)"))
    fails(gru, np.zeros((3, B, H), dtype=complex), TypeError, r"state: expected real numbers")


def test_backward_errors_name_the_bidirectional_shapes():
    layer = lstm_ext.GRU(I, H, num_layers=2, bidirectional=True)
    layer(np.zeros((T, B, I)))
    with pytest.raises(ValueError, match=re.escape("dy: expected shape of y (T, B, H) = (4, 3, 12), got (4, 3, 6)")):
        layer.backward(np.zeros((T, B, H)))
    with pytest.raises(ValueError, match=re.escape("dstate: expected shape (num_layers * num_directions, B, H) = "
                                                   "(4, 3, 6), got (2, 3, 6)")):
        layer.backward(None, np.zeros((2, B, H)))
    dx, dh0 = layer.backward(None, None)  # the workspace survived the failed calls
    assert dx.shape == (T, B, I) and dh0.shape == (4, B, H) and not dx.any()


def test_functional_weight_errors():
    x = np.zeros((T, B, I))
    w_ih, w_hh = np.zeros((4 * H, I)), np.zeros((4 * H, 2))
    lstm_ext.lstm_forward(x, w_ih, w_hh, w_hr=np.zeros((2, H)))
    with pytest.raises(ValueError, match=r"w_hr: expected shape \(P, H\) = \(2, 6\), got \(3, 6\)"):
        lstm_ext.lstm_forward(x, w_ih, w_hh, w_hr=np.zeros((3, H)))
    # A projection to as many units as H or more is refused, as torch refuses proj_size >= hidden_size.
    with pytest.raises(ValueError, match=r"w_hh: expected shape \(4H, P\) with a projection to fewer units than H "
                                         r"\(P < H = 6\), got \(24, 8\)"):
        lstm_ext.lstm_forward(x, w_ih, np.zeros((4 * H, 8)), w_hr=np.zeros((8, H)))
    with pytest.raises(ValueError, match=r"P < H = 6\), got \(24, 6\)"):
        lstm_ext.lstm_backward(None, None, None, x, w_ih, np.zeros((4 * H, 6)), np.zeros(1), w_hr=np.zeros((6, H)))
    with pytest.raises(ValueError, match=r"w_hh: expected shape \(4H, H\) with H >= 1.*got \(24, 2\)"):
        lstm_ext.lstm_forward(x, w_ih, w_hh)  # a (4H, P) w_hh needs w_hr
    with pytest.raises(ValueError, match=r"h0: expected shape \(B, P\) = \(3, 2\), got \(3, 6\)"):
        lstm_ext.lstm_forward(x, w_ih, w_hh, h0=np.zeros((B, H)), w_hr=np.zeros((2, H)))
    with pytest.raises(ValueError, match=r"w_hh: expected shape \(3H, H\) with H >= 1 \(3 gate blocks.*got \(20, 6\)"):
        lstm_ext.gru_forward(x, np.zeros((18, I)), np.zeros((20, H)))
    with pytest.raises(ValueError, match=r"w_ih: expected shape \(H, I\) with H = 6 \(from w_hh\).*got \(5, 5\)"):
        lstm_ext.rnn_forward(x, np.zeros((5, I)), np.zeros((H, H)))
    with pytest.raises(ValueError, match=r"nonlinearity: expected 'tanh' or 'relu', got 'gelu'"):
        lstm_ext.rnn_forward(x, np.zeros((H, I)), np.zeros((H, H)), nonlinearity="gelu")
    with pytest.raises(ValueError, match=r"b_hh: expected shape \(3H,\) = \(18,\), got \(24,\)"):
        lstm_ext.gru_forward(x, np.zeros((18, I)), np.zeros((18, H)), b_hh=np.zeros(24))


def test_a_workspace_from_another_op_or_size_is_refused():
    x = np.zeros((T, B, I))
    lstm_ws = lstm_ext.lstm_forward(x, np.zeros((4 * H, I)), np.zeros((4 * H, H)), training=True).workspace
    with pytest.raises(ValueError, match=r"workspace: expected the 1-D workspace of a training forward with "
                                         r"\(T, B, H\) = \(4, 3, 6\)"):
        lstm_ext.gru_backward(None, None, x, np.zeros((3 * H, I)), np.zeros((3 * H, H)), lstm_ws)
    with pytest.raises(ValueError, match=r"workspace: expected the workspace of rnn_forward\(..., training=True\)"):
        lstm_ext.rnn_backward(None, None, x, np.zeros((H, I)), np.zeros((H, H)), None)
    proj_ws = lstm_ext.lstm_forward(x, np.zeros((4 * H, I)), np.zeros((4 * H, 2)), w_hr=np.zeros((2, H)),
                                    training=True).workspace
    with pytest.raises(ValueError, match=r"workspace: .*\(T, B, H\) = \(4, 3, 6\).*got"):
        lstm_ext.lstm_backward(None, None, None, x, np.zeros((4 * H, I)), np.zeros((4 * H, H)), proj_ws)
