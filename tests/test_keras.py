"""Keras weights imported: a layer built by lstm_ext.from_keras equals Keras's own formulas,
written here in NumPy from Keras's documentation (Keras itself is not needed): kernels (I, G*H)
and (H, G*H), a single bias (LSTM, SimpleRNN) or an input and a recurrent bias (GRU with
reset_after=True), gates i, f, c, o (LSTM) and z, r, h (GRU)."""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext

B, T, I, H = 3, 6, 4, 5


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def keras_lstm(x, kernel, recurrent_kernel, bias):
    """keras.layers.LSTM(H, return_sequences=True, return_state=True) on x (B, T, I)."""
    h, c, ys = np.zeros((x.shape[0], H)), np.zeros((x.shape[0], H)), []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent_kernel + (0.0 if bias is None else bias)
        z_i, z_f, z_c, z_o = np.split(z, 4, axis=1)
        c = sigmoid(z_f) * c + sigmoid(z_i) * np.tanh(z_c)
        h = sigmoid(z_o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys, axis=1), h, c


def keras_gru(x, kernel, recurrent_kernel, bias):
    """keras.layers.GRU(H, reset_after=True): bias (2, 3H) = [input bias, recurrent bias], gates z, r, h."""
    input_bias, recurrent_bias = (np.zeros(3 * H), np.zeros(3 * H)) if bias is None else bias
    h, ys = np.zeros((x.shape[0], H)), []
    for t in range(x.shape[1]):
        x_z, x_r, x_h = np.split(x[:, t] @ kernel + input_bias, 3, axis=1)
        rec_z, rec_r, rec_h = np.split(h @ recurrent_kernel + recurrent_bias, 3, axis=1)
        z = sigmoid(x_z + rec_z)
        r = sigmoid(x_r + rec_r)
        hh = np.tanh(x_h + r * rec_h)
        h = z * h + (1.0 - z) * hh
        ys.append(h)
    return np.stack(ys, axis=1), h


def keras_simple_rnn(x, kernel, recurrent_kernel, bias, activation):
    h, ys = np.zeros((x.shape[0], H)), []
    for t in range(x.shape[1]):
        h = activation(x[:, t] @ kernel + h @ recurrent_kernel + (0.0 if bias is None else bias))
        ys.append(h)
    return np.stack(ys, axis=1), h


@pytest.fixture
def rng():
    return np.random.default_rng(42)


@pytest.mark.parametrize("use_bias", [True, False])
def test_lstm_from_keras(rng, use_bias):
    weights = [rng.uniform(-0.5, 0.5, (I, 4 * H)), rng.uniform(-0.5, 0.5, (H, 4 * H))]
    if use_bias:
        weights.append(rng.uniform(-0.5, 0.5, 4 * H))
    x = rng.standard_normal((B, T, I))
    layer = lstm_ext.from_keras("lstm", weights, dtype=np.float64)
    assert layer.batch_first and layer.bias == use_bias and (layer.input_size, layer.hidden_size) == (I, H)
    y, (h_n, c_n) = layer(x)
    y_k, h_k, c_k = keras_lstm(x, weights[0], weights[1], weights[2] if use_bias else None)
    np.testing.assert_allclose(y, y_k, rtol=0, atol=1e-13)
    np.testing.assert_allclose(h_n[0], h_k, rtol=0, atol=1e-13)
    np.testing.assert_allclose(c_n[0], c_k, rtol=0, atol=1e-13)
    if use_bias:
        assert not layer.bias_hh_l0.any()  # Keras has one bias: b_ih = bias, b_hh = 0


@pytest.mark.parametrize("use_bias", [True, False])
def test_gru_from_keras_reorders_z_r_h(rng, use_bias):
    weights = [rng.uniform(-0.5, 0.5, (I, 3 * H)), rng.uniform(-0.5, 0.5, (H, 3 * H))]
    if use_bias:
        weights.append(rng.uniform(-0.5, 0.5, (2, 3 * H)))
    x = rng.standard_normal((B, T, I))
    layer = lstm_ext.from_keras("gru", weights, dtype=np.float64)
    y, h_n = layer(x)
    y_k, h_k = keras_gru(x, weights[0], weights[1], weights[2] if use_bias else None)
    np.testing.assert_allclose(y, y_k, rtol=0, atol=1e-13)
    np.testing.assert_allclose(h_n[0], h_k, rtol=0, atol=1e-13)
    # PyTorch's r block is Keras's second block.
    np.testing.assert_array_equal(layer.weight_ih_l0[:H], weights[0][:, H:2 * H].T)


@pytest.mark.parametrize("nonlinearity, activation", [("tanh", np.tanh), ("relu", lambda a: np.maximum(a, 0))])
def test_simple_rnn_from_keras(rng, nonlinearity, activation):
    weights = [rng.uniform(-0.5, 0.5, (I, H)), rng.uniform(-0.5, 0.5, (H, H)), rng.uniform(-0.5, 0.5, H)]
    x = rng.standard_normal((B, T, I))
    layer = lstm_ext.from_keras("simple_rnn", weights, nonlinearity=nonlinearity, dtype=np.float64)
    y, h_n = layer(x)
    y_k, h_k = keras_simple_rnn(x, *weights, activation)
    np.testing.assert_allclose(y, y_k, rtol=0, atol=1e-13)
    np.testing.assert_allclose(h_n[0], h_k, rtol=0, atol=1e-13)


def test_from_keras_float32_and_time_major(rng):
    weights = [rng.uniform(-0.5, 0.5, (I, 4 * H)), rng.uniform(-0.5, 0.5, (H, 4 * H)), rng.uniform(-0.5, 0.5, 4 * H)]
    x = rng.standard_normal((B, T, I))
    layer = lstm_ext.from_keras("LSTM", weights, batch_first=False)
    assert layer.dtype == np.float32 and not layer.batch_first
    y, _ = layer(x.swapaxes(0, 1))
    np.testing.assert_allclose(y.swapaxes(0, 1), keras_lstm(x, *weights)[0], rtol=0, atol=1e-5)


def test_from_keras_errors(rng):
    lstm_weights = [np.zeros((I, 4 * H)), np.zeros((H, 4 * H)), np.zeros(4 * H)]
    with pytest.raises(ValueError, match=r"reset_after: a Keras GRU with reset_after=False .* cannot express"):
        lstm_ext.from_keras("gru", [np.zeros((I, 3 * H)), np.zeros((H, 3 * H)), np.zeros(3 * H)], reset_after=False)
    with pytest.raises(ValueError, match=r"kind: expected 'lstm', 'gru' or 'simple_rnn', got 'conv'"):
        lstm_ext.from_keras("conv", lstm_weights)
    with pytest.raises(ValueError, match=r"recurrent_kernel: expected shape \(H, 4H\) with H >= 1, got \(5, 15\)"):
        lstm_ext.from_keras("lstm", [np.zeros((I, 4 * H)), np.zeros((H, 3 * H))])
    with pytest.raises(ValueError, match=r"kernel: expected shape \(I, 4H\) = \(I, 20\) with I >= 1, got \(4, 15\)"):
        lstm_ext.from_keras("lstm", [np.zeros((I, 3 * H)), np.zeros((H, 4 * H))])
    with pytest.raises(ValueError, match=r"bias: expected shape \(2, 3H\) .* = \(2, 15\), got \(15,\)"):
        lstm_ext.from_keras("gru", [np.zeros((I, 3 * H)), np.zeros((H, 3 * H)), np.zeros(3 * H)])
    with pytest.raises(ValueError, match=r"bias: expected shape \(4H,\) = \(20,\), got \(2, 20\)"):
        lstm_ext.from_keras("lstm", lstm_weights[:2] + [np.zeros((2, 4 * H))])
    with pytest.raises(TypeError, match=r"weights: expected a list \[kernel, recurrent_kernel\].*got ndarray"):
        lstm_ext.from_keras("lstm", np.zeros((I, 4 * H)))
    with pytest.raises(TypeError, match=r"kernel: expected real numbers"):
        lstm_ext.from_keras("lstm", [np.zeros((I, 4 * H), dtype=complex)] + lstm_weights[1:])
