"""The LSTM in plain NumPy, written straight from the equations: the oracle.

This module is the readable textbook version of what the compiled core computes. It shares no
code with the compiled path (it never imports ``lstm_ext._core``), loops over time steps in
Python, and computes one gate per line. The tests prove the compiled core equal to it, and prove
it right by finite differences.

Shapes follow PyTorch: x (T, B, I), w_ih (4H, I), w_hh (4H, H), b_ih and b_hh (4H,),
h0 and c0 (B, H). The four row blocks of the weights are the gates i, f, g, o:

    i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
    f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)
"""

from __future__ import annotations

import numpy as np

__all__ = ["sigmoid", "lstm_forward", "lstm_backward", "lstm_cell"]


def sigmoid(z):
    """σ(z) = 1 / (1 + e^(−z)), evaluated without overflow for large |z|."""
    z = np.asarray(z)
    out = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    e = np.exp(z[~positive])  # for z < 0: σ(z) = e^z / (1 + e^z)
    out[~positive] = e / (1.0 + e)
    return out


def _gate_blocks(w):
    """Split a (4H, ·) weight or (4H,) bias into its i, f, g, o blocks."""
    return np.split(w, 4, axis=0)


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One step: x (B, I), h and c (B, H) -> (h', c'), and the step's activated gates."""
    H = w_hh.shape[1]
    W_ii, W_if, W_ig, W_io = _gate_blocks(w_ih)
    W_hi, W_hf, W_hg, W_ho = _gate_blocks(w_hh)
    zeros = np.zeros(4 * H, dtype=w_hh.dtype)
    b_ii, b_if, b_ig, b_io = _gate_blocks(zeros if b_ih is None else b_ih)
    b_hi, b_hf, b_hg, b_ho = _gate_blocks(zeros if b_hh is None else b_hh)

    i = sigmoid(x @ W_ii.T + b_ii + h @ W_hi.T + b_hi)
    f = sigmoid(x @ W_if.T + b_if + h @ W_hf.T + b_hf)
    g = np.tanh(x @ W_ig.T + b_ig + h @ W_hg.T + b_hg)
    o = sigmoid(x @ W_io.T + b_io + h @ W_ho.T + b_ho)
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return h_new, c_new, (i, f, g, o)


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None):
    """Forward over a sequence.

    Returns (y, h_n, c_n, cache): y (T, B, H) holds h_t of every step, h_n and c_n (B, H) the
    final state, and cache what lstm_backward needs.
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0
    c = np.zeros((B, H), dtype=x.dtype) if c0 is None else c0

    y = np.zeros((T, B, H), dtype=x.dtype)
    steps = []  # per step: (h_{t-1}, c_{t-1}, c_t, (i, f, g, o))
    for t in range(T):
        h_new, c_new, gates = lstm_cell(x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        steps.append((h, c, c_new, gates))
        h, c = h_new, c_new
        y[t] = h

    cache = {"x": x, "w_ih": w_ih, "w_hh": w_hh, "bias": b_ih is not None or b_hh is not None,
             "steps": steps}
    return y, h, c, cache


def lstm_backward(dy, dh_n, dc_n, cache):
    """Backpropagation through time for the forward that produced `cache`.

    dy (T, B, H), dh_n and dc_n (B, H) are the gradients of the loss with respect to the outputs
    and the final state; each may be None (zeros). Returns a dict with dx, dh0, dc0, dw_ih, dw_hh,
    db_ih and db_hh (the bias gradients are None when the forward had no bias).
    """
    x, w_ih, w_hh, steps = cache["x"], cache["w_ih"], cache["w_hh"], cache["steps"]
    T, B, _ = x.shape
    H = w_hh.shape[1]
    W_hi, W_hf, W_hg, W_ho = _gate_blocks(w_hh)
    W_ii, W_if, W_ig, W_io = _gate_blocks(w_ih)

    dx = np.zeros_like(x)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    db = np.zeros(4 * H, dtype=w_hh.dtype)
    dh_next = np.zeros((B, H), dtype=x.dtype) if dh_n is None else dh_n
    dc_next = np.zeros((B, H), dtype=x.dtype) if dc_n is None else dc_n

    for t in reversed(range(T)):
        h_prev, c_prev, c, (i, f, g, o) = steps[t]
        dh = dh_next + (0.0 if dy is None else dy[t])

        # h_t = o ⊙ tanh(c_t); c_t = f ⊙ c_{t-1} + i ⊙ g
        tanh_c = np.tanh(c)
        do = dh * tanh_c
        dc = dc_next + dh * o * (1.0 - tanh_c**2)
        di = dc * g
        df = dc * c_prev
        dg = dc * i

        # Through the activations to the pre-activations a (σ' = σ(1 − σ), tanh' = 1 − tanh²).
        da_i = di * i * (1.0 - i)
        da_f = df * f * (1.0 - f)
        da_g = dg * (1.0 - g**2)
        da_o = do * o * (1.0 - o)
        da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)  # (B, 4H)

        # a = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh
        dx[t] = da_i @ W_ii + da_f @ W_if + da_g @ W_ig + da_o @ W_io
        dw_ih += da.T @ x[t]
        dw_hh += da.T @ h_prev
        db += da.sum(axis=0)
        dh_next = da_i @ W_hi + da_f @ W_hf + da_g @ W_hg + da_o @ W_ho
        dc_next = dc * f

    bias = cache["bias"]
    return {
        "dx": dx, "dh0": dh_next, "dc0": dc_next, "dw_ih": dw_ih, "dw_hh": dw_hh,
        "db_ih": db.copy() if bias else None, "db_hh": db.copy() if bias else None,
    }
