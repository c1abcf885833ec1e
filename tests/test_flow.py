"""gradient_flow: each ∂L/∂h_t (and ∂L/∂c_t) against finite differences of the loss with respect
to the state handed from step t to step t + 1; the vanishing gradient of a vanilla RNN."""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from lstm_ext import functional as F

T, I, H = 6, 3, 4


def loss_from(layer, x, t, h, c, g):
    """L = g · h_{T-1}, running steps t + 1 ... T − 1 from the state (h, c) after step t."""
    p = {k: v.astype(np.float64) for k, v in layer.named_parameters().items()}
    w = (p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"])
    if t == T - 1:
        return float(g @ h[0])
    rest = x[t + 1:]
    if layer.mode == "LSTM":
        out = F.lstm_forward(rest, *w, h, c)
    elif layer.mode == "GRU":
        out = F.gru_forward(rest, *w, h)
    else:
        out = F.rnn_forward(rest, *w, h, nonlinearity=layer.nonlinearity)
    return float(g @ out.h_n[0])


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_norms_are_the_gradients_with_respect_to_the_state(kind, rng):
    layer = getattr(lstm_ext, kind)(I, H, dtype=np.float64, seed=4)
    x = rng.standard_normal((T, 1, I))
    flow = lstm_ext.gradient_flow(layer, x, seed=2)
    g = np.random.default_rng(2).standard_normal(H)
    g /= np.linalg.norm(g)
    # The states after every step, from a forward one step at a time.
    p = {k: v for k, v in layer.named_parameters().items()}
    w = (p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"])
    states, h, c = [], None, None
    for t in range(T):
        out = (F.lstm_forward(x[t:t + 1], *w, h, c) if kind == "LSTM" else
               F.gru_forward(x[t:t + 1], *w, h) if kind == "GRU" else F.rnn_forward(x[t:t + 1], *w, h))
        h, c = out.h_n, getattr(out, "c_n", None)
        states.append((h, c))
    for t in range(T):
        h, c = states[t]
        for part in (["h", "c"] if kind == "LSTM" else ["h"]):
            base = h if part == "h" else c
            numeric = np.zeros(H)
            for i in range(H):
                up, down = base.copy(), base.copy()
                up[0, i] += 1e-6
                down[0, i] -= 1e-6
                args_up = (up, c) if part == "h" else (h, up)
                args_down = (down, c) if part == "h" else (h, down)
                numeric[i] = (loss_from(layer, x, t, *args_up, g) - loss_from(layer, x, t, *args_down, g)) / 2e-6
            assert flow[part][t] == pytest.approx(np.linalg.norm(numeric), rel=1e-6, abs=1e-12), (part, t)


def test_a_vanilla_rnn_forgets_and_an_open_lstm_cell_does_not(rng):
    x = rng.standard_normal((100, 8, 4)) * 0.5
    rnn = lstm_ext.RNN(4, 16, seed=0)
    lstm = lstm_ext.LSTM(4, 16, seed=0)
    lstm.bias_ih_l0[16:32] = 6.0  # forget gates open
    rnn_flow, lstm_flow = lstm_ext.gradient_flow(rnn, x), lstm_ext.gradient_flow(lstm, x)
    assert rnn_flow["h"][0] / rnn_flow["h"][-1] < 1e-8
    assert lstm_flow["c"][0] / lstm_flow["c"][-2] > 0.1


def test_a_model_is_followed_through_its_first_recurrent_layer(rng):
    model = lstm_ext.Sequential(lstm_ext.Embedding(5, 3, seed=0), lstm_ext.GRU(3, 4, batch_first=True, seed=0),
                                lstm_ext.LastStep(), lstm_ext.Linear(4, 2))
    tokens = rng.integers(0, 5, size=(3, 7))
    flow = lstm_ext.gradient_flow(model, tokens)
    assert model.training  # left as it was
    embedding = model.layers[0].eval()
    direct = lstm_ext.gradient_flow(model.layers[1], embedding(tokens))
    np.testing.assert_array_equal(flow["h"], direct["h"])
    with pytest.raises(ValueError, match="one layer in one direction"):
        lstm_ext.gradient_flow(lstm_ext.LSTM(3, 4, bidirectional=True), rng.standard_normal((5, 1, 3)))
    with pytest.raises(TypeError, match="layer_or_model"):
        lstm_ext.gradient_flow(lstm_ext.Linear(2, 2), rng.standard_normal((5, 1, 2)))
