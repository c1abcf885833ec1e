"""Random arguments of random shapes and kinds: the compiled ops either answer with correctly
shaped outputs or raise TypeError / ValueError. A crash would take the test process down."""

from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

import lstm_ext

KINDS = ["float64", "float32", "float16", "int8", "uint16", "bool", "complex64", "object", "str", "none", "list"]


@st.composite
def argument(draw, shape):
    """Usually an array of the right shape; sometimes a wrong shape, kind, or None."""
    shape = tuple(shape)
    if draw(st.integers(0, 9)) == 0:  # perturb the shape
        shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)))
    kind = draw(st.sampled_from(KINDS)) if draw(st.integers(0, 5)) == 0 else "float64"
    if kind == "none":
        return None
    size = int(np.prod(shape, dtype=np.int64))
    values = np.linspace(-1.0, 1.0, size).reshape(shape)
    if kind == "object":
        return values.astype(object)
    if kind == "str":
        return values.astype(str)
    if kind == "list":
        return values.tolist()
    return values.astype(kind)


@st.composite
def lstm_call(draw):
    T, B, I, H = (draw(st.integers(1, 4)) for _ in range(4))
    return {
        "x": draw(argument((T, B, I))), "x_t": draw(argument((B, I))), "w_ih": draw(argument((4 * H, I))), "w_hh": draw(argument((4 * H, H))),
        "b_ih": draw(argument((4 * H,))), "b_hh": draw(argument((4 * H,))),
        "h0": draw(argument((B, H))), "c0": draw(argument((B, H))),
        "dy": draw(argument((T, B, H))), "dh_n": draw(argument((B, H))), "dc_n": draw(argument((B, H))),
    }


def shapes_of(x, w_hh):
    T, B, _ = np.shape(x)
    return T, B, np.shape(w_hh)[1]


@settings(max_examples=400, deadline=None)
@given(call=lstm_call(), training=st.booleans())
def test_forward_and_backward_never_crash(call, training):
    try:
        out = lstm_ext.lstm_forward(call["x"], call["w_ih"], call["w_hh"], call["b_ih"], call["b_hh"],
                                    call["h0"], call["c0"], training=training)
    except (TypeError, ValueError) as error:
        event(f"forward raised {type(error).__name__}")
        return
    event("forward answered")
    T, B, H = shapes_of(call["x"], call["w_hh"])
    assert out.y.shape == (T, B, H) and out.h_n.shape == out.c_n.shape == (B, H)
    assert (out.workspace is not None) == training
    if not training:
        return
    try:
        grads = lstm_ext.lstm_backward(call["dy"], call["dh_n"], call["dc_n"], call["x"], call["w_ih"],
                                       call["w_hh"], out.workspace)
    except (TypeError, ValueError) as error:
        event(f"backward raised {type(error).__name__}")
        return
    event("backward answered")
    assert grads.dx.shape == np.shape(call["x"]) and grads.dw_hh.shape == np.shape(call["w_hh"])


@settings(max_examples=200, deadline=None)
@given(call=lstm_call())
def test_cell_never_crashes(call):
    try:
        h, c = lstm_ext.lstm_cell(call["x_t"], call["h0"], call["c0"], call["w_ih"], call["w_hh"], call["b_ih"],
                                  call["b_hh"])
    except (TypeError, ValueError):
        return
    assert h.shape == c.shape == (np.shape(call["x_t"])[0], np.shape(call["w_hh"])[1])


@st.composite
def family_call(draw):
    """A projected LSTM, GRU or RNN call with lengths (sometimes wrong) and a direction."""
    op = draw(st.sampled_from(["lstm", "gru", "rnn"]))
    T, B, I, H = (draw(st.integers(1, 4)) for _ in range(4))
    P = draw(st.integers(1, 3)) if op == "lstm" else H
    G = {"lstm": 4, "gru": 3, "rnn": 1}[op] * H
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(-1, T + 1), min_size=B, max_size=B),
                             st.lists(st.integers(1, T), min_size=0, max_size=5), st.just("x"),
                             st.lists(st.floats(0, T), min_size=B, max_size=B)))
    call = {"op": op, "x": draw(argument((T, B, I))), "w_ih": draw(argument((G, I))), "w_hh": draw(argument((G, P))),
            "b_ih": draw(argument((G,))), "b_hh": draw(argument((G,))), "h0": draw(argument((B, P))),
            "dy": draw(argument((T, B, P))), "dh_n": draw(argument((B, P))),
            "lengths": lengths, "reverse": draw(st.booleans())}
    if op == "lstm":
        call.update(c0=draw(argument((B, H))), dc_n=draw(argument((B, H))), w_hr=draw(argument((P, H))))
    return call


@settings(max_examples=400, deadline=None)
@given(call=family_call())
def test_family_forward_and_backward_never_crash(call):
    op, seq = call["op"], {"lengths": call["lengths"], "reverse": call["reverse"]}
    weights = (call["x"], call["w_ih"], call["w_hh"], call["b_ih"], call["b_hh"], call["h0"])
    try:
        if op == "lstm":
            out = lstm_ext.lstm_forward(*weights, call["c0"], w_hr=call["w_hr"], training=True, **seq)
        else:
            out = getattr(lstm_ext, op + "_forward")(*weights, training=True, **seq)
    except (TypeError, ValueError) as error:
        event(f"{op} forward raised {type(error).__name__}")
        return
    event(f"{op} forward answered")
    T, B, H_out = shapes_of(call["x"], call["w_hh"])
    assert out.y.shape == (T, B, H_out) and out.h_n.shape == (B, H_out)
    assert np.all(np.isfinite(out.y))
    try:
        if op == "lstm":
            grads = lstm_ext.lstm_backward(call["dy"], call["dh_n"], call["dc_n"], call["x"], call["w_ih"],
                                           call["w_hh"], out.workspace, w_hr=call["w_hr"], **seq)
        else:
            grads = getattr(lstm_ext, op + "_backward")(call["dy"], call["dh_n"], call["x"], call["w_ih"],
                                                        call["w_hh"], out.workspace, **seq)
    except (TypeError, ValueError) as error:
        event(f"{op} backward raised {type(error).__name__}")
        return
    event(f"{op} backward answered")
    assert grads.dx.shape == np.shape(call["x"]) and np.all(np.isfinite(grads.dw_hh))
