"""A bidirectional call (both directions of a layer in one core call) gives, bit for bit, what the
two one-direction calls give: y side by side, states and parameter gradients with a leading axis
of 2, dx the sum of both parts. On a team of two the directions run at once, one per thread, when
their recurrent weights are small (parallel.hpp: run_directions), else one after the other: both
ways are checked, at 1 and 2 threads, with and without lengths, for every cell and dtype."""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from lstm_ext import functional as F

LENGTHS = np.array([5, 2, 7])  # B = 3, T = 7


def _weights(rng, G, I, H_out, dtype, P=0, H=0):
    """One direction's (w_ih, w_hh, b_ih, b_hh, w_hr or None)."""
    w = lambda *shape: (0.3 * rng.standard_normal(shape)).astype(dtype)  # noqa: E731
    return w(G, I), w(G, H_out), w(G), w(G), (w(P, H) if P else None)


# (cell, H, P, extra forward/backward arguments); H = 300 in float64 makes an LSTM's W_hh 2.9 MB
# (together), H = 380 4.6 MB (one after the other; parallel.hpp kTogetherMaxBytes = 4 MiB).
CASES = {
    "LSTM": ("lstm", 6, 0, {}),
    "LSTM-proj": ("lstm", 6, 4, {}),
    "GRU": ("gru", 6, 0, {}),
    "RNN-tanh": ("rnn", 6, 0, {"nonlinearity": "tanh"}),
    "RNN-relu": ("rnn", 6, 0, {"nonlinearity": "relu"}),
    "LSTM-large-together": ("lstm", 300, 0, {}),
    "LSTM-large-in-turn": ("lstm", 380, 0, {}),
}


def _one_call(cell, x, weights, h0, c0, dy, dh_n, dc_n, lengths, extra, *, bidirectional, reverse=False):
    """Forward then backward of one call; {name: array} of everything it returns."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    fwd = getattr(F, f"{cell}_forward")
    bwd = getattr(F, f"{cell}_backward")
    common = dict(lengths=lengths, reverse=reverse, bidirectional=bidirectional, **extra)
    if cell == "lstm":
        y, h_n, c_n, ws = fwd(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr=w_hr, training=True, **common)
        g = bwd(dy, dh_n, dc_n, x, w_ih, w_hh, ws, w_hr=w_hr, **common)
        out = dict(y=y, h_n=h_n, c_n=c_n, dx=g.dx, dh0=g.dh0, dc0=g.dc0, dw_ih=g.dw_ih, dw_hh=g.dw_hh,
                   db_ih=g.db_ih, db_hh=g.db_hh)
        if w_hr is not None:
            out["dw_hr"] = g.dw_hr
        return out
    y, h_n, ws = fwd(x, w_ih, w_hh, b_ih, b_hh, h0, training=True, **common)
    g = bwd(dy, dh_n, x, w_ih, w_hh, ws, **common)
    return dict(y=y, h_n=h_n, dx=g.dx, dh0=g.dh0, dw_ih=g.dw_ih, dw_hh=g.dw_hh, db_ih=g.db_ih, db_hh=g.db_hh)


@pytest.fixture
def threads():
    before = lstm_ext.get_num_threads()
    yield
    lstm_ext.set_num_threads(before)


# The large cases choose their path by their float64 weights' size: float64 only.
CASE_DTYPES = [(case, dtype) for case in CASES for dtype in (np.float64, np.float32)
               if CASES[case][1] < 100 or dtype == np.float64]


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["no lengths", "lengths"])
@pytest.mark.parametrize("case,dtype", CASE_DTYPES, ids=[f"{c}-{np.dtype(d).name}" for c, d in CASE_DTYPES])
def test_bidirectional_call_equals_two_directions(case, dtype, lengths, num_threads, threads):
    cell, H, P, extra = CASES[case]
    lstm_ext.set_num_threads(num_threads)
    rng = np.random.default_rng(len(case) * 7 + H)
    T, B, I = 7, 3, 5
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell] * H
    H_out = P or H
    directions = [_weights(rng, G, I, H_out, dtype, P, H) for _ in range(2)]
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((2, B, H_out)).astype(dtype)
    c0 = rng.standard_normal((2, B, H)).astype(dtype) if cell == "lstm" else None
    dy = rng.standard_normal((T, B, 2 * H_out)).astype(dtype)
    dh_n = rng.standard_normal((2, B, H_out)).astype(dtype)
    dc_n = rng.standard_normal((2, B, H)).astype(dtype) if cell == "lstm" else None

    pairs = tuple(None if w[0] is None else (w[0], w[1]) for w in zip(*directions))
    both = _one_call(cell, x, pairs, h0, c0, dy, dh_n, dc_n, lengths, extra, bidirectional=True)
    alone = [_one_call(cell, x, directions[k], h0[k], None if c0 is None else c0[k],
                       np.ascontiguousarray(dy[:, :, k * H_out:(k + 1) * H_out]), dh_n[k],
                       None if dc_n is None else dc_n[k], lengths, extra, bidirectional=False, reverse=k == 1)
             for k in range(2)]

    assert both["y"].shape == (T, B, 2 * H_out)
    worst = {}
    for name, value in both.items():
        if name == "y":
            expected = np.concatenate([alone[0]["y"], alone[1]["y"]], axis=2)
        elif name == "dx":
            expected = alone[0]["dx"] + alone[1]["dx"]
        else:
            expected = np.stack([alone[0][name], alone[1][name]])
        assert value.shape == expected.shape, name
        worst[name] = float(np.max(np.abs(value - expected)))
    print(f"{case} {np.dtype(dtype).name} {num_threads} threads: worst |bidirectional - two calls| "
          + "  ".join(f"{k}={v:.1e}" for k, v in worst.items()))
    assert all(v == 0.0 for v in worst.values()), worst


def _lstm_pair(dtype=np.float32, H=4, I=3):
    rng = np.random.default_rng(0)
    return [_weights(rng, 4 * H, I, H, dtype) for _ in range(2)]


def test_bidirectional_refuses_reverse():
    d = _lstm_pair()
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(ValueError, match="reverse"):
        F.lstm_forward(x, (d[0][0], d[1][0]), (d[0][1], d[1][1]), bidirectional=True, reverse=True)


@pytest.mark.parametrize("bad", [np.zeros((16, 3), np.float32), [np.zeros((16, 3), np.float32)], "abc"],
                         ids=["array", "one item", "string"])
def test_bidirectional_wants_pairs_of_weights(bad):
    d = _lstm_pair()
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(TypeError, match=r"w_ih: expected a pair \(forward, reverse\)"):
        F.lstm_forward(x, bad, (d[0][1], d[1][1]), bidirectional=True)
    with pytest.raises(TypeError, match="b_ih: expected a pair"):
        F.gru_forward(x, (np.zeros((12, 3)),) * 2, (np.zeros((12, 4)),) * 2, bad, bidirectional=True)


def test_bidirectional_directions_must_agree():
    d = _lstm_pair()
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(ValueError, match=r"w_ih: expected the reverse direction's array of the forward's shape "
                                         r"\(16, 3\), got \(16, 2\)"):
        F.lstm_forward(x, (d[0][0], np.zeros((16, 2), np.float32)), (d[0][1], d[1][1]), bidirectional=True)
    with pytest.raises(ValueError, match=r"w_ih: .*forward's shape \(16, 3\), got \(20, 3\)"):  # H = 5 in reverse
        F.lstm_forward(x, (d[0][0], np.zeros((20, 3), np.float32)), (d[0][1], np.zeros((20, 5), np.float32)),
                       bidirectional=True)


def test_bidirectional_states_and_workspace_have_a_direction_axis():
    d = _lstm_pair()
    w_ih, w_hh = (d[0][0], d[1][0]), (d[0][1], d[1][1])
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(ValueError, match=r"h0: .*\(2, B, H\).*\(2, 1, 4\).*got \(1, 4\)"):
        F.lstm_forward(x, w_ih, w_hh, h0=np.zeros((1, 4), np.float32), bidirectional=True)
    one_direction = F.lstm_forward(x, d[0][0], d[0][1], training=True).workspace
    with pytest.raises(ValueError, match="workspace"):
        F.lstm_backward(None, None, None, x, w_ih, w_hh, one_direction, bidirectional=True)
    out = F.lstm_forward(x, w_ih, w_hh, training=True, bidirectional=True)
    with pytest.raises(ValueError, match=r"dy: expected shape .*\(2, 1, 8\)"):
        F.lstm_backward(np.zeros((2, 1, 4), np.float32), None, None, x, w_ih, w_hh, out.workspace,
                        bidirectional=True)
