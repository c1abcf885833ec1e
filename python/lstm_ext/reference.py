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

Its variants, each optional, any combination (absent, the cell above is computed as written):
peepholes w_ch (3, H) with rows p_i, p_f, p_o; recurrent dropout keep_h (B, H_out), 0 or
1 / (1 − p), the same for every step of a sequence; zoneout zc_t (B, H) and zh_t (B, H_out) of
step t, 0/1 in training (1 keeps the previous value), the constant z in eval::

    h̄_{t-1} = keep_h ⊙ h_{t-1}
    i_t = σ(W_ii x_t + b_ii + W_hi h̄_{t-1} + b_hi + p_i ⊙ c_{t-1})
    f_t = σ(W_if x_t + b_if + W_hf h̄_{t-1} + b_hf + p_f ⊙ c_{t-1})
    g_t = tanh(W_ig x_t + b_ig + W_hg h̄_{t-1} + b_hg)
    c̃_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    o_t = σ(W_io x_t + b_io + W_ho h̄_{t-1} + b_ho + p_o ⊙ c̃_t)     (ONNX's peephole: on the new cell)
    m_t = o_t ⊙ tanh(c̃_t),   h̃_t = m_t   (with a projection: h̃_t = W_hr m_t)
    c_t = zc_t ⊙ c_{t-1} + (1 − zc_t) ⊙ c̃_t
    h_t = zh_t ⊙ h_{t-1} + (1 − zh_t) ⊙ h̃_t,   y_t = h_t

The gradients treat the masks as constants.

GRU, gates r, z, n: w_ih (3H, I), w_hh (3H, H), b_ih and b_hh (3H,)::

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

Layer normalization (Ba, Kiros and Hinton 2016), optional for the LSTM (with any of its variants)
and the GRU: ``ln``, a dict of the arrays γ (``ln_*_weight``) and β (``ln_*_bias``), or None for
none. Over the whole vector v (its last axis), μ its mean, σ² its population variance (ddof 0)::

    LN(v; γ, β) = γ ⊙ (v − μ) / sqrt(σ² + ε) + β,   ε = 1e-5

LSTM: all 4H pre-activations of each product normalized at once, and the new cell before its
tanh; γ_ih, β_ih, γ_hh, β_hh (4H,), γ_c, β_c (H,)::

    a_t = LN(W_ih x_t; γ_ih, β_ih) + LN(W_hh h̄_{t-1}; γ_hh, β_hh) + b_ih + b_hh   (blocks a_i, a_f, a_g, a_o)
    i_t = σ(a_i + p_i ⊙ c_{t-1}),   f_t = σ(a_f + p_f ⊙ c_{t-1}),   g_t = tanh(a_g)
    c̃_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    o_t = σ(a_o + p_o ⊙ c̃_t)                   (peepholes see c̃_t itself, not its LN)
    m_t = o_t ⊙ tanh(LN(c̃_t; γ_c, β_c))       (projection and zoneout as above: zoneout mixes c̃_t)

GRU: γ_ih, β_ih, γ_hh, β_hh (3H,)::

    ax_t = LN(W_ih x_t; γ_ih, β_ih) + b_ih,   ah_t = LN(W_hh h_{t-1}; γ_hh, β_hh) + b_hh   (blocks r, z, n)
    r_t = σ(ax_r + ah_r),   z_t = σ(ax_z + ah_z),   n_t = tanh(ax_n + r_t ⊙ ah_n)
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
    "sigmoid", "LN_EPS", "layer_norm", "layer_norm_backward", "lstm_cell", "lstm_forward", "lstm_backward",
    "gru_cell", "gru_forward", "gru_backward", "rnn_cell", "rnn_forward", "rnn_backward", "stack_forward",
    "stack_backward",
]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e^(−z)), evaluated without overflow for large ``|z|``; z any shape."""
    z = np.asanyarray(z)  # any: lstm_ext.testing.sensitivity's arrays, which round each operation, stay theirs
    out: np.ndarray = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    e = np.exp(z[~positive])  # for z < 0: σ(z) = e^z / (1 + e^z)
    out[~positive] = e / (1.0 + e)
    return out


def _blocks(w: np.ndarray, count: int) -> list[np.ndarray]:
    """Split a (count*H, ·) weight or (count*H,) bias into its gate blocks."""
    return np.split(w, count, axis=0)


def _bias_or_zeros(b: np.ndarray | None, rows: int, dtype: np.dtype) -> np.ndarray:
    return np.zeros(rows, dtype=dtype) if b is None else b


def _at_step(mask: np.ndarray | float, t: int) -> np.ndarray | float:
    """Step t's slice of a per-step mask (T, B, ·); a number (eval-mode zoneout) is every step's."""
    return mask[t] if isinstance(mask, np.ndarray) and mask.ndim > 0 else mask


def _columns(a: np.ndarray, count: int) -> list[np.ndarray]:
    """Split (B, count*H) pre-activations into their gate blocks (B, H)."""
    return np.split(a, count, axis=1)


# =============================================================================================
# Layer normalization

LN_EPS = 1e-5  # ε of LN(v) = γ ⊙ (v − μ) / sqrt(σ² + ε) + β


def layer_norm(v: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = LN_EPS
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Layer norm over the last axis: v (..., N), gamma and beta (N,) -> (out (..., N), cache).

    The cache keeps v̂, r and γ for layer_norm_backward::

        μ = mean(v),   σ² = mean((v − μ)²)        (population variance)
        r = 1 / sqrt(σ² + ε)
        v̂ = (v − μ) ⊙ r
        out = γ ⊙ v̂ + β
    """
    mu = v.mean(axis=-1, keepdims=True)              # (..., 1)
    var = v.var(axis=-1, keepdims=True)              # (..., 1), ddof 0
    rstd = 1.0 / np.sqrt(var + eps)                  # (..., 1)
    v_hat = (v - mu) * rstd                          # (..., N)
    out = gamma * v_hat + beta
    return out, {"v_hat": v_hat, "rstd": rstd, "gamma": gamma}


def layer_norm_backward(dout: np.ndarray, cache: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of layer_norm: dout (..., N) -> (dv (..., N), dgamma (N,), dbeta (N,)), the
    parameters' gradients summed over the leading axes::

        dβ = Σ dout,   dγ = Σ dout ⊙ v̂,   dv̂ = dout ⊙ γ
        dv = r ⊙ (dv̂ − mean(dv̂) − v̂ ⊙ mean(dv̂ ⊙ v̂))      (means over the last axis)
    """
    v_hat, rstd, gamma = cache["v_hat"], cache["rstd"], cache["gamma"]
    N = v_hat.shape[-1]
    dbeta = dout.reshape(-1, N).sum(axis=0)
    dgamma = (dout * v_hat).reshape(-1, N).sum(axis=0)
    dv_hat = dout * gamma
    dv = rstd * (dv_hat - dv_hat.mean(axis=-1, keepdims=True) - v_hat * (dv_hat * v_hat).mean(axis=-1, keepdims=True))
    return dv, dgamma, dbeta


# The parameters of layer norm in ``ln`` by cell: γ (..._weight) and β (..._bias) of each LN.
LSTM_LN_NAMES = ("ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_c_weight", "ln_c_bias")
GRU_LN_NAMES = LSTM_LN_NAMES[:4]


def _ln_gradients(ln: dict[str, np.ndarray] | None, names: tuple[str, ...]) -> dict[str, np.ndarray | None]:
    """{"d" + name: zeros} accumulators for the LN parameters, or None-valued ones without LN."""
    if ln is None:
        return {"d" + name: None for name in names}
    return {"d" + name: np.zeros_like(ln[name]) for name in names}


def _add_ln_gradients(dln: dict[str, np.ndarray | None], prefix: str, dgamma: np.ndarray, dbeta: np.ndarray) -> None:
    dln["d" + prefix + "_weight"] += dgamma
    dln["d" + prefix + "_bias"] += dbeta


# =============================================================================================
# LSTM

def lstm_cell(x: np.ndarray, h: np.ndarray, c: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
              b_ih: np.ndarray | None = None, b_hh: np.ndarray | None = None, w_hr: np.ndarray | None = None,
              w_ch: np.ndarray | None = None, keep_h: np.ndarray | float | None = None,
              zone_c: np.ndarray | float | None = None, zone_h: np.ndarray | float | None = None, *,
              ln: dict[str, np.ndarray] | None = None,
              ) -> tuple[np.ndarray, np.ndarray,
                         tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
                         | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                 dict[str, np.ndarray | dict[str, np.ndarray]]]]:
    """One step: x (B, I), h (B, H_out), c (B, H) -> (h_t, c_t, (i, f, g, o, m, c̃)).

    m = o ⊙ tanh(c̃) and c̃ is the cell's new value before zoneout (c̃ is c_t without zoneout).
    Variants, each None for the plain cell: w_ch (3, H) peephole rows p_i, p_f, p_o; keep_h
    (B, H_out) recurrent-dropout multiplier of h; zone_c (B, H) and zone_h (B, H_out) zoneout
    weights of the previous values; ln the layer norm's γ and β (LSTM_LN_NAMES: ``ln_ih_*`` and
    ``ln_hh_*`` (4H,), ``ln_c_*`` (H,)). With ln, m = o ⊙ tanh(LN(c̃)) and the gates tuple has a
    seventh entry, the LN caches {"ih", "hh", "c": layer_norm caches, "c_hat": LN(c̃) (B, H)}.
    """
    G = w_ih.shape[0]
    W_ii, W_if, W_ig, W_io = _blocks(w_ih, 4)
    W_hi, W_hf, W_hg, W_ho = _blocks(w_hh, 4)
    b_ii, b_if, b_ig, b_io = _blocks(_bias_or_zeros(b_ih, G, w_ih.dtype), 4)
    b_hi, b_hf, b_hg, b_ho = _blocks(_bias_or_zeros(b_hh, G, w_ih.dtype), 4)

    # h̄_{t-1} = keep_h ⊙ h_{t-1} (recurrent dropout, the same mask at every step)
    h_bar = h if keep_h is None else keep_h * h

    if ln is None:
        # Pre-activations a = W_i· x_t + b_i· + W_h· h̄_{t-1} + b_h·, and the peepholes p ⊙ c.
        a_i = x @ W_ii.T + b_ii + h_bar @ W_hi.T + b_hi
        a_f = x @ W_if.T + b_if + h_bar @ W_hf.T + b_hf
        a_g = x @ W_ig.T + b_ig + h_bar @ W_hg.T + b_hg
        a_o = x @ W_io.T + b_io + h_bar @ W_ho.T + b_ho
    else:
        # Layer norm of each product over all 4H pre-activations at once:
        # a = LN(W_ih x_t; γ_ih, β_ih) + LN(W_hh h̄_{t-1}; γ_hh, β_hh) + b_ih + b_hh
        nx, ln_ih = layer_norm(x @ w_ih.T, ln["ln_ih_weight"], ln["ln_ih_bias"])      # (B, 4H)
        nh, ln_hh = layer_norm(h_bar @ w_hh.T, ln["ln_hh_weight"], ln["ln_hh_bias"])  # (B, 4H)
        nx_i, nx_f, nx_g, nx_o = _columns(nx, 4)
        nh_i, nh_f, nh_g, nh_o = _columns(nh, 4)
        a_i = nx_i + nh_i + b_ii + b_hi
        a_f = nx_f + nh_f + b_if + b_hf
        a_g = nx_g + nh_g + b_ig + b_hg
        a_o = nx_o + nh_o + b_io + b_ho
    if w_ch is not None:
        p_i, p_f, p_o = w_ch
        a_i = a_i + p_i * c  # i_t sees c_{t-1}
        a_f = a_f + p_f * c  # f_t sees c_{t-1}

    i = sigmoid(a_i)
    f = sigmoid(a_f)
    g = np.tanh(a_g)
    c_tilde = f * c + i * g  # c̃_t = f ⊙ c_{t-1} + i ⊙ g
    if w_ch is not None:
        a_o = a_o + p_o * c_tilde  # o_t sees the new cell value c̃_t (ONNX's peephole)
    o = sigmoid(a_o)
    if ln is None:
        m = o * np.tanh(c_tilde)
    else:
        c_hat, ln_c = layer_norm(c_tilde, ln["ln_c_weight"], ln["ln_c_bias"])  # ĉ_t = LN(c̃_t; γ_c, β_c)
        m = o * np.tanh(c_hat)
    h_tilde = m if w_hr is None else m @ w_hr.T  # h̃_t = m_t or W_hr m_t

    # Zoneout: c_t = zc ⊙ c_{t-1} + (1 − zc) ⊙ c̃_t, h_t = zh ⊙ h_{t-1} + (1 − zh) ⊙ h̃_t
    c_new = c_tilde if zone_c is None else zone_c * c + (1.0 - zone_c) * c_tilde
    h_new = h_tilde if zone_h is None else zone_h * h + (1.0 - zone_h) * h_tilde
    if ln is None:
        return h_new, c_new, (i, f, g, o, m, c_tilde)
    return h_new, c_new, (i, f, g, o, m, c_tilde, {"ih": ln_ih, "hh": ln_hh, "c": ln_c, "c_hat": c_hat})


def lstm_forward(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
                 b_hh: np.ndarray | None = None, h0: np.ndarray | None = None, c0: np.ndarray | None = None,
                 w_hr: np.ndarray | None = None, *, w_ch: np.ndarray | None = None,
                 keep_h: np.ndarray | float | None = None, zone_c: np.ndarray | float | None = None,
                 zone_h: np.ndarray | float | None = None, ln: dict[str, np.ndarray] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, object]]:
    """Forward over a sequence.

    Returns (y, h_n, c_n, cache): y (T, B, H_out) holds h_t of every step, h_n (B, H_out) and
    c_n (B, H) the final state, and cache what lstm_backward needs. The variants (module
    docstring), each None for the plain cell: w_ch (3, H) peepholes; keep_h (B, H_out)
    recurrent-dropout multiplier, the same at every step; zone_c (T, B, H) and zone_h
    (T, B, H_out) zoneout weights of step t (0/1 in training, any values in eval; a number
    stands for the same value everywhere); ln a dict of the layer norm's γ and β
    (LSTM_LN_NAMES), or None for no layer norm.
    """
    T, B, _ = x.shape
    H, H_out = w_ih.shape[0] // 4, w_hh.shape[1]
    h = np.zeros((B, H_out), dtype=x.dtype) if h0 is None else h0
    c = np.zeros((B, H), dtype=x.dtype) if c0 is None else c0

    y = np.zeros((T, B, H_out), dtype=x.dtype)
    # per step: (h_{t-1}, c_{t-1}, c̃_t, (i, f, g, o, m, c̃[, LN caches]))
    steps: list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[object, ...]]] = []
    for t in range(T):
        h_new, c_new, gates = lstm_cell(x[t], h, c, w_ih, w_hh, b_ih, b_hh, w_hr, w_ch, keep_h,
                                        None if zone_c is None else _at_step(zone_c, t),
                                        None if zone_h is None else _at_step(zone_h, t), ln=ln)
        steps.append((h, c, gates[5], gates))
        h, c = h_new, c_new
        y[t] = h

    cache: dict[str, object] = {
        "x": x, "w_ih": w_ih, "w_hh": w_hh, "w_hr": w_hr, "bias": b_ih is not None or b_hh is not None,
        "steps": steps, "w_ch": w_ch, "keep_h": keep_h, "zone_c": zone_c, "zone_h": zone_h, "ln": ln}
    return y, h, c, cache


def lstm_backward(dy: np.ndarray | None, dh_n: np.ndarray | None, dc_n: np.ndarray | None, cache: dict[str, object]
                  ) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for the forward that produced `cache`.

    dy (T, B, H_out), dh_n (B, H_out) and dc_n (B, H) are the gradients of the loss with respect
    to the outputs and the final state; each may be None (zeros). Returns a dict with dx, dh0,
    dc0, dw_ih, dw_hh, db_ih, db_hh (None when the forward had no bias), dw_hr (None without
    a projection), dw_ch (None without peepholes) and "d" + each of LSTM_LN_NAMES (dln_ih_weight,
    dln_ih_bias, dln_hh_weight, dln_hh_bias, dln_c_weight, dln_c_bias; None without layer norm).
    Dropout and zoneout masks are constants.
    """
    # The cache's entries by key (lstm_forward's): a TypedDict would need `typing`, which this module does
    # not import, so each is declared here and its read from the dict of objects unchecked.
    x: np.ndarray          # (T, B, I)
    w_ih: np.ndarray       # (4H, I)
    w_hh: np.ndarray       # (4H, H_out)
    w_hr: np.ndarray | None  # (P, H)
    steps: list[tuple[np.ndarray, np.ndarray, np.ndarray,
                      tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
                      | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                              dict[str, np.ndarray | dict[str, np.ndarray]]]]]
    w_ch: np.ndarray | None  # (3, H)
    keep_h: np.ndarray | float | None  # (B, H_out)
    zone_c: np.ndarray | float | None  # (T, B, H)
    zone_h: np.ndarray | float | None  # (T, B, H_out)
    ln: dict[str, np.ndarray] | None
    x, w_ih, w_hh = cache["x"], cache["w_ih"], cache["w_hh"]  # type: ignore[assignment]
    w_hr, steps = cache["w_hr"], cache["steps"]  # type: ignore[assignment]
    w_ch, keep_h = cache["w_ch"], cache["keep_h"]  # type: ignore[assignment]
    zone_c, zone_h = cache["zone_c"], cache["zone_h"]  # type: ignore[assignment]
    ln = cache["ln"]  # type: ignore[assignment]
    T, B, _ = x.shape
    H, H_out = w_ih.shape[0] // 4, w_hh.shape[1]
    W_hi, W_hf, W_hg, W_ho = _blocks(w_hh, 4)
    W_ii, W_if, W_ig, W_io = _blocks(w_ih, 4)
    if w_ch is not None:
        p_i, p_f, p_o = w_ch

    dx = np.zeros_like(x)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    dw_hr = None if w_hr is None else np.zeros_like(w_hr)
    dw_ch = None if w_ch is None else np.zeros_like(w_ch)
    db = np.zeros(4 * H, dtype=w_hh.dtype)
    dh_next = np.zeros((B, H_out), dtype=x.dtype) if dh_n is None else dh_n
    dc_next = np.zeros((B, H), dtype=x.dtype) if dc_n is None else dc_n
    dln = _ln_gradients(ln, LSTM_LN_NAMES)

    for t in reversed(range(T)):
        h_prev, c_prev, c, gates = steps[t]  # c is c̃_t
        i, f, g, o, m = gates[:5]
        ln_t = gates[6] if len(gates) == 7 else None  # step t's LN caches (with ln)
        dh = dh_next + (0.0 if dy is None else dy[t])

        # Zoneout: h_t = zh ⊙ h_{t-1} + (1 − zh) ⊙ h̃_t, c_t = zc ⊙ c_{t-1} + (1 − zc) ⊙ c̃_t
        if zone_h is not None:
            zh_t = _at_step(zone_h, t)
            dh_prev_zone = zh_t * dh
            dh = (1.0 - zh_t) * dh  # now the gradient of h̃_t
        if zone_c is not None:
            zc_t = _at_step(zone_c, t)
            dc_prev_zone = zc_t * dc_next
            dc_next = (1.0 - zc_t) * dc_next  # now the gradient of c̃_t from c_t

        # h̃_t = W_hr m_t (projection) or h̃_t = m_t
        if w_hr is None:
            dm = dh
        else:
            dw_hr += dh.T @ m
            dm = dh @ w_hr

        # m_t = o ⊙ tanh(c̃_t) (with LN: o ⊙ tanh(ĉ_t), ĉ_t = LN(c̃_t)); o = σ(a_o), a_o ∋ p_o ⊙ c̃_t;
        # c̃_t = f ⊙ c_{t-1} + i ⊙ g
        tanh_c = np.tanh(c) if ln_t is None else np.tanh(ln_t["c_hat"])
        do = dm * tanh_c
        da_o = do * o * (1.0 - o)
        if ln_t is None:
            dc = dc_next + dm * o * (1.0 - tanh_c**2)
        else:
            dc_hat = dm * o * (1.0 - tanh_c**2)  # gradient of ĉ_t
            dc_ln, dgamma, dbeta = layer_norm_backward(dc_hat, ln_t["c"])  # type: ignore[arg-type]  # a LN cache
            _add_ln_gradients(dln, "ln_c", dgamma, dbeta)
            dc = dc_next + dc_ln
        if w_ch is not None:
            dc = dc + da_o * p_o  # the output gate's peephole on c̃_t
        di = dc * g
        df = dc * c_prev
        dg = dc * i

        # Through the activations to the pre-activations a (σ' = σ(1 − σ), tanh' = 1 − tanh²).
        da_i = di * i * (1.0 - i)
        da_f = df * f * (1.0 - f)
        da_g = dg * (1.0 - g**2)
        da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)  # (B, 4H)

        # a = x_t W_ihᵀ + b_ih + h̄_{t-1} W_hhᵀ + b_hh (+ p_i ⊙ c_{t-1}, p_f ⊙ c_{t-1}, p_o ⊙ c̃_t)
        h_bar = h_prev if keep_h is None else keep_h * h_prev
        if ln_t is None:
            dx[t] = da_i @ W_ii + da_f @ W_if + da_g @ W_ig + da_o @ W_io
            dw_ih += da.T @ x[t]
            dw_hh += da.T @ h_bar
            db += da.sum(axis=0)
            dh_next = da_i @ W_hi + da_f @ W_hf + da_g @ W_hg + da_o @ W_ho  # gradient of h̄_{t-1}
        else:
            # a = LN(u_x) + LN(u_h) + b_ih + b_hh: back through each LN (all four gates at once) to
            # its product u_x = x_t W_ihᵀ, u_h = h̄_{t-1} W_hhᵀ  (B, 4H)
            du_x, dgamma, dbeta = layer_norm_backward(da, ln_t["ih"])  # type: ignore[arg-type]  # a LN cache
            _add_ln_gradients(dln, "ln_ih", dgamma, dbeta)
            du_h, dgamma, dbeta = layer_norm_backward(da, ln_t["hh"])  # type: ignore[arg-type]  # a LN cache
            _add_ln_gradients(dln, "ln_hh", dgamma, dbeta)
            dx[t] = du_x @ w_ih
            dw_ih += du_x.T @ x[t]
            dw_hh += du_h.T @ h_bar
            db += da.sum(axis=0)
            dh_next = du_h @ w_hh  # gradient of h̄_{t-1}
        dc_next = dc * f
        if dw_ch is not None:  # with peepholes (w_ch)
            dw_ch[0] += (da_i * c_prev).sum(axis=0)
            dw_ch[1] += (da_f * c_prev).sum(axis=0)
            dw_ch[2] += (da_o * c).sum(axis=0)
            dc_next = dc_next + da_i * p_i + da_f * p_f
        # h̄_{t-1} = keep_h ⊙ h_{t-1}; the zoneout paths to h_{t-1}, c_{t-1}
        if keep_h is not None:
            dh_next = keep_h * dh_next
        if zone_h is not None:
            dh_next = dh_next + dh_prev_zone
        if zone_c is not None:
            dc_next = dc_next + dc_prev_zone

    bias = cache["bias"]
    return {
        "dx": dx, "dh0": dh_next, "dc0": dc_next, "dw_ih": dw_ih, "dw_hh": dw_hh,
        "db_ih": db.copy() if bias else None, "db_hh": db.copy() if bias else None, "dw_hr": dw_hr,
        "dw_ch": dw_ch, **dln,
    }


# =============================================================================================
# GRU

def gru_cell(x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
             b_hh: np.ndarray | None = None, *, ln: dict[str, np.ndarray] | None = None,
             ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
                        | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, dict[str, np.ndarray]]]]:
    """One step: x (B, I), h (B, H) -> (h', (r, z, n, hn)) with hn = W_hn h + b_hn.

    ln: the layer norm's γ and β (GRU_LN_NAMES, each (3H,)), or None. With it hn = ah_n (the
    normalized product's n block + b_hn) and the gates tuple has a fifth entry, the LN caches
    {"ih", "hh": layer_norm caches}.
    """
    G = w_ih.shape[0]
    W_ir, W_iz, W_in = _blocks(w_ih, 3)
    W_hr, W_hz, W_hn = _blocks(w_hh, 3)
    b_ir, b_iz, b_in = _blocks(_bias_or_zeros(b_ih, G, w_ih.dtype), 3)
    b_hr, b_hz, b_hn = _blocks(_bias_or_zeros(b_hh, G, w_ih.dtype), 3)

    if ln is None:
        r = sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
        z = sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
        hn = h @ W_hn.T + b_hn
        n = np.tanh(x @ W_in.T + b_in + r * hn)
        h_new = (1.0 - z) * n + z * h
        return h_new, (r, z, n, hn)

    # Layer norm of each product over all 3H pre-activations at once:
    # ax = LN(W_ih x_t; γ_ih, β_ih) + b_ih,  ah = LN(W_hh h_{t-1}; γ_hh, β_hh) + b_hh
    nx, ln_ih = layer_norm(x @ w_ih.T, ln["ln_ih_weight"], ln["ln_ih_bias"])  # (B, 3H)
    nh, ln_hh = layer_norm(h @ w_hh.T, ln["ln_hh_weight"], ln["ln_hh_bias"])  # (B, 3H)
    nx_r, nx_z, nx_n = _columns(nx, 3)
    nh_r, nh_z, nh_n = _columns(nh, 3)
    r = sigmoid(nx_r + b_ir + nh_r + b_hr)
    z = sigmoid(nx_z + b_iz + nh_z + b_hz)
    hn = nh_n + b_hn
    n = np.tanh(nx_n + b_in + r * hn)
    h_new = (1.0 - z) * n + z * h
    return h_new, (r, z, n, hn, {"ih": ln_ih, "hh": ln_hh})


def gru_forward(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
                b_hh: np.ndarray | None = None, h0: np.ndarray | None = None, *,
                ln: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """Forward over a sequence: (y (T, B, H), h_n (B, H), cache); ln a dict of the layer norm's
    γ and β (GRU_LN_NAMES), or None for no layer norm."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0
    y = np.zeros((T, B, H), dtype=x.dtype)
    steps: list[tuple[np.ndarray, tuple[object, ...]]] = []  # per step: (h_{t-1}, (r, z, n, hn[, LN caches]))
    for t in range(T):
        h_new, gates = gru_cell(x[t], h, w_ih, w_hh, b_ih, b_hh, ln=ln)
        steps.append((h, gates))
        h = h_new
        y[t] = h
    cache: dict[str, object] = {"x": x, "w_ih": w_ih, "w_hh": w_hh, "bias": b_ih is not None or b_hh is not None,
                                "steps": steps, "ln": ln}
    return y, h, cache


def gru_backward(dy: np.ndarray | None, dh_n: np.ndarray | None, cache: dict[str, object]
                 ) -> dict[str, np.ndarray | None]:
    """BPTT for gru_forward: a dict with dx, dh0, dw_ih, dw_hh, db_ih, db_hh (None without bias) and
    "d" + each of GRU_LN_NAMES (dln_ih_weight, dln_ih_bias, dln_hh_weight, dln_hh_bias; None
    without layer norm)."""
    # The cache's entries by key (gru_forward's), declared as in lstm_backward:
    x: np.ndarray     # (T, B, I)
    w_ih: np.ndarray  # (3H, I)
    w_hh: np.ndarray  # (3H, H)
    steps: list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
                      | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, dict[str, np.ndarray]]]]]
    ln: dict[str, np.ndarray] | None
    x, w_ih, w_hh = cache["x"], cache["w_ih"], cache["w_hh"]  # type: ignore[assignment]
    steps, ln = cache["steps"], cache["ln"]  # type: ignore[assignment]
    T, B, _ = x.shape
    H = w_hh.shape[1]
    W_ir, W_iz, W_in = _blocks(w_ih, 3)
    W_hr, W_hz, W_hn = _blocks(w_hh, 3)

    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih, db_hh = np.zeros(3 * H, dtype=w_ih.dtype), np.zeros(3 * H, dtype=w_ih.dtype)
    dh_next = np.zeros((B, H), dtype=x.dtype) if dh_n is None else dh_n
    dln = _ln_gradients(ln, GRU_LN_NAMES)

    for t in reversed(range(T)):
        h_prev, gates = steps[t]
        r, z, n, hn = gates[:4]
        ln_t = gates[4] if len(gates) == 5 else None  # step t's LN caches (with ln)
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
        if ln_t is None:
            dx[t] = da_r @ W_ir + da_z @ W_iz + da_n @ W_in
            dw_ih += dgx.T @ x[t]
            dw_hh += dgh.T @ h_prev
            db_ih += dgx.sum(axis=0)
            db_hh += dgh.sum(axis=0)
            dh_next = dh * z + da_r @ W_hr + da_z @ W_hz + dhn @ W_hn
        else:
            # With LN, dgx and dgh are the gradients of ax = LN(u_x) + b_ih and ah = LN(u_h) + b_hh:
            # back through each LN (all three gates at once) to u_x = x_t W_ihᵀ, u_h = h_{t-1} W_hhᵀ
            du_x, dgamma, dbeta = layer_norm_backward(dgx, ln_t["ih"])
            _add_ln_gradients(dln, "ln_ih", dgamma, dbeta)
            du_h, dgamma, dbeta = layer_norm_backward(dgh, ln_t["hh"])
            _add_ln_gradients(dln, "ln_hh", dgamma, dbeta)
            dx[t] = du_x @ w_ih
            dw_ih += du_x.T @ x[t]
            dw_hh += du_h.T @ h_prev
            db_ih += dgx.sum(axis=0)
            db_hh += dgh.sum(axis=0)
            dh_next = dh * z + du_h @ w_hh

    bias = cache["bias"]
    return {"dx": dx, "dh0": dh_next, "dw_ih": dw_ih, "dw_hh": dw_hh,
            "db_ih": db_ih if bias else None, "db_hh": db_hh if bias else None, **dln}


# =============================================================================================
# Vanilla RNN

# (act, act') of the nonlinearity, act' from act's output: functions of an array, typed as objects here
# (Callable needs `typing`, which this module does not import), so their callers declare what they return.
def _activation(nonlinearity: str) -> tuple[object, object]:
    if nonlinearity == "tanh":
        return np.tanh, lambda h: 1.0 - h**2
    if nonlinearity == "relu":
        return (lambda a: np.maximum(a, 0.0)), (lambda h: (h > 0).astype(h.dtype))
    raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")


def rnn_cell(x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
             b_hh: np.ndarray | None = None, nonlinearity: str = "tanh") -> np.ndarray:
    """One step: x (B, I), h (B, H) -> h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)."""
    act, _ = _activation(nonlinearity)
    H = w_hh.shape[0]
    h_new: np.ndarray = act(  # type: ignore[operator]  # act: a function of an array (_activation)
        x @ w_ih.T + _bias_or_zeros(b_ih, H, w_ih.dtype) + h @ w_hh.T + _bias_or_zeros(b_hh, H, w_ih.dtype))
    return h_new


def rnn_forward(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
                b_hh: np.ndarray | None = None, h0: np.ndarray | None = None, nonlinearity: str = "tanh",
                ) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """Forward over a sequence: (y (T, B, H), h_n (B, H), cache)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0
    y = np.zeros((T, B, H), dtype=x.dtype)
    h_prevs: list[np.ndarray] = []
    for t in range(T):
        h_prevs.append(h)
        h = rnn_cell(x[t], h, w_ih, w_hh, b_ih, b_hh, nonlinearity)
        y[t] = h
    cache: dict[str, object] = {"x": x, "w_ih": w_ih, "w_hh": w_hh, "bias": b_ih is not None or b_hh is not None,
                                "nonlinearity": nonlinearity, "h_prevs": h_prevs, "y": y}
    return y, h, cache


def rnn_backward(dy: np.ndarray | None, dh_n: np.ndarray | None, cache: dict[str, object]
                 ) -> dict[str, np.ndarray | None]:
    """BPTT for rnn_forward: a dict with dx, dh0, dw_ih, dw_hh, db_ih, db_hh (None without bias)."""
    # The cache's entries by key (rnn_forward's), declared as in lstm_backward:
    x: np.ndarray     # (T, B, I)
    w_ih: np.ndarray  # (H, I)
    w_hh: np.ndarray  # (H, H)
    y: np.ndarray     # (T, B, H)
    h_prevs: list[np.ndarray]  # h_{t-1} of each step (B, H)
    nonlinearity: str
    x, w_ih, w_hh, y = cache["x"], cache["w_ih"], cache["w_hh"], cache["y"]  # type: ignore[assignment]
    h_prevs, nonlinearity = cache["h_prevs"], cache["nonlinearity"]  # type: ignore[assignment]
    _, slope = _activation(nonlinearity)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db = np.zeros(H, dtype=w_ih.dtype)
    dh_next = np.zeros((B, H), dtype=x.dtype) if dh_n is None else dh_n
    for t in reversed(range(T)):
        dh = dh_next + (0.0 if dy is None else dy[t])
        da = dh * slope(y[t])  # type: ignore[operator]  # act' from h_t = act(a_t) (slope: _activation's)
        dx[t] = da @ w_ih
        dw_ih += da.T @ x[t]
        dw_hh += da.T @ h_prevs[t]
        db += da.sum(axis=0)
        dh_next = da @ w_hh
    bias = cache["bias"]
    return {"dx": dx, "dh0": dh_next, "dw_ih": dw_ih, "dw_hh": dw_hh,
            "db_ih": db.copy() if bias else None, "db_hh": db.copy() if bias else None}


# =============================================================================================
# PyTorch's multi-layer network, the textbook way

# PyTorch's base names, weight_ch: the LSTM's peepholes (3, H), rows p_i, p_f, p_o, and the layer
# norm's γ and β (ln_*: the same names in params, in the cells' ln dicts and, with "d", in gradients)
_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ch") + LSTM_LN_NAMES
_SHORT = {"weight_ih": "w_ih", "weight_hh": "w_hh", "bias_ih": "b_ih", "bias_hh": "b_hh", "weight_hr": "w_hr",
          "weight_ch": "w_ch", **{name: name for name in LSTM_LN_NAMES}}


def _layer_weights(params: dict[str, np.ndarray], k: int, direction: int) -> dict[str, np.ndarray]:
    """{base name: array} of layer k and direction (0 forward, 1 reverse) from PyTorch's names."""
    suffix = f"_l{k}" + ("_reverse" if direction else "")
    return {name: params[name + suffix] for name in _WEIGHTS if params.get(name + suffix) is not None}


def stack_forward(cell: object, x: np.ndarray, params: dict[str, np.ndarray], num_layers: int = 1,
                  bidirectional: bool = False, lengths: np.ndarray | list[int] | None = None,
                  state0: list[np.ndarray | None] | None = None, dropout_masks: list[np.ndarray] | None = None,
                  options: dict[str, object] | None = None,
                  cell_masks: list[list[dict[str, np.ndarray | float]]] | None = None,
                  ) -> tuple[np.ndarray, list[np.ndarray], dict[str, object]]:
    """PyTorch's torch.nn.LSTM / GRU / RNN forward, from the single-layer functions above.

    cell: the kind's description (``lstm_ext.cells.LSTM``, ``GRU`` or ``RNN``, or ``layer.cell``),
    which names its single-layer reference functions and the parts of its state; options: the
    kind's own options (``layer.options``: proj_size, nonlinearity). x (T, B, I); params PyTorch's
    state dict as NumPy arrays; lengths (B,) or None; state0 None or a list with one array or None
    per part of the state (h0 (L*D, B, H_out), and c0 (L*D, B, H) for the LSTM); dropout_masks a
    list of L − 1 arrays (T, B, D*H_out) multiplying the outputs of every layer but the last
    (already scaled by 1 / (1 − p)), or None; cell_masks the masks inside the cells (the LSTM's
    variants, module docstring): None, or a list over layers k of a list over directions of
    dicts {name: full-batch array}, any subset of keep_h (B, H_out), zone_c (T, B, H) and zone_h
    (T, B, H_out) (a number for zone_c or zone_h: that value everywhere, eval-mode zoneout). The
    peepholes are parameters: weight_ch_l{k}[_reverse] (3, H) in params; so is the layer norm:
    ln_ih_weight_l{k}[_reverse], ln_ih_bias, ln_hh_weight, ln_hh_bias (G*H,) and, for the LSTM,
    ln_c_weight, ln_c_bias (H,), passed to the cell's reference forward with the other weights.
    Returns (y (T, B, D*H_out), state_n (a list, one (L*D, B, ·) array per part), cache).

    Each sequence b runs on its own over its first lengths[b] steps; the reverse direction runs
    the same cell over those steps reversed, its per-step masks reversed with them (the mask at
    time index t always belongs to input step t). Outputs past a sequence's length are zero.
    """
    # cell is typed object: lstm_ext.cells.CellKind is not importable here (this module imports NumPy
    # only), so reading its attributes is unchecked, and what its reference functions return too.
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    options = {} if options is None else options
    parts = len(cell.state)  # type: ignore[attr-defined]  # a CellKind (above)
    state0 = [None] * parts if state0 is None else list(state0)
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    state_n: list[list[np.ndarray]]  # per part, the (B, ·) final states of every layer and direction
    caches: list[list[dict[str, object]]]  # per layer and direction, each sequence's cell cache
    layer_input, state_n, caches = x, [[] for _ in range(parts)], []
    for k in range(num_layers):
        outputs = []
        for direction in range(D):
            w = _layer_weights(params, k, direction)
            masks = {} if cell_masks is None else cell_masks[k][direction]
            state_row = k * D + direction
            H_out = w["weight_hh"].shape[1]
            y = np.zeros((T, B, H_out), dtype=x.dtype)
            last: list[list[np.ndarray]] = [[] for _ in range(parts)]  # per part, each sequence's (·,)
            per_sequence: list[dict[str, object]] = []
            for b in range(B):
                steps = slice(None, lengths[b])
                x_b = layer_input[steps, b:b + 1]
                if direction:
                    x_b = x_b[::-1]
                state0_b = [None if s is None else s[state_row, b:b + 1] for s in state0]
                masks_b = {}  # sequence b's masks: per-step ones (T, ·, ·) cut and reversed like x
                for name, mask in masks.items():
                    # a number (eval-mode zoneout): every sequence's and step's
                    if not isinstance(mask, np.ndarray) or mask.ndim == 0:
                        masks_b[name] = mask
                    elif mask.ndim == 3:
                        mask = mask[steps, b:b + 1]
                        masks_b[name] = mask[::-1] if direction else mask
                    else:
                        masks_b[name] = mask[b:b + 1]
                y_b, state_b, cache = cell.reference_forward(  # type: ignore[attr-defined]  # a CellKind
                    x_b, w, state0_b, options, masks_b)
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


def stack_backward(dy: np.ndarray | None, dstate_n: list[np.ndarray | None] | None, cache: dict[str, object]
                   ) -> dict[str, np.ndarray | list[np.ndarray] | None]:
    """Backward of stack_forward: dy (T, B, D*H_out) and dstate_n (None, or a list with one array
    or None per part of the state: dh_n (L*D, B, H_out), dc_n (L*D, B, H)), None for zeros.
    Returns {'dx', 'dstate0' (a list, one (L*D, B, ·) array per part), and 'd' + each PyTorch
    parameter name}."""
    # The cache's entries by key (stack_forward's), declared as in lstm_backward; cell as in stack_forward.
    L: int
    D: int
    lengths: np.ndarray  # (B,)
    x: np.ndarray        # (T, B, I)
    masks: list[np.ndarray] | None  # the dropout masks
    caches: list[list[dict[str, object]]]  # per layer and direction, each sequence's cell cache
    cell = cache["cell"]
    L, D, lengths = cache["num_layers"], cache["D"], cache["lengths"]  # type: ignore[assignment]
    x, masks, caches = cache["x"], cache["dropout_masks"], cache["caches"]  # type: ignore[assignment]
    parts = len(cell.state)  # type: ignore[attr-defined]  # a CellKind
    dstate_n = [None] * parts if dstate_n is None else list(dstate_n)
    T, B, _ = x.shape
    grads: dict[str, np.ndarray] = {}  # "d" + PyTorch's name: the gradient, summed over the sequences
    dstate0: list[dict[int, np.ndarray]] = [{} for _ in range(parts)]  # per part, {state row: (B, ·)}
    d_output = dy
    for k in reversed(range(L)):
        if masks is not None and k < L - 1:
            d_output = d_output * masks[k]
        d_input = None
        for direction in range(D):
            state_row = k * D + direction
            per_sequence = caches[state_row]
            H_out = per_sequence[0]["w_hh"].shape[1]  # type: ignore[attr-defined]  # the cell cache's w_hh: an array
            dy_dir = None if d_output is None else d_output[:, :, direction * H_out:(direction + 1) * H_out]
            first: list[list[np.ndarray]] = [[] for _ in range(parts)]  # per part, each sequence's (·,)
            for b in range(B):
                steps = slice(None, lengths[b])
                dy_b = None if dy_dir is None else dy_dir[steps, b:b + 1]
                if direction and dy_b is not None:
                    dy_b = dy_b[::-1]
                dstate_b = [None if d is None else d[state_row, b:b + 1] for d in dstate_n]
                g = cell.reference_backward(dy_b, dstate_b, per_sequence[b])  # type: ignore[attr-defined]  # a CellKind
                if d_input is None:
                    d_input = np.zeros((T, B, g["dx"].shape[2]), dtype=x.dtype)
                d_input[steps, b] += (g["dx"][::-1] if direction else g["dx"])[:, 0]
                for rows, part in zip(first, cell.state):  # type: ignore[attr-defined]  # a CellKind
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
