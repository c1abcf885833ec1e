"""The compiled core's ops take the arguments of their functions in lstm_ext.functional: the same
names in the same order, keyword-only where functional's are, with the same defaults; the stub
_core.pyi says the same. Each keyword reaches its parameter, and each op computes in the dtype of
w_ih (one dispatch, in the bindings)."""

from __future__ import annotations

import ast
import inspect
import pathlib
import re

import numpy as np
import pytest

from lstm_ext import _core, functional

OPS = ["lstm_forward", "lstm_backward", "lstm_cell", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward",
       "linear_forward", "linear_backward"]
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
T, B, I, H, P = 5, 3, 4, 6, 2


def functional_parameters(op):
    """[(name, 'positional' or 'keyword', repr of the default or None)] of functional's op."""
    parameters = []
    for p in inspect.signature(getattr(functional, op)).parameters.values():
        kind = "keyword" if p.kind is inspect.Parameter.KEYWORD_ONLY else "positional"
        parameters.append((p.name, kind, None if p.default is inspect.Parameter.empty else repr(p.default)))
    return parameters


def core_parameters(op):
    """The same, read from the signature pybind11 writes on the first line of the op's docstring."""
    first_line = getattr(_core, op).__doc__.splitlines()[0]
    inside = re.fullmatch(rf"{op}\((.*)\) -> .*", first_line).group(1)
    parameters, kind = [], "positional"
    for item in inside.split(", "):
        if item == "*":
            kind = "keyword"
            continue
        name, default = re.fullmatch(r"(\w+): [^=]+?(?: = (.+))?", item).groups()
        parameters.append((name, kind, default))
    return parameters


def stub_parameters(op):
    """The same, read from _core.pyi."""
    tree = ast.parse(pathlib.Path(functional.__file__).with_name("_core.pyi").read_text(encoding="utf-8"))
    fn = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == op)
    args = fn.args
    defaults = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
    parameters = [(a.arg, "positional", d and ast.unparse(d)) for a, d in zip(args.args, defaults)]
    parameters += [(a.arg, "keyword", d and ast.unparse(d)) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return parameters


@pytest.mark.parametrize("op", OPS)
def test_core_takes_functionals_arguments(op):
    assert core_parameters(op) == functional_parameters(op)


@pytest.mark.parametrize("op", OPS)
def test_stub_states_functionals_arguments(op):
    assert stub_parameters(op) == functional_parameters(op)


def weights(cell, dtype=np.float64, seed=0, projection=0):
    rng = np.random.default_rng(seed)
    G, H_out = GATES[cell] * H, projection or H
    w = {"w_ih": rng.standard_normal((G, I)), "w_hh": rng.standard_normal((G, H_out)) * 0.3,
         "b_ih": rng.standard_normal(G), "b_hh": rng.standard_normal(G)}
    if projection:
        w["w_hr"] = rng.standard_normal((projection, H)) * 0.3
    return {k: v.astype(dtype) for k, v in w.items()}


def sequence(dtype=np.float64, seed=1):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(dtype)


@pytest.mark.parametrize("cell", GATES)
def test_keyword_only_arguments_are_refused_by_position(cell):
    w = weights(cell)
    positional = [sequence(), w["w_ih"], w["w_hh"], None, None, None] + ([None] if cell == "lstm" else [])
    forward = getattr(_core, f"{cell}_forward")
    forward(*positional)
    with pytest.raises(TypeError):
        forward(*positional, None)


@pytest.mark.parametrize("cell", GATES)
def test_each_keyword_reaches_its_parameter(cell):
    forward, backward = getattr(_core, f"{cell}_forward"), getattr(_core, f"{cell}_backward")
    w, x = weights(cell), sequence()
    states = {"c0": None} if cell == "lstm" else {}
    final_grads = {"dc_n": None} if cell == "lstm" else {}

    y, *_, workspace = forward(x, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], h0=None, **states)
    assert workspace is None
    # training: a workspace; reverse: the walk from T - 1 down, i.e. the forward walk of x reversed
    y_reverse, *_, workspace = forward(x, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], reverse=True, training=True)
    assert workspace is not None and workspace.ndim == 1
    y_flipped = forward(np.ascontiguousarray(x[::-1]), w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"])[0]
    np.testing.assert_allclose(y_reverse, y_flipped[::-1], rtol=1e-12, atol=1e-14)
    # lengths: zero outputs past each sequence's length
    lengths = np.array([T, 2, 1])
    y_short = forward(x, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], lengths=lengths)[0]
    assert not y_short[2:, 1].any() and not y_short[1:, 2].any() and y_short[:, 0].all()
    # bidirectional: pairs of weights, both directions side by side
    pair = {k: (v, v) for k, v in w.items()}
    y_both = forward(x, pair["w_ih"], pair["w_hh"], pair["b_ih"], pair["b_hh"], bidirectional=True)[0]
    np.testing.assert_allclose(y_both[..., :H], y, rtol=1e-12, atol=1e-14)
    # backward: bias=False leaves out the bias gradients; reverse is the forward's
    _, *_, workspace = forward(x, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], reverse=True, training=True)
    grads = backward(np.ones_like(y), None, *final_grads.values(), x, w["w_ih"], w["w_hh"], workspace, reverse=True,
                     bias=False)
    with_bias = backward(np.ones_like(y), None, *final_grads.values(), x, w["w_ih"], w["w_hh"], workspace,
                         reverse=True)
    db = slice(4, 6) if cell != "lstm" else slice(5, 7)
    assert all(g is None for g in grads[db]) and all(g is not None for g in with_bias[db])
    np.testing.assert_array_equal(grads[0], with_bias[0])


def test_projection_and_nonlinearity_by_keyword():
    w, x = weights("lstm", projection=P), sequence()
    y, h_n, c_n, workspace = _core.lstm_forward(x, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], w_hr=w["w_hr"],
                                                training=True)
    assert y.shape == (T, B, P) and h_n.shape == (B, P) and c_n.shape == (B, H)
    grads = _core.lstm_backward(y, None, None, x, w["w_ih"], w["w_hh"], workspace, w_hr=w["w_hr"])
    assert grads[7].shape == (P, H) and grads[8] is None  # dw_hr; dw_ch without peepholes
    w = weights("rnn")
    y_relu = _core.rnn_forward(x, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], nonlinearity="relu")[0]
    y_tanh = _core.rnn_forward(x, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"])[0]
    assert (y_relu >= 0).all() and (y_relu > 1).any() and (np.abs(y_tanh) < 1).all()


@pytest.mark.parametrize("cell", GATES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_op_computes_in_the_dtype_of_w_ih(cell, dtype):
    forward, backward = getattr(_core, f"{cell}_forward"), getattr(_core, f"{cell}_backward")
    w = weights(cell, dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    x = sequence(other)  # converted to w_ih's dtype
    out = forward(x, w["w_ih"], w["w_hh"].astype(other), training=True)
    assert all(a.dtype == dtype for a in out if a is not None)
    grads = backward(out[0], *[None] * (len(out) - 2), x, w["w_ih"], w["w_hh"], out[-1])
    assert all(g.dtype == dtype for g in grads if g is not None)
    pair = {k: (v, v) for k, v in w.items()}
    both = forward(x, pair["w_ih"], pair["w_hh"], bidirectional=True)
    assert all(a.dtype == dtype for a in both if a is not None)
    if cell == "lstm":
        h, c = _core.lstm_cell(x[0], None, None, w["w_ih"], w["w_hh"])
        assert h.dtype == dtype and c.dtype == dtype


def test_weights_given_as_lists_compute_in_float64():
    w = weights("gru", np.float32)
    y = _core.gru_forward(sequence(np.float32), w["w_ih"].tolist(), w["w_hh"])[0]
    assert y.dtype == np.float64
