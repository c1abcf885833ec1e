"""The recurrent cells in plain NumPy, written straight from the equations: the oracle.

This module is the readable textbook version of what the compiled core computes. It shares no
code with the compiled path (it never imports ``lstm_ext._core``), loops over time steps in
Python, and computes one gate per line. The tests prove the compiled core equal to it, and prove
it right by finite differences.

Shapes follow PyTorch: x (T, B, I), states (B, H). The row blocks of the weights are the gates.

LSTM, gates i, f, g, o: w_ih (4H, I), w_hh (4H, H_out), b_ih and b_hh (4H,), w_hr (P, H)::

    i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
    f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)            (with a projection: h_t = W_hr (o_t ⊙ tanh(c_t)), size P)

GRU, gates r, z, n: w_ih (3H, I), w_hh (3H, H), b_ih and b_hh (3H,)::

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

RNN: w_ih (H, I), w_hh (H, H), b_ih and b_hh (H,)::

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   act = tanh or relu

The single-layer functions run every sequence of the batch for all T steps. ``stack_forward``
and ``stack_backward`` build PyTorch's multi-layer, bidirectional, variable-length network from
them the textbook way: each sequence on its own, cut to its length, and the reverse direction
as the forward cell run over the time-reversed sequence. They take the kind's description
(``lstm_ext.cells``, passed in: this module imports NumPy only) for its single-layer functions and
the parts of its state.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "sigmoid", "lstm_cell", "lstm_forward", "lstm_backward", "gru_cell", "gru_forward", "gru_backward",
    "rnn_cell", "rnn_forward", "rnn_backward", "stack_forward", "stack_backward",
]


def sigmoid(z):
    """σ(z) = 1 / (1 + e^(−z)), evaluated without overflow for large ``|z|``; z any shape."""
    z = np.asarray(z)
    out = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    e = np.exp(z[~positive])  # for z < 0: σ(z) = e^z / (1 + e^z)
    out[~positive] = e / (1.0 + e)
    return out


def _blocks(w, count):
    """Split a (count*H, ·) weight or (count*H,) bias into its gate blocks."""
    return np.split(w, count, axis=0)


def _bias_or_zeros(b, rows, dtype):
    return np.zeros(rows, dtype=dtype) if b is None else b


# =============================================================================================
# LSTM

def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None):
    """One step: x (B, I), h (B, H_out), c (B, H) -> (h', c', (i, f, g, o, m)) with m = o ⊙ tanh(c')."""
    G = w_ih.shape[0]
    W_ii, W_if, W_ig, W_io = _blocks(w_ih, 4)
    W_hi, W_hf, W_hg, W_ho = _blocks(w_hh, 4)
    b_ii, b_if, b_ig, b_io = _blocks(_bias_or_zeros(b_ih, G, w_ih.dtype), 4)
    b_hi, b_hf, b_hg, b_ho = _blocks(_bias_or_zeros(b_hh, G, w_ih.dtype), 4)

    i = sigmoid(x @ W_ii.T + b_ii + h @ W_hi.T + b_hi)
    f = sigmoid(x @ W_if.T + b_if + h @ W_hf.T + b_hf)
    g = np.tanh(x @ W_ig.T + b_ig + h @ W_hg.T + b_hg)
    o = sigmoid(x @ W_io.T + b_io + h @ W_ho.T + b_ho)
    c_new = f * c + i * g
    m = o * np.tanh(c_new)
    h_new = m if w_hr is None else m @ w_hr.T
    return h_new, c_new, (i, f, g, o, m)


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, w_hr=None):
    """Forward over a sequence.

    Returns (y, h_n, c_n, cache): y (T, B, H_out) holds h_t of every step, h_n (B, H_out) and
    c_n (B, H) the final state, and cache what lstm_backward needs.
    """
    T, B, _ = x.shape
    H, H_out = w_ih.shape[0] // 4, w_hh.shape[1]
    h = np.zeros((B, H_out), dtype=x.dtype) if h0 is None else h0
    c = np.zeros((B, H), dtype=x.dtype) if c0 is None else c0

    y = np.zeros((T, B, H_out), dtype=x.dtype)
    steps = []  # per step: (h_{t-1}, c_{t-1}, c_t, (i, f, g, o, m))
    for t in range(T):
        h_new, c_new, gates = lstm_cell(x[t], h, c, w_ih, w_hh, b_ih, b_hh, w_hr)
        steps.append((h, c, c_new, gates))
        h, c = h_new, c_new
        y[t] = h

    cache = {"x": x, "w_ih": w_ih, "w_hh": w_hh, "w_hr": w_hr, "bias": b_ih is not None or b_hh is not None,
             "steps": steps}
    return y, h, c, cache


def lstm_backward(dy, dh_n, dc_n, cache):
    """Backpropagation through time for the forward that produced `cache`.

    dy (T, B, H_out), dh_n (B, H_out) and dc_n (B, H) are the gradients of the loss with respect
    to the outputs and the final state; each may be None (zeros). Returns a dict with dx, dh0,
    dc0, dw_ih, dw_hh, db_ih, db_hh (None when the forward had no bias) and dw_hr (None without
    a projection).
    """
    x, w_ih, w_hh, w_hr, steps = cache["x"], cache["w_ih"], cache["w_hh"], cache["w_hr"], cache["steps"]
    T, B, _ = x.shape
    H, H_out = w_ih.shape[0] // 4, w_hh.shape[1]
    W_hi, W_hf, W_hg, W_ho = _blocks(w_hh, 4)
    W_ii, W_if, W_ig, W_io = _blocks(w_ih, 4)

    dx = np.zeros_like(x)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    dw_hr = None if w_hr is None else np.zeros_like(w_hr)
    db = np.zeros(4 * H, dtype=w_hh.dtype)
    dh_next = np.zeros((B, H_out), dtype=x.dtype) if dh_n is None else dh_n
    dc_next = np.zeros((B, H), dtype=x.dtype) if dc_n is None else dc_n

    for t in reversed(range(T)):
        h_prev, c_prev, c, (i, f, g, o, m) = steps[t]
        dh = dh_next + (0.0 if dy is None else dy[t])

        # h_t = W_hr m_t (projection) or h_t = m_t
        if w_hr is None:
            dm = dh
        else:
            dw_hr += dh.T @ m
            dm = dh @ w_hr

        # m_t = o ⊙ tanh(c_t); c_t = f ⊙ c_{t-1} + i ⊙ g
        tanh_c = np.tanh(c)
        do = dm * tanh_c
        dc = dc_next + dm * o * (1.0 - tanh_c**2)
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
        "db_ih": db.copy() if bias else None, "db_hh": db.copy() if bias else None, "dw_hr": dw_hr,
    }


# =============================================================================================
# GRU

def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One step: x (B, I), h (B, H) -> (h', (r, z, n, hn)) with hn = W_hn h + b_hn."""
    G = w_ih.shape[0]
    W_ir, W_iz, W_in = _blocks(w_ih, 3)
    W_hr, W_hz, W_hn = _blocks(w_hh, 3)
    b_ir, b_iz, b_in = _blocks(_bias_or_zeros(b_ih, G, w_ih.dtype), 3)
    b_hr, b_hz, b_hn = _blocks(_bias_or_zeros(b_hh, G, w_ih.dtype), 3)

    r = sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    hn = h @ W_hn.T + b_hn
    n = np.tanh(x @ W_in.T + b_in + r * hn)
    h_new = (1.0 - z) * n + z * h
    return h_new, (r, z, n, hn)


def gru_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None):
    """Forward over a sequence: (y (T, B, H), h_n (B, H), cache)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0
    y = np.zeros((T, B, H), dtype=x.dtype)
    steps = []  # per step: (h_{t-1}, (r, z, n, hn))
    for t in range(T):
        h_new, gates = gru_cell(x[t], h, w_ih, w_hh, b_ih, b_hh)
        steps.append((h, gates))
        h = h_new
        y[t] = h
    cache = {"x": x, "w_ih": w_ih, "w_hh": w_hh, "bias": b_ih is not None or b_hh is not None, "steps": steps}
    return y, h, cache


def gru_backward(dy, dh_n, cache):
    """BPTT for gru_forward: a dict with dx, dh0, dw_ih, dw_hh, db_ih, db_hh (None without bias)."""
    x, w_ih, w_hh, steps = cache["x"], cache["w_ih"], cache["w_hh"], cache["steps"]
    T, B, _ = x.shape
    H = w_hh.shape[1]
    W_ir, W_iz, W_in = _blocks(w_ih, 3)
    W_hr, W_hz, W_hn = _blocks(w_hh, 3)

    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih, db_hh = np.zeros(3 * H, dtype=w_ih.dtype), np.zeros(3 * H, dtype=w_ih.dtype)
    dh_next = np.zeros((B, H), dtype=x.dtype) if dh_n is None else dh_n

    for t in reversed(range(T)):
        h_prev, (r, z, n, hn) = steps[t]
        dh = dh_next + (0.0 if dy is None else dy[t])

        # h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
        dn = dh * (1.0 - z)
        dz = dh * (h_prev - n)
        # n = tanh(a_n), a_n = W_in x + b_in + r ⊙ hn;  r = σ(a_r);  z = σ(a_z)
        da_n = dn * (1.0 - n**2)
        dr = da_n * hn
        dhn = da_n * r
        da_r = dr * r * (1.0 - r)
        da_z = dz * z * (1.0 - z)

        dgx = np.concatenate([da_r, da_z, da_n], axis=1)  # gradient of x W_ihᵀ + b_ih  (B, 3H)
        dgh = np.concatenate([da_r, da_z, dhn], axis=1)   # gradient of h W_hhᵀ + b_hh  (B, 3H)
        dx[t] = da_r @ W_ir + da_z @ W_iz + da_n @ W_in
        dw_ih += dgx.T @ x[t]
        dw_hh += dgh.T @ h_prev
        db_ih += dgx.sum(axis=0)
        db_hh += dgh.sum(axis=0)
        dh_next = dh * z + da_r @ W_hr + da_z @ W_hz + dhn @ W_hn

    bias = cache["bias"]
    return {"dx": dx, "dh0": dh_next, "dw_ih": dw_ih, "dw_hh": dw_hh,
            "db_ih": db_ih if bias else None, "db_hh": db_hh if bias else None}


# =============================================================================================
# Vanilla RNN

def _activation(nonlinearity):
    if nonlinearity == "tanh":
        return np.tanh, lambda h: 1.0 - h**2
    if nonlinearity == "relu":
        return (lambda a: np.maximum(a, 0.0)), (lambda h: (h > 0).astype(h.dtype))
    raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """One step: x (B, I), h (B, H) -> h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)."""
    act, _ = _activation(nonlinearity)
    H = w_hh.shape[0]
    return act(x @ w_ih.T + _bias_or_zeros(b_ih, H, w_ih.dtype) + h @ w_hh.T + _bias_or_zeros(b_hh, H, w_ih.dtype))


def rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, nonlinearity="tanh"):
    """Forward over a sequence: (y (T, B, H), h_n (B, H), cache)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0
    y = np.zeros((T, B, H), dtype=x.dtype)
    h_prevs = []
    for t in range(T):
        h_prevs.append(h)
        h = rnn_cell(x[t], h, w_ih, w_hh, b_ih, b_hh, nonlinearity)
        y[t] = h
    cache = {"x": x, "w_ih": w_ih, "w_hh": w_hh, "bias": b_ih is not None or b_hh is not None,
             "nonlinearity": nonlinearity, "h_prevs": h_prevs, "y": y}
    return y, h, cache


def rnn_backward(dy, dh_n, cache):
    """BPTT for rnn_forward: a dict with dx, dh0, dw_ih, dw_hh, db_ih, db_hh (None without bias)."""
    x, w_ih, w_hh, y = cache["x"], cache["w_ih"], cache["w_hh"], cache["y"]
    _, slope = _activation(cache["nonlinearity"])
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db = np.zeros(H, dtype=w_ih.dtype)
    dh_next = np.zeros((B, H), dtype=x.dtype) if dh_n is None else dh_n
    for t in reversed(range(T)):
        dh = dh_next + (0.0 if dy is None else dy[t])
        da = dh * slope(y[t])  # act' from h_t = act(a_t)
        dx[t] = da @ w_ih
        dw_ih += da.T @ x[t]
        dw_hh += da.T @ cache["h_prevs"][t]
        db += da.sum(axis=0)
        dh_next = da @ w_hh
    bias = cache["bias"]
    return {"dx": dx, "dh0": dh_next, "dw_ih": dw_ih, "dw_hh": dw_hh,
            "db_ih": db.copy() if bias else None, "db_hh": db.copy() if bias else None}


# =============================================================================================
# PyTorch's multi-layer network, the textbook way

_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")  # PyTorch's base names
_SHORT = {"weight_ih": "w_ih", "weight_hh": "w_hh", "bias_ih": "b_ih", "bias_hh": "b_hh", "weight_hr": "w_hr"}


def _layer_weights(params, k, direction):
    """{base name: array} of layer k and direction (0 forward, 1 reverse) from PyTorch's names."""
    suffix = f"_l{k}" + ("_reverse" if direction else "")
    return {name: params[name + suffix] for name in _WEIGHTS if params.get(name + suffix) is not None}


def stack_forward(cell, x, params, num_layers=1, bidirectional=False, lengths=None, state0=None,
                  dropout_masks=None, options=None):
    """PyTorch's torch.nn.LSTM / GRU / RNN forward, from the single-layer functions above.

    cell: the kind's description (``lstm_ext.cells.LSTM``, ``GRU`` or ``RNN``, or ``layer.cell``),
    which names its single-layer reference functions and the parts of its state; options: the
    kind's own options (``layer.options``: proj_size, nonlinearity). x (T, B, I); params PyTorch's
    state dict as NumPy arrays; lengths (B,) or None; state0 None or a list with one array or None
    per part of the state (h0 (L*D, B, H_out), and c0 (L*D, B, H) for the LSTM); dropout_masks a
    list of L − 1 arrays (T, B, D*H_out) multiplying the outputs of every layer but the last
    (already scaled by 1 / (1 − p)), or None. Returns (y (T, B, D*H_out), state_n (a list, one
    (L*D, B, ·) array per part), cache).

    Each sequence b runs on its own over its first lengths[b] steps; the reverse direction runs
    the same cell over those steps reversed. Outputs past a sequence's length are zero.
    """
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    options = {} if options is None else options
    parts = len(cell.state)
    state0 = [None] * parts if state0 is None else list(state0)
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    layer_input, state_n, caches = x, [[] for _ in range(parts)], []
    for k in range(num_layers):
        outputs = []
        for direction in range(D):
            w = _layer_weights(params, k, direction)
            state_row = k * D + direction
            H_out = w["weight_hh"].shape[1]
            y = np.zeros((T, B, H_out), dtype=x.dtype)
            last, per_sequence = [[] for _ in range(parts)], []
            for b in range(B):
                steps = slice(None, lengths[b])
                x_b = layer_input[steps, b:b + 1]
                if direction:
                    x_b = x_b[::-1]
                state0_b = [None if s is None else s[state_row, b:b + 1] for s in state0]
                y_b, state_b, cache = cell.reference_forward(x_b, w, state0_b, options)
                y[steps, b] = (y_b[::-1] if direction else y_b)[:, 0]
                for rows, s in zip(last, state_b):
                    rows.append(s[0])
                per_sequence.append(cache)
            outputs.append(y)
            for rows, sequences in zip(state_n, last):
                rows.append(np.stack(sequences))
            caches.append(per_sequence)
        layer_output = np.concatenate(outputs, axis=2)
        if dropout_masks is not None and k < num_layers - 1:
            layer_output = layer_output * dropout_masks[k]
        layer_input = layer_output
    cache = {"cell": cell, "num_layers": num_layers, "D": D, "lengths": lengths, "caches": caches,
             "dropout_masks": dropout_masks, "x": x}
    return layer_input, [np.stack(rows) for rows in state_n], cache


def stack_backward(dy, dstate_n, cache):
    """Backward of stack_forward: dy (T, B, D*H_out) and dstate_n (None, or a list with one array
    or None per part of the state: dh_n (L*D, B, H_out), dc_n (L*D, B, H)), None for zeros.
    Returns {'dx', 'dstate0' (a list, one (L*D, B, ·) array per part), and 'd' + each PyTorch
    parameter name}."""
    cell, L, D, lengths = cache["cell"], cache["num_layers"], cache["D"], cache["lengths"]
    x, masks = cache["x"], cache["dropout_masks"]
    parts = len(cell.state)
    dstate_n = [None] * parts if dstate_n is None else list(dstate_n)
    T, B, _ = x.shape
    grads, dstate0 = {}, [{} for _ in range(parts)]
    d_output = dy
    for k in reversed(range(L)):
        if masks is not None and k < L - 1:
            d_output = d_output * masks[k]
        d_input = None
        for direction in range(D):
            state_row = k * D + direction
            per_sequence = cache["caches"][state_row]
            H_out = per_sequence[0]["w_hh"].shape[1]
            dy_dir = None if d_output is None else d_output[:, :, direction * H_out:(direction + 1) * H_out]
            first = [[] for _ in range(parts)]
            for b in range(B):
                steps = slice(None, lengths[b])
                dy_b = None if dy_dir is None else dy_dir[steps, b:b + 1]
                if direction and dy_b is not None:
                    dy_b = dy_b[::-1]
                dstate_b = [None if d is None else d[state_row, b:b + 1] for d in dstate_n]
                g = cell.reference_backward(dy_b, dstate_b, per_sequence[b])
                if d_input is None:
                    d_input = np.zeros((T, B, g["dx"].shape[2]), dtype=x.dtype)
                d_input[steps, b] += (g["dx"][::-1] if direction else g["dx"])[:, 0]
                for rows, part in zip(first, cell.state):
                    rows.append(g["d" + part + "0"][0])
                suffix = f"_l{k}" + ("_reverse" if direction else "")
                for name, short in _SHORT.items():
                    if g.get("d" + short) is not None:
                        grads["d" + name + suffix] = grads.get("d" + name + suffix, 0.0) + g["d" + short]
            for per_row, rows in zip(dstate0, first):
                per_row[state_row] = np.stack(rows)
        d_output = d_input
    return {"dx": d_output, "dstate0": [np.stack([per_row[r] for r in range(L * D)]) for per_row in dstate0],
            **grads}
